"""Where the monthly run's memory goes, function by function (issue 12 memory work).

    .venv/bin/python bench/memory_profile.py bench/data/pipeline-300000-3000000-s0/pipeline.yaml

Runs ``custtool.pipeline.run_pipeline`` in this process on a pipeline file that
``bench/pipeline_bench.py`` generated, with a thread sampling the resident size (VmRSS)
every 5 ms, and wraps the report, cards, book and follow-up functions: each prints its RSS
at entry, the peak while it ran (+ over the entry), RSS at exit, the bytes Arrow's pool
holds and its seconds. Nested calls are indented. Slower than the bench (the wrappers and
the sampler); for finding which frames are alive at a peak, not for timings.
"""

import functools
import importlib
import sys
import threading
import time

import pyarrow as pa


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


cur = [0.0]
peaks = []


def sampler():
    while True:
        r = rss()
        cur[0] = r
        for p in peaks:
            p[0] = max(p[0], r)
        time.sleep(0.005)


threading.Thread(target=sampler, daemon=True).start()
depth = [0]


def wrap(modname, attr, cls=None):
    m = importlib.import_module(modname)
    owner = getattr(m, cls) if cls else m
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def w(*a, **k):
        p = [rss()]
        peaks.append(p)
        start = p[0]
        t = time.time()
        depth[0] += 1
        try:
            return fn(*a, **k)
        finally:
            depth[0] -= 1
            peaks[:] = [q for q in peaks if q is not p]
            end = rss()
            for q in peaks:
                q[0] = max(q[0], p[0])
            print(
                f"{'  ' * depth[0]}{attr:<24} start {start:7.0f} peak {p[0]:7.0f} (+{p[0] - start:5.0f}) end {end:7.0f} arrow {pa.total_allocated_bytes() / 1e6:6.0f} {time.time() - t:6.1f}s",
                flush=True,
            )

    setattr(owner, attr, w)
    return w


targets = [
    ("custtool.report.workbook", "write_workbook"),
    ("custtool.report.workbook", "prepare_customers"),
    ("custtool.report.workbook", "_write_summary"),
    ("custtool.report.workbook", "_write_segment_sheet"),
    ("custtool.report.workbook", "_write_quality"),
    ("custtool.report.workbook", "_write_funnel"),
    ("custtool.report.workbook", "_write_migration"),
    ("custtool.report.workbook", "_display_values"),
    ("custtool.report.workbook", "data_sheet", "_Sheets"),
    ("custtool.report.masking", "role_view"),
    ("custtool.io", "write_csv_blocks"),
    ("custtool.pipeline", "read_attributed"),
    ("custtool.cards", "group_cards"),
    ("custtool.cards", "tag_lift"),
    ("custtool.cards", "_segment_categories"),
    ("custtool.cards", "individual_cards"),
    ("custtool.cards", "write_cards"),
    ("custtool.book", "append_run"),
    ("custtool.book", "run_kpis"),
    ("custtool.book", "_followup_rows"),
    ("custtool.followups", "apply_transitions"),
    ("custtool.followups", "due_followups"),
    ("custtool.followups", "task_sheets"),
    ("custtool.tags", "apply_tags"),
]


def main() -> None:
    import custtool.pipeline as P

    for t in targets:
        w = wrap(*t)
        # rebind names imported into pipeline / workbook modules
        for modname in ("custtool.pipeline", "custtool.report.workbook", "custtool.cards"):
            m = importlib.import_module(modname)
            if (
                t[-1] != "_Sheets"
                and len(t) == 2
                and getattr(m, t[1], None) is not None
                and m.__name__ != t[0]
            ):
                setattr(m, t[1], w)

    def prog(name):
        rss_now, arrow = rss(), pa.total_allocated_bytes() / 1e6
        print(f"== step {name} rss {rss_now:.0f} arrow {arrow:.0f}", flush=True)

    t0 = time.time()
    P.run_pipeline(sys.argv[1], progress=prog)
    with open("/proc/self/status") as f:
        hwm = f.read().split("VmHWM:")[1].split("\n")[0].strip()
    print(f"done {time.time() - t0:.1f}s; VmHWM {hwm}")


if __name__ == "__main__":
    main()
