"""Out-of-core orders import: ``custtool import --kind orders`` with both engines.

    python bench/ooc_import_bench.py --orders 1000000
    python bench/ooc_import_bench.py --orders 10000000 --only duckdb --memory-limit 1GB
    python bench/ooc_import_bench.py --orders 10000000 --only duckdb --all-rejected

Writes N generated orders (bench/generate.py, in chunks of 1,000,000 so that generating does
not itself need the memory under test) as one CSV in ``--out`` (default bench/data/ooc), then
runs the import in a child process per engine and prints its wall time, CPU seconds (user +
system, all threads) and peak RSS (the child's ``ru_maxrss``, read in a fresh parent process
per run), and that both engines wrote the same row and reject counts. ``--all-rejected``
writes the same orders with every 下单时间 unparseable (``不详``): every line rejected, the
rejects file as long as the input. ``--trace FILE`` writes the child's resident size
(``/proc/<pid>/status``) every 0.1 s as ``seconds<TAB>MB`` lines. The rejects file's
SHA-256 (first 16 digits) is printed, to compare runs. The CSV is deleted
afterwards unless ``--keep``.

Target (issue 18): 10M orders, ``--engine duckdb --memory-limit 1GB``: peak RSS <= 1.5 GB.
Figures measured are in the README's performance section.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 1_000_000


def write_orders(
    path: Path, n: int, customers: int, seed: int = 0, *, all_rejected: bool = False
) -> None:
    """``n`` orders as one UTF-8 CSV, generated ``CHUNK`` at a time (order numbers made
    unique per chunk); ``all_rejected``: every 下单时间 is ``不详`` (no order time)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    from bench.generate import _orders_table

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        done = 0
        k = 0
        while done < n:
            size = min(CHUNK, n - done)
            table = _orders_table(customers, size, seed + k)
            ids = pc.binary_join_element_wise(pa.scalar(f"C{k}-"), table["订单号"], "")
            table = table.set_column(0, "订单号", ids)
            if all_rejected:
                j = table.schema.get_field_index("下单时间")
                table = table.set_column(j, "下单时间", pa.repeat(pa.scalar("不详"), size))
            pcsv.write_csv(table, f, write_options=pcsv.WriteOptions(include_header=(k == 0)))
            done += size
            k += 1
    tmp.replace(path)


def run_import(
    csv: Path, engine: str, memory_limit: str | None, out: Path, trace: Path | None = None
) -> dict:
    """One import in a child process: wall and CPU seconds, peak RSS (GB) and its --json;
    ``trace``: the child's resident size every 0.1 s written there."""
    cmd = [
        sys.executable,
        "-m",
        "custtool",
        "import",
        str(csv),
        "--kind",
        "orders",
        "--engine",
        engine,
        "-o",
        str(out),
        "--json",
        "--quiet",
    ]
    if memory_limit:
        cmd += ["--memory-limit", memory_limit]
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    done = threading.Event()
    sampler = None
    if trace is not None:
        sampler = threading.Thread(target=_trace_rss, args=(child.pid, t0, trace, done))
        sampler.start()
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - t0
    done.set()
    if sampler is not None:
        sampler.join()
    # the calling process starts no other child (see main): this is the import's own peak
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {"engine": engine, "memory_limit": memory_limit, "seconds": round(wall, 1)}
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    result["peak_rss_gb"] = round(usage.ru_maxrss * 1024 / 1e9, 2)
    result["exit"] = child.returncode
    if child.returncode == 0:
        data = json.loads(stdout)
        result["totals"] = data["totals"]
        if data.get("rejects") and Path(data["rejects"]).exists():  # to compare runs' bytes
            result["rejects_sha256"] = _sha256(Path(data["rejects"]))[:16]
    else:
        result["stderr"] = stderr.decode("utf-8", "replace")[-500:]
    return result


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def _trace_rss(pid: int, t0: float, path: Path, done: threading.Event) -> None:
    """``seconds<TAB>MB`` of process ``pid``'s VmRSS every 0.1 s until ``done``."""
    with open(path, "w") as f:
        while not done.wait(0.1):
            try:
                with open(f"/proc/{pid}/status") as st:
                    rss = next(line for line in st if line.startswith("VmRSS:"))
            except (OSError, StopIteration):  # ended, or a zombie without VmRSS
                continue
            f.write(f"{time.perf_counter() - t0:.2f}\t{int(rss.split()[1]) // 1024}\n")
            f.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=None, help="default: orders / 10")
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--only", choices=["pandas", "duckdb"], default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "data" / "ooc")
    ap.add_argument("--keep", action="store_true", help="keep the generated CSV")
    ap.add_argument(
        "--all-rejected", action="store_true", help="every 下单时间 unparseable: all rejected"
    )
    ap.add_argument("--trace", type=Path, default=None, help="RSS every 0.1 s written here")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_rejected" if args.all_rejected else ""
    csv = args.out / f"orders_{args.orders}{suffix}.csv"
    if not csv.exists():
        t0 = time.perf_counter()
        customers = args.customers or max(1000, args.orders // 10)
        write_orders(csv, args.orders, customers, all_rejected=args.all_rejected)
        print(
            f"generated {args.orders:,} orders in {time.perf_counter() - t0:.0f} s: "
            f"{csv.stat().st_size / 1e9:.2f} GB",
            file=sys.stderr,
        )
    engines = [args.only] if args.only else ["duckdb", "pandas"]
    results = []
    try:
        for engine in engines:
            # one fresh process per run, so each peak is its own (RUSAGE_CHILDREN is a max)
            code = (
                "import json,sys;from pathlib import Path;"
                "sys.path.insert(0, sys.argv[1]);"
                "from bench.ooc_import_bench import run_import;"
                "print(json.dumps(run_import(Path(sys.argv[2]), sys.argv[3], sys.argv[4] or None, "
                "Path(sys.argv[5]), Path(sys.argv[6]) if sys.argv[6] else None)))"
            )
            limit = args.memory_limit if engine == "duckdb" else ""
            out = args.out / f"orders_{engine}.parquet"
            trace = ""
            if args.trace is not None:
                trace = str(args.trace.with_name(f"{args.trace.stem}_{engine}{args.trace.suffix}"))
            argv_child = [str(ROOT), str(csv), engine, limit, str(out), trace]
            done = subprocess.run(
                [sys.executable, "-c", code, *argv_child],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(r)
            print(json.dumps(r, ensure_ascii=False))
    finally:
        if not args.keep:
            csv.unlink(missing_ok=True)
    ok = [r for r in results if r.get("exit") == 0]
    if len(ok) == 2:
        same = ok[0]["totals"] == ok[1]["totals"]
        print(f"same totals with both engines: {same}", file=sys.stderr)
        print(f"same output and rejects, frame for frame: {same_files(args.out)}", file=sys.stderr)
    for engine in engines:
        (args.out / f"orders_{engine}.parquet").unlink(missing_ok=True)
        (args.out / f"orders_{engine}_rejects.csv").unlink(missing_ok=True)
    return 0


def same_files(folder: Path) -> bool:
    """Whether both engines wrote the same Parquet output and rejects file."""
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(
            pd.read_parquet(folder / "orders_duckdb.parquet"),
            pd.read_parquet(folder / "orders_pandas.parquet"),
        )
        pd.testing.assert_frame_equal(
            pd.read_csv(folder / "orders_duckdb_rejects.csv", dtype=str),
            pd.read_csv(folder / "orders_pandas_rejects.csv", dtype=str),
        )
    except AssertionError as exc:
        print(str(exc)[:500], file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
