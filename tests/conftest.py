"""Shared fixtures: messy exports written into tmp_path as a Chinese firm would send them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture
def make_csv(tmp_path):
    def _make(name: str, rows: list[list[str]], encoding: str = "utf-8") -> Path:
        return write_csv(tmp_path / name, rows, encoding)

    return _make


@pytest.fixture
def shop_xlsx(tmp_path) -> Path:
    """A platform export: merged title row, blank row, header on row 3, an Excel float
    phone, a datetime cell, a blank row inside, a totals row, and a notes sheet."""
    from datetime import datetime

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "会员"
    ws["A1"] = "某某旗舰店 会员导出 2026-11-01"
    ws.merge_cells("A1:F1")
    ws.append([])
    ws.append(["买家ID", "买家姓名", "手机号码", "注册时间", "所在城市", "会员积分"])
    ws.append(["TB1", "张三", 13812345678.0, datetime(2024, 1, 5, 10, 30), "北京市朝阳区", 100])  # row 4
    ws.append(["TB2", "李 四", "+86 139-0000-1111", "2024/2/1", "深圳", 50])  # row 5
    ws.append([None, None, None, None, None, None])  # row 6 blank
    ws.append(["TB3", "王先生", "138****0000", 45296, "上海", 0])  # row 7: masked, no email → rejected
    ws.append(["TB4", "赵六", "13700001111", "2023-02-29", "杭州", 10])  # row 8: bad date kept
    ws.append(["合计", None, None, None, None, 160])  # row 9 totals
    notes = wb.create_sheet("说明")
    notes["A1"] = "导出说明:仅供内部使用"
    path = tmp_path / "电商会员.xlsx"
    wb.save(path)
    return path
