"""Benchmark the whole pipeline (import → clean → segment → tag → followups → report → cards).

    /work/venv/bin/python bench/pipeline_bench.py                                  # 1M customers, 10M orders
    /work/venv/bin/python bench/pipeline_bench.py --customers 100000 --orders 1000000   # quicker

Generates (deterministically, seeded; reused when already there) under
``bench/data/pipeline-<customers>-<orders>-s<seed>/``:

* ``customers.csv`` and ``orders.csv`` from bench/generate.py (``_customers_table`` /
  ``_orders_table``, the tables behind ``make_customers`` / ``make_orders``). The customers'
  ``渠道`` header is written as ``来源渠道``: import maps 渠道 only for orders (→ ``channel``),
  so a customers column 渠道 would stay an unknown column instead of ``source_channel``;
* ``跟进记录.csv`` (interactions, default one per 10 customers) and ``满意度调查.csv`` (surveys,
  default one per 20 customers) with the headers of examples/ (记录编号, 手机号, 跟进时间,
  跟进方式, 跟进结果 …), buyers picked among the generated customers by phone;
* ``pipeline.yaml`` naming them, as-of 2024-06-30 (the generator's last day), report masked,
  analyst role, HTML cards.

Then runs ``custtool.pipeline.run_pipeline`` in a child process (custtool imported before the
clock starts) while this process samples the child's resident memory (``VmRSS`` in
/proc/<pid>/status) every 20 ms. The child notes when each step starts (the ``progress``
callback); the manifest gives each step's seconds. Printed per step:

* ``seconds``: the step's time from the manifest (the function the pipeline times);
* ``after``: the untimed work after it until the next step starts (writing Parquet and the
  side workbooks: clean_report.xlsx, segment_summary.xlsx, tag_stats.xlsx, followups.xlsx;
  after cards: group cards, writing cards.html and the manifest). ``pre`` = hashing the inputs;
* ``peak`` / ``peak after``: the highest sampled RSS during the step / during its ``after``;
* the child's overall peak (VmHWM = ru_maxrss) and wall time.

``--profile FILE`` runs the child under cProfile (slower; for finding where time goes).

Measured 2026-11-23 on the shared 2-core machine (other jobs running: ±15% run to run).
1,000,000 customers / 10,000,000 orders / 100k interactions / 50k surveys, two runs
(the second after the masking fix), seconds [untimed after] and peak RSS:

    import     160 / 137 s  [5]    9.0 GB  (the run's peak: 11M rows as text grids)
    clean        5 /   5 s  [39/29] 4.3 GB (after: clean_report.xlsx, its 待跟进 sheet has 1M rows)
    segment     31 /  23 s  [3/2]  5.3 GB
    tag          2 /   2 s  [3/1]  4.7 GB
    followups   31 /  25 s  [45/43] 6.2 GB (linking 1M customers twice; followups.xlsx 179k tasks)
    report     472 / 421 s         6.4 GB (report.xlsx 488 MB; 客户明细 2.6 GB of XML → ZIP64)
    cards        3 /   3 s  [30/21] 6.9 GB (after: group_cards masks all 1M rows)
    run_pipeline 830 / 718 s; the manifest's steps add up to 704 / 614 s.

Before the ZIP64 fix the full-size run failed in the report after 8 minutes of writing.
100,000 / 1,000,000 (quiet run): import 9.6 s, clean 0.5 [2.8], segment 2.4, tag 0.1,
followups 1.5 [3.7], report 40.4, cards 0.3 [2.1]; run_pipeline 64.7 s, peak 1.1 GB (import).

Later the same day, after the import and segment speed work (one run each; the test suite
ran beside the first for two minutes):

    1M / 10M: import 20.5 s [6] 5.5 GB, clean 5.7 [38], segment 15.3 [2], tag 1.6 [2],
              followups 25.4 [46], report 454 s (494 MB), cards 2.0 [21];
              run_pipeline 640 s, peak 6.2 GB (cards, after).
    100k / 1M (quiet): import 2.0 s, clean 0.6 [3.7], segment 1.4, tag 0.2, followups 1.8
              [3.6], report 45.4, cards 0.2 [2.0]; run_pipeline 62.6 s, peak 0.9 GB.

2026-12-03, after the column-at-a-time sheet and CSV writers and the memory work (issue 12;
load average 2.2–4.6): 100k / 1M run_pipeline 28.3–44.8 s vs floor 13.3–19.4 s, ratio
1.51–2.76x over five runs (median 2.31x), report 7.7–12.2 s, peak 0.98–1.09 GB (segment).
300k / 3M (load 7–9): 224.8 s, peak 2.67 GB. See README "Performance".

``--engine auto|pandas|duckdb`` (and ``--memory-limit``) choose the orders' path: auto is the
run's own rule (out of core above ``out_of_core.orders_rows``), the others write a copy of
pipeline.yaml naming ``segment: engine:``. 2026-12-03, out of core (load 2.3–5): 300k / 3M
115.4 s, peak 1.66 GB; 1M / 10M 317.7–487.1 s, peak 4.2–4.3 GB (README "The monthly run out
of core").

2026-12-03, branch mem12 (memory: no whole-table copies in the detail sheet, the top cards,
the group cards and the book's snapshot; freed memory handed back between steps): 300k / 3M
107.6 s, peak 1.54 GB (was 1.60 GB); 1M / 10M 492.2 s, peak 4.21 GB, then 339.2 s, peak
3.98 GB (3 GB not reached). Per-function memory: ``bench/memory_profile.py`` (README "Performance").

2026-12-03, branch mem12c (attributed orders per consumer as codes, tags and tag lift on
codes; load average 5–16): 300k / 3M peak 1.25 GB (was 1.50); 1M / 10M 2054.6 s under that
load, peak 3.02 GB (3016 MB, was 3.98 GB; the report step's 客户明细).

2026-12-03, branch run12d (side outputs written in a second thread, load average 6.3–8.7):
100k / 1M run_pipeline 84.3 / 78.8 s vs main's 80.8 / 77.9 s in alternation, the work after
the steps 28.5 / 27.7 s vs 37.9 / 33.1 s; 1M / 10M 595.4 s at load 5.6–7.5, peak 2950 MB.
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
DATA = ROOT / "bench" / "data"
AS_OF = "2024-06-30"
METHODS = ["电话", "微信", "拜访", "线上会议", "短信", "投诉"]
METHOD_P = [0.4, 0.3, 0.1, 0.08, 0.07, 0.05]
RESULTS = [
    "有意向",
    "需跟进",
    "报价单已发送",
    "合同签订",
    "暂无意向",
    "明确拒绝",
    "已回复",
    "未接通",
]
CONTENTS = [
    "回访近期购买体验",
    "介绍新品活动",
    "确认售后问题处理",
    "客户投诉物流慢",
    "发送优惠券",
    "了解复购需求",
]
STAFF = ["张三", "李四", "王五", "赵六", "钱七"]
COMMENTS = ["", "", "", "配送很快", "客服耐心", "价格偏高", "包装破损", "会再来买"]


# --------------------------------------------------------------------------- data
def _interactions_table(customers, n: int, seed: int):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from bench.generate import END, _ids, _pick

    rng = np.random.default_rng(seed + 2)
    who = pa.array(rng.integers(0, customers.num_rows, n))
    start = END - np.timedelta64(540, "D")
    t = start + rng.integers(0, int((END - start).astype(np.int64)), n).astype("timedelta64[s]")
    has_next = rng.random(n) < 0.4
    nxt = t + rng.integers(1, 60, n).astype("timedelta64[D]")
    nxt_text = pc.if_else(
        pa.array(has_next), pc.strftime(pa.array(nxt), format="%Y-%m-%d"), pa.scalar("")
    )
    return pa.table(
        {
            "记录编号": _ids("F", np.arange(1, n + 1), 8),
            "手机号": customers["手机号"].take(who),
            "客户姓名": customers["姓名"].take(who),
            "跟进时间": pc.strftime(pa.array(t), format="%Y-%m-%d %H:%M"),
            "跟进方式": _pick(METHODS, rng.choice(len(METHODS), n, p=METHOD_P)),
            "跟进内容": _pick(CONTENTS, rng.integers(0, len(CONTENTS), n)),
            "跟进结果": _pick(RESULTS, rng.integers(0, len(RESULTS), n)),
            "下次跟进时间": nxt_text,
            "跟进人": _pick(STAFF, rng.integers(0, len(STAFF), n)),
        }
    )


def _surveys_table(customers, n: int, seed: int):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from bench.generate import END, _pick

    rng = np.random.default_rng(seed + 3)
    who = pa.array(rng.integers(0, customers.num_rows, n))
    start = END - np.timedelta64(365, "D")
    t = start + rng.integers(0, int((END - start).astype(np.int64)), n).astype("timedelta64[s]")
    return pa.table(
        {
            "手机号": customers["手机号"].take(who),
            "填写时间": pc.strftime(pa.array(t), format="%Y-%m-%d"),
            "推荐意愿(0-10)": pa.array(
                rng.choice(11, n, p=[0.02] * 5 + [0.05, 0.08, 0.15, 0.25, 0.2, 0.17])
            ),
            "满意度": pa.array(rng.integers(1, 6, n)),
            "意见建议": _pick(COMMENTS, rng.integers(0, len(COMMENTS), n)),
        }
    )


PIPELINE_YAML = """\
# written by bench/pipeline_bench.py
name: pipeline bench {customers} customers / {orders} orders
out: out
as_of: {as_of}
timezone: Asia/Shanghai
inputs:
  customers:
    - {{path: customers.csv, channel: 会员}}
  orders:
    - {{path: orders.csv, channel: 订单}}
{extra}clean:
  keys: [phone, email, customer_id]
  survivorship: newest
segment:
  window: 365d
tag:
  max_tags: 10
followups: {{}}
report:
  lang: zh
  role: analyst
  mask: true
cards:
  format: html
  by: rfm_class
"""


def prepare(args: argparse.Namespace) -> Path:
    """Write the inputs and pipeline.yaml (kept and reused when the same sizes were made)."""
    from bench.generate import _customers_table, _orders_table, write_csv

    d = args.data / f"pipeline-{args.customers}-{args.orders}-s{args.seed}"
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    made = []
    customers = None
    if not (d / "customers.csv").exists():
        customers = _customers_table(args.customers, args.seed)
        write_csv(
            customers.rename_columns(
                ["来源渠道" if c == "渠道" else c for c in customers.column_names]
            ),
            d / "customers.csv",
        )
        made.append("customers.csv")
    if not (d / "orders.csv").exists():
        write_csv(_orders_table(args.customers, args.orders, args.seed), d / "orders.csv")
        made.append("orders.csv")
    extra = ""
    for name, n, fn, kind in (
        ("跟进记录.csv", args.interactions, _interactions_table, "interactions"),
        ("满意度调查.csv", args.surveys, _surveys_table, "surveys"),
    ):
        sized = d / f"{Path(name).stem}-{n}.csv"
        if n <= 0:
            continue
        if not sized.exists():
            if customers is None:
                customers = _customers_table(args.customers, args.seed)
            write_csv(fn(customers, n, args.seed), sized)
            made.append(sized.name)
        extra += f"  {kind}:\n    - {sized.name}\n"
    del customers
    (d / "pipeline.yaml").write_text(
        PIPELINE_YAML.format(
            customers=args.customers, orders=args.orders, as_of=AS_OF, extra=extra
        ),
        encoding="utf-8",
    )
    if made:
        print(
            f"generated {', '.join(made)} in {time.perf_counter() - t0:.1f} s -> {d}",
            file=sys.stderr,
        )
    return d


# --------------------------------------------------------------------------- child
def child(yaml_path: str, events: str, result: str, profile: str | None) -> int:
    import pandas  # noqa: F401 - imported before the clock starts
    import pyarrow  # noqa: F401

    from custtool.pipeline import run_pipeline

    log = open(events, "w", encoding="utf-8", buffering=1)

    def note(name: str) -> None:
        log.write(json.dumps({"event": name, "t": time.time()}) + "\n")

    note("ready")
    if profile:
        import cProfile

        prof = cProfile.Profile()
        r = prof.runcall(run_pipeline, yaml_path, progress=note)
        prof.dump_stats(profile)
    else:
        r = run_pipeline(yaml_path, progress=note)
    note("done")
    Path(result).write_text(
        json.dumps(
            {"manifest": r.manifest, "folder": str(r.folder)}, ensure_ascii=False, default=str
        ),
        encoding="utf-8",
    )
    return 0


# --------------------------------------------------------------------------- floor
def floor(d: Path, folder: Path, rows: int, cols: int = 20) -> dict:
    """What the run cannot beat, on the same files: a pyarrow read of customers.csv and
    orders.csv, a pandas groupby per customer (orders, spend, last order), and one
    constant-memory xlsxwriter write of ``rows`` customers × ``cols`` columns of the run's
    customer table (numbers as numbers, dates as dates, text as text; values prepared per
    column, then one write call per cell — xlsxwriter's own per-cell cost)."""
    import numpy as np
    import pandas as pd
    import pyarrow.csv as pv
    import xlsxwriter

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    pv.read_csv(d / "customers.csv")
    orders = pv.read_csv(d / "orders.csv")
    out["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    o = orders.select(["客户ID", "手机号", "下单时间", "实付金额"]).to_pandas()
    key = o["客户ID"].where(o["客户ID"].notna() & (o["客户ID"] != ""), o["手机号"].astype(str))
    o["下单时间"] = pd.to_datetime(o["下单时间"])
    g = o.groupby(key.to_numpy(), sort=False).agg(
        n=("实付金额", "size"), m=("实付金额", "sum"), last=("下单时间", "max")
    )
    out["groupby"] = time.perf_counter() - t0
    del orders, o, g
    table = pd.read_parquet(folder / "customers.parquet")
    scalar = [
        c
        for c in table.columns
        if table[c].dtype != object or table[c].dropna().head(50).map(type).eq(str).all()
    ]
    table = table[scalar[:cols]].head(rows)
    t0 = time.perf_counter()
    target = d / "floor.xlsx"
    wb = xlsxwriter.Workbook(str(target), {"constant_memory": True, "strings_to_numbers": False})
    ws = wb.add_worksheet("customers")
    num_fmt, date_fmt = (
        wb.add_format({"num_format": "#,##0.00"}),
        wb.add_format({"num_format": "yyyy-mm-dd"}),
    )
    prepared = []
    for c in table.columns:
        s = table[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            t = s.dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
            v = ((t - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)).to_numpy(float)
            prepared.append((0, np.where(np.isfinite(v), v, np.nan).tolist(), date_fmt))
        elif pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            v = pd.to_numeric(s, errors="coerce").to_numpy(float, na_value=np.nan)
            prepared.append((0, v.tolist(), num_fmt))
        else:
            prepared.append((1, s.astype("string").fillna("").to_numpy(object).tolist(), None))
    for j, c in enumerate(table.columns):
        ws.write_string(0, j, str(c))
    write_number, write_string = ws.write_number, ws.write_string
    for i in range(len(table)):
        r = i + 1
        for j, (kind, vals, fmt) in enumerate(prepared):
            v = vals[i]
            if kind == 0:
                if v == v:
                    write_number(r, j, v, fmt)
            elif v:
                write_string(r, j, v)
    wb.close()
    out["xlsx"] = time.perf_counter() - t0
    out["xlsx_rows"], out["xlsx_cols"] = len(table), len(table.columns)
    target.unlink()
    return out


# --------------------------------------------------------------------------- parent
def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])  # KiB
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def pipeline_file(d: Path, engine: str, memory_limit: str | None) -> Path:
    """pipeline.yaml as generated (``auto``: the run's own out-of-core rule decides), or a
    copy whose segment step names the engine (and memory limit)."""
    base = d / "pipeline.yaml"
    if engine == "auto" and not memory_limit:
        return base
    text = base.read_text(encoding="utf-8")
    extra = "" if engine == "auto" else f"  engine: {engine}\n"
    extra += f"  memory_limit: {memory_limit}\n" if memory_limit else ""
    assert "  window: 365d\n" in text
    path = d / f"pipeline-{engine}{'-' + memory_limit if memory_limit else ''}.yaml"
    path.write_text(text.replace("  window: 365d\n", "  window: 365d\n" + extra), encoding="utf-8")
    return path


def run_once(d: Path, profile: str | None, yaml_path: Path | None = None) -> dict:
    events, result = d / "events.jsonl", d / "result.json"
    for f in (events, result):
        f.unlink(missing_ok=True)
    yaml_path = yaml_path or d / "pipeline.yaml"
    cmd = [sys.executable, __file__, "--child", str(yaml_path), str(events), str(result)]
    if profile:
        cmd.append(profile)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env)
    samples: list[tuple[float, int]] = []
    hwm = 0
    while proc.poll() is None:
        st = _status(proc.pid)
        if "VmRSS" in st:
            samples.append((time.time(), st["VmRSS"]))
            hwm = max(hwm, st.get("VmHWM", 0))
        time.sleep(0.02)
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"pipeline child failed with exit code {proc.returncode}")
    ev = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    manifest = json.loads(result.read_text(encoding="utf-8"))["manifest"]
    folder = json.loads(result.read_text(encoding="utf-8"))["folder"]
    return {
        "samples": samples,
        "events": ev,
        "manifest": manifest,
        "wall": wall,
        "hwm_kb": hwm,
        "folder": folder,
    }


def run_floor(d: Path, folder: Path, rows: int) -> dict:
    """The floor in a child process of its own (its memory is not the run's)."""
    res = d / "floor.json"
    cmd = [sys.executable, __file__, "--floor", str(d), str(folder), str(rows), str(res)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(cmd, env=env, check=True)
    return json.loads(res.read_text(encoding="utf-8"))


def table(run: dict) -> list[dict]:
    """Per step: seconds, untimed seconds after, peak RSS (MB) during each."""
    ev = {e["event"]: e["t"] for e in run["events"]}
    starts = [(e["event"], e["t"]) for e in run["events"] if e["event"] not in ("ready", "done")]
    secs = {r["step"]: r["seconds"] for r in run["manifest"]["steps"]}
    samples = run["samples"]

    def peak(a: float, b: float) -> float:
        vals = [kb for t, kb in samples if a <= t <= b]
        return max(vals) / 1024 if vals else float("nan")

    rows = [
        {
            "step": "pre",
            "seconds": float("nan"),
            "peak_mb": float("nan"),
            "after": starts[0][1] - ev["ready"],
            "peak_after_mb": peak(ev["ready"], starts[0][1]),
        }
    ]
    for i, (name, t) in enumerate(starts):
        end = t + secs[name]
        nxt = starts[i + 1][1] if i + 1 < len(starts) else ev["done"]
        rows.append(
            {
                "step": name,
                "seconds": secs[name],
                "peak_mb": peak(t, end),
                "after": nxt - end,
                "peak_after_mb": peak(end, nxt),
            }
        )
    return rows


def _f(x: float, digits: int) -> str:
    return f"{'-':>8}" if x != x else f"{x:>8.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return child(argv[1], argv[2], argv[3], argv[4] if len(argv) > 4 else None)
    if argv and argv[0] == "--floor":
        res = floor(Path(argv[1]), Path(argv[2]), int(argv[3]))
        Path(argv[4]).write_text(json.dumps(res), encoding="utf-8")
        return 0
    if argv and argv[0] == "--generate":
        c, o, i, s, seed = (int(x) for x in argv[1:6])
        prepare(
            argparse.Namespace(
                customers=c, orders=o, interactions=i, surveys=s, seed=seed, data=Path(argv[6])
            )
        )
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--orders", type=int, default=10_000_000)
    ap.add_argument(
        "--interactions",
        type=int,
        default=None,
        help="follow-up records (default customers/10; 0 = none)",
    )
    ap.add_argument(
        "--surveys", type=int, default=None, help="survey answers (default customers/20; 0 = none)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="where the inputs and run folders go (default bench/data)",
    )
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", help="write cProfile stats of the (last) run to this file")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument(
        "--floor-rows",
        type=int,
        default=100_000,
        help="rows of the floor's xlsxwriter write (default 100,000, as issue 12 states it)",
    )
    ap.add_argument("--no-floor", action="store_true", help="skip the floor measurement")
    ap.add_argument(
        "--engine",
        choices=("auto", "pandas", "duckdb"),
        default="auto",
        help="the orders' path: auto (the run's rule: out of core above "
        "out_of_core.orders_rows), pandas (in memory) or duckdb (out of core)",
    )
    ap.add_argument("--memory-limit", help="segment: memory_limit: (e.g. 2GB; implies out of core)")
    args = ap.parse_args(argv)
    if args.interactions is None:
        args.interactions = args.customers // 10
    if args.surveys is None:
        args.surveys = args.customers // 20
    # generate in a child process too: the generator's arrays would otherwise stay in this
    # process's memory (about 1 GB at full size) while the pipeline runs
    gen = [
        sys.executable,
        __file__,
        "--generate",
        str(args.customers),
        str(args.orders),
        str(args.interactions),
        str(args.surveys),
        str(args.seed),
        str(args.data),
    ]
    subprocess.run(
        gen,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    d = args.data / f"pipeline-{args.customers}-{args.orders}-s{args.seed}"
    results = []
    for k in range(args.repeat):
        run = run_once(
            d,
            args.profile if k == args.repeat - 1 else None,
            pipeline_file(d, args.engine, args.memory_limit),
        )
        rows = table(run)
        results.append(
            {
                "rows": rows,
                "wall": run["wall"],
                "hwm_mb": run["hwm_kb"] / 1024,
                "steps": run["manifest"]["steps"],
                "outputs": run["manifest"]["outputs"],
                "orders_engine": run["manifest"].get("orders_engine"),
            }
        )
        print(
            f"\nrun {k + 1}/{args.repeat}: {args.customers:,} customers, {args.orders:,} orders, "
            f"{args.interactions:,} interactions, {args.surveys:,} surveys ({d})"
        )
        print(f"orders: {json.dumps(run['manifest'].get('orders_engine'), ensure_ascii=False)}")
        print(f"{'step':<10} {'seconds':>8} {'peak MB':>8} {'after s':>8} {'peak MB':>8}")
        for r in rows:
            print(
                f"{r['step']:<10} {_f(r['seconds'], 1)} {_f(r['peak_mb'], 0)} {_f(r['after'], 1)} {_f(r['peak_after_mb'], 0)}"
            )
        timed = sum(s["seconds"] for s in run["manifest"]["steps"])
        total = timed + sum(r["after"] for r in rows)
        print(
            f"steps total {timed:.1f} s; run_pipeline {total:.1f} s; "
            f"child wall {run['wall']:.1f} s (incl. imports); peak RSS (VmHWM) {run['hwm_kb'] / 1024:.0f} MB"
        )
        if not args.no_floor:
            fl = run_floor(d, Path(run["folder"]), args.floor_rows)
            base = fl["read"] + fl["groupby"] + fl["xlsx"]
            print(
                f"floor {base:.1f} s = pyarrow read of customers.csv + orders.csv {fl['read']:.1f} s"
                f" + pandas groupby per customer {fl['groupby']:.1f} s + one constant-memory"
                f" xlsxwriter write of {fl['xlsx_rows']:,.0f} rows x {fl['xlsx_cols']:.0f} columns"
                f" {fl['xlsx']:.1f} s"
            )
            print(f"ratio run_pipeline / floor = {total / base:.2f}x (target <= 2.0x)")
            results[-1].update({"floor": fl, "floor_seconds": base, "ratio": total / base})
        for s in run["manifest"]["steps"]:
            print(f"  {s['step']}: {json.dumps(s.get('rows'), ensure_ascii=False)}")
        print(
            "  outputs: "
            + ", ".join(
                f"{o['file']} {o['bytes'] / 1e6:.1f} MB" for o in run["manifest"]["outputs"]
            )
        )
    if args.json:
        args.json.write_text(
            json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
