"""io: atomic writes, formula neutralisation, Excel's row limit."""

from __future__ import annotations

import pandas as pd

import custtool.io as cio


def test_long_tables_continue_on_numbered_sheets(tmp_path, monkeypatch):
    from openpyxl import load_workbook

    monkeypatch.setattr(cio, "EXCEL_MAX_ROWS", 11)  # header + 10 rows a sheet
    df = pd.DataFrame({"customer_id": [f"C{i:03d}" for i in range(25)], "n": range(25)})
    with cio.atomic_path(tmp_path / "x.xlsx") as tmp:
        cio.write_xlsx_sheets({"待跟进": df}, tmp)
    wb = load_workbook(tmp_path / "x.xlsx")
    assert wb.sheetnames == ["待跟进", "待跟进 (2)", "待跟进 (3)"]
    ids = [r[0] for name in wb.sheetnames for r in wb[name].iter_rows(min_row=2, values_only=True)]
    assert ids == df["customer_id"].tolist()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    try:
        with cio.atomic_path(target) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("crash")
    except RuntimeError:
        pass
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_formula_text_neutralised_numbers_kept():
    s = pd.Series(["=1+2", "+cmd", "@SUM(A1)", "-2+3", "-20", "\tx", "正常", "13800000000"])
    assert cio.neutralize_formula_text(s).tolist() == [
        "'=1+2",
        "'+cmd",
        "'@SUM(A1)",
        "'-2+3",
        "-20",
        "'\tx",
        "正常",
        "13800000000",
    ]


def test_long_frames_go_to_parquet_in_slices_and_read_back_the_same(tmp_path, monkeypatch):
    """A frame longer than PARQUET_SLICE_ROWS is written a slice at a time under the whole
    frame's schema: the table read back equals ``to_parquet``'s, column for column and dtype
    for dtype — including a column empty in the first slice and filled later, lists, nullable
    integers, categories and times."""
    import pyarrow.parquet as pq

    from custtool.io import write_table

    n = 10
    df = pd.DataFrame(
        {
            "customer_id": [f"C{i:03d}" for i in range(n)],
            "name": pd.Series(["张伟", None, "李娜", "", "王芳", "赵磊", None, "钱", "孙", "周"]),
            "late_text": [None] * 7 + ["a", "b", "c"],  # empty in the first slices
            "tags": [["高价值", "活跃"], [], None, ["新客"]] + [["x"]] * 6,
            "orders": pd.array([1, None, 3, 4, 5, 6, 7, None, 9, 10], dtype="Int64"),
            "amount": [1.5, 2.25, float("nan"), 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
            "vip": [True, False] * 5,
            "tier": pd.Categorical(["A", "B", "C", "A", "B", "C", "A", "B", "C", "A"]),
            "last_order": pd.to_datetime(["2024-01-01 10:00"] * 5 + [None] * 5),
        }
    )
    monkeypatch.setattr(cio, "PARQUET_SLICE_ROWS", 3)
    write_table(df, tmp_path / "sliced.parquet")
    df.to_parquet(tmp_path / "whole.parquet", index=False)
    assert pq.ParquetFile(tmp_path / "sliced.parquet").metadata.num_row_groups == 4  # 3+3+3+1
    got = pd.read_parquet(tmp_path / "sliced.parquet")
    want = pd.read_parquet(tmp_path / "whole.parquet")
    assert list(got.dtypes) == list(want.dtypes)
    pd.testing.assert_frame_equal(got, want)
    assert got["late_text"].tolist()[7:] == ["a", "b", "c"]
    assert got["tags"][0].tolist() == ["高价值", "活跃"]
