"""Benchmark: the full report workbook vs a bare constant-memory xlsxwriter write of the same cells.

    /work/venv/bin/python bench/report_bench.py                 # 50,000 and 200,000 customers
    /work/venv/bin/python bench/report_bench.py --sizes 20000 --repeat 1   # quicker

Each measurement runs in its own subprocess so that peak memory (ru_maxrss) is its own.
Printed per size: time and peak RSS of
  - baseline: xlsxwriter constant_memory, write_string / write_number / write_datetime, no
    formats, no charts, no masking, writing the same sheets and cells the report writes for
    customers (客户明细 with every column + one sheet per tier and per RFM class);
  - report:   custtool.report.write_workbook (masking, labels, formats, quote prefixes,
    conditional formats, summary tables and charts, strategies, data quality), with orders.
"peak - before" is the memory the writing itself added on top of the customers frame.

``--from-run FOLDER`` instead times the run's own report step on a pipeline run's outputs
(``customers.parquet``, ``orders_attributed.parquet`` of a bench/pipeline_bench.py run):
``write_workbook`` as the pipeline calls it (analyst role, masked) and then customers.csv
(``write_csv_blocks`` over ``mask_frame``), printing wall time, CPU of all threads, CPU of
the main thread and peak RSS. ``--tile K`` repeats the customers K times (ids made
distinct) for a larger run from a small one (e.g. 1M customers from the 100k run):

    .venv/bin/python bench/report_bench.py --from-run bench/data/pipeline-100000-1000000-s0/out/2024-06-30 --tile 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗")
GIVEN = [
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀兰",
    "霞",
]
CITIES = [
    ("北京市", "华北"),
    ("上海市", "华东"),
    ("广州市", "华南"),
    ("深圳市", "华南"),
    ("杭州市", "华东"),
    ("成都市", "西南"),
    ("武汉市", "华中"),
    ("西安市", "西北"),
    ("沈阳市", "东北"),
]
CHANNELS = ["天猫", "京东", "门店", "微信小程序", "抖音"]
RFM = [
    "重要价值客户",
    "重要发展客户",
    "重要保持客户",
    "重要挽留客户",
    "一般价值客户",
    "一般发展客户",
    "一般保持客户",
    "一般挽留客户",
]
LIFE = ["新客户", "成长", "成熟", "沉睡", "流失"]
TAGS = [
    "高频消费",
    "高客单价",
    "价格敏感",
    "一线城市",
    "女性",
    "男性",
    "新品偏好",
    "投诉过",
    "会员活跃",
    "沉睡预警",
]


def make_customers(n: int, seed: int = 42):
    """A segmented + tagged customers table as in docs/DATA.md (vectorised, deterministic)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    idx = np.arange(n)

    def pick(values, k=n):
        return np.asarray(values, dtype=object)[rng.integers(0, len(values), k)]

    name = pd.Series(pick(SURNAMES)) + pd.Series(pick(GIVEN))
    phone = pd.Series(rng.integers(13_000_000_000, 19_999_999_999, n).astype(str), dtype=object)
    city_i = rng.integers(0, len(CITIES), n)
    freq = rng.integers(0, 20, n)
    mon = np.where(freq > 0, np.round(rng.gamma(2.0, 600.0, n) * np.maximum(freq, 1), 2), 0.0)
    rec = np.where(freq > 0, rng.integers(0, 720, n).astype(float), np.nan)
    as_of = pd.Timestamp("2024-06-30")
    last = pd.Series(as_of - pd.to_timedelta(np.nan_to_num(rec), unit="D")).where(freq > 0)
    first = (last - pd.to_timedelta(rng.integers(0, 900, n), unit="D")).where(freq > 0)
    scores = rng.integers(1, 6, (3, n))
    tags_n = rng.integers(0, 4, n)
    flat_tags = pick(TAGS, int(tags_n.sum()))
    offsets = np.concatenate([[0], np.cumsum(tags_n)])
    import pyarrow as pa

    tags = pa.ListArray.from_arrays(
        pa.array(offsets, type=pa.int32()), pa.array(flat_tags.tolist(), type=pa.string())
    )
    ch_a, ch_b = pick(CHANNELS), pick(CHANNELS)
    channels = np.where(ch_a == ch_b, ch_a, pd.Series(ch_a) + ";" + pd.Series(ch_b))
    df = pd.DataFrame(
        {
            "customer_id": pd.Series(idx + 1).astype(str).str.zfill(8).radd("C"),
            "name": name,
            "phone": phone,
            "email": pd.Series(idx).astype(str).radd("user").add("@example.com"),
            "gender": pick(["男", "女", "未知"]),
            "age": pd.array(rng.integers(18, 70, n), dtype="Int64"),
            "city": np.array([c for c, _ in CITIES], dtype=object)[city_i],
            "region": np.array([r for _, r in CITIES], dtype=object)[city_i],
            "industry": pick(["互联网", "制造业", "零售", "金融", "教育", ""]),
            "source_channel": ch_a,
            "owner": pick(["王经理", "李经理", "赵经理", "钱经理"]),
            "notes": pick(["", "", "客户有定制需求", "近期投诉过物流问题", '=HYPERLINK("x")']),
            "channels": channels,
            "_flags": pick(["", "", "", "phone_invalid", "name_honorific"]),
            "first_order": first,
            "last_order": last,
            "recency": rec,
            "frequency": freq,
            "monetary": mon,
            "aov": np.where(freq > 0, np.round(mon / np.maximum(freq, 1), 2), np.nan),
            "orders_365d": np.minimum(freq, rng.integers(0, 10, n)),
            "monetary_365d": np.round(mon * rng.random(n), 2),
            "repurchase": freq >= 2,
            "r_score": scores[0],
            "f_score": scores[1],
            "m_score": scores[2],
            "rfm_score": scores.sum(axis=0),
            "rfm_class": np.where(freq > 0, pick(RFM), ""),
            "tier": np.where(mon >= 20000, "高价值", np.where(mon >= 5000, "中价值", "低价值")),
            "lifecycle": np.where(freq == 0, "潜在", pick(LIFE)),
            "ltv": np.round(mon * 1.3, 2),
            "churn_risk": rng.random(n) < 0.2,
            "nps_score": np.where(
                rng.random(n) < 0.3, rng.integers(0, 11, n).astype(float), np.nan
            ),
            "as_of": as_of,
        }
    )
    df["tags"] = pd.Series(tags.to_pandas(), index=df.index)
    return df


def make_orders(customers, per_customer: int = 3, seed: int = 1):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    m = len(customers) * per_customer
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[rng.integers(0, len(customers), m)],
            "order_time": pd.Timestamp("2023-07-01")
            + pd.to_timedelta(rng.integers(0, 365 * 24 * 60, m), unit="min"),
            "amount": np.round(rng.gamma(2.0, 300.0, m), 2),
        }
    )


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_write(customers, path: str) -> int:
    """Constant-memory xlsxwriter, no formats: the same sheets and cells as the report's customer sheets."""
    import pandas as pd
    import xlsxwriter

    from custtool.report.workbook import SEGMENT_SHEET_COLUMNS, prepare_customers

    df = prepare_customers(customers)
    wb = xlsxwriter.Workbook(
        path,
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    cells = 0
    sheets = []
    for dim in ("tier", "rfm_class"):
        for value in [v for v in df[dim].unique() if v]:
            sheets.append(
                (
                    f"{value}",
                    df.loc[df[dim] == value, [c for c in SEGMENT_SHEET_COLUMNS if c in df.columns]],
                )
            )
    sheets.append(("detail", df))
    for name, part in sheets:
        ws = wb.add_worksheet(name)
        cols = list(part.columns)
        for j, c in enumerate(cols):
            ws.write_string(0, j, c)
        writers = []
        for c in cols:
            s = part[c]
            if pd.api.types.is_datetime64_any_dtype(s):
                writers.append(
                    (ws.write_datetime, [None if v is pd.NaT else v.to_pydatetime() for v in s])
                )
            elif pd.api.types.is_bool_dtype(s):
                writers.append((ws.write_boolean, s.tolist()))
            elif pd.api.types.is_numeric_dtype(s):
                writers.append(
                    (ws.write_number, [None if v != v else v for v in s.astype(float).tolist()])
                )
            else:
                writers.append(
                    (ws.write_string, [None if not v else v for v in s.astype(str).tolist()])
                )
        for i in range(len(part)):
            r = i + 1
            for j, (fn, vals) in enumerate(writers):
                v = vals[i]
                if v is not None:
                    fn(r, j, v)
                    cells += 1
    wb.close()
    return cells


def run_one(kind: str, n: int) -> dict:
    from custtool.report import write_workbook

    customers = make_customers(n)
    orders = make_orders(customers) if kind == "report" else None
    before = current_rss_mb()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.xlsx")
        t0 = time.perf_counter()
        if kind == "baseline":
            cells = bare_write(customers, out)
            extra = {"cells": cells}
        else:
            res = write_workbook(customers, out, orders=orders)
            extra = {"sheets": len(res.sheets), "charts": res.charts}
        seconds = time.perf_counter() - t0
        size = os.path.getsize(out) / 2**20
    return {
        "kind": kind,
        "n": n,
        "seconds": round(seconds, 2),
        "peak_mb": round(peak_rss_mb(), 1),
        "before_mb": round(before, 1),
        "file_mb": round(size, 1),
        **extra,
    }


def from_run(folder: Path, tile: int, out: Path) -> None:
    """The report step of a pipeline run (workbook, then customers.csv), timed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from custtool.io import read_table, write_csv_blocks
    from custtool.pipeline import read_attributed
    from custtool.report.masking import get_role, mask_frame, role_view
    from custtool.report.workbook import write_workbook

    if tile > 1:
        t = pq.read_table(folder / "customers.parquet")
        i = t.schema.get_field_index("customer_id")
        ty = t.schema.field(i).type
        parts = [
            t.set_column(
                i,
                "customer_id",
                pc.binary_join_element_wise(
                    t["customer_id"], pa.scalar(f"-{k}" if k else "", ty), pa.scalar("", ty)
                ),
            )
            for k in range(tile)
        ]
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(parts), out / "tiled.parquet")
        final = read_table(out / "tiled.parquet")
        del parts, t
    else:
        final = read_table(folder / "customers.parquet")
    orders = read_attributed(folder / "orders_attributed.parquet")
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(final):,} customers x {len(final.columns)} columns, {len(orders):,} orders")
    for what in ("report.xlsx", "customers.csv"):
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        load = os.getloadavg()[0]
        if what == "report.xlsx":
            write_workbook(final, out / what, orders=orders, role="analyst", mask=True)
        else:
            write_csv_blocks(
                role_view(final, get_role("analyst")),
                out / what,
                lambda block: mask_frame(block, mask=True),
            )
        print(
            f"{what:<14} {time.perf_counter() - t0:7.2f} s wall  CPU {time.process_time() - c0:6.2f} s"
            f" (main thread {time.thread_time() - m0:6.2f} s)  {(out / what).stat().st_size / 1e6:7.1f} MB"
            f"  load average {load:.1f} -> {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="50000,200000", help="comma-separated customer counts")
    ap.add_argument(
        "--repeat", type=int, default=2, help="runs per size and kind; the fastest counts"
    )
    ap.add_argument("--one", choices=["baseline", "report"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--from-run", type=Path, help="a pipeline run's output folder (see above)")
    ap.add_argument("--tile", type=int, default=1, help="with --from-run: customers x K")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "report_bench_out")
    args = ap.parse_args()
    if args.from_run:
        from_run(args.from_run, args.tile, args.out)
        return
    if args.one:
        print(json.dumps(run_one(args.one, args.n)))
        return
    print(
        f"{'customers':>10} {'what':>9} {'seconds':>8} {'peak MB':>8} {'before MB':>9} {'peak-before':>11} {'file MB':>8}"
    )
    for n in [int(x) for x in args.sizes.split(",")]:
        results: dict[str, dict] = {}
        for _ in range(args.repeat):  # alternate, keep the fastest of each (the machine is shared)
            for kind in ("baseline", "report"):
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", kind, "--n", str(n)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(
                    f"{n:>10,} {kind:>9} {r['seconds']:>8.1f} {r['peak_mb']:>8.0f} {r['before_mb']:>9.0f} {r['peak_mb'] - r['before_mb']:>11.0f} {r['file_mb']:>8.1f}",
                    flush=True,
                )
                if kind not in results or r["seconds"] < results[kind]["seconds"]:
                    results[kind] = r
        ratio = results["report"]["seconds"] / results["baseline"]["seconds"]
        print(
            f"{'':>10} best of {args.repeat}: ratio report/baseline = {ratio:.2f}x  (target <= 1.5x; cells per workbook: {results['baseline']['cells']:,})",
            flush=True,
        )


if __name__ == "__main__":
    main()
