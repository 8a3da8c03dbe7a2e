"""Orders past memory, end to end: generated order lines imported and segmented with DuckDB.

    python bench/ooc_e2e_bench.py --orders 100000000 --customers 5000000 --data /tmp/e2e
    python bench/ooc_e2e_bench.py --orders 1000000 --customers 100000 --data /tmp/e2e1m

Writes ``orders.csv`` (the export's Chinese headers, as bench/generate.py makes them;
streamed to disk 1,000,000 lines at a time, never held whole — the customers table the
generator draws from is made once) and ``customers.parquet`` (the customers, canonical
columns; customers stay on pandas), then runs, each as a child process whose whole process
tree's resident memory is sampled from /proc every 0.1 s:

* ``custtool import orders.csv --kind orders --engine duckdb --memory-limit 2GB -o orders.parquet``
* ``custtool segment customers.parquet --orders orders.parquet --engine duckdb --memory-limit 2GB``

and prints the wall time and peak RSS of each (and the import's row accounting). The
generated files and outputs are deleted afterwards unless ``--keep``.

Target (issue 18): 100M generated orders end to end with a 2 GB limit completes; report
time and peak. Figures measured are in the README's performance section.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 1_000_000


def write_orders_csv(path: Path, n: int, customers: int, seed: int = 0) -> None:
    """``n`` order lines as one UTF-8 CSV, ``CHUNK`` at a time (order numbers made unique
    per chunk; the customers drawn from — those of :func:`write_customers` — generated once)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    import bench.generate as gen

    original = gen._customers_table
    made = functools.lru_cache(maxsize=1)(original)
    # every chunk draws from the same customers (those of customers.parquet, seed 0), made
    # once: the generator would make them again per chunk, with the chunk's seed
    gen._customers_table = lambda n, seed=0: made(n, 0)  # type: ignore[assignment]
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            done = k = 0
            while done < n:
                size = min(CHUNK, n - done)
                table = gen._orders_table(customers, size, seed + k)
                ids = pc.binary_join_element_wise(pa.scalar(f"C{k}-"), table["订单号"], "")
                table = table.set_column(0, "订单号", ids)
                options = pcsv.WriteOptions(include_header=(k == 0))
                pcsv.write_csv(table, f, write_options=options)
                done += size
                k += 1
    finally:
        gen._customers_table = original  # type: ignore[assignment]
    tmp.replace(path)


def write_customers(path: Path, n: int, seed: int = 0) -> None:
    """The customers of the generated orders, canonical columns (as the clean step has them)."""
    import pyarrow.parquet as pq

    from bench.generate import _customers_table

    c = _customers_table(n, seed)
    c = c.rename_columns(
        ["customer_id", "name", "phone", "email", "gender", "age", "city", "register_date"]
        + ["channel", "member_level"]
    )
    pq.write_table(c, path)


def main(argv: list[str] | None = None) -> int:
    from bench.ooc_segment_bench import run_child

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=100_000_000)
    ap.add_argument("--customers", type=int, default=5_000_000)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--keep", action="store_true", help="keep the generated files and outputs")
    args = ap.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    csv, customers = args.data / "orders.csv", args.data / "customers.parquet"
    out = args.data / "orders.parquet"
    try:
        t0 = time.perf_counter()
        if not customers.exists():
            write_customers(customers, args.customers)
        if not csv.exists():
            write_orders_csv(csv, args.orders, args.customers)
        print(
            f"generated {args.orders:,} orders ({csv.stat().st_size / 1e9:.2f} GB CSV) and "
            f"{args.customers:,} customers in {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        py = sys.executable
        limit = ["--memory-limit", args.memory_limit]
        results = []
        cmd = [py, "-m", "custtool", "import", str(csv), "--kind", "orders"]
        cmd += ["--engine", "duckdb", *limit, "-o", str(out), "--json", "--quiet"]
        results.append(run_child("import", cmd))
        if results[-1]["exit"] == 0:
            cmd = [py, "-m", "custtool", "segment", str(customers), "--orders", str(out)]
            cmd += ["--engine", "duckdb", *limit, "-o", str(args.data / "segments.parquet")]
            cmd += ["--json", "--quiet"]
            results.append(run_child("segment", cmd))
        print(
            f"\n{args.orders:,} orders / {args.customers:,} customers, --memory-limit "
            f"{args.memory_limit}; load {os.getloadavg()}"
        )
        print(f"{'step':<10}{'wall s':>10}{'peak GB':>10}{'exit':>6}")
        for r in results:
            print(f"{r['name']:<10}{r['seconds']:>10.1f}{r['peak_gb']:>10.3f}{r['exit']:>6}")
        total = sum(r["seconds"] for r in results)
        print(f"{'total':<10}{total:>10.1f}{max(r['peak_gb'] for r in results):>10.3f}")
    finally:
        if not args.keep:
            shutil.rmtree(args.data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
