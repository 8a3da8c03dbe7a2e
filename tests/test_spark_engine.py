"""``--engine spark``: the metrics seam as Spark SQL in local mode gives the pandas engine's
numbers (one SparkSession, local[1], for the module: one JVM start, one shuffle partition,
no UI; the engine reuses the process's session and its settings)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from custtool.segment import segment_customers
from tests.conftest import require_system
from tests.test_ooc_segment import (
    DATA,
    SEGMENT_COLUMNS,
    cdnow_orders,
    messy_orders,
)

MASTER = "local[1]"
# the tests' JVMs: C1 JIT only (seconds-long jobs on 2 busy cores: less time compiling, the
# same Spark); a PYSPARK_SUBMIT_ARGS of the caller's wins
JVM_ARGS = "--driver-java-options -XX:TieredStopAtLevel=1 pyspark-shell"


def require_spark() -> None:
    require_system(
        "Java", shutil.which("java") is not None, "apt-get install openjdk-17-jre-headless"
    )
    require_system(
        "pyspark", importlib.util.find_spec("pyspark") is not None, "pip install 'custtool[spark]'"
    )


@pytest.fixture(scope="module")
def spark():
    require_spark()
    from custtool.engines.spark import _spark_session

    with pytest.MonkeyPatch.context() as mp:  # read once, when the JVM starts
        mp.setenv("PYSPARK_SUBMIT_ARGS", os.environ.get("PYSPARK_SUBMIT_ARGS", JVM_ARGS))
        session = _spark_session(MASTER, 180)
    # tiny data: one partition per shuffle, no adaptive re-planning
    session.conf.set("spark.sql.shuffle.partitions", "1")
    session.conf.set("spark.sql.adaptive.enabled", "false")
    yield session
    session.stop()


def test_cdnow_on_spark_equals_pandas(spark, tmp_path):
    path = tmp_path / "cdnow.parquet"
    cdnow_orders().to_parquet(path, index=False)
    want = segment_customers(str(path), as_of="1997-09-30", engine="pandas")
    out = tmp_path / "attributed.parquet"
    got = segment_customers(
        str(path), as_of="1997-09-30", engine="spark", spark_master=MASTER, attributed_to=out
    )
    a = want.customers.sort_values("customer_id").reset_index(drop=True)
    b = got.customers.sort_values("customer_id").reset_index(drop=True)
    # the 8 classes, counted, and the BG/NBD inputs of every customer
    assert got.to_dict()["classes"] == want.to_dict()["classes"]
    # Spark's warehouse folder is a temporary one, not ./spark-warehouse where the user is
    from custtool.engines.spark import WAREHOUSE

    assert spark.conf.get("spark.sql.warehouse.dir").rstrip("/").endswith(WAREHOUSE.name)
    assert not (Path.cwd() / "spark-warehouse").exists()
    assert b["rfm_class"].value_counts().to_dict() == a["rfm_class"].value_counts().to_dict()
    pd.testing.assert_frame_equal(a[SEGMENT_COLUMNS], b[SEGMENT_COLUMNS])
    assert got.report.to_dict() == want.report.to_dict()
    summ = pd.read_csv(DATA / "cdnow_summary.csv")
    assert int(b["bg_x"].sum()) == int(summ["x"].sum())
    written = pd.read_parquet(out)
    assert len(written) == want.report.rows_used
    assert written["amount"].sum() == pytest.approx(want.orders["amount"].sum())


def test_messy_orders_on_spark_equal_pandas(spark, tmp_path):
    """Every kind of row (duplicates, refunds, unmatched, invalid times, line items) and the
    portrait's inputs (categories, channels, midnight times): the metrics, the row
    accounting and the portrait columns are the pandas engine's."""
    from custtool.metrics import METRIC_COLUMNS
    from custtool.portrait import PORTRAIT_COLUMNS
    from tests.test_ooc_segment import portrait_orders

    customers, orders = portrait_orders()
    # text times parsed by Spark, one that is no time
    orders["order_time"] = orders["order_time"].dt.strftime("%Y-%m-%d %H:%M:%S")
    orders.loc[3, "order_time"] = "not a time"
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path, index=False)
    want = segment_customers(orders, customers, as_of="2025-03-01", engine="pandas")
    got = segment_customers(
        str(path), customers, as_of="2025-03-01", engine="spark", spark_master=MASTER
    )
    rp, rs = want.report, got.report
    assert rs.to_dict() == rp.to_dict()
    assert rp.rows_duplicate > 0 and rp.rows_unmatched > 0 and rp.rows_invalid_time == 1
    cols = [c for c in METRIC_COLUMNS if c in want.customers.columns] + list(PORTRAIT_COLUMNS)
    assert len(cols) > 20
    pd.testing.assert_frame_equal(want.customers[cols], got.customers[cols])
    assert (want.customers["active_slot"] != "").sum() > 50


def test_unreachable_master_is_exit_2_within_the_bound(tmp_path):
    require_spark()
    customers, orders = messy_orders("naive")
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path, index=False)
    env = dict(os.environ, CUSTTOOL_SPARK_TIMEOUT="3")
    env.setdefault("PYSPARK_SUBMIT_ARGS", JVM_ARGS)
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "custtool", "segment", "--orders", str(path)]
        + ["--engine", "spark", "--spark-master", "spark://127.0.0.1:1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    took = time.monotonic() - started
    assert res.returncode == 2, res.stderr[-2000:]
    assert "spark://127.0.0.1:1" in res.stderr and "Traceback" not in res.stderr
    assert took < 60


def test_without_pyspark_is_exit_2_with_the_pip_hint(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from custtool.cli import app

    customers, orders = messy_orders("naive")
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path, index=False)
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark → ImportError
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    res = CliRunner().invoke(app, ["segment", "--orders", str(path), "--engine", "spark"])
    assert res.exit_code == 2 and "custtool[spark]" in res.output
    assert not Path(path.with_name("x")).exists()


def test_pipeline_run_on_spark_shows_the_in_memory_figures(spark, example_run, tmp_path):
    """`custtool run` with ``segment: engine: spark``: the orders streamed to Parquet, the
    metrics seam in Spark (this module's session), and every figure the in-memory run shows
    (manifest kpis, rows, NPS, 概览, customers.parquet) the same."""
    import json

    from typer.testing import CliRunner

    from custtool.cli import app
    from tests.test_pipeline_out_of_core import _cells, _examples

    seg = f"segment:\n  window: 365d\n  engine: spark\n  spark_master: {MASTER}\n"
    path = _examples(tmp_path, seg)
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output + res.stderr
    got = json.loads(res.stdout)
    want = example_run[1]
    assert got["orders_engine"]["engine"] == "spark" and got["orders_engine"]["out_of_core"]
    assert got["as_of"] == want["as_of"] == "2026-10-30"
    for key in ("kpis", "rows", "nps", "rejected_rows", "warnings"):
        assert got[key] == want[key], key
    a, b = Path(want["folder"]), Path(got["folder"])
    assert _cells(b / "report.xlsx", "概览") == _cells(a / "report.xlsx", "概览")
    ca = pd.read_parquet(a / "customers.parquet")
    cb = pd.read_parquet(b / "customers.parquet")
    assert list(cb.columns) == list(ca.columns)
    pd.testing.assert_frame_equal(cb, ca, check_dtype=False)
