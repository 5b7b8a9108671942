"""Event detection on hand-made level series, and properties over random ones."""

import itertools
import math

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings

from zerogex_pipeline.analytics.alerts import AlertInputError, carried_sides, detect_events, event_id

T0 = pd.Timestamp("2024-06-14 13:30", tz="UTC")
NAN = math.nan


def day(spot, zero_gamma=None, call=None, put=None, net=None, underlying="SPY") -> pd.DataFrame:
    n = len(spot)
    return pd.DataFrame({
        "underlying": underlying,
        "session_date": pd.Timestamp("2024-06-14"),
        "snapshot_ts": [T0 + pd.Timedelta(minutes=5 * i) for i in range(n)],
        "spot": spot,
        "net_gex": net if net is not None else [1e9] * n,
        "zero_gamma": zero_gamma if zero_gamma is not None else [NAN] * n,
        "call_wall": call if call is not None else [NAN] * n,
        "put_wall": put if put is not None else [NAN] * n,
    })


def test_zero_gamma_cross_up_then_down() -> None:
    events = detect_events(day([99.0, 101.0, 100.5, 99.5], zero_gamma=[100.0, 100.2, 100.1, 100.0]))
    assert list(events["kind"]) == ["zero_gamma_cross", "zero_gamma_cross"]
    assert list(events["direction"]) == ["up", "down"]
    first = events.iloc[0]
    assert first["snapshot_ts"] == T0 + pd.Timedelta(minutes=5)
    assert first["previous_snapshot_ts"] == T0
    assert (first["spot"], first["spot_before"]) == (101.0, 99.0)
    assert (first["level"], first["value_before"], first["value_after"]) == (100.2, 100.0, 100.2)
    assert first["event_id"] == "SPY|2024-06-14|zero_gamma_cross|2024-06-14T13:35:00Z"
    assert "crossed above zero gamma 100.20" in first["message"] and "09:35 ET" in first["message"]


def test_a_null_zero_gamma_is_not_a_cross_and_breaks_the_chain() -> None:
    # below, null, above: neither the null nor the snapshot after it compares across the gap
    assert detect_events(day([99.0, 101.0, 101.0], zero_gamma=[100.0, NAN, 100.0])).empty
    # above again after the gap, then below: one cross, at the last snapshot
    events = detect_events(day([99.0, 101.0, 101.0, 99.0], zero_gamma=[100.0, NAN, 100.0, 100.0]))
    assert list(events["snapshot_ts"]) == [T0 + pd.Timedelta(minutes=15)]


def test_touching_the_level_is_not_a_cross_but_going_through_it_is() -> None:
    # below, touch, below again: nothing; below, touch, above: one cross up at the third snapshot
    assert detect_events(day([99.0, 100.0, 99.0], zero_gamma=[100.0] * 3)).empty
    events = detect_events(day([99.0, 100.0, 101.0], zero_gamma=[100.0] * 3))
    assert list(events["direction"]) == ["up"] and events.iloc[0]["spot_before"] == 100.0


def test_wall_breaches_use_the_previous_snapshots_wall() -> None:
    events = detect_events(day([100.0, 100.4, 101.2, 100.9, 98.6],
                               call=[101.0, 101.0, 102.0, 101.0, 99.0], put=[99.0, 100.0, 100.0, 100.0, 98.0]))
    # 100.4 -> 101.2 breaks the 101 call wall; 100.9 -> 98.6 breaks the 100 put wall
    assert list(zip(events["kind"], events["level"], events["value_after"], strict=True)) == [
        ("call_wall_breach", 101.0, 102.0), ("put_wall_breach", 100.0, 98.0)]
    assert list(events["direction"]) == ["up", "down"]
    # spot exactly at the old wall is not through it; a null previous wall is never breached
    assert detect_events(day([100.0, 101.0], call=[101.0, 102.0])).empty
    assert detect_events(day([100.0, 105.0], call=[NAN, 106.0])).empty


def test_net_gex_sign_changes_and_a_settled_zero_is_not_one() -> None:
    events = detect_events(day([100.0] * 5, net=[-2e9, 1e9, 0.0, 3e9, -1e9]))
    assert list(events["direction"]) == ["up", "down"]
    assert list(events["value_before"]) == [-2e9, 3e9]
    assert (events["level"] == 0).all()
    assert "turned positive: +1.000bn" in events.iloc[0]["message"]
    assert detect_events(day([100.0] * 3, net=[1e9, 2e9, 0.0])).empty  # the close of a settled 0DTE


def test_row_order_does_not_matter_and_short_days_have_no_events() -> None:
    frame = day([99.0, 101.0, 99.0], zero_gamma=[100.0] * 3)
    pd.testing.assert_frame_equal(detect_events(frame), detect_events(frame.iloc[::-1]))
    assert detect_events(frame.iloc[:1]).empty
    assert list(detect_events(frame.iloc[:0]).columns) == list(detect_events(frame).columns)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="missing columns \\['zero_gamma'\\]"):
        detect_events(day([1.0, 2.0]).drop(columns="zero_gamma"))
    two_days = pd.concat([day([1.0]), day([2.0]).assign(session_date=pd.Timestamp("2024-06-17"))])
    with pytest.raises(AlertInputError, match="expected one session_date"):
        detect_events(two_days)
    with pytest.raises(AlertInputError, match="appears twice"):
        detect_events(pd.concat([day([1.0]), day([2.0])]))
    with pytest.raises(AlertInputError, match="spot must be a positive"):
        detect_events(day([100.0, NAN]))
    with pytest.raises(AlertInputError, match="tz-aware"):
        event_id("SPY", "2024-06-14", "zero_gamma_cross", pd.Timestamp("2024-06-14 13:30"))


def test_carried_sides() -> None:
    np.testing.assert_array_equal(carried_sides(np.array([0.0, 1.0, 0.0, NAN, 0.0, -2.0, 0.0])),
                                  [NAN, 1, 1, NAN, NAN, -1, -1])


# --- properties --------------------------------------------------------------------------------

levels_value = st.one_of(st.just(NAN), st.floats(95.0, 105.0, allow_nan=False).map(lambda x: round(x, 1)))


@st.composite
def level_days(draw):
    n = draw(st.integers(0, 25))
    spot = draw(st.lists(st.floats(95.0, 105.0).map(lambda x: round(x, 1)), min_size=n, max_size=n))
    columns = {name: draw(st.lists(levels_value, min_size=n, max_size=n)) for name in ("zg", "call", "put")}
    net = draw(st.lists(st.one_of(st.just(0.0), st.floats(-5e9, 5e9)), min_size=n, max_size=n))
    return day(spot, zero_gamma=columns["zg"], call=columns["call"], put=columns["put"], net=net)


@hsettings(max_examples=60, deadline=None)
@given(level_days())
def test_events_are_causal_prefix_stable(frame: pd.DataFrame) -> None:
    """What the first k snapshots show never changes when later snapshots arrive (intraday growth)."""
    full = detect_events(frame)
    n = len(frame)
    for k in sorted({0, min(1, n), n // 3, n // 2, max(n - 1, 0), n}):
        prefix = detect_events(frame.iloc[:k])
        cutoff = frame["snapshot_ts"].iloc[k - 1] if k else T0 - pd.Timedelta(minutes=1)
        expected = full[full["snapshot_ts"] <= cutoff].reset_index(drop=True)
        pd.testing.assert_frame_equal(prefix, expected)


@hsettings(max_examples=150, deadline=None)
@given(level_days())
def test_event_invariants(frame: pd.DataFrame) -> None:
    events = detect_events(frame)
    assert events["event_id"].is_unique
    assert not (events["snapshot_ts"] == frame["snapshot_ts"].min()).any()
    by_ts = frame.set_index("snapshot_ts")
    for e in events.itertuples():
        prev, cur = by_ts.loc[e.previous_snapshot_ts], by_ts.loc[e.snapshot_ts]
        assert e.snapshot_ts - e.previous_snapshot_ts == pd.Timedelta(minutes=5)
        if e.kind == "zero_gamma_cross":
            assert not math.isnan(prev.zero_gamma) and not math.isnan(cur.zero_gamma)
            assert (cur.spot - cur.zero_gamma > 0) == (e.direction == "up")
            assert cur.spot != cur.zero_gamma
        elif e.kind == "call_wall_breach":
            assert prev.spot <= prev.call_wall < cur.spot and e.level == prev.call_wall
        elif e.kind == "put_wall_breach":
            assert prev.spot >= prev.put_wall > cur.spot and e.level == prev.put_wall
        else:
            assert (cur.net_gex > 0) == (e.direction == "up") and cur.net_gex != 0


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-300, 300).filter(lambda x: x != 0), min_size=2, max_size=30))
def test_crosses_without_nulls_or_touches_equal_sign_changes_and_alternate(offsets) -> None:
    spot = [100.0 + x / 100 for x in offsets]  # whole cents: never exactly on the level
    events = detect_events(day(spot, zero_gamma=[100.0] * len(spot)))
    signs = np.sign(offsets)
    assert len(events) == int((signs[1:] != signs[:-1]).sum())
    directions = list(events["direction"])
    assert all(a != b for a, b in itertools.pairwise(directions))
