"""Every asset materialized through the real DuckDB IO manager on a throwaway instance."""

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
import pytest

from zerogex_pipeline.definitions import build_defs, build_underlying_assets
from zerogex_pipeline.defs.partitions import chain_partition_key
from zerogex_pipeline.defs.resources import build_resources
from zerogex_pipeline.runner import RunFailedError, materialize_day
from zerogex_pipeline.schemas import GEX_LEVELS, GEX_SURFACE, OPTION_CHAIN_SNAPSHOTS
from zerogex_pipeline.settings import Settings
from zerogex_pipeline.underlyings import resolve_underlying
from zerogex_pipeline_tests.history import TEST_FIRST_DATE_ENV

SPY = resolve_underlying("SPY")
DAY = dt.date(2024, 6, 14)
EXP = dt.date(2024, 6, 17)


def table(settings: Settings, name: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM spy.{name} ORDER BY ALL").df()


def materialize(settings, instance, names, key):
    assets = build_underlying_assets(SPY, settings)
    by_name = {a.key.path[-1]: a for a in assets}
    return dg.materialize(assets, selection=[by_name[n].key for n in names], partition_key=key,
                          instance=instance, resources=build_resources(settings), raise_on_error=False)


def test_definitions_load_and_validate(settings: Settings) -> None:
    defs = build_defs(settings)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"spy/underlying_bars", "spy/option_chain_snapshots", "spy/gex_surface", "spy/gex_levels",
                    "spy/gex_alerts", "spy/gex_regime_backtest", "spy/captured_quotes", "spy/captured_bars",
                    "spy/live_levels"}
    checked = {k.asset_key.to_user_string() for k in graph.asset_check_keys}
    assert checked == {"spy/underlying_bars", "spy/option_chain_snapshots", "spy/gex_surface", "spy/gex_levels",
                       "spy/captured_quotes"}
    assert {s.name for s in defs.sensors} == {"spy_intraday_refresh", "spy_levels_alerts", "spy_capture_watch",
                                              "zerogex_orphaned_runs"}
    assert {s.name for s in defs.schedules} == {"spy_end_of_day", "spy_evening_backtest"}
    levels = dg.AssetKey(["spy", "gex_levels"])
    assert graph.get(levels).parent_keys == {dg.AssetKey(["spy", "gex_surface"])}
    assert graph.get(dg.AssetKey(["spy", "gex_surface"])).parent_keys == {dg.AssetKey(["spy", "option_chain_snapshots"])}
    # the lineage the issue asks for: capture -> snapshots -> surface -> levels (bars from the captured bars)
    assert graph.get(dg.AssetKey(["spy", "option_chain_snapshots"])).parent_keys == {
        dg.AssetKey(["spy", "underlying_bars"]), dg.AssetKey(["spy", "captured_quotes"])}
    assert graph.get(dg.AssetKey(["spy", "underlying_bars"])).parent_keys == {dg.AssetKey(["spy", "captured_bars"])}
    assert graph.get(dg.AssetKey(["spy", "live_levels"])).parent_keys == {dg.AssetKey(["spy", "captured_quotes"])}
    for key in ("captured_quotes", "captured_bars", "live_levels"):  # external: reported by the engine
        assert not graph.get(dg.AssetKey(["spy", key])).is_materializable
    for spec in defs.resolve_all_asset_specs():
        assert spec.description is not None
        assert "USD" in spec.description
        assert "duckdb" in spec.kinds
        assert spec.kinds & {"pandas", "simulated"}
        assert spec.metadata["dagster/column_schema"].columns

def test_multi_underlying_definitions(tmp_path) -> None:
    from zerogex_pipeline.settings import load_settings

    s = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_UNDERLYINGS": "SPY,SPX,QQQ", "ZEROGEX_DATA_DIR": str(tmp_path)}, env_file=None)
    defs = build_defs(s)
    dg.Definitions.validate_loadable(defs)
    assert len(list(defs.resolve_all_asset_specs())) == 27


def test_levels_refuse_a_date_whose_surface_lacks_a_tracked_expiration(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    """A grid selection of one expiration slot and the levels (the UI's partition grid allows it): the levels run
    fails naming the missing (date, slot, expiration) and how to fill it, and writes nothing; with every slot
    stored, the levels aggregate all three."""
    assert materialize(settings, instance, ["underlying_bars"], DAY.isoformat()).success
    result = materialize(settings, instance, ["option_chain_snapshots", "gex_surface"], chain_partition_key(DAY, 2))
    assert result.success
    chain = OPTION_CHAIN_SNAPSHOTS.conform(table(settings, "option_chain_snapshots"))
    assert chain["snapshot_ts"].nunique() == 79
    assert set(chain["expiration"].dt.date) == {EXP} and set(chain["expiration_slot"]) == {2}  # 2nd nearest listed
    refused = materialize(settings, instance, ["gex_levels"], DAY.isoformat())
    assert not refused.success
    (failure,) = refused.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert "no levels were written" in message
    assert "(2024-06-14, slot 1 = 2024-06-14: no surface stored)" in message
    assert "(2024-06-14, slot 3 = 2024-06-18: no surface stored)" in message
    assert "2024-06-14|1, 2024-06-14|3" in message and "zerogex backfill --start 2024-06-14 --end 2024-06-14" in message
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'gex_levels'"
                            ).fetchone() == (0,)

    for slot in (1, 3):
        assert materialize(settings, instance, ["option_chain_snapshots", "gex_surface"],
                           chain_partition_key(DAY, slot)).success
    assert materialize(settings, instance, ["gex_levels"], DAY.isoformat()).success
    surface = GEX_SURFACE.conform(table(settings, "gex_surface"))
    assert len(surface) == len(OPTION_CHAIN_SNAPSHOTS.conform(table(settings, "option_chain_snapshots"))) // 2
    assert (surface["call_gex"] >= 0).all() and (surface["put_gex"] <= 0).all()
    levels = GEX_LEVELS.conform(table(settings, "gex_levels"))
    assert len(levels) == 79 and set(levels["expirations"]) == {3}
    assert set(levels["expiration_list"]) == {'["2024-06-14", "2024-06-17", "2024-06-18"]'}
    assert (levels["call_wall"].dropna() >= levels.loc[levels["call_wall"].notna(), "spot"]).all()
    assert (levels["put_wall"].dropna() <= levels.loc[levels["put_wall"].notna(), "spot"]).all()
    mats = instance.get_latest_materialization_event(dg.AssetKey(["spy", "gex_levels"]))
    assert mats is not None and mats.asset_materialization.metadata["dagster/row_count"].value == 79


def test_rematerializing_replaces_exactly_that_partition(settings: Settings, instance: dg.DagsterInstance) -> None:
    first = materialize_day(SPY, DAY, settings, instance)
    other = materialize_day(SPY, dt.date(2024, 6, 13), settings, instance)
    before = {n: table(settings, n) for n in first.rows}
    again = materialize_day(SPY, DAY, settings, instance)
    assert again.rows == first.rows
    for name, frame in before.items():
        after = table(settings, name)
        pd.testing.assert_frame_equal(after, frame)
        counts = after.groupby(after["session_date"].dt.date).size()
        assert counts[DAY] == first.rows[name]
        assert counts[dt.date(2024, 6, 13)] == other.rows[name]


def test_levels_load_exactly_their_dates_surfaces(settings: Settings, instance: dg.DagsterInstance) -> None:
    materialize_day(SPY, DAY, settings, instance)
    materialize_day(SPY, dt.date(2024, 6, 13), settings, instance)
    levels = table(settings, "gex_levels")
    day_levels = levels[levels.session_date.dt.date == DAY]
    assert set(day_levels["expirations"]) == {3}
    surface = table(settings, "gex_surface")
    last = surface[(surface.session_date.dt.date == DAY) & (surface.snapshot_ts == surface[surface.session_date.dt.date == DAY].snapshot_ts.max())]
    assert day_levels.iloc[-1]["net_gex"] == pytest.approx(last["net_gex"].sum(), rel=1e-12)


def test_a_slot_beyond_the_listed_expirations_is_empty_with_a_reason(tmp_path, instance: dg.DagsterInstance) -> None:
    """The simulated market lists 51 SPY expirations on 2024-06-14: slot 52 of 52 has none."""
    from zerogex_pipeline.settings import load_settings

    settings = load_settings({**TEST_FIRST_DATE_ENV, "ZEROGEX_DATA_DIR": str(tmp_path), "ZEROGEX_EXPIRATIONS": "52",
                              "ZEROGEX_SNAPSHOT_MINUTES": "60"}, env_file=None)
    assert materialize(settings, instance, ["underlying_bars"], DAY.isoformat()).success
    result = materialize(settings, instance, ["option_chain_snapshots", "gex_surface"], chain_partition_key(DAY, 52))
    assert result.success
    mat = instance.get_latest_materialization_event(dg.AssetKey(["spy", "option_chain_snapshots"]))
    assert (mat.asset_materialization.metadata["empty_reason"].value
            == "only 51 expiration(s) listed on 2024-06-14: no expiration in slot 52")
    assert mat.asset_materialization.metadata["dagster/row_count"].value == 0


def test_a_write_failing_after_the_delete_leaves_the_previous_version(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch
) -> None:
    materialize_day(SPY, DAY, settings, instance)
    before = table(settings, "gex_surface")
    from zerogex_pipeline.storage import duckdb_io_manager

    original = duckdb_io_manager.PandasFrameTypeHandler.handle_output

    def fail_for_surface(self, context, table_slice, obj, connection):
        if table_slice.table == "gex_surface":  # the slice's DELETE has already run in this transaction
            raise RuntimeError("disk full while writing the surface")
        return original(self, context, table_slice, obj, connection)

    monkeypatch.setattr(duckdb_io_manager.PandasFrameTypeHandler, "handle_output", fail_for_surface)
    with pytest.raises(RunFailedError, match="disk full while writing the surface"):
        materialize_day(SPY, DAY, settings, instance)
    pd.testing.assert_frame_equal(table(settings, "gex_surface"), before)


def test_a_transient_source_failure_is_retried_in_the_same_run(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch
) -> None:
    from zerogex_pipeline.defs.market_data import source_retries
    from zerogex_pipeline.sources.simulated import SimulatedMarket
    from zerogex_pipeline.tradestation.errors import ApiError, StreamError

    monkeypatch.setattr(source_retries, "SECONDS_TO_WAIT", 0)
    calls = {"bars": 0}
    original = SimulatedMarket.underlying_bars

    def flaky_bars(self, *args, **kwargs):
        calls["bars"] += 1
        if calls["bars"] == 1:
            raise StreamError("barcharts stream: reconnect attempts exhausted")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SimulatedMarket, "underlying_bars", flaky_bars)
    result = materialize(settings, instance, ["underlying_bars"], DAY.isoformat())
    assert result.success and calls["bars"] == 2
    assert len(table(settings, "underlying_bars")) == 390

    def bad_request(self, *args, **kwargs):
        calls["bars"] += 1
        raise ApiError(400, "BadRequest", "invalid symbol", "/v3/marketdata/barcharts/SPY")

    monkeypatch.setattr(SimulatedMarket, "underlying_bars", bad_request)
    calls["bars"] = 0
    result = materialize(settings, instance, ["underlying_bars"], DAY.isoformat())
    assert not result.success and calls["bars"] == 1  # a bad request is not retried


def test_a_failed_blocking_check_stops_the_day_with_a_one_line_reason(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch
) -> None:
    from zerogex_pipeline.sources.simulated import SimulatedMarket

    original = SimulatedMarket.chain_snapshots

    def crossed_quotes(self, *args, **kwargs):
        chain = original(self, *args, **kwargs)
        chain.loc[chain.index[:5], "bid"] = chain.loc[chain.index[:5], "ask"] + 1.0
        return chain

    monkeypatch.setattr(SimulatedMarket, "chain_snapshots", crossed_quotes)
    with pytest.raises(RunFailedError) as caught:
        materialize_day(SPY, DAY, settings, instance)
    message = str(caught.value)
    assert "\n" not in message
    assert "check spy/option_chain_snapshots:chain_sanity failed:" in message and "bid" in message
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as conn:  # the surface never ran
        assert not conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'gex_surface'").fetchone()[0]
