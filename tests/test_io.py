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
