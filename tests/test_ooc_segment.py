"""The metrics seam out of core: DuckDB over the orders Parquet gives the pandas engine's
numbers (custtool.engines.seam, custtool.engines.sql)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custtool.metrics import METRIC_COLUMNS, customer_metrics
from custtool.segment import segment_customers

DATA = Path(__file__).parent / "data"  # copies of the shared CDNOW files (../shared/data)

SEGMENT_COLUMNS = [
    "recency",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "rfm_class",
    "tier",
    "lifecycle",
    "bg_x",
    "bg_t_x",
    "bg_T",
    "bg_repeat_avg",
]


def messy_orders(time_form: str, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customers, orders) with every case the matcher and the metrics distinguish: line
    items sharing an order id, exact duplicate rows, refunds (negative and flagged),
    half-cent amounts, rows with only a phone (spaced and +86 forms), ids with spaces,
    unknown ids, an ambiguous phone, orders after the as-of day, invalid times."""
    rng = np.random.default_rng(seed)
    n_c, n_o = 120, 1500
    cid = np.array([f"C{i:04d}" for i in range(n_c)], dtype=object)
    phone = np.array([f"138{i:08d}" for i in range(n_c)], dtype=object)
    phone[5] = phone[6]  # an ambiguous phone: matches nobody
    customers = pd.DataFrame(
        {"customer_id": cid, "phone": phone, "email": [f"u{i}@x.cn" for i in range(n_c)]}
    )
    who = rng.integers(0, n_c + 6, n_o)  # ids ≥ n_c: unknown customers
    ids = np.array([f"C{i:04d}" for i in who], dtype=object)
    ph = np.array([f"138{i:08d}" for i in who], dtype=object)
    blank = rng.random(n_o) < 0.15
    ids[blank] = ""  # matched by phone
    spaced = rng.random(n_o) < 0.05
    ids[spaced] = np.char.add(np.char.add(" ", ids[spaced].astype(str)), " ").astype(object)
    plus = rng.random(n_o) < 0.2
    ph[plus] = np.char.add("+86 ", ph[plus].astype(str)).astype(object)
    email = np.where(rng.random(n_o) < 0.05, "", [f"U{i}@X.cn " for i in who]).astype(object)
    ph[blank & (rng.random(n_o) < 0.3)] = ""  # no id, no phone: matched by email
    t0 = np.datetime64("2024-01-01T00:00:00", "s")
    secs = rng.integers(0, 500 * 86400, n_o)
    times = t0 + secs.astype("timedelta64[s]")
    amount = np.round(rng.lognormal(4, 1, n_o), 2)
    amount[::97] = 0.125  # half a cent: half to even
    refund_neg = rng.random(n_o) < 0.05
    amount[refund_neg] = -amount[refund_neg]
    flag = np.where(rng.random(n_o) < 0.04, "是", "").astype(object)
    order_no = np.array([f"O{i:06d}" for i in range(n_o)], dtype=object)
    line_item = np.flatnonzero(rng.random(n_o) < 0.2)
    order_no[line_item[1:]] = order_no[line_item[:-1]]  # a few orders of several lines
    order_no[rng.random(n_o) < 0.03] = " "  # blank order id: an order by itself
    orders = pd.DataFrame(
        {
            "order_id": order_no,
            "customer_id": ids,
            "phone": ph,
            "email": email,
            "order_time": pd.to_datetime(times),
            "amount": amount,
            "refund": flag,
        }
    )
    dups = orders.iloc[rng.choice(n_o, 40, replace=False)]
    orders = pd.concat([orders, dups], ignore_index=True)
    if time_form == "utc":  # tz-aware: converted to the firm's time zone (days shift)
        orders["order_time"] = orders["order_time"].dt.tz_localize("UTC")
    elif time_form == "text":  # naive text = local time; one that is no time
        orders["order_time"] = orders["order_time"].dt.strftime("%Y-%m-%d %H:%M:%S")
        orders.loc[3, "order_time"] = "not a time"
    elif time_form == "text_offset":
        orders["order_time"] = orders["order_time"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return customers, orders


def assert_same_metrics(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) == len(b)
    for col in METRIC_COLUMNS:
        pd.testing.assert_series_equal(
            a[col].reset_index(drop=True), b[col].reset_index(drop=True), obj=col
        )


@pytest.mark.parametrize("time_form", ["naive", "utc", "text", "text_offset"])
def test_duckdb_out_of_core_equals_pandas_on_messy_orders(tmp_path, time_form):
    customers, orders = messy_orders(time_form)
    folder = tmp_path / "O'Brien 订单"  # a quote in the path: SQL string literals (sql.quote)
    folder.mkdir()
    path = folder / "orders.parquet"
    orders.to_parquet(path, index=False)
    as_of = "2025-03-01"  # some orders are after it
    mp, rp = customer_metrics(orders, customers, as_of=as_of, engine="pandas")
    md, rd = customer_metrics(path, customers, as_of=as_of, engine="duckdb", memory_limit="256MB")
    assert rd.to_dict() == rp.to_dict()
    # every kind of row is present, so the comparison covers them
    rep = rp.to_dict()
    assert rep["rows_after_as_of"] > 0 and rep["rows_unmatched"] > 0
    assert rep["rows_duplicate"] > 0 and all(v > 0 for v in rep["matched_by"].values())
    assert rep["orders_used"] < rep["rows_used"]  # line items of one order count once
    assert (rep["rows_invalid_time"] > 0) == (time_form == "text")
    assert_same_metrics(mp, md)
    assert rd.used_rows is None  # the order rows never became a frame
    pd.testing.assert_frame_equal(
        rd.unmatched[["order_id", "amount"]].reset_index(drop=True),
        rp.unmatched[["order_id", "amount"]].reset_index(drop=True),
        check_dtype=False,
    )


def test_the_money_is_exact_to_the_cent(tmp_path):
    """Hand-checked: 10.125 rounds half to even to 10.12; a flagged refund is negative; the
    duplicate row counts once; the refund line is no order."""
    customers = pd.DataFrame({"customer_id": ["A"], "phone": ["13800000000"]})
    orders = pd.DataFrame(
        {
            "order_id": ["1", "1", "2", "3"],
            "customer_id": ["A", "A", "", "A"],
            "phone": ["", "", "+86 138 0000 0000", ""],
            "order_time": pd.to_datetime(
                ["2024-05-01 10:00", "2024-05-01 10:00", "2024-05-03 09:00", "2024-05-04 08:00"]
            ),
            "amount": [10.125, 10.125, 20.0, 5.0],
            "refund": [False, False, False, True],
        }
    )
    path = tmp_path / "o.parquet"
    orders.to_parquet(path, index=False)
    m, rep = customer_metrics(path, customers, engine="duckdb")
    row = m.iloc[0]
    assert row["monetary"] == pytest.approx(10.12 + 20.0 - 5.0)
    assert row["frequency"] == 2 and row["recency"] == 1  # as of 2024-05-04, last sale 05-03
    assert row["bg_x"] == 1 and row["bg_t_x"] == 2 and row["bg_T"] == 3
    assert row["bg_repeat_avg"] == pytest.approx(15.0)  # 20 − 5 after the first day, 1 repeat
    assert rep.rows_duplicate == 1 and rep.matched_by == {"id": 2, "phone": 1, "email": 0}


def cdnow_orders() -> pd.DataFrame:
    tx = pd.read_csv(
        DATA / "cdnow_sample_transactions.txt",
        sep=r"\s+",
        header=None,
        names=["customer_id", "sample_id", "date", "cds", "amount"],
        dtype={"customer_id": str, "sample_id": str, "date": str},
    )
    return pd.DataFrame(
        {
            "customer_id": tx["customer_id"],
            "order_time": pd.to_datetime(tx["date"], format="%Y%m%d"),
            "amount": tx["amount"],
        }
    )


@pytest.fixture(scope="module")
def cdnow_parquet(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cdnow") / "cdnow_orders.parquet"
    cdnow_orders().to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def cdnow_pandas(cdnow_parquet):
    return segment_customers(str(cdnow_parquet), as_of="1997-09-30", engine="pandas")


def test_cdnow_segment_duckdb_equals_pandas(cdnow_parquet, cdnow_pandas, tmp_path):
    out = tmp_path / "attributed.parquet"
    duck = segment_customers(
        str(cdnow_parquet),
        as_of="1997-09-30",
        engine="duckdb",
        memory_limit="512MB",
        attributed_to=out,
    )
    a = cdnow_pandas.customers.sort_values("customer_id").reset_index(drop=True)
    b = duck.customers.sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a[SEGMENT_COLUMNS], b[SEGMENT_COLUMNS])
    assert duck.report.to_dict() == cdnow_pandas.report.to_dict()
    assert duck.ltv.to_dict() == cdnow_pandas.ltv.to_dict()
    # the BG/NBD inputs are the published summary's (x, and t_x/T in days)
    summ = pd.read_csv(DATA / "cdnow_summary.csv")
    bought = b[b["frequency"] > 0].set_index("customer_id")
    assert len(summ) == 2357 == len(bought)
    assert int(bought["bg_x"].sum()) == int(summ["x"].sum())
    # the attributed orders the engine wrote are the pandas engine's SegmentResult.orders
    written = pd.read_parquet(out)
    want = cdnow_pandas.orders
    assert list(written.columns) == list(want.columns)
    pd.testing.assert_frame_equal(
        written[["customer_id", "amount", "match_key", "in_window"]],
        want[["customer_id", "amount", "match_key", "in_window"]].astype({"customer_id": "object"}),
        check_dtype=False,
    )
    assert duck.orders.empty and len(written) == duck.report.rows_used


def test_example_exports_duckdb_equals_pandas(example_data, tmp_path):
    """The examples/ imports (customers from clean, orders with ids, phones, refunds)."""
    clean = example_data.frame("clean")
    orders = example_data.paths["orders"]
    a = segment_customers(str(orders), clean, engine="pandas")
    b = segment_customers(str(orders), clean, engine="duckdb", memory_limit="1GB")
    assert a.report.to_dict() == b.report.to_dict()
    pd.testing.assert_frame_equal(a.customers[SEGMENT_COLUMNS], b.customers[SEGMENT_COLUMNS])


def test_cli_segment_duckdb_json_equals_pandas(example_data, tmp_path):
    from typer.testing import CliRunner

    from custtool.cli import app

    clean, orders = example_data.paths["clean"], example_data.paths["orders"]
    runner = CliRunner()
    outs = {}
    for engine in ("pandas", "duckdb"):
        out = tmp_path / f"seg_{engine}.parquet"
        extra = ["--memory-limit", "1GB"] if engine == "duckdb" else []
        res = runner.invoke(
            app,
            ["segment", str(clean), "--orders", str(orders), "--engine", engine, "-o", str(out)]
            + extra
            + ["--json"],
        )
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout)
        data.pop("seconds")
        data["written"] = sorted(data["written"])
        outs[engine] = data
        assert Path(out.with_name(f"{out.stem}_orders.parquet")).exists()
    assert outs["duckdb"] == outs["pandas"]


def test_memory_limit_too_small_is_exit_2_naming_the_limit(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from custtool.cli import app
    from custtool.engines import MemoryLimitError, seam

    customers, orders = messy_orders("naive")
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path, index=False)

    def no_room(self, name, sql):  # what DuckDB raises when a query does not fit
        raise RuntimeError("Out of Memory Error: could not allocate block of size 256.0 KiB")

    monkeypatch.setattr(seam.DuckRunner, "table", no_room)
    with pytest.raises(MemoryLimitError) as err:
        customer_metrics(path, customers, engine="duckdb", memory_limit="100MB")
    assert "100.0MB" in str(err.value) and err.value.exit_code == 2
    res = CliRunner().invoke(
        app, ["segment", "--orders", str(path), "--engine", "duckdb", "--memory-limit", "100MB"]
    )
    assert res.exit_code == 2 and "100.0MB" in res.output and "Traceback" not in res.output


def test_a_real_tiny_limit_fails_cleanly_or_finishes(tmp_path):
    """A limit DuckDB really hits (64MB, one thread, a wide key) ends as exit 2 or a result —
    never a crash; with a result, the numbers are the pandas engine's."""
    from custtool.engines import MemoryLimitError

    customers, orders = messy_orders("naive")
    orders = pd.concat([orders] * 30, ignore_index=True)  # 46,200 rows of 3 KB ids: 140 MB
    orders["order_id"] = orders["order_id"] + "x" * 3000 + orders.index.astype(str)
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path, index=False)
    try:
        md, _ = customer_metrics(path, customers, engine="duckdb", memory_limit="64MB")
    except MemoryLimitError as exc:
        assert "64.0MB" in str(exc)
    else:
        mp, _ = customer_metrics(orders, customers, engine="pandas")
        assert_same_metrics(mp, md)


def test_engine_needs_parquet_orders(tmp_path):
    from typer.testing import CliRunner

    from custtool.cli import app

    csv = tmp_path / "orders.csv"
    csv.write_text("order_id,customer_id,order_time,amount\n1,A,2024-01-01,5\n")
    res = CliRunner().invoke(app, ["segment", "--orders", str(csv), "--engine", "duckdb"])
    assert res.exit_code == 2 and "Parquet" in res.output
    res = CliRunner().invoke(app, ["segment", "--orders", str(csv), "--engine", "nope"])
    assert res.exit_code == 2 and "nope" in res.output


def test_orders_in_memory_get_their_attributed_orders_and_portrait_back(example_data):
    """A DataFrame of orders (the pipeline's case) on --engine duckdb: the engine's
    attributed orders come back, so SegmentResult.orders and the portrait columns are the
    pandas engine's; from a Parquet path they are not held (out of core) and the engine
    groups the portrait's inputs: the same columns."""
    from custtool.portrait import PORTRAIT_COLUMNS

    clean = example_data.frame("clean")
    orders = example_data.frame("orders")
    a = segment_customers(orders, clean, engine="pandas")
    b = segment_customers(orders, clean, engine="duckdb")
    cols = ["customer_id", "source_customer_id", "match_key", "amount", "in_window"]
    pd.testing.assert_frame_equal(
        a.orders[cols].astype(str), b.orders[cols].astype(str), check_dtype=False
    )
    pd.testing.assert_frame_equal(
        a.customers[list(PORTRAIT_COLUMNS)], b.customers[list(PORTRAIT_COLUMNS)]
    )
    assert (a.customers["top_category"] != "").any()  # the comparison is not of blanks
    # from a Parquet path the orders are not held, and the engine groups the portrait itself
    c = segment_customers(str(example_data.paths["orders"]), clean, engine="duckdb")
    assert c.orders.empty
    pd.testing.assert_frame_equal(
        a.customers[list(PORTRAIT_COLUMNS)], c.customers[list(PORTRAIT_COLUMNS)]
    )


def portrait_orders(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """messy_orders with what the portrait reads: categories and channels with spaces,
    blanks and None, times at exactly midnight (a date only), and a duplicate row whose
    category and channel differ from the first one's (the first in file order counts)."""
    customers, orders = messy_orders("naive")
    rng = np.random.default_rng(seed)
    n = len(orders)
    orders["category"] = rng.choice(["  美妆", "美妆", "食品 ", "", None, "服饰", "数码"], n)
    orders["channel"] = rng.choice(["天猫", " 门店", "门店", "抖音", "", None, "微信小程序"], n)
    t = pd.to_datetime(orders["order_time"])
    midnight = rng.random(n) < 0.1
    orders.loc[midnight, "order_time"] = t[midnight].dt.normalize()
    first = orders.iloc[[0]].assign(category="数码", channel="抖音")
    orders = pd.concat([orders, first], ignore_index=True)
    return customers, orders


def test_portrait_out_of_core_equals_pandas(tmp_path, monkeypatch):
    """The portrait columns (top categories, preferred channel, channel mode, active slot)
    from the engine's grouped inputs equal the pandas engine's, also when the labels are
    too many to pack below the row number (min_by instead). The duplicate of the first row
    (数码, 抖音) counts with the first row's category and channel, as in pandas."""
    from custtool.engines import sql as S
    from custtool.portrait import PORTRAIT_COLUMNS

    customers, orders = portrait_orders()
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path, index=False)
    cols = list(PORTRAIT_COLUMNS)
    a = segment_customers(orders, customers, as_of="2025-03-01", engine="pandas")
    b = segment_customers(str(path), customers, as_of="2025-03-01", engine="duckdb")
    pd.testing.assert_frame_equal(a.customers[cols], b.customers[cols])
    for col in cols:  # every column has values (not a comparison of blanks)
        assert (a.customers[col] != "").sum() > 50, col
    assert b.orders.empty and b.report.portrait_groups is None  # used, then let go
    # the order counts come from the same per-order table as the portrait's orders
    # (orders_sql) when the codes pack, from their own GROUP BY when not: equal either way
    counts = ["frequency", "orders_30d", "orders_90d", "orders_365d", "bg_x", "monetary"]
    pd.testing.assert_frame_equal(a.customers[counts], b.customers[counts])
    assert a.customers["frequency"].sum() > 100
    monkeypatch.setattr(S, "PACK_LIMIT", 1)
    assert not S.orders_fit(3, 2, 10)
    c = segment_customers(str(path), customers, as_of="2025-03-01", engine="duckdb")
    pd.testing.assert_frame_equal(a.customers[cols], c.customers[cols])
    pd.testing.assert_frame_equal(a.customers[counts], c.customers[counts])


def test_portrait_hand_checked_out_of_core(tmp_path):
    """One customer: 美妆 100 + 美妆 −30 refund = 70 net, 食品 50 → top 美妆、食品; two orders
    in 天猫 (one of two lines), one in 门店 → 天猫, 全渠道; Saturday 10:30 twice, a Monday at
    00:00:00 (a date only) → 周末 10:00-12:00. Customer T: 食品 and 美妆 tie at 50 (美 < 食
    in code points), 门店 and 天猫 tie at one order each (天 < 门), a Sunday and a Monday
    order → 工作日 before 周末."""
    customers = pd.DataFrame({"customer_id": ["A", "T"]})
    orders = pd.DataFrame(
        {
            "order_id": ["1", "1", "2", "3", "4"],
            "customer_id": ["A"] * 5,
            "order_time": pd.to_datetime(
                [
                    "2024-06-01 10:30",  # a Saturday
                    "2024-06-01 10:30",
                    "2024-06-08 10:45",
                    "2024-06-10 00:00",
                    "2024-06-10 12:00",
                ]
            ),
            "amount": [100.0, 50.0, 20.0, 10.0, -30.0],
            "category": ["美妆", "食品", "", None, "美妆"],
            "channel": ["天猫", "门店", "天猫", "门店", "天猫"],
        }
    )
    tie = pd.DataFrame(
        {
            "order_id": ["t1", "t2"],
            "customer_id": ["T", "T"],
            "order_time": pd.to_datetime(["2024-06-09 21:00", "2024-06-10 09:15"]),
            "amount": [50.0, 50.0],
            "category": ["食品", "美妆"],
            "channel": ["门店", "天猫"],
        }
    )
    orders = pd.concat([orders, tie], ignore_index=True)
    path = tmp_path / "o.parquet"
    orders.to_parquet(path, index=False)
    res = segment_customers(str(path), customers, engine="duckdb").customers
    got = res.iloc[0]
    assert got["top_category"] == "美妆" and got["top_categories"] == "美妆、食品"
    assert got["preferred_channel"] == "天猫" and got["channel_mode"] == "全渠道"
    assert got["active_slot"] == "周末 10:00-12:00"
    t = res.iloc[1]
    assert t["top_categories"] == "美妆、食品" and t["preferred_channel"] == "天猫"
    assert t["active_slot"] == "工作日 08:00-10:00"
    pandas = segment_customers(orders, customers, engine="pandas").customers
    cols = ["top_categories", "preferred_channel", "channel_mode", "active_slot"]
    pd.testing.assert_frame_equal(res[cols], pandas[cols])


def test_a_refund_before_the_first_purchase_day(tmp_path):
    """The money after the first purchase day (BG/NBD's repeat average) leaves out refund-
    only days before it: −3 on 05-01, 10 and −1 on 05-02 (the first purchase day), 7 on
    05-05 → one repeat day worth 7; a customer with only a refund has no purchase."""
    customers = pd.DataFrame({"customer_id": ["B", "R"]})
    orders = pd.DataFrame(
        {
            "order_id": ["1", "2", "3", "4", "5"],
            "customer_id": ["B", "B", "B", "B", "R"],
            "order_time": pd.to_datetime(
                ["2024-05-01 09:00", "2024-05-02 09:00", "2024-05-02 18:00"]
                + ["2024-05-05 09:00", "2024-05-03 09:00"]
            ),
            "amount": [-3.0, 10.0, -1.0, 7.0, -4.0],
        }
    )
    path = tmp_path / "o.parquet"
    orders.to_parquet(path, index=False)
    md, _ = customer_metrics(path, customers, engine="duckdb")
    mp, _ = customer_metrics(orders, customers, engine="pandas")
    assert_same_metrics(mp, md)
    b, r = md.iloc[0], md.iloc[1]
    assert b["monetary"] == pytest.approx(13.0) and b["frequency"] == 2
    assert b["bg_x"] == 1 and b["bg_repeat_avg"] == pytest.approx(7.0)
    assert r["frequency"] == 0 and r["monetary"] == pytest.approx(-4.0) and r["bg_x"] == 0


def test_pipeline_segment_takes_engine_and_memory_limit(tmp_path, example_run, ooc_run):
    """`segment: {engine: duckdb, memory_limit: 1GB}` in pipeline.yaml: the run (the session's
    ooc_run, this very setting) gives the pandas run's numbers; a limit that is no size is
    exit 2 naming the file's key."""
    import shutil

    from custtool.errors import ConfigError
    from custtool.pipeline import load_pipeline

    folder, pandas_run = example_run
    work = tmp_path / "examples"
    shutil.copytree(folder / "examples", work)
    yaml = work / "pipeline.yaml"
    text = yaml.read_text(encoding="utf-8")
    assert "  window: 365d" in text
    yaml.write_text(
        text.replace("  window: 365d", "  window: 365d\n  engine: duckdb\n  memory_limit: 1GB"),
        encoding="utf-8",
    )
    assert load_pipeline(yaml).steps["segment"]["memory_limit"] == "1GB"
    duck_run = ooc_run
    assert duck_run["orders_engine"]["engine"] == "duckdb"
    assert duck_run["orders_engine"]["memory_limit"] == 1_000_000_000
    # every step's row counts (segment, tag, follow-ups, report, cards) are the pandas run's
    got = [(s["step"], s.get("rows")) for s in duck_run["steps"]]
    assert got == [(s["step"], s.get("rows")) for s in pandas_run["steps"]]
    assert "segment" in dict(got) and duck_run["nps"] == pandas_run["nps"]
    bad = work / "bad.yaml"
    bad.write_text(text.replace("  window: 365d", "  memory_limit: lots"), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_pipeline(bad)
    assert "segment.memory_limit" in str(err.value)


def test_the_spill_folder_is_removed_afterwards(tmp_path, monkeypatch):
    import tempfile

    customers, orders = messy_orders("naive")
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path, index=False)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen = []
    from custtool.engines import seam

    real = seam.DuckRunner.close

    def close(self):
        seen.append(Path(self._tmp.name))
        assert seen[0].parent == scratch and seen[0].exists()
        real(self)

    monkeypatch.setattr(seam.DuckRunner, "close", close)
    customer_metrics(path, customers, engine="duckdb", memory_limit="256MB")
    assert seen and not seen[0].exists() and not list(scratch.iterdir())


@pytest.mark.parametrize("time_form", ["naive", "utc", "text", "text_offset"])
def test_streamed_attributed_orders_equal_the_joined_query(tmp_path, monkeypatch, time_form):
    """DuckDB writes the attributed orders by streaming the order file once in file order
    (seam._stream_attributed; batches of 64 rows here, so every batch boundary, skipped row
    and duplicate is crossed): the file is the one the joined, sorted query writes (Spark's
    path), column for column and row for row, and its rows are the pandas engine's."""
    from custtool.engines import seam

    customers, orders = messy_orders(time_form)
    path = tmp_path / "orders.parquet"
    # row groups of 50 rows: DuckDB scans them on several threads (out of order unless told)
    orders.to_parquet(path, index=False, row_group_size=50)
    as_of = "2025-03-01"  # rows after it, rows with no time, unmatched rows: all left out
    monkeypatch.setattr(seam, "STREAM_ROWS", 64)
    streamed, joined = tmp_path / "streamed.parquet", tmp_path / "joined.parquet"
    _, rd = customer_metrics(path, customers, as_of=as_of, engine="duckdb", attributed_to=streamed)
    monkeypatch.setattr(seam.DuckRunner, "streams_in_order", False)
    customer_metrics(path, customers, as_of=as_of, engine="duckdb", attributed_to=joined)
    a, b = pd.read_parquet(streamed), pd.read_parquet(joined)
    assert len(a) == rd.rows_used > 15 * 64
    pd.testing.assert_frame_equal(a, b)
    _, rp = customer_metrics(orders, customers, as_of=as_of, engine="pandas")
    from custtool.segment import attributed_orders

    want = attributed_orders(orders, rp)
    cols = ["customer_id", "source_customer_id", "match_key", "amount", "in_window"]
    pd.testing.assert_frame_equal(
        a[cols].astype(str), want[cols].reset_index(drop=True).astype(str), check_dtype=False
    )


def test_streamed_attributed_orders_with_no_row_used(tmp_path, monkeypatch):
    """No order matches a customer: the streamed file is empty with the query's columns and
    types (what report, cards and pivot read)."""
    from custtool.engines import seam

    customers, orders = messy_orders("naive")
    orders["customer_id"] = "NOPE" + orders.index.astype(str)
    orders["phone"] = ""
    orders["email"] = ""
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path, index=False, row_group_size=50)
    streamed, joined = tmp_path / "streamed.parquet", tmp_path / "joined.parquet"
    _, rd = customer_metrics(
        path, customers, as_of="2025-03-01", engine="duckdb", attributed_to=streamed
    )
    monkeypatch.setattr(seam.DuckRunner, "streams_in_order", False)
    customer_metrics(path, customers, as_of="2025-03-01", engine="duckdb", attributed_to=joined)
    a, b = pd.read_parquet(streamed), pd.read_parquet(joined)
    assert rd.rows_used == len(a) == 0 and rd.rows_unmatched > 0
    pd.testing.assert_frame_equal(a, b)
