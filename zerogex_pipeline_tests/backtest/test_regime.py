"""The regime backtest core against a small hand-computed example."""

import math

import pandas as pd
import pytest

from zerogex_pipeline.analytics.regime import (
    RegimeInputError,
    daily_bars,
    regime_summary,
    regime_table,
)

D1, D2, D3, D4 = (pd.Timestamp(d) for d in ("2024-06-10", "2024-06-11", "2024-06-12", "2024-06-13"))


def ts(day: pd.Timestamp, hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day:%Y-%m-%d} {hhmm}", tz="America/New_York").tz_convert("UTC")


def levels() -> pd.DataFrame:
    rows = [  # the second snapshot of each day must be ignored (regime is read at the open)
        (D2, "09:30", 100.0, 2e9, 98.0), (D2, "09:35", 101.0, -1e9, 99.0),
        (D3, "09:30", 200.0, -3e9, 202.0), (D3, "09:35", 190.0, 5e9, 180.0),
        (D4, "09:30", 50.0, -1e9, None),
    ]
    return pd.DataFrame([{"underlying": "SPY", "session_date": d, "snapshot_ts": ts(d, t), "spot": s,
                          "net_gex": n, "zero_gamma": z} for d, t, s, n, z in rows]).sample(frac=1, random_state=3)


def bars() -> pd.DataFrame:
    rows = [  # (day, bar end, open, high, low, close)
        (D1, "09:31", 95.0, 96.0, 94.0, 95.5), (D1, "16:00", 95.5, 99.0, 95.0, 98.0),
        (D2, "09:31", 100.0, 101.0, 99.0, 100.5), (D2, "09:32", 100.5, 104.0, 100.0, 103.0),
        (D2, "16:00", 103.0, 103.5, 97.0, 99.0),
        (D3, "09:31", 200.0, 201.0, 196.0, 197.0), (D3, "16:00", 197.0, 198.0, 195.0, 196.0),
    ]
    return pd.DataFrame([{"session_date": d, "ts": ts(d, t), "open": o, "high": h, "low": lo, "close": c}
                         for d, t, o, h, lo, c in rows]).iloc[::-1]


def test_regime_table_by_hand() -> None:
    table = regime_table(levels(), bars())
    # D1 has bars but no levels (only a previous close); D4 has levels but no bars (left out)
    assert list(table["session_date"]) == [D2, D3]
    d2, d3 = table.iloc[0], table.iloc[1]
    assert (d2["regime"], d3["regime"]) == ("positive", "negative")
    assert d2["open_snapshot_ts"] == ts(D2, "09:30")
    assert d2["distance_to_flip_pct"] == pytest.approx(2.0)  # (100 - 98) / 100
    assert d3["distance_to_flip_pct"] == pytest.approx(-1.0)  # (200 - 202) / 200
    assert (d2["day_open"], d2["day_high"], d2["day_low"], d2["day_close"]) == (100.0, 104.0, 97.0, 99.0)
    assert d2["realized_range_pct"] == pytest.approx(7.0)  # (104 - 97) / 100
    assert d3["realized_range_pct"] == pytest.approx(3.0)  # (201 - 195) / 200
    assert d2["previous_session_date"] == D1 and d2["previous_close"] == 98.0
    assert d2["close_to_close_pct"] == pytest.approx((99 / 98 - 1) * 100)
    assert d3["close_to_close_pct"] == pytest.approx((196 / 99 - 1) * 100)


def test_first_stored_day_has_no_close_to_close_and_null_flip_stays_null() -> None:
    more_bars = pd.concat([bars(), pd.DataFrame([{"session_date": D4, "ts": ts(D4, "16:00"), "open": 50.0,
                                                  "high": 51.0, "low": 49.0, "close": 50.5}])])
    table = regime_table(levels(), more_bars[more_bars["session_date"] != D1])
    assert math.isnan(table.iloc[0]["close_to_close_pct"]) and pd.isna(table.iloc[0]["previous_session_date"])
    d4 = table.iloc[-1]
    assert math.isnan(d4["zero_gamma_open"]) and math.isnan(d4["distance_to_flip_pct"])
    assert d4["realized_range_pct"] == pytest.approx(4.0)


def test_summary_by_regime() -> None:
    table = regime_table(levels(), bars())
    extra = table.iloc[[0]].assign(session_date=D4, realized_range_pct=1.0, close_to_close_pct=-4.0)
    summary = regime_summary(pd.concat([table, extra])).set_index("regime")
    assert list(summary.index) == ["positive", "negative"]
    pos = summary.loc["positive"]
    assert pos["days"] == 2
    assert pos["mean_range_pct"] == pytest.approx(4.0)  # (7 + 1) / 2
    assert pos["median_range_pct"] == pytest.approx(4.0)
    assert pos["mean_abs_close_to_close_pct"] == pytest.approx((abs(99 / 98 - 1) * 100 + 4.0) / 2)
    assert summary.loc["negative", "days"] == 1


def test_daily_bars_is_idempotent() -> None:
    once = daily_bars(bars())
    again = daily_bars(once.rename(columns={"day_open": "open", "day_high": "high", "day_low": "low",
                                            "day_close": "close"}).assign(ts=pd.Timestamp("2024-06-10", tz="UTC")))
    pd.testing.assert_frame_equal(once, again)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="bars for the regime backtest: missing columns \\['high'\\]"):
        regime_table(levels(), bars().drop(columns="high"))
    with pytest.raises(RegimeInputError, match="expected one underlying"):
        regime_table(pd.concat([levels(), levels().assign(underlying="QQQ")]), bars())
    with pytest.raises(RegimeInputError, match="net_gex is null at the open of 2024-06-11"):
        regime_table(levels().assign(net_gex=float("nan")), bars())
