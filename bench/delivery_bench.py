"""Benchmark: the delivery outputs (issue 17) beside the report workbook.

    .venv/bin/python bench/delivery_bench.py                      # 20,000 and 100,000 customers
    .venv/bin/python bench/delivery_bench.py --sizes 5000 --owners 20

Per size, one process each (peak RSS is its own): report.xlsx (write_workbook), report.html
(write_html), report.pdf (write_pdf, needs weasyprint) and the per-owner workbooks
(write_owner_workbooks; ``--owners`` owners, about 10% of the customers without one).
The HTML and the PDF hold aggregates only, so their time hardly grows with the customers;
the owner workbooks together write every customer once more, plus per-owner sheets.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one(kind: str, n: int, owners: int, folder: str) -> dict:
    import numpy as np

    from bench.report_bench import make_customers, make_orders

    customers = make_customers(n)
    rng = np.random.default_rng(7)
    names = np.array([f"销售{i:02d}" for i in range(owners)] + [""], dtype=object)
    weights = np.r_[np.full(owners, 0.9 / owners), 0.1]
    customers["owner"] = names[rng.choice(len(names), n, p=weights)]
    orders = make_orders(customers) if kind in {"xlsx", "owners"} else None
    t0 = time.perf_counter()
    out = Path(folder)
    if kind == "xlsx":
        from custtool.report import write_workbook

        write_workbook(customers, out / "report.xlsx", orders=orders)
    elif kind == "html":
        from custtool.report.document import write_html

        write_html(customers, out / "report.html")
    elif kind == "pdf":
        from custtool.report.document import write_pdf

        write_pdf(customers, out / "report.pdf")
    else:
        from custtool.report.owners import write_owner_workbooks

        write_owner_workbooks(customers, out / "owners", orders=orders)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "kind": kind,
        "n": n,
        "seconds": round(seconds, 2),
        "mb": round(size / 1e6, 2),
        "peak_rss_mb": round(peak),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--owners", type=int, default=20)
    ap.add_argument("--kinds", default="xlsx,html,pdf,owners")
    ap.add_argument("--one", nargs=3, metavar=("KIND", "N", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        kind, n, folder = args.one
        print(json.dumps(one(kind, int(n), args.owners, folder)))
        return
    print(f"{'customers':>10} {'output':>8} {'seconds':>8} {'MB':>7} {'peak RSS MB':>12}")
    for n in (int(s) for s in args.sizes.split(",")):
        for kind in args.kinds.split(","):
            with tempfile.TemporaryDirectory() as d:
                res = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--owners",
                        str(args.owners),
                        "--one",
                        kind,
                        str(n),
                        d,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(res.stdout.strip().splitlines()[-1])
                print(f"{n:>10,} {kind:>8} {r['seconds']:>8} {r['mb']:>7} {r['peak_rss_mb']:>12}")


if __name__ == "__main__":
    main()
