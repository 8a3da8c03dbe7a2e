"""The SQL twins of the order normalisers (custtool/normalize_sql.py) against the pandas
rules, on one table of cases, and both import engines on generated messy order files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from custtool import normalize_sql as ns
from custtool.ingest import _checked, _normalize_column

#: (column, cell as read, plain: whether the SQL decides it)
CASES = [
    ("order_id", "O0000000001", True),
    ("order_id", "", True),
    ("order_id", "nan", True),  # a blank word: ""
    ("order_id", "NULL", True),
    ("order_id", "#N/A", True),
    ("order_id", " O1", False),  # trimmed by pandas
    ("order_id", "Ｏ１", False),  # full width: NFKC
    ("order_id", "订单1", False),
    ("customer_id", "U00001811", True),
    ("customer_id", "u-1/2", True),
    ("customer_id", "N/A", True),
    ("phone", "13812345678", True),
    ("phone", "", True),
    ("phone", "19912345678", True),
    ("phone", "12812345678", False),  # not a mobile prefix
    ("phone", "13800138000", False),  # a known dummy: phone_dummy
    ("phone", "13812345678.0", False),  # Excel float
    ("phone", "138 1234 5678", False),
    ("phone", "１３８１２３４５６７８", False),
    ("phone", "+8613812345678", False),
    ("phone", "13812345678/13912345678", False),
    ("phone", "无", False),
    ("email", "", True),
    ("email", "a@b.com", False),
    ("order_time", "2024-01-05 08:03:09", True),
    ("order_time", "2024/01/05 08:03:09", True),
    ("order_time", "2024-01-05T23:59:59", True),
    ("order_time", "2024-01-05", True),
    ("order_time", "2024/02/29", True),
    ("order_time", "1900-01-01 00:00:00", True),
    ("order_time", "2100-12-31", True),
    ("order_time", "2023-02-29", False),  # impossible: date_invalid
    ("order_time", "2024-13-01", False),
    ("order_time", "2024-01-05 24:00:00", False),
    ("order_time", "2024-01-05 23:60:00", False),
    ("order_time", "1899-12-31", False),
    ("order_time", "2101-01-01", False),
    ("order_time", "2024-01/05", False),  # mixed separators
    ("order_time", "2024/1/5 8:03", False),  # read by the patterns
    ("order_time", "20240105", False),
    ("order_time", "45300", False),  # Excel serial
    ("order_time", "2024年1月5日", False),
    ("order_time", "2024-01-05 08:03:09+08:00", False),
    ("order_time", "", False),  # no time: rejected
    ("amount", "100.79", True),
    ("amount", "0", True),
    ("amount", "12500", True),
    ("amount", "0.005", True),  # half to even, as numpy: 0.0
    ("amount", "0.015", True),
    ("amount", "2.675", True),
    ("amount", "1.125", True),
    ("amount", "123456789012.123456", True),
    ("amount", "007.10", True),
    ("amount", "-50", True),  # money going back (the refund rule: refund_flags_sql)
    ("amount", "-0.015", True),
    ("amount", "--5", False),
    ("amount", "+5", False),
    ("amount", "¥1,200.50", False),
    ("amount", "１２３", False),
    ("amount", "(80)", False),
    ("amount", "1.2万", False),
    ("amount", ".5", False),
    ("amount", "5.", False),
    ("amount", "", False),  # no amount: rejected
    ("quantity", "3", True),
    ("quantity", "", True),
    ("quantity", "3.5", False),
    ("quantity", "三", False),
    ("refund", "否", True),
    ("refund", "交易成功", True),
    ("refund", "N", True),
    ("refund", "", True),
    ("refund", "已退款", False),  # money going back
    ("refund", "？？", False),
    ("category", "数码", True),
    ("category", "", True),
    ("category", "a b", True),
    ("category", " 数码", False),
    ("category", "数码\u3000", False),
    ("category", "数码\xa0", False),
    ("备注", "nan", True),  # an unknown column: kept as written
]


def sql_cells(column: str, cells: list[str]) -> pd.DataFrame:
    import duckdb

    value, plain = ns.column_sql(column, '"c0"')
    con = duckdb.connect()
    con.register("t", pa.table({"c0": pa.array(cells, pa.large_string())}))
    got = con.sql(f"SELECT {value} AS v, coalesce({plain}, false) AS plain FROM t").df()
    con.close()
    return got


@pytest.mark.parametrize("column", sorted({c for c, _, _ in CASES}))
def test_sql_rule_agrees_with_pandas_rule(column):
    cases = [(cell, plain) for c, cell, plain in CASES if c == column]
    cells = [cell for cell, _ in cases]
    got = sql_cells(column, cells)
    assert got["plain"].tolist() == [plain for _, plain in cases], column
    s = pd.Series(cells, dtype="str")
    done = _checked(
        _normalize_column(column, s, "orders", "Asia/Shanghai", False), column, "orders"
    )
    expected = done.values[column]
    for i, (cell, plain) in enumerate(cases):
        if not plain:
            continue
        assert i not in set(done.hits if done.hits is not None else []), (column, cell)
        if done.failures is not None and len(done.failures):
            assert i not in set(done.failures["index"]), (column, cell)
        want, have = expected.iloc[i], got["v"].iloc[i]
        if column == "refund":
            assert want == False and have == False  # noqa: E712 - numpy bools
        elif isinstance(want, float) or column in ("amount", "quantity"):
            assert (pd.isna(want) and pd.isna(have)) or float(want) == float(have), (
                cell,
                want,
                have,
            )
        else:
            assert (
                pd.Timestamp(want) == pd.Timestamp(have)
                if column == "order_time"
                else (want == have)
            ), (cell, want, have)
    if column == "phone":  # the lists and extension of a plain phone
        phones = done.values["phones"]
        assert all(phones.iloc[i] == cells[i] for i, (_, p) in enumerate(cases) if p)
        assert all(done.values["phone_ext"].iloc[i] == "" for i, (_, p) in enumerate(cases) if p)


def test_hand_checked_values():
    got = sql_cells("amount", ["0.005", "0.015", "2.675", "100.79"])
    # rint(v * 100) / 100 as numpy: 2.675 * 100 is 267.5 in doubles, to even: 268
    assert got["v"].tolist() == [0.0, 0.02, 2.68, 100.79]
    got = sql_cells("order_time", ["2024/02/29 23:59:59", "2023-02-29"])
    assert got["v"].iloc[0] == pd.Timestamp("2024-02-29 23:59:59")
    assert got["plain"].tolist() == [True, False]
    got = sql_cells("order_id", ["nan", "#N/A", "X1"])
    assert got["v"].tolist() == ["", "", "X1"]


def test_unsupported_columns_go_to_pandas():
    known = {"order_id", "phone", "name", "city", "amount", "order_time", "channel"}
    assert ns.sql_supported(["order_id", "amount", "order_time", "channel", "备注"], known)
    assert not ns.sql_supported(["order_id", "amount", "order_time", "city"], known)
    assert not ns.sql_supported(["order_id", "amount", "order_time", "name"], known)


# --------------------------------------------------------------------------- fuzz
HEADER = ["订单号", "客户ID", "手机号", "下单时间", "实付金额", "订单状态", "品类", "数量"]
POOLS = {
    0: ["O{n}", "O{n}", "O{n}", " O{n}", "Ｏ{n}", "nan", ""],
    1: ["U{c}", "U{c}", "U{c}", "", "NULL", "Ｕ{c}"],
    2: [
        "13{p}",
        "13{p}",
        "13{p}",
        "",
        "13{p}.0",
        "13{p} ",
        "１３{p}",
        "13800138000",
        "无",
        "138-{p}",
        "12{p}",
    ],
    3: [
        "2024-0{m}-1{d} 1{d}:0{m}:2{d}",
        "2024-0{m}-1{d} 1{d}:0{m}:2{d}",
        "2024/0{m}/1{d}",
        "2024/{m}/{d} 8:03",
        "2024{m:02d}1{d}",
        "45300",
        "2024年{m}月{d}日",
        "2023-02-29",
        "2024-13-01",
        "",
        "2024-0{m}-1{d} 25:00:00",
    ],
    4: [
        "{a}.{d}9",
        "{a}.{d}9",
        "{a}",
        "-{a}",
        "￥1,{a}.50",
        "１２{d}",
        "({a})",
        "1.{d}万",
        "abc",
        "",
        "0.0{d}5",
    ],
    5: ["交易成功", "交易成功", "", "否", "已退款", "退款", "？？"],
    6: ["数码", "图书", " 家居", "合计", "a b", "服饰\u3000"],
    7: ["{d}", "{d}", "", "2.5", "三"],
}


def fuzz_rows(rng: np.random.Generator, n: int) -> list[list[str]]:
    rows = []
    for _ in range(n):
        k = int(rng.integers(0, 60))
        if k == 0:
            rows.append([""] * 8)  # blank
            continue
        if k == 1:
            rows.append(["合计", "", "", "", "999", "", "", ""])
            continue
        vals = {
            "n": int(rng.integers(1, n // 2 + 2)),  # order ids repeat: refunds meet sales
            "c": int(rng.integers(1, 50)),
            "p": f"{int(rng.integers(100000000, 999999999)):09d}",
            "m": int(rng.integers(1, 10)),
            "d": int(rng.integers(0, 10)),
            "a": int(rng.integers(1, 3000)),
        }
        row = []
        for j in range(8):
            pool = POOLS[j]
            # mostly the first (plain) form, now and then any form
            pick = 0 if rng.random() < 0.75 else int(rng.integers(0, len(pool)))
            row.append(pool[pick].format(**vals))
        rows.append(row)
    return rows


def fuzz_file(path, rows, encoding: str, title: bool):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if title:
        buf.write("2024年 订单导出\r\n\r\n")
    w.writerow(HEADER)
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seed", "encoding", "title", "batch"),
    [(1, "utf-8", True, 37), (2, "gbk", True, 50), (3, "utf-8", False, 64), (4, "gbk", False, 29)],
)
def test_fuzz_engines_agree_frame_for_frame(tmp_path, seed, encoding, title, batch):
    from tests.test_duckdb_import import assert_same

    rng = np.random.default_rng(seed)
    rows = fuzz_rows(rng, 400)
    src = fuzz_file(tmp_path / "orders.csv", rows, encoding, title)
    # a quantity that is not a number is quoted as NaN by the pandas engine, "" here: the
    # rejects file writes both as an empty cell
    expected, got = assert_same(
        [src], tmp_path / "o.parquet", as_written=True, rows_per_batch=batch, head_bytes=600
    )
    t = expected.totals
    # the generator makes every kind of row: the comparison is not of clean files only
    assert t["rejected"] > 0 and t["skipped_blank"] > 0 and t["skipped_total"] > 0
    assert t["flagged"] > 0 and t["accepted"] > 200
    assert got.files[0].encoding == expected.files[0].encoding


def test_large_batch_of_many_chunks_keeps_file_order(tmp_path):
    """A batch pyarrow read in many chunks, large enough for DuckDB to scan it on several
    threads: the rows come back in file order, as the pandas sheet import gives them."""
    import duckdb
    import pyarrow.compute as pc

    from bench.generate import _orders_table
    from custtool.engines.duckdb_import import _Batch, _frame, _grid_batch, import_table_batch
    from custtool.fields import load_fields
    from custtool.ingest import _import_sheet
    from custtool.io import RawSheet

    orders = _orders_table(5000, 300_000, seed=3)  # about 2% refunds
    cols = {f"c{j}": orders.column(j).cast(pa.string()).cast(pa.large_string()) for j in range(8)}
    # every 997th phone as Excel writes a float: those rows go to pandas
    odd = pa.array(np.arange(300_000) % 997 == 0)
    floats = pc.binary_join_element_wise(
        cols["c2"], pa.scalar(".0", pa.large_string()), pa.scalar("", pa.large_string())
    )
    cols["c2"] = pc.if_else(odd, floats, cols["c2"])
    table = pa.Table.from_batches(pa.table(cols).to_batches(max_chunksize=20_000))
    header = pd.DataFrame([orders.column_names])
    meta = RawSheet("orders.csv", "", header, np.arange(1, 2), "utf-8")
    spec = load_fields(None)["orders"]
    con = duckdb.connect()
    con.execute("SET threads = 2")
    b = _Batch(meta, 0, 0, True, table=table, header=header)
    frame, rej, report, split = import_table_batch(b, spec, "shop", "Asia/Shanghai", con)
    grid = _grid_batch(meta, header, _frame(table), 0, last=True).raw
    want, want_rej, want_report = _import_sheet(grid, 0, spec, "shop", "Asia/Shanghai")
    assert split  # plain rows (refunds too) from DuckDB, the Excel-float phones from pandas
    assert frame["_row"].is_monotonic_increasing
    pd.testing.assert_frame_equal(frame, want)
    pd.testing.assert_frame_equal(rej.astype(str), want_rej.astype(str))
    assert report.as_dict() == want_report.as_dict()
    assert report.rows_read == 300_000 and report.flagged > 0


def test_batch_plain_throughout_same_as_the_sheet_import(monkeypatch):
    """A batch whose every row DuckDB reads as plain (refunds among them): taken as DuckDB
    gives it, unfiltered, cell for cell the pandas sheet import's rows and rejects lines."""
    import duckdb

    from bench.generate import _orders_table
    from custtool.engines.duckdb_import import _Batch, _frame, _grid_batch, import_table_batch
    from custtool.fields import load_fields
    from custtool.ingest import _import_sheet
    from custtool.io import RawSheet

    orders = _orders_table(2000, 20_000, seed=11)
    cols = {f"c{j}": orders.column(j).cast(pa.string()).cast(pa.large_string()) for j in range(8)}
    table = pa.Table.from_batches(pa.table(cols).to_batches(max_chunksize=3000))
    header = pd.DataFrame([orders.column_names])
    meta = RawSheet("orders.csv", "", header, np.arange(1, 2), "utf-8")
    spec = load_fields(None)["orders"]
    con = duckdb.connect()
    b = _Batch(meta, 0, 0, True, table=table, header=header)
    with monkeypatch.context() as m:  # no row for pandas: every one is plain
        m.setattr("custtool.engines.duckdb_import._import_sheet", None)
        frame, rej, report, split = import_table_batch(b, spec, "shop", "Asia/Shanghai", con)
    grid = _grid_batch(meta, header, _frame(table), 0, last=True).raw
    want, want_rej, want_report = _import_sheet(grid, 0, spec, "shop", "Asia/Shanghai")
    assert not split and report.rows_read == report.accepted == 20_000
    pd.testing.assert_frame_equal(frame, want)
    pd.testing.assert_frame_equal(rej.astype(str), want_rej.astype(str))
    assert report.as_dict() == want_report.as_dict() and report.flagged > 0


def test_quoted_header_takes_the_streaming_reader(tmp_path, monkeypatch):
    """A CSV as pyarrow (or Excel) writes it, every header cell quoted, is read by pyarrow's
    streaming reader (quotes in pairs on the line) and gives the pandas engine's output."""
    import pyarrow.csv as pcsv

    import custtool.engines.duckdb_import as di
    from bench.generate import _orders_table
    from tests.test_duckdb_import import assert_same

    src = tmp_path / "orders.csv"
    pcsv.write_csv(_orders_table(200, 3000, seed=5), src)
    assert src.read_bytes().startswith(b'"')

    def no_pandas_reader(*a, **k):
        raise AssertionError("read by pandas' chunked reader")

    monkeypatch.setattr(di, "_csv_batches", no_pandas_reader)
    expected, got = assert_same([src], tmp_path / "o.parquet", rows_per_batch=700, head_bytes=4000)
    assert got.totals["rows_read"] == 3000 and got.totals["flagged"] > 0
    # a title cell quoted over two lines still goes to pandas' reader
    assert di._data_start(b'"a\nb"\nh1,h2\n1,2\n', 1, "utf-8") is None
    assert di._data_start(b'"h1","h2"\n1,2\n', 0, "utf-8") == 10


def test_text_only_columns_are_kept_as_written_by_the_pandas_rules():
    """The columns normalize_sql treats as plain text are those the pandas rules only strip."""
    s = pd.Series([" a ", "b", "", "nan"], dtype="str")
    for col in sorted(ns.TEXT_ONLY_COLUMNS):
        done = _checked(_normalize_column(col, s, "orders", "Asia/Shanghai", False), col, "orders")
        assert list(done.values) == [col]
        assert done.values[col].tolist() == ["a", "b", "", "nan"]
        assert done.hits is None or not len(done.hits)
