"""Benchmark `segment` on generated data against a bare pandas baseline.

    python bench/segment_bench.py --customers 1000000 --orders 10000000 --data /tmp/bench

Generates ``customers.csv``/``orders.csv`` with bench/generate.py when they are missing, then
runs, each in its own process so that peak memory (``ru_maxrss``) is measured separately:

* baseline: ``pd.read_csv(engine="pyarrow")`` with explicit dtypes + ``groupby().agg()`` of
  first/last order time, order count and amount sum per 客户ID;
* segment: the same reader (the generated Chinese headers are mapped to canonical columns
  directly: custtool's import step is not part of this timing), then the library steps
  ``customer_metrics`` → ``rfm_scores``/``rfm_classes``/``value_tiers``/``assign_lifecycle``
  → ``fit_ltv`` → ``write_table`` (Parquet), with time and peak memory after each step.

Prints the timings and the ratios against the baseline.

Measured 2026-11-23 on the shared 2-core machine (another engineer's CPU-heavy benchmarks
running at the same time, so timings swing by up to 2× run to run), 1,000,000 customers /
10,000,000 orders, eight alternating runs (``--repeat 2``, ``--repeat 3``, ``--repeat 3``):
baseline 5.6–10.0 s (its read 3.5–7.7 s), peak 2.8–3.1 GB; segment read 1.9–7.1 s, metrics
2.9–5.6 s, scores 1.3 s, LTV fit 2.9–7.2 s, write 1.4 s, total 11.4–20.2 s, peak 2.8–3.1 GB
→ read+metrics 0.67–1.71× (median 1.0×; above the 1.5× target in 2 of 8 runs, both with
the segment's read step, the baseline's read_csv of orders.csv plus customers.csv, at
4.7–7.1 s against the baseline's read at 4.0–4.6 s in the same run), whole 1.25–2.63×
(target 3×), peak memory 0.92–1.09× (target 1.5×). ``customer_metrics`` alone on the same data (read from Parquet, six
fresh processes each, alternated with the code before the rework): 2.9–5.6 s wall, 4.5–6.2 s
CPU (user + system, two threads), against 9.6–12.3 s wall, 10.0–12.5 s CPU before. ``--engine duckdb``, one run on a
heavily loaded machine (baseline 11.2 s): metrics 14.5 s, peak 4.3 GB (slower than the
default numpy engine).
After the merge, ``--repeat 2`` with nothing else running in run 1 and the test suite beside
run 2: baseline 7.00 / 5.31 s; segment read 2.71 / 3.07 s, metrics 3.52 / 3.99 s, total
11.75 / 13.96 s, peak 3.0 / 2.8 GB → read+metrics 0.89× / 1.33×, whole 1.68× / 2.63×, peak
memory 1.09× / 1.01×.

``--portrait`` (issue 15) also times the attributed orders (``segment.attributed_orders``,
which ``segment_customers`` always builds for SegmentResult.orders but this script did not)
and the portrait columns (``custtool.portrait.portrait_columns``). Measured 2026-12-02 on the
shared 2-core machine (load average 3.7–6.4, other engineers' tests running), one run each:
3,000,000 orders / 300,000 customers: portrait 3.44 s against 17.66 s for the rest without
the attributed orders (+19%); attributed orders 4.50 s. 10,000,000 orders / 1,000,000
customers: portrait 7.59 s against 30.59 s (+25%, target ≤ 30%); attributed orders 12.14 s;
peak 4.4 GB (3.1 GB before the attributed orders are built).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER_DTYPES = {
    "订单号": "str",
    "客户ID": "str",
    "手机号": "str",
    "渠道": "str",
    "品类": "str",
    "实付金额": "float64",
    "数量": "float64",
}
CUSTOMER_DTYPES = {
    "客户ID": "str",
    "姓名": "str",
    "手机号": "str",
    "邮箱": "str",
    "性别": "str",
    "年龄": "float64",
    "城市": "str",
    "注册时间": "str",
    "渠道": "str",
    "会员等级": "str",
}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def read_orders(path: Path):
    import pandas as pd

    return pd.read_csv(
        path, engine="pyarrow", dtype=ORDER_DTYPES, parse_dates=["下单时间"], keep_default_na=False
    )


def run_baseline(data: Path) -> dict:
    import pandas as pd  # noqa: F401 - imported before the clock starts, as in run_segment
    import pyarrow  # noqa: F401

    t0 = time.perf_counter()
    df = read_orders(data / "orders.csv")
    t1 = time.perf_counter()
    g = df.groupby("客户ID").agg(
        first=("下单时间", "min"),
        last=("下单时间", "max"),
        orders=("订单号", "count"),
        amount=("实付金额", "sum"),
    )
    t2 = time.perf_counter()
    return {
        "read": t1 - t0,
        "groupby": t2 - t1,
        "total": t2 - t0,
        "peak_mb": peak_mb(),
        "groups": len(g),
    }


def run_segment(data: Path, engine: str, portrait: bool = False) -> dict:
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from custtool.io import write_table
    from custtool.ltv import fit_ltv
    from custtool.metrics import customer_metrics
    from custtool.rfm import assign_lifecycle, rfm_classes, rfm_scores, value_tiers

    steps: dict[str, dict] = {}
    t = time.perf_counter()
    start = t

    def mark(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] = {"seconds": now - t, "peak_mb": peak_mb()}
        t = now

    orders = read_orders(data / "orders.csv").rename(
        columns={
            "订单号": "order_id",
            "客户ID": "customer_id",
            "手机号": "phone",
            "下单时间": "order_time",
            "实付金额": "amount",
            "渠道": "channel",
            "品类": "category",
            "数量": "quantity",
        }
    )
    customers = pd.read_csv(
        data / "customers.csv", engine="pyarrow", dtype=CUSTOMER_DTYPES, keep_default_na=False
    ).rename(
        columns={
            "客户ID": "customer_id",
            "姓名": "name",
            "手机号": "phone",
            "邮箱": "email",
            "性别": "gender",
            "年龄": "age",
            "城市": "city",
            "注册时间": "first_contact_date",
            "渠道": "_channel",
            "会员等级": "member_level",
        }
    )
    mark("read")
    metrics, report = customer_metrics(orders, customers, engine=engine)
    mark("metrics")
    if portrait:  # the portrait columns (custtool.portrait) from the attributed orders
        from custtool.portrait import portrait_columns
        from custtool.segment import attributed_orders

        attributed = attributed_orders(orders, report)
        mark("attributed")
        del orders
        metrics = pd.concat(
            [metrics, portrait_columns(attributed, metrics, positions=report.used_customers)],
            axis=1,
        )
        del attributed
        mark("portrait")
    else:
        del orders
    scores = rfm_scores(metrics)
    classes = rfm_classes(metrics)
    seg = pd.concat(
        [
            metrics,
            scores,
            classes[["rfm_class"]],
            value_tiers(metrics).rename("tier"),
            assign_lifecycle(metrics),
        ],
        axis=1,
    )
    mark("scores")
    ltv, info = fit_ltv(seg)
    seg = pd.concat([seg.drop(columns=["historical_value"]), ltv], axis=1)
    mark("ltv_fit")
    out = data / "segmented.parquet"
    write_table(seg, out)
    mark("write")
    return {
        "steps": steps,
        "total": time.perf_counter() - start,
        "peak_mb": peak_mb(),
        "customers": len(seg),
        "orders_used": report.orders_used,
        "rows_unmatched": report.rows_unmatched,
        "rows_duplicate": report.rows_duplicate,
        "matched_by": report.matched_by,
        "bgnbd": info.bgnbd.to_dict() if info.bgnbd else info.bgnbd_reason,
        "gamma_gamma": info.gamma_gamma.to_dict() if info.gamma_gamma else info.gamma_gamma_reason,
        "classes": seg["rfm_class"].value_counts().to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="segment benchmark")
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--orders", type=int, default=10_000_000)
    ap.add_argument("--data", type=Path, default=Path("/tmp/custtool_bench"))
    ap.add_argument("--engine", default="pandas", choices=["pandas", "duckdb"])
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="alternate baseline and segment this many times (noisy machines)",
    )
    ap.add_argument(
        "--portrait",
        action="store_true",
        help="also build the attributed orders and the portrait columns (timed as their own steps)",
    )
    ap.add_argument("--child", choices=["baseline", "segment"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "baseline":
        print(json.dumps(run_baseline(args.data)))
        return 0
    if args.child == "segment":
        print(
            json.dumps(
                run_segment(args.data, args.engine, args.portrait), ensure_ascii=False, default=str
            )
        )
        return 0
    if not (args.data / "orders.csv").exists():
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "generate.py"),
                "--customers",
                str(args.customers),
                "--orders",
                str(args.orders),
                "--out",
                str(args.data),
            ],
            check=True,
        )
        print(
            f"generated {args.customers:,} customers / {args.orders:,} orders in {time.perf_counter() - t0:.1f} s"
        )
    me = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--data",
        str(args.data),
        "--engine",
        args.engine,
        *(["--portrait"] if args.portrait else []),
    ]
    ratios = []
    for run in range(1, args.repeat + 1):
        base = json.loads(
            subprocess.run(
                [*me, "--child", "baseline"], check=True, capture_output=True, text=True
            ).stdout
        )
        seg = json.loads(
            subprocess.run(
                [*me, "--child", "segment"], check=True, capture_output=True, text=True
            ).stdout
        )
        if run == 1:
            print(
                f"data: {args.data} ({seg['customers']:,} customers, {seg['orders_used']:,} orders used, "
                f"{seg['rows_duplicate']:,} duplicate rows, {seg['rows_unmatched']:,} unmatched; matched by {seg['matched_by']})"
            )
        print(
            f"run {run}: baseline read_csv(pyarrow)+groupby.agg: {base['total']:.2f} s (read {base['read']:.2f} s, "
            f"groupby {base['groupby']:.2f} s), peak {base['peak_mb']:.0f} MB"
        )
        print(f"run {run}: segment ({args.engine}):")
        for name, st in seg["steps"].items():
            print(f"  {name:<8} {st['seconds']:7.2f} s   peak so far {st['peak_mb']:7.0f} MB")
        read = seg["steps"]["read"]["seconds"]
        metrics = seg["steps"]["metrics"]["seconds"]
        print(f"  total    {seg['total']:7.2f} s   peak {seg['peak_mb']:.0f} MB")
        r = (
            (read + metrics) / base["total"],
            seg["total"] / base["total"],
            seg["peak_mb"] / base["peak_mb"],
        )
        ratios.append(r)
        if "portrait" in seg["steps"]:
            extra = seg["steps"]["attributed"]["seconds"] + seg["steps"]["portrait"]["seconds"]
            rest = seg["total"] - extra
            print(
                f"run {run} portrait: {seg['steps']['portrait']['seconds']:.2f} s (+ attributed "
                f"orders {seg['steps']['attributed']['seconds']:.2f} s) = +{extra / rest * 100:.0f}% "
                f"of the segment without them ({rest:.2f} s; portrait columns alone "
                f"+{seg['steps']['portrait']['seconds'] / rest * 100:.0f}%; target ≤ 30%)"
            )
        print(
            f"run {run} ratios: read+metrics {r[0]:.2f}x (target ≤ 1.5x), whole {r[1]:.2f}x (target ≤ 3x), "
            f"peak memory {r[2]:.2f}x (target ≤ 1.5x)"
        )
    if len(ratios) > 1:
        import statistics

        med = [statistics.median(x[i] for x in ratios) for i in range(3)]
        print(
            f"median of {len(ratios)} runs: read+metrics {med[0]:.2f}x, whole {med[1]:.2f}x, peak memory {med[2]:.2f}x"
        )
    print(f"BG/NBD: {seg['bgnbd']}")
    print(f"Gamma-Gamma: {seg['gamma_gamma']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
