"""Benchmark: what a pipeline run does after its report step, on a finished run's outputs.

    .venv/bin/python bench/after_report_bench.py --from-run /tmp/s8/run1m/2024-06-30

Times, one after the other in this process (wall, CPU of all threads, CPU of this thread):

* ``cards``: ``individual_cards`` (top 20) and ``group_cards`` by rfm_class (analyst role,
  masked) as the run makes them: from orders_attributed.parquet's path (DuckDB counts the
  categories in the file), and the two together;
* ``attributed``: ``read_attributed`` of the cards' columns (codes) and the same cards from
  that DataFrame (how the run made them before; ``custtool cards --orders``); with
  ``cards`` too, the two are checked equal;
* customers.parquet (``write_table``) and customers.csv (``write_csv_blocks`` over
  ``mask_frame``), as the run's second thread writes them;
* ``tail`` (only when named): as the run does it, those two files written in a second
  thread while this one makes the cards from the file and writes cards.html; the wall
  until both are done (the cards and the CSV writer contend for the GIL and the cores);
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
    ap.add_argument(
        "--only", default="", help="comma-separated: attributed,cards,csv,book (and tail)"
    )
    args = ap.parse_args(argv)
    only = {w for w in args.only.split(",") if w}

    from custtool.book import append_run, run_kpis
    from custtool.cards import group_cards, individual_cards, write_cards
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

    def cards(orders, label: str):
        t0, c0 = time.perf_counter(), time.process_time()
        ind = timed(
            f"individual_cards{label}",
            individual_cards,
            final,
            None,
            top=20,
            orders=orders,
            attributed=True,
            role="analyst",
            mask=True,
        )
        grp = timed(
            f"group_cards{label}",
            group_cards,
            final,
            by="rfm_class",
            orders=orders,
            attributed=True,
            role="analyst",
        )
        return ind, grp, time.perf_counter() - t0, time.process_time() - c0

    attributed_path = args.from_run / "orders_attributed.parquet"
    from_frame = None
    if not only or "attributed" in only:
        t0, c0 = time.perf_counter(), time.process_time()
        attributed = timed(
            "read_attributed cards",
            read_attributed,
            attributed_path,
            CARD_ORDER_COLUMNS,
            codes=True,
        )
        from_frame = cards(attributed, " (frame)")
        attributed = None
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{'cards from a frame':<22} {wall:7.2f} s wall  CPU {cpu:6.2f} s in all", flush=True)
    if not only or "cards" in only:
        ind, grp, wall, cpu = cards(attributed_path, "")
        print(
            f"{'cards from the file':<22} {wall:7.2f} s wall  CPU {cpu:6.2f} s in all", flush=True
        )
        if from_frame is not None:
            import pandas as pd

            pd.testing.assert_frame_equal(ind, from_frame[0])
            pd.testing.assert_frame_equal(grp, from_frame[1])
            print("the same cards from the file and from the frame", flush=True)

    def side_files(wall: dict) -> None:
        t0 = time.perf_counter()
        write_table(final.copy(deep=False), args.out / "customers.parquet")
        write_csv_blocks(
            role_view(final, get_role("analyst")).copy(deep=False),
            args.out / "customers.csv",
            lambda block: mask_frame(block, mask=True),
        )
        wall["side"] = time.perf_counter() - t0

    if "tail" in only:
        import threading

        wall: dict = {}
        t0, c0, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        side = threading.Thread(target=side_files, args=(wall,))
        side.start()
        ind, grp, _w, _c = cards(attributed_path, " (tail)")
        write_cards(ind, grp, args.out / "cards.html", fmt="html")
        cards_wall = time.perf_counter() - t0
        side.join()
        print(
            f"{'tail':<22} {time.perf_counter() - t0:7.2f} s wall  CPU "
            f"{time.process_time() - c0:6.2f} s (cards {cards_wall:.2f} s, customers.parquet + "
            f".csv thread {wall['side']:.2f} s)  load {load:.1f} -> {os.getloadavg()[0]:.1f}",
            flush=True,
        )
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
