"""The asset checks executed with their assets through the real DuckDB IO manager on a throwaway instance.

Corruption goes in upstream of the checks (a wrapped market-data source, or the pure builders the assets
call replaced by corrupting wrappers), never into the checks themselves.
"""

import datetime as dt
import json
from collections.abc import Callable

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from zerogex_pipeline import market_calendar
from zerogex_pipeline.definitions import build_underlying_assets
from zerogex_pipeline.defs.checks.asset_checks import build_asset_checks
from zerogex_pipeline.defs.gex import assets as gex_assets
from zerogex_pipeline.defs.options.slots import PartitionRunError, run_chain_keys
from zerogex_pipeline.defs.partitions import chain_partition_key
from zerogex_pipeline.defs.resources import MarketDataResource, build_resources
from zerogex_pipeline.settings import Settings, load_settings
from zerogex_pipeline.sources.simulated import SimulatedMarket
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

SPY = resolve_underlying("SPY")
DAY = dt.date(2024, 6, 14)
EXP = dt.date(2024, 6, 17)
NAMES = ("bars_continuity_and_coverage", "chain_sanity", "gex_reconciliation", "levels_plausibility", "levels_complete")


@pytest.fixture
def fast_settings(tmp_path) -> Settings:
    """30-minute snapshots (14 a day): the same code paths as the default 5 minutes, a sixth of the rows."""
    return load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path / "data"), "ZEROGEX_SNAPSHOT_MINUTES": "30",
                          "ZEROGEX_EXPIRATIONS": "2"}, env_file=None)


class Pipeline:
    """The assets and checks of SPY, run one partition at a time like ``runner.materialize_day``."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance) -> None:
        self.settings, self.instance = settings, instance
        self.assets = build_underlying_assets(SPY, settings)
        self.checks = build_asset_checks(SPY, settings, *self.assets)
        self.by_name = {a.key.path[-1]: a for a in self.assets}

    def run(self, names: list[str], key: str | dg.MultiPartitionKey) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*self.assets, *self.checks], selection=[self.by_name[n].key for n in names], partition_key=key,
            instance=self.instance, resources=build_resources(self.settings), raise_on_error=False,
        )

    def day(self, day: dt.date) -> list[dg.ExecuteInProcessResult]:
        results = [self.run(["underlying_bars"], day.isoformat())]
        results += [self.run(["option_chain_snapshots", "gex_surface"], chain_partition_key(day, slot))
                    for slot in range(1, self.settings.expirations + 1)]
        results.append(self.run(["gex_levels"], day.isoformat()))
        return results

    def check_only(self, name: str, key: str) -> dg.ExecuteInProcessResult:
        """Evaluate one check of the stored partition, without materializing its asset."""
        (check,) = [c for c in self.checks if next(iter(c.check_keys)).name == name]
        # (a check-only selection has no asset to validate partition_key against: the run's partition tag instead)
        return dg.materialize([*self.assets, *self.checks], selection=dg.AssetSelection.checks(check),
                              tags={"dagster/partition": key}, instance=self.instance,
                              resources=build_resources(self.settings), raise_on_error=False)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def meta(evaluation: dg.AssetCheckEvaluation, name: str) -> object:
    return evaluation.metadata[name].value


@pytest.fixture
def pipeline(fast_settings: Settings, instance: dg.DagsterInstance) -> Pipeline:
    return Pipeline(fast_settings, instance)


def test_checks_are_blocking_partitioned_and_describe_their_tolerances(pipeline: Pipeline) -> None:
    specs = {spec.name: spec for c in pipeline.checks for spec in c.check_specs}
    assert set(specs) == set(NAMES)
    for name, spec in specs.items():
        assert spec.blocking, name
        assert spec.partitions_def is not None, name
        assert spec.description and len(spec.description) > 100, name
    assert "1e-09" in specs["gex_reconciliation"].description
    assert "1e-09" in specs["levels_plausibility"].description
    assert specs["levels_plausibility"].additional_deps[0].asset_key == dg.AssetKey(["spy", "gex_surface"])
    defs = dg.Definitions(assets=[*pipeline.assets, *pipeline.checks], resources=build_resources(pipeline.settings))
    dg.Definitions.validate_loadable(defs)


@pytest.mark.parametrize(
    ("day", "expirations", "bars", "snapshots"),
    [(DAY, [DAY, EXP], 390, 14), (dt.date(2024, 7, 3), [dt.date(2024, 7, 3), dt.date(2024, 7, 5)], 210, 8)],
)
def test_every_check_passes_on_a_normal_day_and_an_early_close(
    pipeline: Pipeline, day: dt.date, expirations: list[dt.date], bars: int, snapshots: int
) -> None:
    results = pipeline.day(day)
    assert all(r.success for r in results)
    seen: dict[str, list[dg.AssetCheckEvaluation]] = {}
    for r in results:
        for name, e in evaluations(r).items():
            seen.setdefault(name, []).append(e)
    assert {n: len(v) for n, v in seen.items()} == {NAMES[0]: 1, NAMES[1]: 2, NAMES[2]: 2, NAMES[3]: 1, NAMES[4]: 1}
    assert all(e.passed for v in seen.values() for e in v)
    assert meta(seen["bars_continuity_and_coverage"][0], "bars_required") == bars
    assert seen["bars_continuity_and_coverage"][0].partition == day.isoformat()
    chain_eval = seen["chain_sanity"][1]
    assert chain_eval.partition == str(chain_partition_key(day, 2))
    assert results[2].get_asset_materialization_events()[0].materialization.metadata["expiration"].value == (
        expirations[1].isoformat())  # slot 2 is the 2nd nearest listed expiration
    assert meta(seen["levels_complete"][0], "expirations_tracked") == (
        json.dumps({day.isoformat(): [e.isoformat() for e in expirations]}))
    assert meta(chain_eval, "snapshots_required") == snapshots
    assert meta(chain_eval, "rows_checked") > 1000
    levels_eval = seen["levels_plausibility"][0]
    assert meta(levels_eval, "rows_checked") == snapshots
    surface_rows = sum(e.materialization.metadata["dagster/row_count"].value for r in results[1:-1]
                       for e in r.get_asset_materialization_events() if e.asset_key.path[-1] == "gex_surface")
    assert meta(levels_eval, "surface_rows") == surface_rows > 0  # every expiration's surface of the date
    assert meta(levels_eval, "worst_total_error_rel") < 1e-12
    # the results are stored against the partition for the UI
    key = dg.AssetCheckKey(dg.AssetKey(["spy", "gex_surface"]), "gex_reconciliation")
    assert pipeline.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key] is not None


def test_empty_partitions_pass_with_their_reason(
    pipeline: Pipeline, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = Pipeline(load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path / "many"),
                                   "ZEROGEX_SNAPSHOT_MINUTES": "30", "ZEROGEX_EXPIRATIONS": "52"}, env_file=None),
                    pipeline.instance)
    assert many.run(["underlying_bars"], DAY.isoformat()).success
    result = many.run(["option_chain_snapshots", "gex_surface"], chain_partition_key(DAY, 52))  # 51 are listed
    assert result.success
    checks = evaluations(result)
    assert checks["chain_sanity"].passed and checks["gex_reconciliation"].passed
    assert "only 51 expiration(s) listed on 2024-06-14" in str(meta(checks["chain_sanity"], "empty_reason"))
    assert meta(checks["gex_reconciliation"], "empty_reason") == "no chain snapshots in this partition"
    # a date with no surface at all is refused (levels on no expiration are not levels) ...
    result = pipeline.run(["gex_levels"], "2024-06-12")
    assert not result.success and "(2024-06-12, slot 1 = 2024-06-12: no surface stored)" in (
        result.get_step_failure_events()[0].step_failure_data.user_failure_data.description)
    # ... unless its session has not opened yet: empty levels, with the asset's reason
    with monkeypatch.context() as patch:
        patch.setattr(market_calendar, "utc_now", lambda: pd.Timestamp("2024-06-12 09:00", tz="America/New_York"))
        result = pipeline.run(["gex_levels"], "2024-06-12")
    assert result.success and all(e.passed for e in evaluations(result).values())
    assert "has not opened yet" in str(meta(evaluations(result)["levels_plausibility"], "empty_reason"))
    # today's bars before the open
    monkeypatch.setattr(market_calendar, "utc_now", lambda: pd.Timestamp("2024-06-17 09:00", tz="America/New_York"))
    result = pipeline.run(["underlying_bars"], "2024-06-17")
    assert result.success
    check = evaluations(result)["bars_continuity_and_coverage"]
    assert check.passed and meta(check, "rows_checked") == 0
    assert "had not opened" in str(meta(check, "empty_reason"))


def test_intraday_bars_partition_passes_up_to_now(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(market_calendar, "utc_now", lambda: pd.Timestamp("2024-06-14 11:00:20", tz="America/New_York"))
    result = pipeline.run(["underlying_bars"], DAY.isoformat())
    check = evaluations(result)["bars_continuity_and_coverage"]
    assert result.success and check.passed
    assert meta(check, "rows_checked") == 90 and meta(check, "bars_required") == 85


class CorruptMarket(SimulatedMarket):
    """The simulated market with its bars or chains passed through a corrupting function."""

    def __init__(self, bars: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                 chain: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> None:
        self._bars, self._chain = bars, chain

    def underlying_bars(self, *args, **kwargs) -> pd.DataFrame:
        frame = super().underlying_bars(*args, **kwargs)
        return self._bars(frame) if self._bars else frame

    def chain_snapshots(self, *args, **kwargs) -> pd.DataFrame:
        frame = super().chain_snapshots(*args, **kwargs)
        return self._chain(frame) if self._chain and not frame.empty else frame


def use_source(monkeypatch: pytest.MonkeyPatch, market: SimulatedMarket) -> None:
    monkeypatch.setattr(MarketDataResource, "get_source", lambda self: market)


def test_a_missing_bar_fails_the_bars_check(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    use_source(monkeypatch, CorruptMarket(bars=lambda b: b.drop(index=b.index[120])))
    result = pipeline.run(["underlying_bars"], DAY.isoformat())
    check = evaluations(result)["bars_continuity_and_coverage"]
    assert not result.success and not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert meta(check, "bars_missing") == 1
    assert "missing bars" in str(meta(check, "problems")) and "11:31:00 ET" in str(meta(check, "problems"))


def _row(column: str, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def corrupt(chain: pd.DataFrame) -> pd.DataFrame:
        chain = chain.copy()
        chain.loc[chain.index[len(chain) // 2], column] = value
        return chain
    return corrupt


def _crossed(chain: pd.DataFrame) -> pd.DataFrame:
    chain = chain.copy()
    i = chain.index[len(chain) // 2]
    chain.loc[i, "bid"] = chain.loc[i, "ask"] + 0.10
    return chain


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (_crossed, "bid above ask (crossed quote): 1"),
        (_row("open_interest", -5), "negative open interest: 1"),
        (_row("iv", 50.0), "vendor IV outside [0, 10]: 1"),
        (lambda c: c[(c["option_type"] == "C") | (c["strike"] >= c["spot"])],
         "strike window covered on one side only"),
        (lambda c: c.iloc[:0], "the chain is empty and its materialization gives no empty_reason: 1"),
    ],
)
def test_a_corrupted_chain_fails_its_check_and_blocks_the_surface(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, corrupt, problem: str
) -> None:
    assert pipeline.run(["underlying_bars"], DAY.isoformat()).success
    use_source(monkeypatch, CorruptMarket(chain=corrupt))
    result = pipeline.run(["option_chain_snapshots", "gex_surface"], chain_partition_key(DAY, 2))
    check = evaluations(result)["chain_sanity"]
    assert not check.passed and problem in str(meta(check, "problems"))
    assert not result.success
    assert materialized(result) == {"option_chain_snapshots"}  # the blocking check stopped the surface
    assert "gex_reconciliation" not in evaluations(result)


def _patch_builder(monkeypatch: pytest.MonkeyPatch, name: str, corrupt: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    original = getattr(gex_assets, name)
    monkeypatch.setattr(gex_assets, name, lambda *args, **kwargs: corrupt(original(*args, **kwargs)))


def test_a_flipped_put_sign_fails_the_surface_check(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    def flip(surface: pd.DataFrame) -> pd.DataFrame:
        surface = surface.copy()
        row = surface.index[surface["put_gex"] < 0][40]
        surface.loc[row, "put_gex"] = -surface.loc[row, "put_gex"]
        surface.loc[row, "net_gex"] = surface.loc[row, "call_gex"] + surface.loc[row, "put_gex"]
        return surface

    _patch_builder(monkeypatch, "build_surface", flip)
    assert pipeline.run(["underlying_bars"], DAY.isoformat()).success
    result = pipeline.run(["option_chain_snapshots", "gex_surface"], chain_partition_key(DAY, 2))
    checks = evaluations(result)
    assert checks["chain_sanity"].passed and not checks["gex_reconciliation"].passed
    assert meta(checks["gex_reconciliation"], "positive_put_gex_rows") == 1
    problems = str(meta(checks["gex_reconciliation"], "problems"))
    assert "put GEX positive (dealer short puts: -): 1" in problems
    assert "put_gex != -gamma·OI·100·S²·0.01" in problems
    assert not result.success


LEVELS_CORRUPTIONS = [
    (lambda lv: lv.assign(call_wall=np.where(lv.index == 5, np.floor(lv["spot"]) - 3, lv["call_wall"])),
     "call wall below spot: 1"),
    (lambda lv: lv.assign(net_gex=lv["net_gex"] * 1.001), "net_gex != sum of gex_surface by strike"),
    (lambda lv: lv.assign(zero_gamma=np.nan, zero_gamma_reason=None), "zero_gamma null without a reason"),
]


def test_implausible_levels_fail_the_levels_check(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(r.success for r in pipeline.day(DAY))  # one stored day, three corrupted re-runs
    for corrupt, problem in LEVELS_CORRUPTIONS:
        with monkeypatch.context() as patch:
            _patch_builder(patch, "build_levels", corrupt)
            result = pipeline.run(["gex_levels"], DAY.isoformat())
        check = evaluations(result)["levels_plausibility"]
        assert not check.passed and problem in str(meta(check, "problems")), problem
        assert not result.success
    assert evaluations(pipeline.run(["gex_levels"], DAY.isoformat()))["levels_plausibility"].passed


def test_a_single_run_range_of_bars_is_checked_session_by_session(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run_range() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*pipeline.assets, *pipeline.checks], selection=[pipeline.by_name["underlying_bars"].key],
            instance=pipeline.instance, resources=build_resources(pipeline.settings), raise_on_error=False,
            tags={"dagster/asset_partition_range_start": "2024-07-02", "dagster/asset_partition_range_end": "2024-07-05"},
        )

    result = run_range()  # Jul 2, the Jul 3 early close and Jul 5 (Jul 4 is not a partition)
    check = evaluations(result)["bars_continuity_and_coverage"]
    assert result.success and check.passed
    assert meta(check, "sessions") == 3 and meta(check, "bars_required") == 390 + 210 + 390
    use_source(monkeypatch, CorruptMarket(bars=lambda b: b.iloc[:-1] if b["ts"].iloc[-1].day == 3 else b))
    result = run_range()
    check = evaluations(result)["bars_continuity_and_coverage"]
    assert not check.passed and "2024-07-03 13:00:00 ET" in str(meta(check, "problems"))


def test_every_slot_of_a_day_in_one_run_equals_one_run_per_slot(pipeline: Pipeline) -> None:
    """The intraday refresh materializes every expiration slot of today in one range run: the same rows as one run
    per slot, each partition checked; a ragged range (which the store would replace as a rectangle) is refused."""
    import duckdb

    def stored() -> dict[str, pd.DataFrame]:
        with duckdb.connect(str(pipeline.settings.duckdb_path), read_only=True) as conn:
            return {n: conn.execute(f"SELECT * FROM spy.{n} ORDER BY ALL").df()
                    for n in ("option_chain_snapshots", "gex_surface")}

    def run_range(start: str, end: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*pipeline.assets, *pipeline.checks],
            selection=[pipeline.by_name[n].key for n in ("option_chain_snapshots", "gex_surface")],
            instance=pipeline.instance, resources=build_resources(pipeline.settings), raise_on_error=False,
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        )

    other = dt.date(2024, 6, 13)
    assert all(r.success for d in (other, DAY) for r in pipeline.day(d))
    per_slot = stored()
    assert set(per_slot["gex_surface"]["expiration_slot"]) == {1, 2}

    result = run_range(f"{DAY}|1", f"{DAY}|2")
    assert result.success
    assert {str(e.partition) for e in result.get_asset_materialization_events()} == {f"{DAY}|1", f"{DAY}|2"}
    checks = evaluations(result)
    assert checks["chain_sanity"].passed and checks["gex_reconciliation"].passed
    assert meta(checks["chain_sanity"], "rows_checked") == (per_slot["option_chain_snapshots"]["session_date"]
                                                            == pd.Timestamp(DAY)).sum()
    one_run = stored()
    for name, frame in per_slot.items():
        pd.testing.assert_frame_equal(one_run[name], frame, check_like=True)

    # Dagster reads a multi-partition range dimension by dimension (dates 06-13..06-14 x slots 2..1): nothing
    ragged = run_range(f"{other}|2", f"{DAY}|1")
    assert not ragged.success
    (failure,) = ragged.get_step_failure_events()
    assert "selects no (date, expiration slot) partition" in failure.step_failure_data.user_failure_data.description
    with pytest.raises(PartitionRunError, match="got 3 of the 2 x 2"):  # a hand-made ragged key list
        run_chain_keys([f"{other}|2", f"{DAY}|1", f"{DAY}|2"])
    assert run_chain_keys([f"{DAY}|2", f"{other}|1", f"{DAY}|1", f"{other}|2"]) == [
        (other, 1), (other, 2), (DAY, 1), (DAY, 2)]
    for name, frame in per_slot.items():  # nothing written
        pd.testing.assert_frame_equal(stored()[name], frame, check_like=True)


def test_todays_partial_partitions_pass_intraday(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(market_calendar, "utc_now", lambda: pd.Timestamp("2024-06-14 11:02:30", tz="America/New_York"))
    results = pipeline.day(DAY)
    assert all(r.success for r in results)
    chain_check = evaluations(results[1])["chain_sanity"]
    assert meta(chain_check, "snapshots_required") == 3  # 09:30, 10:00, 10:30 (11:00 is inside the grace)
    assert meta(chain_check, "snapshots_present") == 4
    assert meta(evaluations(results[-1])["levels_plausibility"], "rows_checked") == 4
    assert all(e.passed for r in results for e in evaluations(r).values())


def test_levels_not_on_exactly_the_tracked_expirations_fail_levels_complete(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Levels computed on fewer expirations than tracked (what a date x registered-expiration backfill left
    behind), or stored before the day's listing changed, fail the blocking check naming the date and slot."""
    assert all(r.success for r in pipeline.day(DAY))
    assert evaluations(pipeline.check_only("levels_complete", DAY.isoformat()))["levels_complete"].passed

    def fewer(levels: pd.DataFrame) -> pd.DataFrame:
        return levels.assign(expirations=1, expiration_list=f'["{DAY}"]')

    with monkeypatch.context() as patch:
        _patch_builder(patch, "build_levels", fewer)
        result = pipeline.run(["gex_levels"], DAY.isoformat())
    check = evaluations(result)["levels_complete"]
    assert not result.success and not check.passed
    assert f'levels row not aggregating exactly the 2 tracked expirations ["{DAY}", "{EXP}"]: 14' in str(
        meta(check, "problems"))
    assert meta(check, "incomplete_dates") == DAY.isoformat()

    assert all(r.success for r in pipeline.day(DAY))
    later = SimulatedMarket()
    listed = later.listed_expirations(SPY, DAY)
    monkeypatch.setattr(SimulatedMarket, "listed_expirations", lambda self, u, d: listed[1:])  # the 0DTE delisted
    check = evaluations(pipeline.check_only("levels_complete", DAY.isoformat()))["levels_complete"]
    assert not check.passed
    problems = str(meta(check, "problems"))
    assert f"({DAY}, slot 1 = {EXP}: surface stored for {DAY} instead)" in problems
    assert "levels row not aggregating exactly the 2 tracked expirations" in problems
