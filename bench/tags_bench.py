"""Benchmark: the default tag library on synthetic segmented customers.

Each size runs in its own subprocess so that peak memory (ru_maxrss) belongs to that size.
Prints per step: generate, tag (rules + cap + output columns), statistics, and, separately,
building the list/`;`-joined columns from a kept matrix of the same shape.

    /work/venv/bin/python bench/tags_bench.py                  # 100k and 1M
    /work/venv/bin/python bench/tags_bench.py --sizes 20000,200000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custtool.rfm import RFM_CLASSES  # noqa: E402  (the one list of the 8 classes)

CITIES = [
    "北京市",
    "上海市",
    "广州市",
    "深圳市",
    "成都市",
    "杭州市",
    "武汉市",
    "西安市",
    "南京市",
    "郑州市",
    "沈阳市",
    "哈尔滨市",
    "兰州市",
    "南宁市",
    "海口市",
    "银川市",
    "拉萨市",
    "",
]
INDUSTRIES = [
    "互联网",
    "制造业",
    "零售",
    "金融",
    "教育",
    "软件和信息技术服务",
    "房地产",
    "医疗",
    "",
]
POSITIONS = ["产品经理", "工程师", "技术总监", "店长", "销售", "总经理", "采购主管", "会计", ""]
NEEDS = [
    "希望定制家居",
    "价格优惠",
    "24小时在线支持",
    "高性价比",
    "希望配送更快",
    "售后上门",
    "",
    "",
    "",
]
NOTES = ["关注产品定制", "近期投诉过物流", "决策人为采购部", "客户有定制需求", "", "", "", ""]
LEVELS = ["钻石会员", "黑金", "VIP", "普通", "银卡", "金卡", ""]
RFM = [*RFM_CLASSES, ""]
LIFE = ["潜在", "新客户", "成长", "成熟", "沉睡", "流失"]


def make_customers(n: int, seed: int = 7):
    """A deterministic segmented customers table shaped like docs/DATA.md."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)

    def pick(values, p=None):
        return pd.Series(np.asarray(values, dtype=object)[rng.choice(len(values), n, p=p)]).astype(
            "str"
        )

    age = rng.integers(16, 75, n).astype("float64")
    age[rng.random(n) < 0.15] = np.nan
    has_orders = rng.random(n) < 0.85
    orders_30d = np.where(has_orders, rng.poisson(0.8, n), 0)
    aov = np.where(has_orders, rng.lognormal(6.2, 0.9, n), np.nan)
    monetary_365d = np.where(has_orders, aov * rng.poisson(3, n), 0.0)
    growth = np.where(rng.random(n) < 0.6, rng.normal(0.05, 0.4, n), np.nan)
    days = rng.exponential(45, n)
    days[rng.random(n) < 0.2] = np.nan
    nps = rng.integers(0, 11, n).astype("float64")
    nps[rng.random(n) < 0.7] = np.nan
    ltv = np.where(has_orders, monetary_365d * rng.uniform(0.5, 2.0, n), np.nan)
    phone = np.where(
        rng.random(n) < 0.9, (13800000000 + rng.integers(0, 99999999, n)).astype(str), ""
    )
    email = np.where(rng.random(n) < 0.3, "u@example.com", "")
    return pd.DataFrame(
        {
            "customer_id": pd.Series(
                np.char.add("C", np.char.zfill(np.arange(n).astype(str), 8))
            ).astype("str"),
            "phone": pd.Series(phone).astype("str"),
            "email": pd.Series(email).astype("str"),
            "gender": pick(["男", "女", "未知"], [0.47, 0.48, 0.05]),
            "age": pd.array(age, dtype="Float64").astype("Int64"),
            "city": pick(CITIES),
            "industry": pick(INDUSTRIES),
            "position": pick(POSITIONS),
            "customer_type": pick(["个人", "企业"], [0.8, 0.2]),
            "member_level": pick(LEVELS),
            "needs": pick(NEEDS),
            "notes": pick(NOTES),
            "follow_up_flag": rng.random(n) < 0.1,
            "orders_30d": orders_30d.astype("int64"),
            "aov": aov,
            "monetary_365d": monetary_365d,
            "growth": growth,
            "repurchase": has_orders & (rng.random(n) < 0.5),
            "days_since_last_interaction": days,
            "interactions_30d": rng.poisson(0.7, n).astype("int64"),
            "complaints_365d": rng.poisson(0.05, n).astype("int64"),
            "rfm_class": pick(RFM),
            "lifecycle": pick(LIFE),
            "ltv": ltv,
            "churn_risk": rng.random(n) < 0.15,
            "nps_score": nps,
            "as_of": pd.Timestamp("2024-06-30"),
        }
    )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(n: int) -> dict:
    import numpy as np

    from custtool.tags import (
        _joined_distinct,
        _tag_lists,
        load_rules,
        tag_customers,
        tag_statistics,
    )

    t0 = time.perf_counter()
    df = make_customers(n)
    t_gen = time.perf_counter() - t0
    rss_data = rss_mb()
    rules = load_rules()
    t0, c0 = time.perf_counter(), time.process_time()
    res = tag_customers(df, rules, max_tags=10)
    t_tag, c_tag = time.perf_counter() - t0, time.process_time() - c0
    rss_tag = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    stats = tag_statistics(res.customers, rules)
    t_stats, c_stats = time.perf_counter() - t0, time.process_time() - c0
    # output building alone, on a random kept matrix of the same shape and density
    # (random sets: nearly every customer's set is distinct, the worst case for the joins)
    lens = res.customers["tags"].map(len).to_numpy()
    rng = np.random.default_rng(1)
    keep = rng.random((n, len(rules))) < lens.mean() / len(rules)
    names = [r.name for r in rules]
    t0 = time.perf_counter()
    lst = _tag_lists(keep, names)
    t_list = time.perf_counter() - t0
    t0 = time.perf_counter()
    for cols in np.array_split(np.arange(len(names)), 5):  # five level-1 categories
        _joined_distinct(keep[:, cols], [names[j] for j in cols])
    t_join = time.perf_counter() - t0
    del lst
    return {
        "customers": n,
        "rules": len(rules),
        "generate_s": round(t_gen, 2),
        "tag_s": round(t_tag, 2),
        "tag_cpu_s": round(c_tag, 2),
        "stats_s": round(t_stats, 2),
        "stats_cpu_s": round(c_stats, 2),
        "list_column_s": round(t_list, 2),
        "joined_column_s": round(t_join, 2),
        "tags_per_customer": round(float(lens.mean()), 2),
        "dropped_by_cap": res.dropped_total,
        "capped_customers": res.customers_capped,
        "rss_after_data_mb": round(rss_data),
        "peak_rss_mb": round(rss_mb()),
        "peak_rss_tag_mb": round(rss_tag),
        "top_tag": stats.usage.iloc[0]["tag"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one), ensure_ascii=False))
        return
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{r['customers']:>9,} customers × {r['rules']} rules: tag {r['tag_s']:.2f} s (cpu {r['tag_cpu_s']:.2f} s; "
            f"output columns alone: lists {r['list_column_s']:.2f} s, ;-joined {r['joined_column_s']:.2f} s), "
            f"stats {r['stats_s']:.2f} s (cpu {r['stats_cpu_s']:.2f} s); {r['tags_per_customer']} tags/customer, "
            f"{r['dropped_by_cap']:,} dropped by cap for {r['capped_customers']:,} customers; "
            f"peak RSS {r['peak_rss_mb']} MB (data alone {r['rss_after_data_mb']} MB, after tagging {r['peak_rss_tag_mb']} MB)",
            flush=True,
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        scale = b["customers"] / a["customers"]
        print(
            f"scaling ×{scale:g} customers: tag time ×{b['tag_s'] / a['tag_s']:.1f} (cpu ×{b['tag_cpu_s'] / a['tag_cpu_s']:.1f}), "
            f"stats time ×{b['stats_s'] / a['stats_s']:.1f} (cpu ×{b['stats_cpu_s'] / a['stats_cpu_s']:.1f}), "
            f"memory above data ×{(b['peak_rss_tag_mb'] - b['rss_after_data_mb']) / max(a['peak_rss_tag_mb'] - a['rss_after_data_mb'], 1):.1f}"
        )


if __name__ == "__main__":
    main()
