"""`custtool run` with the orders out of core (issue 12): the streamed import, the as-of date
by DuckDB over the Parquet, the DuckDB engine, and the same figures as the in-memory run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from custtool.cli import app
from custtool.pipeline import load_pipeline, orders_out_of_core

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
runner = CliRunner()
OOC = "segment:\n  window: 365d\n  engine: duckdb\n  memory_limit: 1GB\n"
# the portrait's order columns: computed by the engine out of core (issue 18)
PORTRAIT = {"top_category", "top_categories", "preferred_channel", "channel_mode", "active_slot"}


def _examples(tmp: Path, segment: str | None = None, extra: str = "") -> Path:
    d = tmp / "examples"
    shutil.copytree(EXAMPLES, d)
    text = (d / "pipeline.yaml").read_text(encoding="utf-8")
    if segment is not None:
        text = text.replace(
            "segment:\n  window: 365d               # thresholds: rules/segments.yaml "
            "(or config: my_segments.yaml)\n",
            segment,
        )
        assert segment in text
    (d / "pipeline.yaml").write_text(text + extra, encoding="utf-8")
    return d / "pipeline.yaml"


def build_ooc_run(d: Path) -> dict[str, Any]:
    """The examples' pipeline with ``segment: engine: duckdb`` (its own copy); the pandas
    import of orders is made to fail, so the run shows it never built a frame of all orders.
    conftest.ooc_run: once a session (this module's tests and test_ooc_segment's)."""
    import custtool.ingest as ingest

    path = _examples(d, OOC)
    real = ingest.import_files

    def no_orders_frame(*a: Any, **kw: Any) -> Any:
        assert kw.get("kind") != "orders", "orders imported into a DataFrame"
        return real(*a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ingest, "import_files", no_orders_frame)
        res = runner.invoke(app, ["run", str(path), "--out", str(d / "out"), "--json"])
    assert res.exit_code == 0, res.output + res.stderr
    return json.loads(res.stdout)


def _cells(path: Path, sheet: str) -> list[tuple[Any, ...]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    return [tuple(r) for r in wb[sheet].iter_rows(values_only=True)]


def test_out_of_core_run_shows_the_same_figures(example_run, ooc_run):
    """Manifest (kpis, rows, NPS, rejects), step rows, rejects.csv, the report's 概览 and
    customers.parquet: the same whichever path ran (the as-of date too: DuckDB's latest
    order day over the Parquet = the in-memory rule's)."""
    pd_run = example_run[1]
    a, b = Path(pd_run["folder"]), Path(ooc_run["folder"])
    assert pd_run["orders_engine"]["out_of_core"] is False
    assert ooc_run["orders_engine"] == {
        "out_of_core": True,
        "engine": "duckdb",
        "memory_limit": 1_000_000_000,
        "reason": "segment: engine: duckdb",
    }
    assert ooc_run["as_of"] == pd_run["as_of"] == "2026-10-30"
    for key in ("kpis", "rows", "nps", "rejected_rows", "privacy", "warnings"):
        assert ooc_run[key] == pd_run[key], key
    # 订单明细.csv: 875 lines below the header; one rejected, one skipped (hand-checked)
    got = {k: ooc_run["rows"]["import"]["orders"][k] for k in ("rows_read", "accepted", "rejected")}
    assert got == {"rows_read": 875, "accepted": 873, "rejected": 1}
    step_rows = {s["step"]: s.get("rows") for s in pd_run["steps"]}
    for s in ooc_run["steps"]:
        if s["step"] != "tag":  # tag counts tagged customers: see the portrait below
            assert s.get("rows") == step_rows[s["step"]], s["step"]
    assert {o["file"] for o in ooc_run["outputs"]} == {o["file"] for o in pd_run["outputs"]}
    pd.testing.assert_frame_equal(
        pd.read_csv(b / "rejects.csv", dtype=str), pd.read_csv(a / "rejects.csv", dtype=str)
    )
    assert _cells(b / "report.xlsx", "概览") == _cells(a / "report.xlsx", "概览")
    # the attributed orders: written by the engine, the same rows and money
    oa = pd.read_parquet(a / "orders_attributed.parquet")
    ob = pd.read_parquet(b / "orders_attributed.parquet")
    assert len(ob) == len(oa) == ooc_run["rows"]["segment"]["order_rows"]["rows_used"]
    assert ob["amount"].sum() == pytest.approx(oa["amount"].sum())
    ca = pd.read_parquet(a / "customers.parquet")
    cb = pd.read_parquet(b / "customers.parquet")
    # every column, the portrait's order columns and the tags that read them included
    assert PORTRAIT <= set(ca.columns)
    for c in PORTRAIT:
        assert cb[c].astype(str).ne("").any(), f"{c} blank out of core"
    assert list(cb.columns) == list(ca.columns)
    pd.testing.assert_frame_equal(cb, ca, check_dtype=False)
    # nothing left behind in out/ by the streamed import
    assert not [p.name for p in b.parent.iterdir() if p.name.startswith(".")]


def test_orders_out_of_core_rule(tmp_path):
    """The one rule: engine pandas → memory; duckdb/spark → out of core; no engine →
    out of core when memory_limit is set or the orders' bytes / bytes_per_row exceed
    out_of_core.orders_rows (rules/segments.yaml)."""
    size = (EXAMPLES / "订单明细.csv").stat().st_size
    cases = [
        ("segment:\n  engine: pandas\n  memory_limit: 1GB\n", False, "pandas"),
        ("segment:\n  engine: spark\n", True, "spark"),
        ("segment:\n  memory_limit: 512MB\n", True, "duckdb"),
        ("segment:\n  window: 365d\n", False, "pandas"),
    ]
    limits = [1_000_000_000, 2_000_000_000, 512_000_000, None]  # spark: the shipped 2GB
    for i, (seg, ooc, engine) in enumerate(cases):
        p = _examples(tmp_path / str(i), seg)
        got = orders_out_of_core(load_pipeline(p))
        assert (got.out_of_core, got.engine, got.memory_limit) == (ooc, engine, limits[i]), seg
    assert got.reason == f"about {size // 100:,} order rows: in memory"
    # a threshold below the file's estimated rows: out of core without being asked
    d = tmp_path / "auto"
    p = _examples(d, "segment:\n  config: small.yaml\n")
    rows = size // 40 - 1
    (p.parent / "small.yaml").write_text(
        f"out_of_core:\n  orders_rows: {rows}\n  bytes_per_row: 40\n", encoding="utf-8"
    )
    got = orders_out_of_core(load_pipeline(p))
    # no limit given: DuckDB gets out_of_core.memory_limit (rules/segments.yaml: 2GB)
    assert got.out_of_core and got.engine == "duckdb" and got.memory_limit == 2_000_000_000
    assert got.reason == (
        f"about {size // 40:,} order rows ({size:,} bytes) > out_of_core.orders_rows {rows:,}"
    )
    (p.parent / "small.yaml").write_text(
        f"out_of_core:\n  orders_rows: {rows + 1}\n  bytes_per_row: 40\n", encoding="utf-8"
    )
    assert not orders_out_of_core(load_pipeline(p)).out_of_core  # exactly at the limit: memory


def test_as_of_from_parquet_is_the_in_memory_rule(tmp_path):
    """resolve_as_of over an orders Parquet (DuckDB's max) = over the frame: zoned times are
    cut into days in the firm's zone (23:30 UTC is the next day in Shanghai), text parsed."""
    from custtool.dates import resolve_as_of

    times = pd.to_datetime(["2024-01-01 10:00", "2024-02-01 23:30", None]).tz_localize("UTC")
    variants = {
        "zoned": pd.DataFrame({"order_time": times}),
        "naive": pd.DataFrame({"order_time": times.tz_localize(None)}),
        "text": pd.DataFrame({"order_time": ["2024-01-01 10:00", "2024-02-01 23:30", ""]}),
    }
    expected = {"zoned": "2024-02-02", "naive": "2024-02-01", "text": "2024-02-01"}
    for name, df in variants.items():
        path = tmp_path / f"{name}.parquet"
        df.to_parquet(path)
        got = resolve_as_of(None, path, tz="Asia/Shanghai")
        assert got == resolve_as_of(None, df, tz="Asia/Shanghai") == pd.Timestamp(expected[name])
        assert resolve_as_of("2024-03-31", path) == pd.Timestamp("2024-03-31")
    empty = tmp_path / "empty.parquet"
    variants["zoned"].iloc[0:0].to_parquet(empty)
    assert resolve_as_of(None, empty, required=False) is None


def test_failed_out_of_core_import_leaves_nothing(tmp_path, monkeypatch):
    """A streamed import that fails (here: a memory limit too small) stops the run with
    exit 2 and leaves no out/ folder and no spill files behind."""
    import custtool.engines.duckdb_import as di
    from custtool.engines import MemoryLimitError

    def boom(*a: Any, **kw: Any) -> Any:
        assert Path(kw["output"]).parent.name.startswith(".orders-import-")
        raise MemoryLimitError("import needs more than --memory-limit 64MB", "raise it")

    monkeypatch.setattr(di, "import_streamed", boom)
    p = _examples(tmp_path, OOC)
    res = runner.invoke(app, ["run", str(p), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "64MB" in res.output + res.stderr
    assert not (tmp_path / "out").exists()


def test_customers_csv_in_blocks_is_the_whole_table_write(example_run, tmp_path):
    """customers.csv masked and written a few rows at a time = the whole masked table written at
    once, byte for byte (the run's file is the block-wise one). The role's rows are chosen
    first (a sales role's owner may have no customer in a block), then blocks are masked."""
    from custtool.io import write_csv_blocks, write_table
    from custtool.report.masking import get_role, mask_for_output, mask_frame, role_view

    folder = Path(example_run[1]["folder"])
    final = pd.read_parquet(folder / "customers.parquet")
    assert len(final) == 343
    owners = final["owner"].astype("string").fillna("").str.strip()
    # several full blocks and a short last one each: 343 = 5 × 60 + 43; the owner's 40 = 5 × 7 + 5
    # (each block costs a mask and a write: 7-row blocks of all 343 rows took 20 s of the suite)
    for role, owner, rows in (("analyst", None, 60), ("sales", owners[owners != ""].iloc[0], 7)):
        r = get_role(role)

        shown = mask_for_output(final, role=r, mask=True, owner=owner)
        whole = write_table(shown, tmp_path / f"{role}-whole.csv").read_bytes()
        write_csv_blocks(
            role_view(final, r, owner=owner),
            tmp_path / f"{role}-blocks.csv",
            lambda b: mask_frame(b, mask=True),
            rows=rows,
        )
        assert (tmp_path / f"{role}-blocks.csv").read_bytes() == whole
        assert whole.startswith(b"\xef\xbb\xbf") and whole.count(b"\n") == len(shown) + 1
        assert 0 < len(shown) <= len(final)
    assert (folder / "customers.csv").read_bytes() == write_table(
        mask_for_output(final, role=get_role("analyst"), mask=True), tmp_path / "run.csv"
    ).read_bytes()
    assert not list(tmp_path.glob("*.block.csv"))


def test_a_bad_out_of_core_memory_limit_is_a_config_error(tmp_path):
    """segments.yaml's out_of_core.memory_limit is checked by the same parser as the
    pipeline's segment.memory_limit: a bad value is a ConfigError naming the key."""
    from custtool.errors import ConfigError
    from custtool.segment import load_segment_config

    cfg = tmp_path / "segments.yaml"
    cfg.write_text("out_of_core:\n  memory_limit: lots\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_segment_config(str(cfg))
    assert "memory_limit" in str(err.value)
    cfg.write_text("out_of_core:\n  memory_limit: 512MB\n", encoding="utf-8")
    assert load_segment_config(str(cfg))["out_of_core"]["memory_limit"] == "512MB"
