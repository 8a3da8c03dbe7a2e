"""Benchmark: what a pipeline run does after its report step, on a finished run's outputs.

    .venv/bin/python bench/after_report_bench.py --from-run /tmp/s8/run1m/2024-06-30

Times, one after the other in this process (wall, CPU of all threads, CPU of this thread):

* ``read_attributed`` of the cards' columns (codes, as the run reads them);
* ``individual_cards`` (top 20) and ``group_cards`` by rfm_class (analyst role, masked);
* customers.parquet (``write_table``) and customers.csv (``write_csv_blocks`` over
  ``mask_frame``), as the run's second thread writes them;
* ``book.append_run`` of the customers to a fresh book.

Outputs go to ``--out`` (never into the run folder); ``--only NAME,…`` times some of them.
Prints the load average: the machine is shared, compare CPU seconds, not only wall.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from-run", type=Path, required=True, help="a run's output folder")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "after_report_out")
    ap.add_argument("--only", default="", help="comma-separated: attributed,cards,csv,book")
    args = ap.parse_args(argv)
    only = {w for w in args.only.split(",") if w}

    from custtool.book import append_run, run_kpis
    from custtool.cards import group_cards, individual_cards
    from custtool.io import read_table, write_csv_blocks, write_table
    from custtool.pipeline import CARD_ORDER_COLUMNS, read_attributed
    from custtool.report.masking import get_role, mask_frame, role_view

    args.out.mkdir(parents=True, exist_ok=True)
    final = read_table(args.from_run / "customers.parquet")
    print(f"{len(final):,} customers x {len(final.columns)} columns", flush=True)

    def timed(name: str, fn, *a, **kw):
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        load = os.getloadavg()[0]
        out = fn(*a, **kw)
        print(
            f"{name:<22} {time.perf_counter() - t0:7.2f} s wall  CPU {time.process_time() - c0:6.2f} s"
            f" (this thread {time.thread_time() - m0:6.2f} s)  load {load:.1f} -> "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )
        return out

    attributed = None
    if not only or {"attributed", "cards"} & only:
        attributed = timed(
            "read_attributed cards",
            read_attributed,
            args.from_run / "orders_attributed.parquet",
            CARD_ORDER_COLUMNS,
            codes=True,
        )
    if not only or "cards" in only:
        timed(
            "individual_cards",
            individual_cards,
            final,
            None,
            top=20,
            orders=attributed,
            attributed=True,
            role="analyst",
            mask=True,
        )
        timed(
            "group_cards",
            group_cards,
            final,
            by="rfm_class",
            orders=attributed,
            attributed=True,
            role="analyst",
        )
    attributed = None
    if not only or "csv" in only:
        timed(
            "customers.parquet", write_table, final.copy(deep=False), args.out / "customers.parquet"
        )
        timed(
            "customers.csv",
            write_csv_blocks,
            role_view(final, get_role("analyst")).copy(deep=False),
            args.out / "customers.csv",
            lambda block: mask_frame(block, mask=True),
        )
    if not only or "book" in only:
        book = args.out / "book.duckdb"
        book.unlink(missing_ok=True)
        timed("book.append_run", append_run, book, final, as_of="2024-06-30", kpis=run_kpis(final))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
