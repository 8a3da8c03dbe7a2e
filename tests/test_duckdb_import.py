"""The batched orders import (``--engine duckdb``) gives the pandas engine's output exactly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from custtool.cli import app
from custtool.engines.duckdb_import import batch_rows, import_streamed
from custtool.errors import InputError
from custtool.ingest import import_files

ROOT = Path(__file__).resolve().parents[1]
HEADER = ["订单编号", "会员ID", "手机号码", "付款时间", "实付金额", "订单状态", "商品名称", "备注"]


def messy_rows() -> list[list[str]]:
    """Order lines as shops export them: every case the normalisers and checks know."""
    rows = [
        [
            "D001",
            "M01",
            "13800138000",
            "2024-01-05 10:30:00",
            '"￥1,200.50"',
            "交易成功",
            "茶",
            "a",
        ],
        ["D002", "M02", "", "2024/1/6", "１２３", "交易成功", "茶", ""],  # full-width digits
        ["D003", "", "138 0013 8001", "2024年1月7日", "300元", "", "壶", ""],
        ["D004", "M03", "", "2024-02-30", "50", "交易成功", "杯", ""],  # impossible date
        ["D005", "M04", "", "45300", "(80.00)", "交易成功", "杯", ""],  # Excel serial, negative
        ["", "", "", "", "", "", "", ""],  # blank
        ["D006", "", "", "2024-01-08", "99", "", "茶", ""],  # no customer key: rejected
        ["D007", "M05", "", "", "99", "", "茶", ""],  # no time: rejected
        ["D008", "M06", "", "2024-01-09", "abc", "", "茶", ""],  # bad amount: rejected
        [
            "D001",
            "M01",
            "13800138000",
            "2024-01-05 10:30:00",
            '"￥1,200.50"',
            "交易成功",
            "茶",
            "a",
        ],
        ["D009", "M07", "", "2024-01-10T08:00:00+00:00", "1.2万", "交易成功", "礼盒", ""],
        ["D002", "M02", "", "2024-01-20", "-123", "已退款", "茶", ""],  # refund, sale above
        ["D777", "M08", "", "2024-01-21", "60", "退款", "茶", ""],  # refund without any sale
        ["D010", "M09", "abc", "20240111", '"12,500.00"', "？？", "茶", ""],  # bad phone, bool
        ["合计", "", "", "", "15000", "", "", ""],  # totals row
        ["D011", "M10", "", "2024-01-12", "RMB 88", "交易成功", "茶", ""],
        ["  ", " ", "", "", "", "", "", ""],  # blank after stripping
        ["D012", "M11", "", "2024-01-13 25:00:00", "10", "", "茶", ""],  # bad hour
    ]
    # refunds whose sale is many rows (so batches) away, and a sale after its refund
    rows += [
        [f"E{i:03d}", f"M2{i}", "", "2024-03-01", str(10 + i), "", "茶", ""] for i in range(30)
    ]
    rows += [["E005", "M25", "", "2024-03-05", "-15", "已退款", "茶", ""]]
    rows += [["F001", "M30", "", "2024-03-06", "-40", "", "茶", ""]]  # refund first …
    rows += [[f"G{i:03d}", f"M4{i}", "", "2024-03-02", "5", "", "茶", ""] for i in range(20)]
    rows += [["F001", "M30", "", "2024-03-01", "40", "", "茶", ""]]  # … its sale later
    rows += [["F002", "M31", "", "2024-03-06", "-40", "", "茶", ""]]  # refund, no sale
    return rows


def write(path: Path, rows: list[list[str]], encoding: str, title: bool = True) -> Path:
    lines = (["2024年1月 订单明细 导出", ""] if title else []) + [",".join(HEADER)]
    lines += [",".join(r) for r in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def pandas_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """A frame as the pandas engine's Parquet output reads back."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return pd.read_parquet(buf)


def assert_same(
    files: list[Path], out: Path, kind: str = "orders", as_written: bool = False, **kw
) -> tuple:
    """Both engines on ``files``: the same output, rejects lines, accounting and warnings
    (``as_written``: the rejects compared as the rejects file writes them, a missing value
    as "")."""
    expected = import_files(files, kind=kind)
    got = import_streamed(files, output=out, kind=kind, **kw)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pandas_parquet(expected.data))
    want, have = (r.rejects.reset_index(drop=True) for r in (expected, got))
    if as_written:
        want, have = want.fillna(""), have.fillna("")
    pd.testing.assert_frame_equal(have.astype(str), want.astype(str))
    assert [f.as_dict() for f in got.files] == [f.as_dict() for f in expected.files]
    assert got.totals == expected.totals
    assert got.problem_counts() == expected.problem_counts()
    assert got.warnings == expected.warnings
    return expected, got


@pytest.mark.parametrize(("encoding", "batch"), [("utf-8", 6), ("gbk", 11), ("gbk", 1000)])
def test_messy_orders_same_as_pandas(tmp_path, encoding, batch):
    src = write(tmp_path / "orders.csv", messy_rows(), encoding)
    expected, got = assert_same(
        [src], tmp_path / "out" / "orders.parquet", rows_per_batch=batch, head_bytes=300
    )
    t = expected.totals
    # hand-counted from messy_rows: 2 blank + 1 totals skipped; D004 (bad date → no time),
    # D006 (no key), D007 (no time), D008 (bad amount), D012 (bad hour) rejected
    assert (t["skipped_blank"], t["skipped_total"], t["rejected"]) == (2, 1, 5)
    assert t["rows_read"] == len(messy_rows())
    assert got.files[0].encoding == expected.files[0].encoding
    data = pd.read_parquet(tmp_path / "out" / "orders.parquet")
    flags = dict(zip(data["order_id"] + "@" + data["_row"].astype(str), data["_flags"]))
    # refunds: a sale of the order elsewhere in the file (any batch) clears the flag
    assert "refund_without_order" not in flags["E005@50"]
    assert "refund_without_order" not in flags["F001@51"]
    assert flags["F002@73"] == "refund_without_order"
    assert flags["D777@14"] == "refund_without_order"
    assert data.loc[data["order_id"] == "D777", "amount"].tolist() == [-60.0]
    kept_lines = got.rejects[got.rejects["code"] == "refund_without_order"]
    assert sorted(kept_lines["row"].astype(int)) == [6, 14, 73]  # D005 (-80): no sale of D005
    assert not list((tmp_path / "out").glob(".custtool-spill-*"))  # spill folder removed


def test_batches_need_no_title_rows_and_pad_short_rows(tmp_path):
    rows = [r[:5] if i % 5 == 0 else r for i, r in enumerate(messy_rows())]  # ragged
    rows[40:40] = [[], []]  # two empty lines
    src = write(tmp_path / "o.csv", rows, "utf-8", title=False)
    assert_same([src], tmp_path / "o.parquet", rows_per_batch=6, head_bytes=400)


def test_two_files_and_examples(tmp_path):
    a = write(tmp_path / "a.csv", messy_rows(), "gbk")
    b = ROOT / "examples" / "订单明细.csv"
    assert_same([a, b], tmp_path / "ab.parquet", rows_per_batch=50, head_bytes=500)


def test_examples_orders_same_as_pandas(tmp_path):
    src = ROOT / "examples" / "订单明细.csv"
    assert_same([src], tmp_path / "o.parquet", rows_per_batch=100, head_bytes=2000)


def test_batch_rows_from_memory_limit():
    assert batch_rows(None) == 200_000
    assert batch_rows(1_000_000_000) == 250_000
    assert batch_rows(64_000_000) == 20_000
    assert batch_rows(10**12) == 500_000


def test_cli_engine_duckdb_json_and_outputs(tmp_path):
    src = write(tmp_path / "orders.csv", messy_rows(), "gbk")
    runner = CliRunner()
    common = ["import", str(src), "--kind", "orders", "--json"]
    pd_out, dk_out = tmp_path / "p.parquet", tmp_path / "d.parquet"
    r1 = runner.invoke(app, [*common, "-o", str(pd_out)])
    r2 = runner.invoke(
        app, [*common, "-o", str(dk_out), "--engine", "duckdb", "--memory-limit", "256MB"]
    )
    assert r1.exit_code == 0 and r2.exit_code == 0, r2.output
    j1, j2 = json.loads(r1.stdout), json.loads(r2.stdout)
    assert (j1["engine"], j2["engine"], j2["memory_limit"]) == ("pandas", "duckdb", 256_000_000)
    for key in ("kind", "files", "totals", "problems", "warnings", "privacy"):
        assert j1[key] == j2[key], key
    pd.testing.assert_frame_equal(pd.read_parquet(dk_out), pd.read_parquet(pd_out))
    rej1 = (tmp_path / "p_rejects.csv").read_bytes()
    assert rej1 == (tmp_path / "d_rejects.csv").read_bytes()  # byte for byte
    assert rej1.startswith(b"\xef\xbb\xbffile,sheet,row,")


def test_cli_masked_rejects_same_bytes(tmp_path):
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    common = ["import", str(src), "--kind", "orders", "--mask-rejects"]
    for engine in ("pandas", "duckdb"):
        r = CliRunner().invoke(
            app, [*common, "--engine", engine, "--rejects", str(tmp_path / f"{engine}.csv")]
        )
        assert r.exit_code == 0, r.output
    masked = (tmp_path / "pandas.csv").read_bytes()
    assert masked == (tmp_path / "duckdb.csv").read_bytes()
    assert b"13800138000" not in masked and len(masked.splitlines()) > 5


def test_cli_duckdb_customers_stay_on_pandas(tmp_path):
    src = ROOT / "examples" / "门店会员.csv"
    r = CliRunner().invoke(app, ["import", str(src), "--engine", "duckdb", "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert (j["kind"], j["engine"]) == ("customers", "pandas")
    assert any("streams orders only" in w for w in j["warnings"])


def test_pandas_memory_limit_reads_in_batches(tmp_path):
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    r = CliRunner().invoke(
        app,
        ["import", str(src), "--kind", "orders", "--memory-limit", "100MB", "--json"],
    )
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert (j["engine"], j["memory_limit"]) == ("pandas", 100_000_000)
    assert j["totals"] == import_files([src], kind="orders").totals


def test_memory_limit_too_small_is_exit_2_naming_it(tmp_path):
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    r = CliRunner().invoke(
        app,
        ["import", str(src), "--kind", "orders", "--engine", "duckdb", "--memory-limit", "1MB"],
    )
    assert r.exit_code == 2
    assert "1MB" in r.output


def test_engine_duckdb_writes_parquet_only(tmp_path):
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    r = CliRunner().invoke(
        app,
        [
            "import",
            str(src),
            "--kind",
            "orders",
            "--engine",
            "duckdb",
            "-o",
            str(tmp_path / "o.csv"),
        ],
    )
    assert r.exit_code == 2
    assert "Parquet" in r.output
    assert not (tmp_path / "o.csv").exists()


def test_row_wider_than_the_top_is_a_clear_error(tmp_path):
    rows = [r for r in messy_rows() if r[0] != "D010"]
    rows[30] = [*rows[30], "extra"]  # one field more than any row near the top
    src = write(tmp_path / "o.csv", rows, "utf-8")
    with pytest.raises(InputError, match="o.csv: cannot be read in batches") as err:
        import_streamed([src], output=tmp_path / "o.parquet", rows_per_batch=5, head_bytes=300)
    assert "line 34, saw 9" in str(err.value)  # title, blank line and header come first
    assert "--engine pandas" in err.value.hint
    assert not (tmp_path / "o.parquet").exists()
    assert not list(tmp_path.glob(".custtool-spill-*"))  # removed on failure too


def test_out_of_memory_is_exit_2_naming_the_limit(tmp_path, monkeypatch):
    """DuckDB running out of memory within the limit: exit 2 naming it, nothing written,
    the spill folder gone."""
    import duckdb

    from custtool.engines import duckdb_import

    def too_big(con, stages):
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")

    monkeypatch.setattr(duckdb_import, "_withdraw_cross_batch_refunds", too_big)
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    out = tmp_path / "o.parquet"
    r = CliRunner().invoke(
        app,
        ["import", str(src), "--kind", "orders", "--engine", "duckdb"]
        + ["--memory-limit", "200MB", "-o", str(out), "--temp-dir", str(tmp_path / "spill")],
    )
    assert r.exit_code == 2, r.output
    assert "--memory-limit 200.0MB" in " ".join(r.output.split())
    assert not out.exists() and not (tmp_path / "o_rejects.csv").exists()
    assert list((tmp_path / "spill").iterdir()) == []


def test_real_small_limit_finishes_or_names_it(tmp_path):
    """The smallest limit allowed on a real run: DuckDB spills and finishes."""
    src = write(tmp_path / "orders.csv", messy_rows() * 4, "utf-8")
    assert_same(
        [src], tmp_path / "o.parquet", memory_limit=64_000_000, rows_per_batch=80, head_bytes=300
    )


def test_check_only_counts_problems_like_pandas(tmp_path):
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    expected = import_files([src], kind="orders")
    got = import_streamed([src], output=None, rows_per_batch=20, head_bytes=300)
    assert got.problem_counts() == expected.problem_counts()
    assert got.problem_counts()["refund_without_order"] == 3  # D005, D777, F002
    assert got.totals == expected.totals
    assert list(got.data.columns) == list(expected.data.columns)


def test_every_row_rejected(tmp_path):
    rows = [["D1", "", "", "2024-01-05", "10", "", "茶", ""]] * 30  # no customer key
    src = write(tmp_path / "orders.csv", rows, "utf-8")
    expected, got = assert_same([src], tmp_path / "o.parquet", rows_per_batch=7, head_bytes=200)
    assert got.totals["rejected"] == 30 and got.totals["accepted"] == 0


def test_workbook_sheets_same_as_pandas(tmp_path):
    """A workbook is imported sheet by sheet (each whole): two sheets, refunds per sheet."""
    rows = messy_rows()
    book = tmp_path / "orders.xlsx"
    with pd.ExcelWriter(book) as xw:
        pd.DataFrame(rows[:40], columns=HEADER).to_excel(xw, sheet_name="一月", index=False)
        pd.DataFrame(rows[40:], columns=HEADER).to_excel(xw, sheet_name="二月", index=False)
    expected, got = assert_same([book], tmp_path / "o.parquet", rows_per_batch=5)
    assert [f.sheet for f in got.files] == ["一月", "二月"]
    # F001's refund (二月) and its sale (二月): no flag; E005's sale is in 一月: flagged
    data = pd.read_parquet(tmp_path / "o.parquet")
    e005 = data[(data["order_id"] == "E005") & (data["amount"] < 0)]
    assert e005["_flags"].tolist() == ["refund_without_order"]


def test_regular_files_take_pyarrows_reader_ragged_ones_pandas(tmp_path, monkeypatch):
    encoding = "gbk"
    from custtool.engines import duckdb_import

    used = []
    pandas_reader = duckdb_import._csv_batches
    monkeypatch.setattr(
        duckdb_import, "_csv_batches", lambda *a: used.append(1) or pandas_reader(*a)
    )
    src = write(tmp_path / "o.csv", messy_rows(), encoding)
    assert_same([src], tmp_path / "o.parquet", rows_per_batch=9, head_bytes=300)
    assert used == []
    ragged = messy_rows()
    ragged[60] = ragged[60][:3]  # far below the top: found while reading, read again
    src = write(tmp_path / "r.csv", ragged, encoding)
    assert_same([src], tmp_path / "r.parquet", rows_per_batch=9, head_bytes=300)
    assert used == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "o.csv",
        "o.parquet",
        "r.csv",
        "r.parquet",
    ]


def test_same_file_twice_warns_like_pandas(tmp_path):
    src = write(tmp_path / "o.csv", messy_rows(), "utf-8")
    expected, got = assert_same(
        [src, src], tmp_path / "o.parquet", rows_per_batch=20, head_bytes=300
    )
    assert any("named twice" in w for w in got.warnings)
    assert got.totals["rows_read"] == 2 * len(messy_rows())


def test_customers_in_batches_same_as_pandas(tmp_path):
    """What --memory-limit does with the pandas engine: customers read in batches."""
    src = ROOT / "examples" / "门店会员.csv"
    expected, got = assert_same(
        [src], tmp_path / "c.parquet", kind="customers", rows_per_batch=40, head_bytes=1500
    )
    assert got.totals["rows_read"] > 120  # several batches


def test_cli_duckdb_detects_orders_without_kind(tmp_path):
    src = write(tmp_path / "orders.csv", messy_rows(), "gbk")
    r = CliRunner().invoke(app, ["import", str(src), "--engine", "duckdb", "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert (j["kind"], j["engine"]) == ("orders", "duckdb")
    assert j["totals"] == import_files([src]).totals


def test_duckdb_gets_two_thirds_of_the_limit():
    from custtool.engines.duckdb_import import _duckdb_share

    assert _duckdb_share(None) is None
    assert _duckdb_share(1_500_000_000) == 1_000_000_000
    assert _duckdb_share(64_000_000) == 64_000_000  # never below the minimum


def test_refunds_withdrawn_across_batches_are_those_sold_in_another(tmp_path, monkeypatch):
    """The ids whose refund flag goes are exactly the flagged ones sold in another batch
    (D002 and E005 sold batches up, F001 sold after its refund), not every id sold; the batches'
    DuckDB is closed before the one looking across them opens."""
    from custtool.engines import duckdb_import

    found, opened, closed = [], [], []
    withdraw = duckdb_import._withdraw_cross_batch_refunds
    monkeypatch.setattr(
        duckdb_import,
        "_withdraw_cross_batch_refunds",
        lambda con, stages: found.append(withdraw(con, stages)) or found[-1],
    )
    connect = duckdb_import.duckdb_connect

    def tracked(*a, **kw):
        if opened:  # the batches' connection, closed by now?
            try:
                opened[0].execute("SELECT 1")
                closed.append(False)
            except Exception:  # noqa: BLE001 - DuckDB's "connection already closed"
                closed.append(True)
        opened.append(connect(*a, **kw))
        return opened[-1]

    monkeypatch.setattr(duckdb_import, "duckdb_connect", tracked)
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    assert_same([src], tmp_path / "o.parquet", rows_per_batch=6, head_bytes=300)
    ((position, ids),) = found[0].items()
    assert position == 0 and sorted(ids.to_pylist()) == ["D002", "E005", "F001"]
    assert len(opened) == 2 and closed == [True]


def test_batches_read_ahead_on_a_thread_in_order():
    """The next batch is read (and prepared) on another thread; batches come in order, an
    error where its batch would come, and stopping early closes the reader."""
    import threading

    from custtool.engines.duckdb_import import _read_ahead

    closed, where = [], []

    def source():
        try:
            for i in range(4):
                if i == 3:
                    raise ValueError("batch 3 unreadable")
                yield i
        finally:
            closed.append(True)

    got = []
    with pytest.raises(ValueError, match="batch 3"):
        for b in _read_ahead(source(), lambda b: where.append(threading.get_ident())):
            got.append(b)
    assert got == [0, 1, 2] and closed == [True]
    assert threading.get_ident() not in where and len(where) == 3
    closed.clear()
    ahead = _read_ahead(source(), lambda b: None)
    assert next(ahead) == 0
    ahead.close()  # the consumer stops: the thread ends, then the reader is closed
    assert closed == [True]
    assert not [t for t in threading.enumerate() if t.name.startswith("custtool-read")]


@pytest.mark.parametrize("batch", [1, 2])
def test_one_row_batches_read_ahead_same_as_pandas(tmp_path, batch):
    """Every batch a row or two (each read and normalised ahead of the one imported):
    rows, rejects lines and refunds across batches as one pandas import gives them."""
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    _, got = assert_same([src], tmp_path / "o.parquet", rows_per_batch=batch, head_bytes=300)
    assert got.totals["flagged"] > 0 and got.totals["rejected"] == 5


def test_refund_lines_name_the_flagged_rows_only():
    from custtool.engines.duckdb_import import REFUND_CODE, _refund_lines
    from custtool.ingest import REJECT_COLUMNS

    frame = pd.DataFrame(
        {
            "_source_file": pd.Series(["a.csv", "b.csv", "c.csv", "d.csv"], dtype="str"),
            "_sheet": pd.Series(["", "s2", "", "s4"], dtype="str"),
            "_row": [2, 3, 4, 5],
        }
    )
    lines = _refund_lines(frame, np.array([1, 3]))
    assert list(lines.columns) == REJECT_COLUMNS
    assert lines["file"].tolist() == ["b.csv", "d.csv"]
    assert lines["sheet"].tolist() == ["s2", "s4"] and lines["row"].tolist() == [3, 5]
    assert (lines["code"] == REFUND_CODE).all() and (lines["action"] == "kept").all()
    assert lines["file"].dtype == object  # as the pandas engine's rejects lines


def test_a_failed_batch_write_on_the_writer_thread_is_raised_and_cleaned_up(tmp_path, monkeypatch):
    """A staged write that fails on its thread (a full disk) fails the import with that
    error; the spill folder is removed and no reader or writer thread is left."""
    import threading

    import pyarrow.parquet as pq

    write_table = pq.ParquetWriter.write_table

    def full_disk(self, table, *a, **kw):
        if threading.current_thread().name.startswith("custtool-stage"):
            raise OSError(28, "No space left on device")
        return write_table(self, table, *a, **kw)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    with pytest.raises(OSError, match="No space left"):
        import_streamed([src], output=tmp_path / "o.parquet", rows_per_batch=6, head_bytes=300)
    assert not (tmp_path / "o.parquet").exists()
    assert not list(tmp_path.glob(".custtool-spill-*"))
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith(("custtool-stage", "custtool-read"))]


def test_memory_freed_by_the_batches_is_released_before_the_pass_across_them(tmp_path, monkeypatch):
    """Between the batches and the pass across them (the import's peak), the memory the
    batches' threads freed is handed back once (memory.release_memory, by rows read)."""
    import custtool.memory
    from custtool.engines import duckdb_import

    calls = []
    monkeypatch.setattr(custtool.memory, "release_memory", lambda rows: calls.append(rows))
    withdraw = duckdb_import._withdraw_cross_batch_refunds
    monkeypatch.setattr(
        duckdb_import,
        "_withdraw_cross_batch_refunds",
        lambda con, stages: calls.append("across") or withdraw(con, stages),
    )
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    got = import_streamed([src], output=tmp_path / "o.parquet", rows_per_batch=6, head_bytes=300)
    assert calls == [got.totals["rows_read"], "across"]


def test_rejects_sorted_with_a_third_of_the_limit():
    from custtool.engines.duckdb_import import _rejects_share

    assert _rejects_share(1_500_000_000) == 500_000_000
    assert _rejects_share(100_000_000) == 64_000_000  # never below the minimum


def test_sales_on_rejected_rows_are_spilled_not_held(tmp_path, monkeypatch):
    """The order ids sold on rejected or skipped rows (the refund rule across batches) are
    appended to a Parquet file in the spill folder, read back by the pass across batches."""
    import pyarrow.parquet as pq

    from custtool.engines import duckdb_import

    spilled = []
    withdraw = duckdb_import._withdraw_cross_batch_refunds

    def across(con, stages):
        out = withdraw(con, stages)  # the writers are closed there
        spilled.extend(
            pq.read_table(s.sold_path).column("order_id").to_pylist() for s in stages if s.sold_rows
        )
        return out

    monkeypatch.setattr(duckdb_import, "_withdraw_cross_batch_refunds", across)
    src = write(tmp_path / "orders.csv", messy_rows(), "utf-8")
    assert_same([src], tmp_path / "o.parquet", rows_per_batch=6, head_bytes=300)
    assert spilled and all(spilled)
    assert not hasattr(duckdb_import._Staged, "sold_elsewhere")


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
@pytest.mark.parametrize("mask", [False, True])
def test_rejects_written_in_chunks_same_bytes_as_write_table(tmp_path, suffix, mask):
    """The rejects file written chunk by chunk (io.write_csv_chunks) is the file
    write_table writes for the whole masked table: quotes, separators, line breaks, a
    formula, a phone; no chunk at all is the header only."""
    from custtool.engines.duckdb_import import write_rejects
    from custtool.ingest import REJECT_COLUMNS
    from custtool.io import write_table
    from custtool.report.masking import mask_frame

    values = ["", "a,b", 'q"x', "l\nm", "r\rs", "=SUM(A1)", "-20", "\tx", "不详", "13800138000"]
    n = len(values) * 3
    whole = pd.DataFrame(
        {
            "file": "o,1.csv",
            "sheet": "",
            "row": np.arange(2, n + 2, dtype="int64"),
            "column": ["下单时间", "phone", "column\twith tab"] * len(values),
            "value": values * 3,
            "code": "bad_date",
            "reason_zh": "日期无法识别",
            "reason_en": "date not readable, check it",
            "action": ["rejected", "kept"] * (n // 2),
        }
    )[REJECT_COLUMNS].astype({c: "str" for c in REJECT_COLUMNS if c != "row"})
    chunks = [whole.iloc[i : i + 7].reset_index(drop=True) for i in range(0, n, 7)]
    write_rejects(iter(chunks), tmp_path / f"chunks{suffix}", mask=mask)
    write_table(mask_frame(whole, mask=mask), tmp_path / f"whole{suffix}")
    assert (tmp_path / f"chunks{suffix}").read_bytes() == (tmp_path / f"whole{suffix}").read_bytes()
    write_rejects(iter([]), tmp_path / f"none{suffix}", mask=mask)
    empty = pd.DataFrame(columns=REJECT_COLUMNS)
    write_table(mask_frame(empty, mask=mask), tmp_path / f"empty{suffix}")
    assert (tmp_path / f"none{suffix}").read_bytes() == (tmp_path / f"empty{suffix}").read_bytes()


def _sorted_by_duckdb(monkeypatch) -> list[int]:
    """Records each call of the rejects' DuckDB sort (rejects_query)."""
    from custtool.engines import duckdb_import

    calls: list[int] = []
    query = duckdb_import.rejects_query
    monkeypatch.setattr(
        duckdb_import, "rejects_query", lambda con, stages: calls.append(1) or query(con, stages)
    )
    return calls


def test_lines_spilled_in_order_are_read_back_without_a_sort(tmp_path, monkeypatch):
    """Lines already in the rejects' order (every row failing one check; only the kept
    lines of refunds, some withdrawn by a sale in another batch) are read back as spilled,
    the same lines as pandas; lines out of that order are sorted by DuckDB."""
    calls = _sorted_by_duckdb(monkeypatch)
    rows = [["D1", "", "", "2024-01-05", "10", "", "茶", ""]] * 30  # no customer key
    assert_same(
        [write(tmp_path / "a.csv", rows, "utf-8")],
        tmp_path / "a.parquet",
        rows_per_batch=7,
        head_bytes=200,
    )
    assert calls == []
    refunds = [
        [f"E{i:03d}", f"M2{i}", "", "2024-03-01", str(10 + i), "", "茶", ""] for i in range(30)
    ]
    refunds += [["E005", "M25", "", "2024-03-05", "-15", "已退款", "茶", ""]]  # sold above
    refunds += [["F001", "M30", "", "2024-03-06", "-40", "", "茶", ""]]  # sold below
    refunds += [[f"G{i:03d}", f"M4{i}", "", "2024-03-02", "5", "", "茶", ""] for i in range(20)]
    refunds += [["F001", "M30", "", "2024-03-01", "40", "", "茶", ""]]
    refunds += [["F002", "M31", "", "2024-03-06", "-40", "", "茶", ""]]  # no sale: kept
    src = write(tmp_path / "r.csv", refunds, "utf-8")
    _, got = assert_same([src], tmp_path / "r.parquet", rows_per_batch=6, head_bytes=300)
    assert calls == [] and got.rejects["value"].tolist() == [""]  # F002's line only
    src = write(tmp_path / "m.csv", messy_rows(), "utf-8")
    assert_same([src], tmp_path / "m.parquet", rows_per_batch=6, head_bytes=300)
    assert calls == [1]
