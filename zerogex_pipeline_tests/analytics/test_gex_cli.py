"""End to end: ``zerogex gex --cboe-csv ...`` on the shared SPX export, through ``zerogex_pipeline.cli.main``."""

import json
from pathlib import Path

import pytest

from zerogex_pipeline.cli import main

CSV = Path("/work/shared/data/cboe_spx_quotedata_2022-12-12.csv")
pytestmark = pytest.mark.skipif(not CSV.exists(), reason="shared CBOE export not present")
FIELDS = ("spot", "as_of", "convention", "unit", "total_gex", "call_gex", "put_gex", "zero_gamma", "zero_gamma_raw",
          "call_wall", "put_wall", "abs_gamma_strike", "max_pain", "profile", "by_strike")


def _run_json(capsys: pytest.CaptureFixture[str], convention: str) -> dict:
    rc = main(["gex", "--cboe-csv", str(CSV), "--convention", convention, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.count("\n") == 1  # one JSON object on one line
    rep = json.loads(out)
    assert isinstance(rep, dict)
    return rep


def _check_common(rep: dict) -> None:
    missing = [f for f in FIELDS if f not in rep]
    assert not missing, missing
    assert rep["spot"] == pytest.approx(3990.5601)
    assert rep["as_of"].startswith("2022-12-12T20:30:00")
    assert rep["unit"] == "USD per 1% move"
    # dollars, not billions: tens of $bn per side on SPX
    assert rep["call_gex"] > 1e10 and rep["put_gex"] < -1e10
    assert rep["total_gex"] == pytest.approx(rep["call_gex"] + rep["put_gex"], rel=1e-12)
    for f in ("zero_gamma", "zero_gamma_raw", "call_wall", "put_wall", "abs_gamma_strike"):
        assert isinstance(rep[f], float) and 3000 < rep[f] < 5000, f
    assert isinstance(rep["max_pain"], dict) and rep["max_pain"]
    assert "2022-12-12" not in rep["max_pain"]  # settled at 4 PM, before the 8:30 PM stamp
    assert "2022-12-13" in rep["max_pain"]
    assert all(len(k) == 10 and k[4] == "-" and isinstance(v, float) for k, v in rep["max_pain"].items())
    prof = rep["profile"]
    assert len(prof) >= 40 and all(set(p) == {"price", "net_gex"} for p in prof)
    prices = [p["price"] for p in prof]
    assert prices == sorted(prices) and prices[0] < rep["spot"] < prices[-1]
    rows = rep["by_strike"]
    assert rows and all(set(r) >= {"strike", "call_gex", "put_gex", "net_gex"} for r in rows)
    for r in rows:
        assert r["net_gex"] == pytest.approx(r["call_gex"] + r["put_gex"], rel=1e-12, abs=1e-6)
        assert r["call_gex"] >= 0 and r["put_gex"] <= 0
    assert sum(r["net_gex"] for r in rows) == pytest.approx(rep["total_gex"], rel=1e-9)


def test_gex_json_perfiliev_reproduces_reference_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    rep = _run_json(capsys, "perfiliev")
    _check_common(rep)
    assert rep["convention"].startswith("perfiliev")
    assert rep["zero_gamma"] == pytest.approx(4013.95, rel=1e-4)
    assert rep["total_gex"] == pytest.approx(-1.0752e9, rel=1e-4)
    assert rep["call_gex"] == pytest.approx(83.6891e9, rel=1e-4)
    assert rep["put_gex"] == pytest.approx(-84.7642e9, rel=1e-4)
    assert (rep["call_wall"], rep["put_wall"], rep["abs_gamma_strike"]) == (4000.0, 4000.0, 4000.0)
    assert len(rep["profile"]) == 60


def test_gex_json_product_convention(capsys: pytest.CaptureFixture[str]) -> None:
    rep = _run_json(capsys, "zerogex")
    _check_common(rep)
    assert rep["convention"].startswith("zerogex")
    assert rep["call_wall"] >= rep["spot"] >= rep["put_wall"]  # side-of-spot rule
    assert rep["inputs"]["contracts_settled"] > 0
    # net GEX at spot is read off the same profile: the grid point at spot
    at_spot = [p["net_gex"] for p in rep["profile"] if p["price"] == pytest.approx(rep["spot"], rel=1e-12)]
    assert at_spot == [pytest.approx(rep["net_gex_at_spot"], rel=1e-12)]


def test_gex_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gex", "--cboe-csv", str(CSV)]) == 0
    out = capsys.readouterr().out
    assert not out.lstrip().startswith("{")
    for label in ("spot", "total GEX", "zero gamma", "call wall", "put wall", "max pain 2022-12-13"):
        assert label in out, label
    assert "$3,990.56" in out and "max pain 2022-12-12" not in out


@pytest.mark.parametrize("content", [None, "garbage,x\n1,2\n", ""], ids=["missing", "not-cboe", "empty"])
def test_gex_bad_file_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None) -> None:
    path = tmp_path / "quotes.csv"
    if content is not None:
        path.write_text(content)
    rc = main(["gex", "--cboe-csv", str(path), "--json"])
    out, err = capsys.readouterr()
    assert rc != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and lines[0].startswith("zerogex gex:"), err
