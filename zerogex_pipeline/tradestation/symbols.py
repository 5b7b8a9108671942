"""TradeStation option symbology: ``ROOT YYMMDD{C|P}STRIKE`` (e.g. ``SPY 250407C510``, ``SPXW 250117P5900.5``)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

OPTION_SYMBOL = re.compile(r"^(?P<root>[A-Z]+)\s(?P<exp>\d{6})(?P<right>[CP])(?P<strike>\d+(\.\d+)?)$")


@dataclass(frozen=True)
class OptionSymbol:
    """A parsed option symbol. ``strike`` in USD; ``right`` is ``C`` or ``P``."""

    root: str
    expiration: dt.date
    right: str
    strike: float

    def __str__(self) -> str:
        return format_option_symbol(self.root, self.expiration, self.right, self.strike)


def format_strike(strike: float) -> str:
    """Strike without padding or trailing zeros: ``600``, ``332.5``."""
    return f"{strike:.3f}".rstrip("0").rstrip(".")


def format_option_symbol(root: str, expiration: dt.date, right: str, strike: float) -> str:
    """``SPY 250117C600`` from its parts."""
    return f"{root} {expiration:%y%m%d}{right}{format_strike(strike)}"


def parse_option_symbol(symbol: str) -> OptionSymbol:
    """Parse ``symbol``.

    Raises:
        ValueError: ``symbol`` is not in ``ROOT YYMMDD{C|P}STRIKE`` form (the message names it).
    """
    m = OPTION_SYMBOL.match(symbol.strip())
    if not m:
        raise ValueError(f"option symbol {symbol!r}: expected ROOT YYMMDD{{C|P}}STRIKE, e.g. 'SPY 250407C510'")
    try:
        expiration = dt.datetime.strptime(m["exp"], "%y%m%d").date()
    except ValueError:
        raise ValueError(f"option symbol {symbol!r}: {m['exp']!r} is not a YYMMDD date") from None
    return OptionSymbol(m["root"], expiration, m["right"], float(m["strike"]))
