"""The run's side outputs (issue 12: the whole run's time): the owners' workbooks read only
their attributed-order columns as codes; outputs written beside the next step."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def _run_folder(example_run) -> Path:
    d, out = example_run
    return Path(out["folder"])


def _cells(path: Path) -> dict[str, list[tuple]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb}
    finally:
        wb.close()


def test_owner_workbooks_from_coded_columns_equal_those_from_every_column(example_run, tmp_path):
    """write_owner_workbooks given OWNER_ORDER_COLUMNS as codes (what the run passes) writes
    the same cells as given all six attributed columns as text (what it passed before)."""
    from custtool.pipeline import OWNER_ORDER_COLUMNS, read_attributed
    from custtool.report.owners import write_owner_workbooks

    folder = _run_folder(example_run)
    customers = pd.read_parquet(folder / "customers.parquet")
    path = folder / "orders_attributed.parquet"
    coded = read_attributed(path, OWNER_ORDER_COLUMNS, codes=True)
    assert list(coded.columns) == list(OWNER_ORDER_COLUMNS)
    assert isinstance(coded["customer_id"].dtype, pd.CategoricalDtype)
    full = read_attributed(path)
    assert len(full.columns) == 6 and len(coded) == len(full)
    a = write_owner_workbooks(customers, tmp_path / "a", orders=full, as_of="2024-06-30")
    b = write_owner_workbooks(customers, tmp_path / "b", orders=coded, as_of="2024-06-30")
    assert [w.path.name for w in a.workbooks] == [w.path.name for w in b.workbooks]
    assert len(a.workbooks) >= 2
    revenue_seen = False
    for wa, wb in zip(a.workbooks, b.workbooks, strict=True):
        ca, cb = _cells(wa.path), _cells(wb.path)
        assert ca == cb, wa.path.name
        rows = ca["概览"]
        at = [k for k, r in enumerate(rows) if r and r[0] == "月度消费额"]
        # 月度消费额 (from the orders): its month rows (月份, 消费金额, 订单数) follow the header
        months = rows[at[0] + 2 :] if at else []
        revenue_seen |= bool(months) and isinstance(months[0][1], float) and months[0][2] > 0
    assert revenue_seen  # the orders' figures are on the sheets compared
