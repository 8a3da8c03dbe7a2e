"""Fuzz `custtool import` with N random mutations of the example exports (issue 13).

    python bench/fuzz.py --n 1000 [--seed 13]

Each mutation (byte flips, truncation, quotes, NULs, mixed encodings, huge fields, many
columns) is imported in-process; prints the count per outcome (ok / CusttoolError / internal
error), the slowest case and the peak memory (ru_maxrss) of the whole run.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzzing import SOURCES, mutate  # noqa: E402

from custtool.errors import CusttoolError  # noqa: E402
from custtool.ingest import import_files  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    slowest = (0.0, "")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            src = rng.choice(SOURCES)
            data, how = mutate(src.read_bytes(), rng)
            f = Path(tmp) / f"m{i}{src.suffix}"
            f.write_bytes(data)
            t0 = time.perf_counter()
            try:
                res = import_files(f)
                t = res.totals
                ok = t["rows_read"] == t["accepted"] + t["rejected"] + t["skipped"]
                outcomes["ok" if ok else "accounting broken"] += 1
            except CusttoolError:
                outcomes["exit 2 (CusttoolError)"] += 1
            except Exception:  # noqa: BLE001 - what the harness counts
                outcomes["internal error"] += 1
                print(f"--- {src.name} {how}", file=sys.stderr)
                traceback.print_exc(limit=3)
            dt = time.perf_counter() - t0
            if dt > slowest[0]:
                slowest = (dt, f"{src.name}: {how}")
            f.unlink()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for k, v in sorted(outcomes.items()):
        print(f"{k:26} {v}")
    print(f"slowest case               {slowest[0]:.2f} s ({slowest[1]})")
    print(f"peak memory                {peak:.0f} MB")


if __name__ == "__main__":
    main()
