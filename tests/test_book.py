"""The customer book (issue 16): real DuckDB files, no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from custtool import book as B
from custtool.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def _customers(rows):
    """A tiny final per-customer table: id, phone, tier, rfm_class, lifecycle, tags."""
    return pd.DataFrame(
        rows, columns=["customer_id", "phone", "tier", "rfm_class", "lifecycle", "tags"]
    )


RUN1 = _customers(
    [
        ("C1", "13800000001", "高价值", "重要价值客户", "成熟", ["高消费"]),
        ("C2", "13800000002", "低价值", "一般挽留客户", "流失", []),
        ("C3", "13800000003", "中价值", "一般发展客户", "成长", ["新客", "活跃"]),
    ]
)
RUN2 = _customers(
    [
        ("C1", "13800000009", "中价值", "重要挽留客户", "沉睡", []),  # phone changed, fell
        ("C2", "13800000002", "中价值", "一般挽留客户", "流失", []),  # up one tier
        ("C4", "13800000004", "低价值", "一般发展客户", "新客户", ["新客"]),  # new; C3 lost
    ]
)


def _count(path, sql):
    return B.query(path, sql).frame.iloc[0, 0]


def test_versions_tags_and_compare_hand_checked(tmp_path):
    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={"customers": 3.0}, fields=["phone"])
    r = B.append_run(path, RUN2, as_of="2026-10-31", kpis={"customers": 3.0}, fields=["phone"])
    assert r.rows["customer_versions"] == 2  # C1's new phone, C4
    versions = B.query(
        path, "SELECT customer_id, phone, valid_from, valid_to FROM customers ORDER BY ALL"
    ).to_dict()["rows"]
    assert versions == [
        {
            "customer_id": "C1",
            "phone": "13800000001",
            "valid_from": "2026-09-30",
            "valid_to": "2026-10-31",
        },
        {"customer_id": "C1", "phone": "13800000009", "valid_from": "2026-10-31", "valid_to": None},
        {"customer_id": "C2", "phone": "13800000002", "valid_from": "2026-09-30", "valid_to": None},
        {
            "customer_id": "C3",
            "phone": "13800000003",
            "valid_from": "2026-09-30",
            "valid_to": "2026-10-31",
        },
        {"customer_id": "C4", "phone": "13800000004", "valid_from": "2026-10-31", "valid_to": None},
    ]
    assert _count(path, "SELECT count(*) FROM tags WHERE as_of = '2026-09-30'") == 3
    c = B.compare(path, "2026-09-30", "2026-10-31").to_dict()
    assert c["from"] == "2026-09-30" and c["to"] == "2026-10-31"
    assert c["new"] == 1 and c["lost"] == 1
    assert c["tier"]["matrix"] == {
        "高价值": {"中价值": 1},
        "中价值": {"（已不在）": 1},
        "低价值": {"中价值": 1},
        "（新增）": {"低价值": 1},
    }
    assert (c["tier"]["up"], c["tier"]["down"]) == (1, 1)  # C2 up, C1 down
    assert c["rfm_class"]["matrix"]["重要价值客户"] == {"重要挽留客户": 1}
    assert c["lifecycle"]["down"] == 1  # 成熟 → 沉睡


def test_rerun_same_as_of_is_idempotent_and_older_refused(tmp_path):
    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={"customers": 3.0}, fields=["phone"])
    B.append_run(
        path, RUN2, as_of="2026-10-31", kpis={"customers": 3.0, "nps": 5.0}, fields=["phone"]
    )
    counts = {t: _count(path, f"SELECT count(*) FROM {t}") for t in B.TABLES}
    again = B.append_run(
        path, RUN2, as_of="2026-10-31", kpis={"customers": 3.0, "nps": 5.0}, fields=["phone"]
    )
    assert again.replaced
    assert {t: _count(path, f"SELECT count(*) FROM {t}") for t in B.TABLES} == counts
    assert counts["runs"] == 2 and counts["customers"] == 5
    assert [r["nps"] for r in B.trend(path).to_dict()["runs"]] == [None, 5.0]
    with pytest.raises(B.BookError, match="later run"):
        B.append_run(path, RUN1, as_of="2026-08-31", kpis={}, fields=["phone"])
    assert {t: _count(path, f"SELECT count(*) FROM {t}") for t in B.TABLES} == counts


def test_a_failed_append_leaves_the_book_as_it_was(tmp_path):
    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={"customers": 3.0}, fields=["phone"])

    def boom():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        B.append_run(path, RUN2, as_of="2026-10-31", kpis={}, fields=["phone"], on_written=boom)
    assert B.runs(path) == ["2026-09-30"]
    assert _count(path, "SELECT count(*) FROM customers WHERE valid_to IS NOT NULL") == 0


def test_a_manifest_function_is_the_runs_row_and_its_error_rolls_back(tmp_path):
    """The run hands the book a function for its manifest (it sizes outputs still being
    written while the book takes the customers): called once, inside the transaction;
    an error there leaves the book as it was."""
    path = tmp_path / "b.duckdb"
    calls = []

    def manifest():
        calls.append(1)
        return {"version": "9.9", "rows": {"import": 3}, "outputs": [{"file": "a", "bytes": 7}]}

    B.append_run(path, RUN1, as_of="2026-09-30", kpis={"customers": 3.0}, manifest=manifest)
    assert calls == [1]
    row = B.query(path, "SELECT version, rows, manifest FROM runs").to_dict()["rows"][0]
    assert row["version"] == "9.9" and json.loads(row["rows"]) == {"import": 3}
    assert json.loads(row["manifest"])["outputs"] == [{"file": "a", "bytes": 7}]

    def failing():
        raise OSError("customers.csv: disk full")

    with pytest.raises(OSError, match="disk full"):
        B.append_run(path, RUN2, as_of="2026-10-31", kpis={}, fields=["phone"], manifest=failing)
    assert B.runs(path) == ["2026-09-30"]
    assert _count(path, "SELECT count(*) FROM customers WHERE valid_from = '2026-10-31'") == 0
    assert _count(path, "SELECT count(*) FROM customers WHERE valid_to IS NOT NULL") == 0


KILL_SCRIPT = """
import sys, time, pandas as pd
from custtool import book as B
df = pd.DataFrame({"customer_id": [f"C{i}" for i in range(5000)], "phone": "1380000", "tier": "低价值",
                   "rfm_class": "", "lifecycle": "潜在", "tags": [["x"]] * 5000})
def stop():
    print("written", flush=True)
    time.sleep(60)
B.append_run(sys.argv[1], df, as_of="2026-10-31", kpis={"customers": 5000.0}, fields=["phone"],
             on_written=stop)
"""


def _spawn(code, *args):
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )


def test_kill_9_during_the_append_leaves_the_book_as_it_was(tmp_path):
    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={"customers": 3.0}, fields=["phone"])
    proc = _spawn(KILL_SCRIPT, str(path))
    try:
        assert proc.stdout.readline().strip() == "written"  # every row written, not committed
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert B.runs(path) == ["2026-09-30"]
    assert {t: _count(path, f"SELECT count(*) FROM {t}") for t in B.TABLES} == {
        "runs": 1,
        "customers": 3,
        "segments": 3,
        "tags": 3,
        "kpis": 1,
        "followups": 0,
    }
    # and the book still takes the next run
    B.append_run(path, RUN2, as_of="2026-10-31", kpis={"customers": 3.0}, fields=["phone"])
    assert B.runs(path) == ["2026-09-30", "2026-10-31"]


HOLD_SCRIPT = """
import sys, time
from custtool import book as B
con = B.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_waits_then_exit_2(tmp_path):
    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={"customers": 3.0}, fields=["phone"])
    holder = _spawn(HOLD_SCRIPT, str(path))
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(B.BookBusyError, match="in use by another process"):
            B.append_run(path, RUN2, as_of="2026-10-31", kpis={}, fields=["phone"], wait=0.6)
        assert 0.5 <= time.monotonic() - t0 < 10
        out = tmp_path / "out"
        (out / "2026-10-31").mkdir(parents=True)
        RUN2.to_parquet(out / "2026-10-31" / "customers.parquet")
        r = runner.invoke(app, ["book", "import", str(out), "--book", str(path), "--wait", "0.3"])
        assert r.exit_code == 2 and "in use by another process" in r.stderr
        assert "Traceback" not in r.output + r.stderr
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert B.runs(path) == ["2026-09-30"]  # nothing damaged


def test_query_is_read_only_and_json_shaped(tmp_path):
    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={"customers": 3.0}, fields=["phone"])
    for sql in ("DELETE FROM runs", "DROP TABLE tags", f"COPY runs TO '{tmp_path / 'x.csv'}'"):
        r = runner.invoke(app, ["query", sql, "--book", str(path)])
        assert r.exit_code == 2, (sql, r.output)
        assert "read-only" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.csv").exists()
    r = runner.invoke(
        app,
        [
            "query",
            "SELECT tier, count(*) AS n FROM segments GROUP BY tier ORDER BY tier",
            "--book",
            str(path),
            "--json",
        ],
    )
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {
        "columns": ["tier", "n"],
        "rows": [
            {"tier": "中价值", "n": 1},
            {"tier": "低价值", "n": 1},
            {"tier": "高价值", "n": 1},
        ],
    }
    assert B.runs(path) == ["2026-09-30"]


def test_pipeline_book_kpis_are_the_report_and_manifest_figures(example_run):
    from custtool.report.workbook import kpis
    from custtool.segment import segment_summary

    work, manifest = example_run
    path = Path(manifest["book"])
    assert path == work / "out" / "custtool.duckdb" and path.exists()
    folder = Path(manifest["folder"])
    final = pd.read_parquet(folder / "customers.parquet")
    run = B.trend(path).to_dict()["runs"][-1]
    assert run["as_of"] == manifest["as_of"]
    assert run["customers"] == manifest["rows"]["segment"]["customers"] == len(final)
    assert run["nps"] == manifest["nps"]["nps"]
    assert run["satisfaction"] == manifest["nps"]["satisfaction_mean"]
    report = kpis(final, nps=manifest["nps"])  # the report's 概览 figures
    for k in ("customers", "active", "revenue", "aov", "repurchase"):
        assert run[k] == pytest.approx(report[k]), k
    summ = segment_summary(pd.read_parquet(folder / "segmented.parquet"))
    tiers = summ[summ["dimension"] == "tier"].set_index("segment")["customer_share"]
    assert run["tier_share"] == pytest.approx(tiers.round(4).to_dict())
    assert sum(run["tier_share"].values()) == pytest.approx(100)
    assert manifest["book_rows"]["segments"] == len(final)
    # the book's copy of the manifest is manifest.json's (less the book's own row counts),
    # its outputs sized after every file was written: the sizes on disk
    stored = B.query(path, f"SELECT manifest FROM runs WHERE as_of = '{run['as_of']}'")
    stored = json.loads(stored.frame.iloc[0, 0])
    on_disk = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert stored["outputs"] == on_disk["outputs"]
    assert {k: v for k, v in on_disk.items() if k != "book_rows"} == {
        k: v for k, v in stored.items() if k not in ("started", "finished")
    }
    for o in on_disk["outputs"]:
        assert (folder / o["file"]).stat().st_size == o["bytes"], o["file"]
    n_tags = int(final["tags"].map(len).sum())
    assert B.query(path, "SELECT count(*) FROM tags").frame.iloc[0, 0] == n_tags


def test_book_import_and_trend_cli_equal_library(example_run, tmp_path):
    work, manifest = example_run
    target = tmp_path / "imported.duckdb"
    r = runner.invoke(app, ["book", "import", str(work / "out"), "--book", str(target), "--json"])
    assert r.exit_code == 0, r.output
    assert [x["as_of"] for x in json.loads(r.stdout)["runs"]] == [manifest["as_of"]]
    imported = B.trend(target).to_dict()["runs"]
    from_run = B.trend(manifest["book"]).to_dict()["runs"]
    assert imported == from_run  # the same KPIs from a folder as from the run itself
    r = runner.invoke(app, ["trend", "--book", str(target), "--json"])
    assert json.loads(r.stdout) == json.loads(json.dumps(B.trend(target).to_dict()))


def test_book_false_turns_it_off(tmp_path):
    from custtool.pipeline import load_pipeline

    y = tmp_path / "p.yaml"
    y.write_text("inputs:\n  orders: [o.csv]\nbook: false\n", encoding="utf-8")
    (tmp_path / "o.csv").write_text("order_id\n1\n", encoding="utf-8")
    assert load_pipeline(y).book is None
    y.write_text("inputs:\n  orders: [o.csv]\nbook: hist/b.duckdb\n", encoding="utf-8")
    assert load_pipeline(y).book == tmp_path / "hist" / "b.duckdb"
    y.write_text("inputs:\n  orders: [o.csv]\nout: runs\n", encoding="utf-8")
    assert load_pipeline(y).book == tmp_path / "runs" / "custtool.duckdb"


def test_report_trend_and_migration_sheets_read_the_book(example_run, tmp_path):
    """趋势 shows the book's KPIs per run; 迁移's tier matrix is `compare`'s."""
    import warnings

    from openpyxl import load_workbook

    from custtool.report import write_workbook

    work, manifest = example_run
    now = pd.read_parquet(Path(manifest["folder"]) / "customers.parquet")
    before = now.copy()
    before.loc[before.index[:5], "tier"] = "高价值"  # five customers were 高价值 last month
    before = before.iloc[:-2]  # two customers are new this month
    path = tmp_path / "b.duckdb"
    for as_of, frame in (("2026-09-30", before), ("2026-10-30", now)):
        B.append_run(path, frame, as_of=as_of, kpis=B.run_kpis(frame, nps=manifest["nps"]))
    runs = B.trend(path).runs
    cmp = B.compare(path, "2026-09-30", "2026-10-30").to_dict()
    out = tmp_path / "r.xlsx"
    write_workbook(now, out, previous=before, trend=runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wb = load_workbook(out, read_only=True)
    rows = list(wb["趋势"].iter_rows(min_row=3, max_row=4, values_only=True))
    assert [r[0] for r in rows] == ["2026-09-30", "2026-10-30"]
    assert [r[1] for r in rows] == [r["customers"] for r in runs] == [len(before), len(now)]
    assert [r[5] for r in rows] == pytest.approx([r["repurchase"] for r in runs])
    cells = list(wb["迁移"].iter_rows(values_only=True))
    start = next(i for i, r in enumerate(cells) if r[0] == "价值层级迁移（行：上期，列：本期）")
    head = cells[start + 1]
    sheet = {}
    for r in cells[start + 2 :]:
        if r[0] is None:
            break
        sheet[r[0]] = {h: n for h, n in zip(head[1:], r[1:], strict=False) if h and n}
    assert sheet == cmp["tier"]["matrix"]
    assert sum(sheet["（新增）"].values()) == cmp["new"] == 2


def test_importing_the_same_run_twice_is_idempotent(example_run, tmp_path):
    work, manifest = example_run
    path = tmp_path / "b.duckdb"
    first = B.import_runs(work / "out", path)
    counts = {t: _count(path, f"SELECT count(*) FROM {t}") for t in B.TABLES}
    kpis = B.trend(path).to_dict()
    second = B.import_runs(work / "out", path)
    assert [r.replaced for r in first] == [False] and [r.replaced for r in second] == [True]
    assert {t: _count(path, f"SELECT count(*) FROM {t}") for t in B.TABLES} == counts
    assert B.trend(path).to_dict() == kpis
    assert counts["runs"] == 1 and counts["customers"] == manifest["rows"]["segment"]["customers"]


def test_compare_writes_the_moves(tmp_path):
    from custtool.steps import run_compare

    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={}, fields=["phone"])
    B.append_run(path, RUN2, as_of="2026-10-31", kpis={}, fields=["phone"])
    out = tmp_path / "moves.csv"
    r = run_compare("2026-09-30", "2026-10-31", book=path, output=out)
    moves = pd.read_csv(out)
    tier = moves[moves["dimension"] == "tier"].sort_values("customer_id")
    assert tier[["customer_id", "before", "now", "direction"]].values.tolist() == [
        ["C1", "高价值", "中价值", "down"],
        ["C2", "低价值", "中价值", "up"],
    ]
    assert r.data["tier"]["up"] == 1 and r.data["written"] == str(out)
    with pytest.raises(Exception, match="no run as of 2026-01-31"):
        run_compare("2026-01-31", "2026-10-31", book=path)


def test_book_commands_on_the_command_line_quiet_and_piped(tmp_path):
    # compare -o moves.csv --quiet printed its four matrices on stdout anyway, and compare's
    # and query's tables were drawn with box characters when piped (print_table's are plain)
    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={}, fields=["phone"])
    B.append_run(path, RUN2, as_of="2026-10-31", kpis={}, fields=["phone"])
    out = tmp_path / "moves.csv"
    args = ["compare", "2026-09-30", "2026-10-31", "--book", str(path)]
    r = runner.invoke(app, [*args, "-o", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert r.output == "" and out.exists()
    for cmd in (args, ["query", "SELECT as_of FROM runs", "--book", str(path)]):
        p = subprocess.run(  # stdout a pipe
            [sys.executable, "-m", "custtool", *cmd], capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 0, p.stderr
        assert "tier" in p.stdout or "as_of" in p.stdout
        assert not set(p.stdout) & set("┏┃━│└┡"), p.stdout


def _book_rows(path, table, cols):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        names = ", ".join(f'"{c}"' for c in cols)
        return con.execute(f"SELECT {names} FROM {table} ORDER BY ALL").df()
    finally:
        con.close()


def test_append_profile_cells_hand_checked(tmp_path):
    """The snapshot is built column by column: dates as text without 00:00:00, ID numbers and
    bank cards masked (also inside free text), missing as NULL."""
    df = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "id_number": ["110101199003071234", None],
            "birthday": pd.to_datetime(["1990-03-07", "2001-01-02 10:30"], format="ISO8601"),
            "city": ["北京", None],
            "note": ["卡号 6222021234567890123 请回电", "ok"],
            "tier": ["高价值", "低价值"],
        }
    )
    path = tmp_path / "b.duckdb"
    B.append_run(path, df, as_of="2026-09-30", kpis={"customers": 2.0})
    got = B.query(
        path, "SELECT customer_id, id_number, birthday, city, note FROM customers ORDER BY 1"
    ).to_dict()["rows"]
    assert got == [
        {
            "customer_id": "C1",
            "id_number": "110***********1234",
            "birthday": "1990-03-07",
            "city": "北京",
            "note": "卡号 6222***********0123 请回电",
        },
        {
            "customer_id": "C2",
            "id_number": "",
            "birthday": "2001-01-02 10:30:00",
            "city": None,
            "note": "ok",
        },
    ]
    seg = B.query(path, "SELECT customer_id, tier FROM segments ORDER BY 1").to_dict()["rows"]
    assert seg == [{"customer_id": "C1", "tier": "高价值"}, {"customer_id": "C2", "tier": "低价值"}]


def test_append_equals_the_whole_table_conversion(example_tagged, tmp_path):
    """The book's customers and segments rows equal those of the former whole-table way
    (mask_frame of every profile column at once, one pandas frame, then Arrow) on the
    examples' tagged table: the column-by-column snapshot changes memory, not rows."""
    import pyarrow as pa

    from custtool.report.masking import mask_frame

    cust = example_tagged.reset_index(drop=True)
    fields = [f for f in B.profile_fields(cust) if f in cust.columns]
    assert len(fields) > 10
    path = tmp_path / "b.duckdb"
    B.append_run(path, cust, as_of="2026-09-30", kpis={"customers": float(len(cust))})
    got = _book_rows(path, "customers", ["customer_id", *fields])

    ids = cust["customer_id"].astype("string").fillna("")
    prof = mask_frame(cust[fields], mask=False)
    ref_cols = {"customer_id": ids}
    for c in fields:
        s = prof[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            s = s.dt.strftime("%Y-%m-%d %H:%M:%S").str.replace(" 00:00:00", "", regex=False)
        ref_cols[c] = s.astype("string")
    ref_path = tmp_path / "ref.duckdb"
    import duckdb

    con = duckdb.connect(str(ref_path))
    con.register("_snap", pa.Table.from_pandas(pd.DataFrame(ref_cols), preserve_index=False))
    con.execute("CREATE TABLE customers AS SELECT * FROM _snap")
    seg_cols = {"customer_id": ids}
    for c, kind in B.SEGMENT_COLUMNS.items():
        if c in cust.columns:
            seg_cols[c] = cust[c].astype("string") if kind == "VARCHAR" else cust[c]
    con.register("_seg", pa.Table.from_pandas(pd.DataFrame(seg_cols), preserve_index=False))
    con.execute("CREATE TABLE seg AS SELECT * FROM _seg")
    ref = con.execute("SELECT * FROM customers ORDER BY ALL").df()
    ref_seg = con.execute("SELECT * FROM seg ORDER BY ALL").df()
    con.close()
    assert len(got) == len(cust)
    pd.testing.assert_frame_equal(got, ref)
    got_seg = _book_rows(path, "segments", list(ref_seg.columns))
    for c in ("first_order", "last_order"):  # the book's TIMESTAMP is µs, the copy's ns
        ref_seg[c] = ref_seg[c].astype("datetime64[us]")
        got_seg[c] = got_seg[c].astype("datetime64[us]")
    assert got_seg["first_order"].notna().sum() > 100
    pd.testing.assert_frame_equal(got_seg, ref_seg, check_dtype=False)


@pytest.mark.parametrize("wait", ["nan", "-5", "inf", "1e9"])
def test_book_import_refuses_a_wait_that_is_not_seconds(tmp_path, wait):
    # --wait nan / -5 were taken (nan: no wait at all; -5: a deadline already past)
    from typer.testing import CliRunner

    from custtool.cli import app

    r = CliRunner().invoke(app, ["book", "import", str(tmp_path), "--wait", wait])
    assert r.exit_code == 2, r.output
    assert "--wait" in r.stderr and "Hint:" in r.stderr
    assert not list(tmp_path.iterdir())  # no book made


def test_query_output_is_masked_like_every_export(tmp_path):
    # query -o x.csv / --json / --csv wrote phones in clear: an export like any other
    path = tmp_path / "b.duckdb"
    B.append_run(path, RUN1, as_of="2026-09-30", kpis={"customers": 3.0}, fields=["phone"])
    sql = "SELECT customer_id, phone, 'call ' || phone AS note FROM customers ORDER BY 1"
    out = tmp_path / "q.csv"
    shown = {}
    for how in (["--json"], ["--csv"], ["-o", str(out)], []):
        r = runner.invoke(app, ["query", sql, "--book", str(path), *how])
        assert r.exit_code == 0, r.output
        shown[how[0] if how else "table"] = r.stdout
    text = json.dumps(json.loads(shown["--json"]), ensure_ascii=False)
    saved = out.read_text(encoding="utf-8-sig")
    for place in (text, shown["--csv"], saved, shown["table"]):
        assert "13800000001" not in place and "138****0001" in place, place
    rows = json.loads(shown["--json"])["rows"]
    assert rows[0]["note"] == "call 138****0001"  # a phone inside other text, by content
    # --no-mask (admin, the default role) shows them; a role that may not unmask is refused
    r = runner.invoke(app, ["query", sql, "--book", str(path), "--no-mask", "--json"])
    assert json.loads(r.stdout)["rows"][0]["phone"] == "13800000001"
    r = runner.invoke(app, ["query", sql, "--book", str(path), "--no-mask", "--role", "analyst"])
    assert r.exit_code == 2 and "analyst" in r.stderr
