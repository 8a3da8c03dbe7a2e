"""Benchmark `segment` out of core: pandas vs DuckDB (--memory-limit) vs Spark vs a bare
DuckDB GROUP BY over the same orders Parquet (issue 18).

    python bench/ooc_segment_bench.py --customers 100000 --orders 1000000 --data /tmp/ooc1m
    python bench/ooc_segment_bench.py --customers 1000000 --orders 10000000 --data /tmp/ooc10m \\
        --engines duckdb,spark

Writes ``orders.parquet`` (canonical columns, order_time a timestamp) and
``customers.parquet`` from bench/generate.py when missing, then runs each in its own process
and polls the process tree's resident memory (the Spark JVM included) every 0.1 s:

* floor: ``SELECT customer_id, count(*), sum(amount), min(order_time), max(order_time) …
  GROUP BY customer_id`` in DuckDB over the Parquet (same --memory-limit);
* metrics-<engine>: ``customer_metrics(orders.parquet, customers, engine=…)`` alone — the
  seam the floor is compared with;
* segment-<engine>: ``custtool segment customers.parquet --orders orders.parquet --engine …
  --json`` (the whole step: metrics, scores, classes, LTV fit, NPS, portrait).

Prints wall time, CPU time (user + system, the child's own and its waited-for children's:
steadier than wall time on a loaded machine), peak RSS of each child and the ratios to the
floor (and Spark/DuckDB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_data(folder: Path, n_customers: int, n_orders: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from bench.generate import _customers_table, _orders_table

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "customers.parquet").exists():
        c = _customers_table(n_customers, seed)
        c = c.rename_columns(
            ["customer_id", "name", "phone", "email", "gender", "age", "city", "register_date"]
            + ["channel", "member_level"]
        )
        pq.write_table(c, folder / "customers.parquet")
    if not (folder / "orders.parquet").exists():
        o = _orders_table(n_customers, n_orders, seed)
        t = pc.strptime(o["下单时间"], format="%Y-%m-%d %H:%M:%S", unit="s").cast(
            pa.timestamp("us")
        )
        o = pa.table(
            {
                "order_id": o["订单号"],
                "customer_id": o["客户ID"],
                "phone": o["手机号"],
                "order_time": t,
                "amount": o["实付金额"],
                "channel": o["渠道"],
                "category": o["品类"],
                "quantity": o["数量"],
            }
        )
        pq.write_table(o, folder / "orders.parquet", row_group_size=1 << 20)


FLOOR = """
import sys, duckdb
con = duckdb.connect()
if sys.argv[2]:
    con.execute(f"SET memory_limit = '{sys.argv[2]}'")
con.execute("SET preserve_insertion_order = false")
con.execute("SET enable_progress_bar = false")
n = con.execute(f'''SELECT count(*) FROM (SELECT customer_id, count(*), sum(amount),
    min(order_time), max(order_time) FROM read_parquet('{sys.argv[1]}')
    GROUP BY customer_id)''').fetchone()[0]
print(n)
"""

METRICS = """
import sys
import pandas as pd
from custtool.metrics import customer_metrics
customers = pd.read_parquet(sys.argv[2])
m, rep = customer_metrics(sys.argv[1], customers, engine=sys.argv[3],
                          memory_limit=sys.argv[4] or None, spark_master=sys.argv[5] or None)
print(len(m), rep.rows_used, int(m["frequency"].sum()), round(float(m["monetary"].sum()), 2))
"""


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_child(name: str, args: list[str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, usage = 0, None
    while usage is None:
        peak = max(peak, _tree_rss(proc.pid))
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            usage = rusage
            proc.returncode = os.waitstatus_to_exitcode(status)
        else:
            time.sleep(0.1)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    res = {"name": name, "seconds": round(wall, 2), "peak_gb": round(peak / 1e9, 3)}
    # CPU seconds (user + system) of the child and what it waited for (the Spark JVM):
    # steadier than wall time on a machine others load
    res["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    res["exit"] = proc.returncode
    res["out"] = out.strip()[-300:]
    if proc.returncode:
        res["err"] = err.strip()[-600:]
    print(json.dumps(res, ensure_ascii=False), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--engines", default="pandas,duckdb,spark")
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--spark-master", default="local[*]")
    ap.add_argument("--no-segment", action="store_true", help="only the floor and metrics")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    write_data(args.data, args.customers, args.orders)
    print(f"data ready in {time.perf_counter() - t0:.1f} s: {args.data}", file=sys.stderr)
    orders, customers = str(args.data / "orders.parquet"), str(args.data / "customers.parquet")
    py = sys.executable
    results = {"floor": run_child("floor", [py, "-c", FLOOR, orders, args.memory_limit])}
    for engine in args.engines.split(","):
        limit = args.memory_limit if engine == "duckdb" else ""
        master = args.spark_master if engine == "spark" else ""
        results[f"metrics-{engine}"] = run_child(
            f"metrics-{engine}", [py, "-c", METRICS, orders, customers, engine, limit, master]
        )
        if not args.no_segment:
            cmd = [py, "-m", "custtool", "segment", customers, "--orders", orders]
            cmd += ["--engine", engine, "--json", "--quiet"]
            if limit:
                cmd += ["--memory-limit", limit]
            if master:
                cmd += ["--spark-master", master]
            results[f"segment-{engine}"] = run_child(f"segment-{engine}", cmd)
    floor = results["floor"]["seconds"]
    print(f"\n{args.orders:,} orders / {args.customers:,} customers; load {os.getloadavg()}")
    floor_cpu = results["floor"]["cpu_s"] or 1e-9
    print(f"{'run':<18}{'wall s':>9}{'cpu s':>9}{'peak GB':>9}{'× floor':>9}{'cpu ×':>9}")
    for name, r in results.items():
        print(
            f"{name:<18}{r['seconds']:>9.2f}{r['cpu_s']:>9.2f}{r['peak_gb']:>9.3f}"
            f"{r['seconds'] / floor:>9.2f}{r['cpu_s'] / floor_cpu:>9.2f}"
        )
    if "metrics-spark" in results and "metrics-duckdb" in results:
        ratio = results["metrics-spark"]["seconds"] / results["metrics-duckdb"]["seconds"]
        print(f"Spark / DuckDB (metrics): {ratio:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
