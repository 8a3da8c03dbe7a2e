"""Benchmark custtool.clean.dedupe: N customer rows, 20% duplicates across three channels.

Data is generated deterministically (numpy seed) in the shape of `custtool import` output.
The duplicate 20% is a mix of: exact re-exports (same channel, same values), the same person
in another channel found by phone, by email only, or by the channel's own id, with some
conflicting cities; 0.2% of the people share a store's front-desk phone (hubs). Each size runs in its own process so the peak memory is its own.

    $ python bench/clean_bench.py                 # 100k and 1M, one process each
    $ python bench/clean_bench.py --rows 200000   # one size
    $ python bench/clean_bench.py --rows 100000 --profile   # top functions by cumulative time

Measured 2026-11-23 on the shared 2-core machine (load average 2.5-3, so ±50% noise):

    rows        dedupe    peak RSS (of which the generated input)
    100,000     0.77 s    324 MB (220 MB)       second run: 1.62 s, 320 MB
    1,000,000   9.09 s    1,463 MB (1,083 MB)   second run: 10.65 s, 1,459 MB

About 10-14x the time for 10x the rows. The steps are whole-column pandas/numpy/pyarrow
work: groupby/factorize for exact duplicates and keys, scipy connected components,
groupby().first() for survivorship, pyarrow hash_list for the ';'-joined fields.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHANNELS = ["电商", "门店", "公众号"]
SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏飞")
CITIES = [
    "北京市",
    "上海市",
    "广州市",
    "深圳市",
    "杭州市",
    "成都市",
    "武汉市",
    "西安市",
    "南京市",
    "重庆市",
]
REGIONS = ["华北", "华东", "华南", "华南", "华东", "西南", "华中", "西北", "华东", "西南"]
OWNERS = ["王经理", "李经理", "张主管", "", ""]
NEEDS = ["批量采购", "售后咨询", "续费", "新品", "", ""]


def make_customers(n: int, dup_share: float = 0.2, seed: int = 7):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_dup = int(n * dup_share)
    n_base = n - n_dup
    # base persons: unique phones (70%), emails (50%), each at least one of them
    phone_num = (
        rng.permutation(np.arange(n_base, dtype=np.int64) * 7 + 100_000_000)[:n_base]
        % 1_000_000_000
    )
    phone = np.char.add("13", np.char.zfill(phone_num.astype(str), 9)).astype(object)
    has_phone = rng.random(n_base) < 0.7
    has_email = ~has_phone | (rng.random(n_base) < 0.3)
    email = np.char.add(np.char.add("u", np.arange(n_base).astype(str)), "@qq.com").astype(object)
    name = np.char.add(
        np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n_base)],
        np.array(GIVEN)[rng.integers(0, len(GIVEN), n_base)],
    ).astype(object)
    city_i = rng.integers(0, len(CITIES), n_base)
    chan_i = rng.integers(0, 3, n_base)
    base = pd.DataFrame(
        {
            "customer_id": np.char.add(
                np.array(["E", "M", "W"])[chan_i], np.arange(n_base).astype(str)
            ).astype(object),
            "name": name,
            "phone": np.where(has_phone, phone, ""),
            "email": np.where(has_email, email, ""),
            "gender": np.array(["男", "女", "未知"])[rng.integers(0, 3, n_base)].astype(object),
            "city": np.array(CITIES)[city_i].astype(object),
            "region": np.array(REGIONS)[city_i].astype(object),
            "owner": np.array(OWNERS)[rng.integers(0, len(OWNERS), n_base)].astype(object),
            "needs": np.array(NEEDS)[rng.integers(0, len(NEEDS), n_base)].astype(object),
            "status": np.array(["潜在", "意向", "成交", "流失"])[rng.integers(0, 4, n_base)].astype(
                object
            ),
            "first_contact_date": pd.Timestamp("2022-01-01")
            + pd.to_timedelta(rng.integers(0, 900, n_base), unit="D"),
            "_channel": np.array(CHANNELS)[chan_i].astype(object),
        }
    )
    # duplicates of random base persons
    src = rng.integers(0, n_base, n_dup)
    dup = base.iloc[src].reset_index(drop=True)
    kind = rng.random(n_dup)
    exact = kind < 0.25  # same channel re-export
    other = ~exact
    new_chan = (chan_i[src] + rng.integers(1, 3, n_dup)) % 3
    dup.loc[other, "_channel"] = np.array(CHANNELS)[new_chan[other]]
    dup.loc[other, "customer_id"] = np.char.add(
        np.array(["E", "M", "W"])[new_chan[other]], (src[other] + 10_000_000).astype(str)
    )
    by_email_only = other & (kind < 0.45) & (dup["email"] != "").to_numpy()
    dup.loc[by_email_only, "phone"] = ""
    conflict = other & (kind > 0.9)
    dup.loc[conflict, "city"] = np.array(CITIES)[rng.integers(0, len(CITIES), int(conflict.sum()))]
    dup.loc[other, "first_contact_date"] = dup.loc[other, "first_contact_date"] + pd.to_timedelta(
        rng.integers(1, 200, int(other.sum())), unit="D"
    )
    # shared store phones (hubs): 0.2% of the rows carry one of n/5000 front-desk numbers
    hub_rows = rng.choice(n_base, size=max(n // 500, 1), replace=False)
    base.loc[hub_rows, "phone"] = np.char.add(
        "021-6", np.char.zfill(rng.integers(0, max(n // 5000, 1), len(hub_rows)).astype(str), 7)
    )
    df = pd.concat([base, dup], ignore_index=True)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    df["_source_file"] = df["_channel"].map(
        {"电商": "电商导出.xlsx", "门店": "门店会员.csv", "公众号": "公众号粉丝.csv"}
    )
    df["_sheet"] = np.where(df["_channel"] == "电商", "客户", "")
    df["_row"] = df.groupby("_channel").cumcount().to_numpy() + 2
    df["_flags"] = ""
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype(str)
    return df


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(n: int, profile: bool) -> None:
    t0 = time.perf_counter()
    df = make_customers(n)
    t_gen = time.perf_counter() - t0
    rss_gen = rss_mb()
    from custtool.clean import dedupe

    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    customers, lineage, report = dedupe(df)
    t = time.perf_counter() - t0
    if profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    c = report.counts()
    print(
        "    steps (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items()), flush=True
    )
    print(
        f"rows={n:>9,}  dedupe {t:6.2f} s  ({n / t / 1e3:,.0f}k rows/s)  peak RSS {rss_mb():,.0f} MB "
        f"(after generating the data {rss_gen:,.0f} MB; generation {t_gen:.1f} s)\n"
        f"    exact_duplicates={c['exact_duplicates']:,} merged_rows={c['merged_rows']:,} customers_out={c['customers_out']:,} "
        f"conflicts={c['conflicts']:,} flagged={c['flagged']:,} hub_rows={c['hub_rows']:,} lineage_rows={len(lineage):,}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="*", help="sizes to run (default: 100000 1000000)")
    ap.add_argument(
        "--profile", action="store_true", help="print the top functions by cumulative time"
    )
    args = ap.parse_args()
    sizes = args.rows or [100_000, 1_000_000]
    if len(sizes) == 1:
        run_one(sizes[0], args.profile)
        return
    for n in sizes:  # one process per size: each peak RSS is its own
        cmd = [sys.executable, __file__, "--rows", str(n)] + (["--profile"] if args.profile else [])
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
