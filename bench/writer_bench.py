"""Side by side: writing one 100,000 × 20 customer table to xlsx (issue 12, "write speed").

    .venv/bin/python bench/writer_bench.py                  # 100,000 rows
    .venv/bin/python bench/writer_bench.py --rows 20000     # quicker
    .venv/bin/python bench/writer_bench.py --rows 1000000 --columns 71 --only custtool
                                                            # the 1M-customer 客户明细's shape

Writers measured on the same frame (8 text, 8 number, 2 date, 2 flag columns; about 1 in 10
text cells empty; ``--columns N`` scales the four groups to N columns in the same
proportions):

* ``xlsxwriter``: constant-memory xlsxwriter, values prepared per column, then one public
  ``write_number`` / ``write_string`` call per cell (the floor of bench/pipeline_bench.py);
* ``custtool``: the report's own sheet writer (``_Sheets.data_sheet``: formats, masking,
  quote prefix, conditional formats, widths) on the same frame; since issue 12 its rows go
  through ``custtool.xlsx.append_rows`` (the sheet XML built a column at a time with Arrow,
  no Python call per cell) inside the same xlsxwriter workbook;
* ``rustpy-xlsxwriter`` and ``pyexcelerate`` when installed (they are not dependencies:
  ``pip install rustpy-xlsxwriter pyexcelerate`` to include them).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def make_frame(n: int, columns: int = 20):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n_text = max(1, round(columns * 8 / 20))
    n_num = max(1, round(columns * 8 / 20))
    n_date = max(1, round(columns * 2 / 20))
    n_flag = max(1, columns - n_text - n_num - n_date)
    text = {
        f"text_{k}": pd.Series(
            np.array(["张伟", "李娜", "王芳", "北京市", "上海市", "重要价值客户", "", "VIP;复购"])[
                rng.integers(0, 8, n)
            ],
            dtype=object,
        )
        for k in range(n_text)
    }
    nums = {f"num_{k}": np.round(rng.gamma(2.0, 800.0, n), 2) for k in range(n_num)}
    dates = {
        f"date_{k}": pd.Timestamp("2024-06-30") - pd.to_timedelta(rng.integers(0, 700, n), "D")
        for k in range(n_date)
    }
    flags = {f"flag_{k}": rng.random(n) < 0.3 for k in range(n_flag)}
    return pd.DataFrame({**text, **nums, **dates, **flags})


def bench_xlsxwriter(df, path: Path) -> None:
    import numpy as np
    import pandas as pd
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    ws = wb.add_worksheet("customers")
    num_fmt = wb.add_format({"num_format": "#,##0.00"})
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    cols = []
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            v = ((s - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)).to_numpy(float)
            cols.append((0, v.tolist(), date_fmt))
        elif pd.api.types.is_bool_dtype(s):
            cols.append((1, np.where(s.to_numpy(), "是", "否").tolist(), None))
        elif pd.api.types.is_numeric_dtype(s):
            cols.append((0, s.to_numpy(float).tolist(), num_fmt))
        else:
            cols.append((1, s.tolist(), None))
    for j, c in enumerate(df.columns):
        ws.write_string(0, j, c)
    wn, wstr = ws.write_number, ws.write_string
    for i in range(len(df)):
        for j, (kind, vals, fmt) in enumerate(cols):
            v = vals[i]
            if kind == 0:
                if v == v:
                    wn(i + 1, j, v, fmt)
            elif v:
                wstr(i + 1, j, v)
    wb.close()


def bench_custtool(df, path: Path) -> None:
    from custtool.report.workbook import _Sheets
    from custtool.xlsx import open_workbook

    with open_workbook(path, constant_memory=True) as wb:
        w = _Sheets(wb, "zh", mask=True)
        w.data_sheet(wb.add_worksheet("customers"), df)


def bench_rustpy(df, path: Path) -> None:
    from rustpy_xlsxwriter import write_worksheet

    write_worksheet(df, str(path), sheet_name="customers", float_format="#,##0.00")


def bench_pyexcelerate(df, path: Path) -> None:
    from pyexcelerate import Workbook

    wb = Workbook()
    data = [list(df.columns), *df.astype(object).where(df.notna(), None).to_numpy().tolist()]
    wb.new_sheet("customers", data=data)
    wb.save(str(path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--columns", type=int, default=20, help="columns of the frame (default 20)")
    ap.add_argument(
        "--only", action="append", help="run only the writers whose name starts with this"
    )
    args = ap.parse_args()
    df = make_frame(args.rows, args.columns)
    writers = {"xlsxwriter (floor)": bench_xlsxwriter, "custtool data_sheet": bench_custtool}
    for name, fn, mod in (
        ("rustpy-xlsxwriter", bench_rustpy, "rustpy_xlsxwriter"),
        ("pyexcelerate", bench_pyexcelerate, "pyexcelerate"),
    ):
        try:
            __import__(mod)
            writers[name] = fn
        except ImportError:
            print(f"{name}: not installed, skipped")
    if args.only:
        writers = {k: v for k, v in writers.items() if k.startswith(tuple(args.only))}
    print(f"{args.rows:,} rows x {len(df.columns)} columns; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in writers.items():
            path = Path(tmp) / f"{name.split()[0]}.xlsx"
            t0, c0 = time.perf_counter(), time.process_time()
            fn(df, path)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(
                f"{name:<22} {secs:7.2f} s  (CPU {cpu:6.2f} s, all threads)"
                f"  {path.stat().st_size / 1e6:6.1f} MB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
