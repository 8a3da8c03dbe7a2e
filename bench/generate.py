"""Deterministic synthetic Chinese customer and order exports for benchmarks and demos.

    python bench/generate.py --customers 1000000 --orders 10000000 --out /tmp/bench

writes ``customers.csv`` and ``orders.csv`` (UTF-8, header in Chinese like a shop/CRM
export). Everything is vectorised numpy + pyarrow, seeded, so the same arguments always give
the same files; 10M orders take well under a minute.

Library use::

    from bench.generate import make_customers, make_orders
    customers = make_customers(1000, seed=0)        # 客户ID, 姓名, 手机号, 邮箱, 性别, 年龄, 城市, …
    orders = make_orders(1000, 20000, seed=0)       # 订单号, 客户ID, 手机号, 下单时间, 实付金额, …

``make_orders(n_customers, …)`` refers to the customers of ``make_customers(n_customers,
seed)`` with the same seed (same 客户ID and 手机号). Orders: about 2% refunds (negative
实付金额), about 0.5% exact duplicate rows (same 订单号), about 3% with a blank 客户ID (only the
phone identifies the buyer); order activity is skewed (a few customers buy a lot, many once).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红建文辉力斌宇浩凯鹏飞晨阳雪琳婷慧颖佳欣怡梓涵子轩睿博雨萱思"
)
CITIES = [
    "上海市",
    "北京市",
    "广州市",
    "深圳市",
    "杭州市",
    "成都市",
    "武汉市",
    "南京市",
    "重庆市",
    "西安市",
    "苏州市",
    "天津市",
    "长沙市",
    "郑州市",
    "青岛市",
    "沈阳市",
    "宁波市",
    "厦门市",
    "合肥市",
    "昆明市",
]
CHANNELS = ["天猫", "京东", "门店", "小程序", "抖音"]
CATEGORIES = ["家居", "数码", "美妆", "服饰", "食品", "母婴", "运动", "图书"]
LEVELS = ["普通会员", "银卡会员", "金卡会员", "钻石会员"]
START = np.datetime64("2022-07-01T00:00:00", "s")
END = np.datetime64("2024-06-30T23:59:59", "s")


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """prefix + zero-padded numbers, e.g. U00000042 (pyarrow compute, no Python loop)."""
    s = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), s, "")


def _pick(values: list[str], idx: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(idx))


def _phones(n: int, rng: np.random.Generator) -> pa.Array:
    second = rng.integers(3, 10, n)
    rest = rng.integers(0, 10**9, n)
    num = 10**10 + second * 10**9 + rest
    return pc.cast(pa.array(num), pa.string())


def _customers_table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = _ids("U", np.arange(1, n + 1), 8)
    sur = rng.integers(0, len(SURNAMES), n)
    g1 = rng.integers(0, len(GIVEN), n)
    g2 = rng.integers(-len(GIVEN) // 2, len(GIVEN), n)  # negative → a one-character given name
    names = pc.binary_join_element_wise(
        _pick(SURNAMES, sur), _pick(GIVEN, g1), _pick([""] + GIVEN, np.maximum(g2, -1) + 1), ""
    )
    phones = _phones(n, rng)
    has_mail = rng.random(n) < 0.3
    mails = pc.binary_join_element_wise(
        pa.scalar("u"),
        pc.cast(pa.array(np.arange(1, n + 1)), pa.string()),
        pa.scalar("@example.com"),
        "",
    )
    mails = pc.if_else(pa.array(has_mail), mails, pa.scalar(""))
    gender = _pick(["男", "女", "未知"], rng.choice(3, n, p=[0.47, 0.48, 0.05]))
    age = rng.integers(18, 70, n)
    city = _pick(CITIES, rng.integers(0, len(CITIES), n))
    reg = START + rng.integers(0, int((END - START).astype(np.int64)), n).astype("timedelta64[s]")
    reg_day = pc.strftime(pa.array(reg.astype("datetime64[s]")), format="%Y-%m-%d")
    chan = _pick(CHANNELS, rng.integers(0, len(CHANNELS), n))
    level = _pick(LEVELS, rng.choice(4, n, p=[0.6, 0.25, 0.12, 0.03]))
    return pa.table(
        {
            "客户ID": ids,
            "姓名": names,
            "手机号": phones,
            "邮箱": mails,
            "性别": gender,
            "年龄": age,
            "城市": city,
            "注册时间": reg_day,
            "渠道": chan,
            "会员等级": level,
        }
    )


def make_customers(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` customers like a CRM/shop member export (Chinese headers, text cells)."""
    return _customers_table(n, seed).to_pandas()


def _orders_table(n_customers: int, n_orders: int, seed: int = 0) -> pa.Table:
    cust = _customers_table(n_customers, seed)
    rng = np.random.default_rng(seed + 1)
    # skewed activity: gamma-distributed buying rates; each customer buys from their 注册时间 on
    weight = rng.gamma(0.6, 1.0, n_customers)
    weight /= weight.sum()
    n_dup = n_orders // 200
    n_base = n_orders - n_dup
    who = rng.choice(n_customers, n_base, p=weight)
    reg = (
        pc.strptime(cust["注册时间"], format="%Y-%m-%d", unit="s")
        .to_numpy(zero_copy_only=False)
        .astype("datetime64[s]")
    )
    # each customer stays active for an exponential lifetime (mean 400 days), then drops out
    life = (rng.exponential(400 * 86400, n_customers)).astype("timedelta64[s]")
    active_end = np.minimum(reg + life, END)
    span = (active_end[who] - reg[who]).astype(np.int64)
    t = reg[who] + (rng.random(n_base) * span).astype("timedelta64[s]")
    refund = rng.random(n_base) < 0.02
    amount = np.round(rng.lognormal(5.3, 0.9, n_base), 2)
    amount = np.where(refund, -np.round(amount * rng.uniform(0.2, 1.0, n_base), 2), amount)
    qty = rng.integers(1, 6, n_base)
    order_no = _ids("O", np.arange(1, n_base + 1), 10)
    cid = cust["客户ID"].take(pa.array(who))
    blank_id = rng.random(n_base) < 0.03
    cid = pc.if_else(pa.array(blank_id), pa.scalar(""), cid)
    table = pa.table(
        {
            "订单号": order_no,
            "客户ID": cid,
            "手机号": cust["手机号"].take(pa.array(who)),
            "下单时间": pc.strftime(pa.array(t), format="%Y-%m-%d %H:%M:%S"),
            "实付金额": pa.array(amount),
            "渠道": cust["渠道"].take(pa.array(who)),
            "品类": _pick(CATEGORIES, rng.integers(0, len(CATEGORIES), n_base)),
            "数量": pa.array(qty),
        }
    )
    if n_dup:
        dup_rows = np.sort(rng.choice(n_base, n_dup, replace=False))
        table = pa.concat_tables([table, table.take(pa.array(dup_rows))])
    return table


def make_orders(n_customers: int, n_orders: int, seed: int = 0) -> pd.DataFrame:
    """``n_orders`` order rows of the customers of ``make_customers(n_customers, seed)``."""
    return _orders_table(n_customers, n_orders, seed).to_pandas()


def write_csv(table: pa.Table, path: Path) -> None:
    import pyarrow.csv as pcsv

    tmp = path.with_name(path.name + ".tmp")
    pcsv.write_csv(table, tmp)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_csv(_customers_table(args.customers, args.seed), args.out / "customers.csv")
    t1 = time.perf_counter()
    write_csv(_orders_table(args.customers, args.orders, args.seed), args.out / "orders.csv")
    t2 = time.perf_counter()
    print(
        f"customers.csv: {args.customers:,} rows in {t1 - t0:.1f} s; orders.csv: {args.orders:,} rows in {t2 - t1:.1f} s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
