"""Import of a CBOE delayed quote-table export ("quotedata" CSV) into the ``option_chain_snapshots`` frame.

Every value is checked against its column (finite, non-negative where it must be, within bounds that no real
contract exceeds, whole numbers of contracts): an error names the file, its 1-based line and the column.

Layout: optional preamble lines, then ``<name>,Last: <spot>,...``, the date stamp (``Date: December 12, 2022 at
8:30 PM EST`` or ``February 5 2022, 8:26 PM EST``), the header ``Expiration Date,Calls,...``; then one row per (expiration, strike) with the call
columns left of ``Strike`` and the put columns right of it (22 columns). Zero IV / gamma / delta in the file
mean "not given" and become nulls (never a 0 IV). Settlement style from the option root: ``SPX`` (third-Friday
monthlies) is AM-settled, everything else (``SPXW``, ETFs) PM-settled.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NEW_YORK = "America/New_York"
EXPECTED_HEADER = [
    "Expiration Date", "Calls", "Last Sale", "Net", "Bid", "Ask", "Volume", "IV", "Delta", "Gamma",
    "Open Interest", "Strike", "Puts", "Last Sale", "Net", "Bid", "Ask", "Volume", "IV", "Delta", "Gamma",
    "Open Interest",
]
_SIDE_COLS = ["symbol", "last", "net", "bid", "ask", "volume", "iv", "delta", "gamma", "open_interest"]
_DATE_RE = re.compile(
    r"(?P<month>[A-Za-z]+)\s+(?P<day>\d{1,2}),?\s+(?P<year>\d{4}),?\s*(?:at\s+)?"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})\s*(?P<ampm>[AP]M)(?:\s+(?P<tz>[A-Z]{2,4}))?"
)
AM_SETTLED_ROOTS = {"SPX"}
_ROOT_TO_UNDERLYING = {"SPXW": "SPX"}


class CboeFormatError(ValueError):
    """The input is not a CBOE quote-table export (the message names the file and the problem)."""


@dataclass(frozen=True)
class CboeExport:
    """A parsed export: the chain frame plus the header facts."""

    underlying: str
    spot: float
    as_of: pd.Timestamp
    chain: pd.DataFrame
    """``option_chain_snapshots`` columns, source='cboe', one row per contract (calls then puts per line)."""
    raw: pd.DataFrame
    """The 22 data columns as parsed, one row per (expiration, strike) line, in file order."""


def parse_date_line(line: str, name: str = "input") -> pd.Timestamp:
    """The export instant (tz-aware, America/New_York) from line 2 in either known style."""
    m = _DATE_RE.search(line)
    if not m:
        raise CboeFormatError(f"{name}: no date stamp like 'Date: December 12, 2022 at 8:30 PM EST' "
                              f"or 'February 5 2022, 8:26 PM EST' (got {line[:80]!r})")
    text = f"{m['month']} {m['day']} {m['year']} {m['hour']}:{m['minute']} {m['ampm']}"
    for fmt in ("%B %d %Y %I:%M %p", "%b %d %Y %I:%M %p"):
        try:
            return pd.Timestamp(pd.to_datetime(text, format=fmt)).tz_localize(NEW_YORK)
        except ValueError:
            continue
    raise CboeFormatError(f"{name}: cannot read the date stamp {text!r}")


def parse_cboe_text(text: str, name: str = "input") -> CboeExport:
    """Parse the text of an export; ``name`` is used in error messages."""
    lines = text.splitlines()
    head = [i for i, line in enumerate(lines[:10]) if line.startswith("Expiration Date,")]
    if not head:
        raise CboeFormatError(f"{name}: not a CBOE quote-table export: no 'Expiration Date,Calls,...' header "
                              "line in the first 10 lines")
    h = head[0]
    spot_lines = [line for line in lines[:h] if "Last:" in line]
    m = re.search(r"Last:\s*([-+0-9.,]+)", spot_lines[0]) if spot_lines else None
    if not m:
        raise CboeFormatError(f"{name}: no '<name>,Last: <spot>' line above the header")
    try:
        spot = float(m.group(1).replace(",", ""))
    except ValueError:
        raise CboeFormatError(f"{name}: spot {m.group(1)!r} is not a number") from None
    if not np.isfinite(spot) or spot <= 0:
        raise CboeFormatError(f"{name}: spot {spot} must be positive")
    underlying = spot_lines[0].split(",")[0].strip().strip('"')
    date_lines = [line for line in lines[:h] if "Date:" in line or _DATE_RE.search(line)]
    if not date_lines:
        raise CboeFormatError(f"{name}: no date stamp line above the header (like 'Date: December 12, 2022 at "
                              "8:30 PM EST' or 'February 5 2022, 8:26 PM EST')")
    as_of = parse_date_line(date_lines[0], name)
    header = [c.strip() for c in lines[h].split(",")]
    if header != EXPECTED_HEADER:
        raise CboeFormatError(f"{name}: the header line is not the 22-column quote-table header "
                              f"(got {lines[h][:80]!r})")
    raw = _data_rows(lines, h, name)
    chain = _chain_frame(raw, spot, as_of, underlying)
    return CboeExport(underlying=underlying, spot=spot, as_of=as_of, chain=chain, raw=raw)


MAX_CONTRACTS = 10_000_000
"""Largest volume or open interest accepted for one contract (the largest real ones are under 10^6)."""
MAX_PRICE_USD = 1_000_000.0
"""Largest price or strike accepted, USD."""
MAX_IV = 50.0
"""Largest implied volatility accepted (annualized decimal: 5,000%)."""
MAX_GAMMA = 100.0
"""Largest gamma accepted, per share per USD."""


@dataclass(frozen=True)
class _Rule:
    """What one data column must hold: ``kind`` is 'date', 'symbol', 'number' or 'count', within [lo, hi]."""

    kind: str
    lo: float = 0.0
    hi: float = MAX_PRICE_USD
    strictly_positive: bool = False

    def expected(self) -> str:
        if self.kind == "date":
            return "a date like 'Fri Dec 16 2022'"
        if self.kind == "count":
            return f"a whole number of contracts from 0 to {MAX_CONTRACTS:,}"
        if self.strictly_positive:
            return f"a number above 0 and at most {_plain(self.hi)}"
        return f"a number from {_plain(self.lo)} to {_plain(self.hi)}"


def _plain(x: float) -> str:
    """``1,000,000`` or ``0.5``: numbers as people write them in a message."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:g}"


_SIDE_RULES = [
    _Rule("symbol"),  # Calls / Puts
    _Rule("number"),  # Last Sale
    _Rule("number", lo=-MAX_PRICE_USD),  # Net (change, either sign)
    _Rule("number"),  # Bid
    _Rule("number"),  # Ask
    _Rule("count", hi=MAX_CONTRACTS),  # Volume
    _Rule("number", hi=MAX_IV),  # IV
    _Rule("number", lo=-1.0, hi=1.0),  # Delta
    _Rule("number", hi=MAX_GAMMA),  # Gamma
    _Rule("count", hi=MAX_CONTRACTS),  # Open Interest
]
_RULES = [_Rule("date"), *_SIDE_RULES, _Rule("number", strictly_positive=True), *_SIDE_RULES]
"""One rule per column of :data:`EXPECTED_HEADER`."""


def _column_label(col: int) -> str:
    """``column 11 'Open Interest' (calls)``: 1-based position, header name, and side of the strike."""
    side = "" if col in (0, 11) else (" (calls)" if col < 11 else " (puts)")
    return f"column {col + 1} '{EXPECTED_HEADER[col]}'{side}"


def _cell_problem(text: str, rule: _Rule) -> str | None:
    """Why ``text`` breaks ``rule`` (``None`` when it is fine)."""
    value = text.strip()
    if rule.kind == "symbol":
        return None
    if not value:
        return "empty"
    if rule.kind == "date":
        try:
            pd.to_datetime(value, format="%a %b %d %Y")
        except ValueError:
            return f"{value!r} is not a date"
        return None
    try:
        number = float(value)
    except ValueError:
        return f"{value!r} is not a number"
    if not np.isfinite(number):
        return f"{value!r} is not finite"
    if number < 0 <= rule.lo:
        return f"{value} is negative"
    if number < rule.lo or number > rule.hi or (rule.strictly_positive and number <= 0):
        return f"{value} is out of range"
    if rule.kind == "count" and number != int(number):
        return f"{value} is not a whole number"
    return None


def _data_rows(lines: list[str], header: int, name: str) -> pd.DataFrame:
    """The data lines below ``header`` as the 22 typed columns, each value checked against its column's rule.

    Raises:
        CboeFormatError: the first bad row or value in file order, naming ``name``, the 1-based line of the file
            and the column (position, header name and side).
    """
    numbers: list[int] = []
    rows: list[list[str]] = []
    for index in range(header + 1, len(lines)):
        if not lines[index].strip():
            continue
        cells = next(csv.reader([lines[index]]))
        if len(cells) != len(EXPECTED_HEADER):
            raise CboeFormatError(f"{name}: line {index + 1}: expected {len(EXPECTED_HEADER)} columns, got {len(cells)}")
        numbers.append(index + 1)
        rows.append(cells)
    if not rows:
        raise CboeFormatError(f"{name}: no option rows")
    text = pd.DataFrame(rows, dtype=object)
    columns: dict[int, pd.Series] = {}
    bad = np.zeros((len(rows), len(_RULES)), dtype=bool)
    for col, rule in enumerate(_RULES):
        values = text[col].str.strip()
        if rule.kind == "symbol":
            columns[col] = values
        elif rule.kind == "date":
            parsed = pd.to_datetime(values, format="%a %b %d %Y", errors="coerce")
            bad[:, col] = parsed.isna().to_numpy()
            columns[col] = parsed
        else:
            number = pd.to_numeric(values.where(values != ""), errors="coerce").astype(np.float64)
            ok = number.between(rule.lo, rule.hi) & np.isfinite(number)
            if rule.strictly_positive:
                ok &= number > 0
            if rule.kind == "count":
                ok &= number == np.floor(number)
            bad[:, col] = ~ok.to_numpy()
            columns[col] = number
    if bad.any():
        row, col = np.argwhere(bad)[0]  # row-major: the first bad value in file order
        problem = _cell_problem(rows[row][col], _RULES[col]) or f"{rows[row][col]!r} is invalid"
        raise CboeFormatError(
            f"{name}: line {numbers[row]}, {_column_label(int(col))}: {problem}; expected {_RULES[col].expected()}"
        )
    raw = pd.DataFrame(columns)[list(range(len(_RULES)))]
    for col, rule in enumerate(_RULES):
        if rule.kind == "count":
            raw[col] = raw[col].astype(np.int64)
    return raw


def read_cboe_csv(path: str | Path) -> CboeExport:
    """Read and parse an export file (errors name the path)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CboeFormatError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CboeFormatError(f"{p}: cannot read: {exc}") from None
    return parse_cboe_text(text, str(p))


def _ts_symbol(cboe_symbol: pd.Series, option_type: str, strike: pd.Series) -> tuple[pd.Series, pd.Series]:
    """TradeStation-style symbol ``ROOT YYMMDDC<strike>`` and the option root from an OCC-style symbol."""
    sym = cboe_symbol.astype(str).str.strip()
    parts = sym.str.extract(r"^(?P<root>[A-Z]+?)(?P<ymd>\d{6})[CP]\d{8}$")
    root = parts["root"].fillna(sym.str.extract(r"^([A-Z]+)")[0]).fillna("")
    ymd = parts["ymd"].fillna("")
    k = strike.map(lambda v: f"{v:g}")
    return root + " " + ymd + option_type + k, root


def _chain_frame(raw: pd.DataFrame, spot: float, as_of: pd.Timestamp, underlying: str) -> pd.DataFrame:
    snapshot = as_of.tz_convert("UTC")
    session = as_of.tz_localize(None).normalize()
    roots = raw[1].astype(str).str.extract(r"^([A-Z]+?)\d{6}[CP]")[0].dropna()
    name = str(roots.mode().iloc[0]) if not roots.empty else (underlying.split()[0].upper() or "UNKNOWN")
    name = _ROOT_TO_UNDERLYING.get(name, name)
    sides = []
    for option_type, first in (("C", 1), ("P", 12)):
        cols = dict(zip(_SIDE_COLS, range(first, first + 10), strict=True))
        strike = raw[11].astype(np.float64)
        symbol, root = _ts_symbol(raw[cols["symbol"]], option_type, strike)
        bid = raw[cols["bid"]].astype(np.float64)
        ask = raw[cols["ask"]].astype(np.float64)
        last = raw[cols["last"]].astype(np.float64)
        iv = raw[cols["iv"]].astype(np.float64)
        gamma = raw[cols["gamma"]].astype(np.float64)
        delta = raw[cols["delta"]].astype(np.float64)
        sides.append(pd.DataFrame({
            "underlying": name,
            "session_date": session,
            "expiration": raw[0],
            "snapshot_ts": snapshot,
            "symbol": symbol,
            "option_type": option_type,
            "strike": strike,
            "settlement": np.where(root.isin(AM_SETTLED_ROOTS), "AM", "PM"),
            "bid": bid,
            "ask": ask,
            "last": last.where(last > 0),
            "mid": 0.5 * (bid + ask),
            "volume": raw[cols["volume"]].astype(np.int64),
            "open_interest": raw[cols["open_interest"]].astype(np.int64),
            "iv": iv.where(iv > 0),
            "delta": delta.where((delta != 0) | (iv > 0)),
            "gamma": gamma.where((gamma != 0) | (iv > 0)),
            "vega": np.nan,
            "theta": np.nan,
            "spot": spot,
            "spot_ts": snapshot,
            "source": "cboe",
            "line": np.arange(len(raw)),
        }))
    out = pd.concat(sides, ignore_index=True)
    return out.sort_values(["line", "option_type"], kind="stable").drop(columns="line").reset_index(drop=True)
