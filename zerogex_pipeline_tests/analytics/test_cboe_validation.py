"""CBOE import: impossible numbers are refused, and every error names the file, the line and the column
(issue 13, item 4). Property tests: any export of valid values parses to exactly those values; any one bad value
anywhere is reported at its own line and column."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerogex_pipeline.analytics.cboe import (
    EXPECTED_HEADER,
    MAX_CONTRACTS,
    CboeFormatError,
    parse_cboe_text,
)
from zerogex_pipeline.cli import main

PREAMBLE = [
    "SPDR S&P 500 ETF Trust,Last: 600.25,Change: 1.5",
    '"Date: December 12, 2022 at 8:30 PM EST",Bid: 600.2,Ask: 600.3',
    ",".join(EXPECTED_HEADER),
]
FIRST_DATA_LINE = len(PREAMBLE) + 1  # 1-based line of the first data row

prices = st.floats(min_value=0, max_value=5_000, allow_nan=False).map(lambda x: round(x, 2))
counts = st.integers(min_value=0, max_value=MAX_CONTRACTS)
side = st.tuples(prices, st.floats(-50, 50).map(lambda x: round(x, 2)), prices, prices, counts,
                 st.floats(0, 5).map(lambda x: round(x, 4)), st.floats(-1, 1).map(lambda x: round(x, 4)),
                 st.floats(0, 1).map(lambda x: round(x, 4)), counts)


def line(strike: float, call: tuple[object, ...], put: tuple[object, ...]) -> list[str]:
    k = f"{int(strike * 1000):08d}"
    return ["Fri Dec 16 2022", f"SPY221216C{k}", *map(str, call), f"{strike:.2f}", f"SPY221216P{k}", *map(str, put)]


def export(rows: list[list[str]]) -> str:
    return "\n".join([*PREAMBLE, *(",".join(r) for r in rows)]) + "\n"


valid_rows = st.lists(st.tuples(st.integers(1, 2000), side, side), min_size=1, max_size=8, unique_by=lambda r: r[0])


@given(valid_rows)
def test_any_export_of_valid_values_parses_to_exactly_those_values(rows: list) -> None:
    parsed = parse_cboe_text(export([line(float(k), c, p) for k, c, p in rows]), "x.csv")
    for i, (k, call, put) in enumerate(rows):
        assert parsed.raw.loc[i, 11] == float(k)
        assert parsed.raw.loc[i, 10] == call[8] and parsed.raw.loc[i, 21] == put[8]  # open interest, exactly
        assert parsed.raw.loc[i, 6] == call[4] and parsed.raw.loc[i, 17] == put[4]  # volume


BAD_VALUES = {
    "non-finite": ["inf", "nan", "-inf"],
    "negative": ["-500", "-0.5"],
    "absurd": ["1e30", "99999999999"],
    "not a number": ["abc", "1,5"],
    "empty": [""],
}
NUMERIC_COLUMNS = [c for c in range(22) if c not in (0, 1, 12)]
NON_NEGATIVE = [c for c in NUMERIC_COLUMNS if c not in (3, 14, 8, 19)]  # Net and Delta may be negative


@given(valid_rows, st.data())
def test_one_bad_value_anywhere_is_reported_at_its_line_and_column(rows: list, data: st.DataObject) -> None:
    cells = [line(float(k), c, p) for k, c, p in rows]
    kind = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    columns = NON_NEGATIVE if kind == "negative" else NUMERIC_COLUMNS
    row, col = data.draw(st.integers(0, len(cells) - 1)), data.draw(st.sampled_from(columns))
    value = data.draw(st.sampled_from(BAD_VALUES[kind]))
    cells[row][col] = value
    text = "\n".join([*PREAMBLE, *(",".join(f'"{v}"' if "," in v else v for v in r) for r in cells)])
    with pytest.raises(CboeFormatError) as caught:
        parse_cboe_text(text, "x.csv")
    message = str(caught.value)
    assert message.startswith(f"x.csv: line {FIRST_DATA_LINE + row}, column {col + 1} '{EXPECTED_HEADER[col]}'")
    assert "\n" not in message and "expected" in message


ONE_ROW = line(600.0, (1.5, 0.1, 1.4, 1.6, 10, 0.2, 0.5, 0.05, 1000), (1.5, -0.1, 1.4, 1.6, 10, 0.2, -0.5, 0.05, 900))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ((10, "1e30"), "x.csv: line 4, column 11 'Open Interest' (calls): 1e30 is out of range; "
                       "expected a whole number of contracts from 0 to 10,000,000"),
        ((21, "-500"), "x.csv: line 4, column 22 'Open Interest' (puts): -500 is negative; "
                       "expected a whole number of contracts from 0 to 10,000,000"),
        ((10, ""), "x.csv: line 4, column 11 'Open Interest' (calls): empty; "
                   "expected a whole number of contracts from 0 to 10,000,000"),
        ((4, "abc"), "x.csv: line 4, column 5 'Bid' (calls): 'abc' is not a number; expected a number from 0 to 1,000,000"),
        ((6, "12.5"), "x.csv: line 4, column 7 'Volume' (calls): 12.5 is not a whole number; "
                      "expected a whole number of contracts from 0 to 10,000,000"),
        ((11, "0"), "x.csv: line 4, column 12 'Strike': 0 is out of range; expected a number above 0 and at most 1,000,000"),
        ((0, "Fri Dec 32 2022"), "x.csv: line 4, column 1 'Expiration Date': 'Fri Dec 32 2022' is not a date; "
                                 "expected a date like 'Fri Dec 16 2022'"),
    ],
)
def test_the_issues_bad_values_name_file_line_and_column(edit: tuple[int, str], message: str) -> None:
    cells = list(ONE_ROW)
    cells[edit[0]] = edit[1]
    with pytest.raises(CboeFormatError) as caught:
        parse_cboe_text(export([cells]), "x.csv")
    assert str(caught.value) == message


def test_a_short_row_names_its_line() -> None:
    with pytest.raises(CboeFormatError) as caught:
        parse_cboe_text(export([ONE_ROW, ONE_ROW[:12]]), "x.csv")
    assert str(caught.value) == "x.csv: line 5: expected 22 columns, got 12"


def test_the_cli_refuses_an_absurd_open_interest_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    cells = list(ONE_ROW)
    cells[10] = "1e30"  # gave call GEX -$115,608,751,750,132.17bn (int64 overflow) and rc 0
    path = tmp_path / "quotedata.csv"
    path.write_text(export([cells]))
    assert main(["gex", "--cboe-csv", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"zerogex gex: {path}: line 4, column 11 'Open Interest' (calls): 1e30 is out of range; " \
                  "expected a whole number of contracts from 0 to 10,000,000\n"
