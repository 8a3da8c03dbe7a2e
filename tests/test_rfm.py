"""custtool.rfm: metrics, scores, 8 classes, tiers, lifecycle, summary, and `custtool segment`.

The 10-customer example below is computed by hand (as-of 2024-06-30, window 365 days):

    customer  orders (day: amount)                               recency  F  M
    C01       03-01 800, 05-10 700, 06-25 500                    5        3  2000
    C02       06-28 100 (京东:1001)                               2        1  100
    C03       01-15 3000, 02-20 2500, 03-10 1500, 04-01 1000      90       4  8000
              (天猫:1001 — the same id as C02 on another channel)
    C04       2023-12-01 6000                                    212      1  6000
    C05       06-01 300, 06-15 200                               15       2  500
    C06       02-01 150                                          150      1  150
    C07       05-20 1200 + 800 (two orders, one day), 05-25 −300 41       2  1700
    C08       06-10 400 (row duplicated), 07-05 999 (after as-of) 20       1  400
    C09       no orders                                          NaN      0  0
    C10       04-15 2500 (phone only), 06-20 1000 (email only)   10       2  3500
    + one order of an unknown customer X999 (unmatched)
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custtool.dates import parse_days
from custtool.errors import ConfigError, InputError
from custtool.metrics import customer_metrics
from custtool.rfm import (
    RFM_CLASSES,
    assign_lifecycle,
    rfm_classes,
    rfm_scores,
    value_tiers,
)
from custtool.segment import load_segment_config, segment_customers, segment_summary
from tests.conftest import examples

IDS = [f"C{i:08d}" for i in range(1, 11)]


def clean_customers() -> pd.DataFrame:
    """The shape of the `clean` output (DATA.md)."""
    return pd.DataFrame(
        {
            "customer_id": IDS,
            "name": [
                "张伟",
                "王芳",
                "李娜",
                "刘洋",
                "陈静",
                "杨磊",
                "赵敏",
                "黄强",
                "周杰",
                "吴婷",
            ],
            "phone": [f"138000000{i:02d}" for i in range(1, 11)],
            "email": [""] * 9 + ["wu@example.com"],
            "city": [
                "上海市",
                "北京市",
                "杭州市",
                "广州市",
                "深圳市",
                "成都市",
                "上海市",
                "南京市",
                "武汉市",
                "上海市",
            ],
            "channels": [
                "天猫",
                "京东",
                "天猫",
                "天猫",
                "门店",
                "门店",
                "天猫",
                "京东",
                "天猫",
                "门店",
            ],
            "source_ids": [
                "天猫:T1",
                "京东:1001",
                "天猫:1001",
                "天猫:T4",
                "门店:M5",
                "门店:M6",
                "天猫:T7",
                "京东:J8",
                "天猫:T9",
                "门店:M10",
            ],
            "phones": [f"138000000{i:02d}" for i in range(1, 10)] + ["13800000010;021-62345678"],
            "emails": [""] * 9 + ["wu@example.com"],
        }
    )


ORDER_ROWS = [
    ("O1", "T1", "", "", "2024-06-25 10:00", 500, "天猫"),
    ("O2", "T1", "", "", "2024-05-10 10:00", 700, "天猫"),
    ("O3", "T1", "", "", "2024-03-01 10:00", 800, "天猫"),
    ("O4", "1001", "", "", "2024-06-28 09:00", 100, "京东"),
    ("O5", "1001", "", "", "2024-01-15 09:00", 3000, "天猫"),
    ("O6", "1001", "", "", "2024-02-20 09:00", 2500, "天猫"),
    ("O7", "1001", "", "", "2024-03-10 09:00", 1500, "天猫"),
    ("O8", "1001", "", "", "2024-04-01 09:00", 1000, "天猫"),
    ("O9", "T4", "", "", "2023-12-01 12:00", 6000, "天猫"),
    ("O10", "M5", "", "", "2024-06-01 12:00", 300, "门店"),
    ("O11", "M5", "", "", "2024-06-15 12:00", 200, "门店"),
    ("O12", "M6", "", "", "2024-02-01 12:00", 150, "门店"),
    ("O13", "T7", "", "", "2024-05-20 11:00", 1200, "天猫"),
    ("O14", "T7", "", "", "2024-05-20 15:00", 800, "天猫"),
    ("R14", "T7", "", "", "2024-05-25 15:00", -300, "天猫"),
    ("O15", "J8", "", "", "2024-06-10 08:00", 400, "京东"),
    ("O15", "J8", "", "", "2024-06-10 08:00", 400, "京东"),
    ("O16", "J8", "", "", "2024-07-05 08:00", 999, "京东"),
    ("O17", "", "+86 138-0000-0010", "", "2024-04-15 08:00", 2500, "门店"),
    ("O18", "", "", "Wu@Example.com ", "2024-06-20 08:00", 1000, "门店"),
    ("O19", "X999", "13999999999", "", "2024-06-01 08:00", 50, "天猫"),
]


def orders_df() -> pd.DataFrame:
    df = pd.DataFrame(
        ORDER_ROWS,
        columns=["order_id", "customer_id", "phone", "email", "order_time", "amount", "channel"],
    )
    df["order_time"] = pd.to_datetime(df["order_time"])
    df["amount"] = df["amount"].astype(float)
    return df


@pytest.fixture(scope="module")
def metrics():
    m, rep = customer_metrics(orders_df(), clean_customers(), as_of="2024-06-30")
    return m.set_index("customer_id"), rep


def col(m: pd.DataFrame, name: str) -> list:
    return m[name].tolist()


# --------------------------------------------------------------------------- D1 metrics
def test_ten_customers_recency_frequency_monetary(metrics):
    m, _ = metrics
    rec = col(m, "recency")
    assert rec[:8] + rec[9:] == [5, 2, 90, 212, 15, 150, 41, 20, 10]
    assert math.isnan(rec[8])
    assert col(m, "frequency") == [3, 1, 4, 1, 2, 1, 2, 1, 0, 2]
    assert col(m, "monetary") == [2000, 100, 8000, 6000, 500, 150, 1700, 400, 0, 3500]
    assert m.loc["C00000001", "aov"] == 666.67
    assert m.loc["C00000007", "aov"] == 850.0
    assert math.isnan(m.loc["C00000009", "aov"])
    assert col(m, "repurchase") == [True, False, True, False, True, False, True, False, False, True]
    assert m.loc["C00000003", "first_order"] == pd.Timestamp("2024-01-15")
    assert m.loc["C00000003", "last_order"] == pd.Timestamp("2024-04-01")
    assert pd.isna(m.loc["C00000009", "first_order"])
    assert (m["as_of"] == pd.Timestamp("2024-06-30")).all()


def test_windows_30_90_365(metrics):
    m, _ = metrics
    # C01: 06-25 in 30d; 05-10 in 90d (51 days); 03-01 is 121 days back
    assert m.loc["C00000001", ["orders_30d", "orders_90d", "orders_365d"]].tolist() == [1, 2, 3]
    assert m.loc["C00000001", ["monetary_30d", "monetary_90d", "monetary_365d"]].tolist() == [
        500,
        1200,
        2000,
    ]
    # C03: 04-01 is exactly 90 days back → outside the last 90 days (days 0..89)
    assert m.loc["C00000003", "orders_90d"] == 0
    assert m.loc["C00000004", "monetary_365d"] == 6000


def test_refunds_and_duplicate_order_ids(metrics):
    m, rep = metrics
    # C07: two orders on one day, one refund line: F=2, M=1200+800-300; one purchase *day*
    assert m.loc["C00000007", ["frequency", "monetary", "bg_x"]].tolist() == [2, 1700, 0]
    # C08: the duplicated O15 row counts once; O16 after as-of is ignored
    assert m.loc["C00000008", ["frequency", "monetary"]].tolist() == [1, 400]
    assert rep.rows_duplicate == 1
    assert rep.rows_after_as_of == 1


def test_refund_flag_column_counts_negative():
    orders = orders_df().iloc[[0, 1]].assign(refund=["否", "是"])  # text flags as read from CSV
    orders["refund"] = [False, True]
    m, _ = customer_metrics(orders, clean_customers(), as_of="2024-06-30")
    assert m.set_index("customer_id").loc["C00000001", "monetary"] == 500 - 700
    assert m.set_index("customer_id").loc["C00000001", "frequency"] == 1
    orders["refund"] = ["False", "True"]
    m2, _ = customer_metrics(orders, clean_customers(), as_of="2024-06-30")
    assert m2.set_index("customer_id").loc["C00000001", "monetary"] == -200


def test_matching_channel_qualified_phone_email_and_unmatched(metrics):
    m, rep = metrics
    # id 1001 exists on 京东 (C02) and 天猫 (C03): the order's channel decides
    assert m.loc["C00000002", "frequency"] == 1 and m.loc["C00000003", "frequency"] == 4
    # C10: one order by normalised phone (+86 138-0000-0010), one by email (case, spaces)
    assert m.loc["C00000010", ["frequency", "monetary"]].tolist() == [2, 3500]
    assert rep.matched_by == {"id": 16, "phone": 1, "email": 1}
    assert rep.rows_unmatched == 1
    assert rep.unmatched["order_id"].tolist() == ["O19"]
    assert rep.rows_used == 18 and rep.orders_used == 17


@pytest.mark.parametrize("dtype", [object, "str"])
def test_ids_with_spaces_around_match_like_trimmed_ids(dtype):
    # ids are looked up as they are first; the ones not found (spaces around, ambiguous
    # 1001 on two channels, blank → phone/email) go through trimming and the channel
    plain = orders_df()
    pads = [" ", "\t", "\u3000", "  ", "\r\n"]
    padded = plain.assign(
        customer_id=[
            v if v == "" else pads[i % 5] + v + pads[(i + 2) % 5] * (i % 2)
            for i, v in enumerate(plain["customer_id"])
        ]
    )
    a, ra = customer_metrics(
        plain.astype({"customer_id": dtype}), clean_customers(), as_of="2024-06-30"
    )
    b, rb = customer_metrics(
        padded.astype({"customer_id": dtype}), clean_customers(), as_of="2024-06-30"
    )
    pd.testing.assert_frame_equal(a, b)
    assert ra.to_dict() == rb.to_dict() and rb.matched_by == {"id": 16, "phone": 1, "email": 1}


def test_channel_column_with_text_only_after_the_first_thousand_rows():
    from custtool.arrow_text import has_text as _has_text

    assert _has_text(pd.Series([""] * 1000 + [" ", "天猫"]))
    assert _has_text(pd.Series([None, "京东"], dtype="str"))
    assert not _has_text(pd.Series([""] * 1500 + [" \u3000", None], dtype=object))
    assert not _has_text(pd.Series([], dtype=object))


def test_customers_without_orders_stay(metrics):
    m, _ = metrics
    assert len(m) == 10
    assert m.loc["C00000009", "frequency"] == 0
    assert m.loc["C00000009", "name"] == "周杰"


def test_ambiguous_id_without_channel_is_not_guessed():
    orders = orders_df().iloc[[3]].assign(channel="")
    m, rep = customer_metrics(orders, clean_customers(), as_of="2024-06-30")
    assert rep.rows_unmatched == 1 and m["frequency"].sum() == 0


def test_import_output_customers_match_by_source_id():
    cust = pd.DataFrame(
        {
            "customer_id": ["T1", "1001", "1001"],
            "phone": ["13800000001", "13800000002", "13800000003"],
            "email": ["", "", ""],
            "_channel": ["天猫", "京东", "天猫"],
        }
    )
    m, rep = customer_metrics(orders_df(), cust, as_of="2024-06-30")
    assert m["frequency"].tolist() == [3, 1, 4]
    assert m["monetary"].tolist() == [2000, 100, 8000]


def test_customers_derived_from_orders():
    m, rep = customer_metrics(orders_df(), None, as_of="2024-06-30")
    assert rep.customers_derived
    m = m.set_index("customer_id")
    # 1001 appears on two channels → qualified ids; O17 (phone only) and O18 (email only) are
    # two separate derived customers; X999 is a customer here
    assert m.loc["京东:1001", "frequency"] == 1 and m.loc["天猫:1001", "frequency"] == 4
    assert m.loc["T1", "monetary"] == 2000
    assert m.loc["13800000010", "monetary"] == 2500
    assert m.loc["wu@example.com", "monetary"] == 1000
    assert rep.rows_unmatched == 0
    assert len(m) == 11


def test_timezone_conversion_before_days():
    cust = clean_customers()
    orders = pd.DataFrame(
        {
            "order_id": ["A", "B"],
            "customer_id": ["T1", "T1"],
            "channel": ["天猫", "天猫"],
            "order_time": pd.to_datetime(["2024-06-29T20:00:00Z", "2024-06-01T03:00:00Z"]),
            "amount": [10.0, 20.0],
        }
    )
    m, rep = customer_metrics(orders, cust, as_of="2024-06-30")
    row = m.set_index("customer_id").loc["C00000001"]
    # 2024-06-29 20:00 UTC is 2024-06-30 04:00 in Shanghai → recency 0
    assert row["recency"] == 0 and row["last_order"] == pd.Timestamp("2024-06-30")
    m2, _ = customer_metrics(orders, cust, as_of="2024-06-30", tz="UTC")
    assert m2.set_index("customer_id").loc["C00000001", "recency"] == 1


def test_default_as_of_is_latest_order_day_and_past_as_of():
    m, rep = customer_metrics(orders_df(), clean_customers())
    assert rep.as_of == pd.Timestamp("2024-07-05")
    m2, rep2 = customer_metrics(orders_df(), clean_customers(), as_of="2024-03-31")
    m2 = m2.set_index("customer_id")
    assert m2.loc["C00000003", ["frequency", "monetary", "recency"]].tolist() == [3, 7000, 21]
    assert m2.loc["C00000002", "frequency"] == 0 and pd.isna(m2.loc["C00000002", "recency"])


def test_growth_vs_previous_window():
    orders = pd.DataFrame(
        {
            "order_id": ["a", "b", "c"],
            "customer_id": ["T1"] * 3,
            "channel": ["天猫"] * 3,
            "order_time": pd.to_datetime(["2024-01-10", "2024-05-10", "2024-06-20"]),
            "amount": [1000.0, 600.0, 700.0],
        }
    )
    m, _ = customer_metrics(
        orders, clean_customers(), as_of="2024-06-30", window="90d", growth_window="90d"
    )
    row = m.set_index("customer_id").loc["C00000001"]
    # growth window 90d: 04-02..06-30 = 1300; previous: 01-03..04-01 = 1000 → growth 30%
    # (left out, the growth window is rules/segments.yaml's 365d, not the F/M window)
    assert row["monetary"] == 1300 and row["monetary_prev"] == 1000
    assert row["growth"] == pytest.approx(0.3)
    life = assign_lifecycle(m.assign(as_of=pd.Timestamp("2024-06-30")))
    assert bool(life.loc[0, "potential"]) is True


def test_interaction_metrics():
    inter = pd.DataFrame(
        {
            "record_id": ["1", "2", "3", "4", "5"],
            "customer_id": ["", "T1", "", "", ""],
            "phone": ["13800000001", "", "13800000002", "13800000001", "13900000000"],
            "email": [""] * 5,
            "time": pd.to_datetime(
                [
                    "2024-06-20 10:00",
                    "2024-01-05 09:00",
                    "2023-05-01 00:00",
                    "2024-07-02 00:00",
                    "2024-06-01 00:00",
                ]
            ),
            "method": ["电话", "投诉", "拜访", "电话", "电话"],
            "content": ["回访", "物流慢", "", "", "客户投诉质量"],
        }
    )
    m, _ = customer_metrics(orders_df(), clean_customers(), as_of="2024-06-30", interactions=inter)
    m = m.set_index("customer_id")
    assert m.loc[
        "C00000001",
        ["days_since_last_interaction", "interactions_30d", "interactions_365d", "complaints_365d"],
    ].tolist() == [10, 1, 2, 1]
    assert m.loc["C00000001", "last_interaction"] == pd.Timestamp("2024-06-20 10:00")
    assert (
        m.loc["C00000002", "interactions_365d"] == 0
        and m.loc["C00000002", "days_since_last_interaction"] == 426
    )
    assert (
        pd.isna(m.loc["C00000005", "days_since_last_interaction"])
        and m.loc["C00000005", "interactions_30d"] == 0
    )


def test_missing_columns_and_bad_window():
    with pytest.raises(InputError, match="order_time"):
        customer_metrics(orders_df().drop(columns="order_time"), clean_customers())
    with pytest.raises(InputError, match="customer key"):
        customer_metrics(
            orders_df().drop(columns=["customer_id", "phone", "email"]), clean_customers()
        )
    with pytest.raises(ConfigError):
        customer_metrics(orders_df(), clean_customers(), window="a year")
    assert parse_days("12m") == 365 and parse_days("26w") == 182 and parse_days(30) == 30


# --------------------------------------------------------------------------- D2 scores and classes
def test_quantile_scores_hand_computed(metrics):
    m, _ = metrics
    s = rfm_scores(m)
    # score = 1 + floor(5 · share of the 9 buyers with a strictly worse value)
    assert s["r_score"].tolist() == [4, 5, 2, 1, 3, 1, 2, 3, pd.NA, 4]
    assert s["f_score"].tolist() == [4, 1, 5, 1, 3, 1, 3, 1, pd.NA, 3]
    assert s["m_score"].tolist() == [3, 1, 5, 4, 2, 1, 3, 2, pd.NA, 4]
    assert s["rfm_score"].tolist()[:3] == [11, 7, 12]


def test_eight_classes_mean_and_median(metrics):
    m, _ = metrics
    c = rfm_classes(m)
    assert c["rfm_class"].tolist() == [
        "一般价值客户",
        "一般发展客户",
        "重要保持客户",
        "重要挽留客户",
        "一般价值客户",
        "一般挽留客户",
        "一般价值客户",
        "一般发展客户",
        "",
        "重要价值客户",
    ]
    ref = c.attrs["reference"]
    assert ref["recency"] == pytest.approx(545 / 9, abs=1e-3)
    assert ref["frequency"] == pytest.approx(17 / 9, abs=1e-3)
    assert ref["monetary"] == pytest.approx(22350 / 9, abs=1e-3)
    med = rfm_classes(m, reference="median")  # 20 days, 2 orders, 1700
    assert med["rfm_class"].tolist() == [
        "重要价值客户",
        "一般发展客户",
        "重要保持客户",
        "重要挽留客户",
        "一般发展客户",
        "一般挽留客户",
        "一般挽留客户",
        "一般挽留客户",
        "",
        "重要发展客户",
    ]


def test_r_high_means_more_recent():
    m = pd.DataFrame(
        {
            "first_order": pd.to_datetime(["2024-01-01"] * 2),
            "recency": [1.0, 100.0],
            "frequency": [5, 5],
            "monetary": [100.0, 100.0],
        }
    )
    c = rfm_classes(m)
    assert c["r_high"].tolist() == [True, False]
    assert c["rfm_class"].tolist() == [
        "一般发展客户",
        "一般挽留客户",
    ]  # F, M equal to the mean: not high


def test_threshold_scores_and_classes(metrics):
    m, _ = metrics
    s = rfm_scores(
        m,
        method="thresholds",
        thresholds={
            "recency": [7, 30, 60, 120],
            "frequency": [2, 3, 4, 5],
            "monetary": [200, 1000, 3000, 6000],
        },
    )
    assert s["r_score"].tolist() == [5, 5, 2, 1, 4, 1, 3, 4, pd.NA, 4]
    assert s["f_score"].tolist() == [3, 1, 4, 1, 2, 1, 2, 1, pd.NA, 2]
    assert s["m_score"].tolist() == [3, 1, 5, 5, 2, 1, 3, 2, pd.NA, 4]
    c = rfm_classes(
        m, reference="thresholds", thresholds={"recency": 30, "frequency": 2, "monetary": 3000}
    )
    assert c["rfm_class"].tolist()[:4] == [
        "一般价值客户",
        "一般发展客户",
        "重要保持客户",
        "重要挽留客户",
    ]
    with pytest.raises(ConfigError):
        rfm_scores(
            m,
            method="thresholds",
            thresholds={
                "recency": [30, 20, 10, 5],
                "frequency": [1, 2, 3, 4],
                "monetary": [1, 2, 3, 4],
            },
        )
    with pytest.raises(ConfigError):
        rfm_classes(m, reference="mode")


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_quantile_scores_tiny_data(n):
    m = pd.DataFrame(
        {
            "first_order": pd.Timestamp("2024-01-01"),
            "recency": np.arange(n, dtype=float),
            "frequency": np.arange(1, n + 1),
            "monetary": np.arange(1, n + 1) * 10.0,
        }
    )
    s = rfm_scores(m)
    expected = [1 + (5 * i) // n for i in range(n)]
    assert s["f_score"].tolist() == expected
    assert s["m_score"].tolist() == expected
    assert s["r_score"].tolist() == expected[::-1]


def test_quantile_scores_ties_and_all_equal():
    m = pd.DataFrame(
        {
            "first_order": pd.Timestamp("2024-01-01"),
            "recency": [5.0] * 6,
            "frequency": [1, 1, 1, 1, 2, 2],
            "monetary": [100.0] * 6,
        }
    )
    s = rfm_scores(m)
    assert s["r_score"].tolist() == [1] * 6 and s["m_score"].tolist() == [1] * 6
    assert s["f_score"].tolist() == [1, 1, 1, 1, 4, 4]  # 1 + floor(5·4/6)
    c = rfm_classes(m)
    assert set(c["rfm_class"]) == {"一般挽留客户", "一般保持客户"}


@pytest.mark.slow
@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 20), st.floats(-500, 50000, allow_nan=False)),
        min_size=1,
        max_size=40,
    ),
    st.integers(0, 5),
)
def test_property_scores_classes_shares(rows, no_orders):
    n = len(rows)
    m = pd.DataFrame(rows, columns=["recency", "frequency", "monetary"]).astype({"recency": float})
    m["first_order"] = pd.Timestamp("2023-01-01")
    m["monetary"] = m["monetary"].round(2)
    if no_orders:
        extra = pd.DataFrame(
            {
                "recency": [np.nan] * no_orders,
                "frequency": 0,
                "monetary": 0.0,
                "first_order": pd.NaT,
            }
        )
        m = pd.concat([m, extra], ignore_index=True)
    m["monetary_365d"] = m["monetary"]
    s = rfm_scores(m)
    for c in ("r_score", "f_score", "m_score"):
        v = s[c].iloc[:n]
        assert v.between(1, 5).all()
        assert s[c].iloc[n:].isna().all()
        # equal values → equal scores
        key = {"r_score": "recency", "f_score": "frequency", "m_score": "monetary"}[c]
        assert (pd.DataFrame({"k": m[key].iloc[:n], "s": v}).groupby("k")["s"].nunique() == 1).all()
    cls = rfm_classes(m)["rfm_class"]
    assert cls.iloc[:n].isin(RFM_CLASSES).all() and (cls.iloc[n:] == "").all()
    seg = pd.concat([m, s, cls], axis=1).assign(
        tier=value_tiers(m), lifecycle="成长", nps_score=np.nan
    )
    summ = segment_summary(seg)
    for _dim, t in summ.groupby("dimension"):
        assert t["customers"].sum() == len(m)
        assert t["customer_share"].sum() == pytest.approx(100.0)
        total = m["monetary"].sum()
        if abs(total) > 1e-9:
            assert t["revenue_share"].sum() == pytest.approx(100.0)


# --------------------------------------------------------------------------- D3 tiers, D4 lifecycle
def test_value_tiers_thresholds_and_top():
    m = pd.DataFrame(
        {
            "monetary_365d": [
                12000.0,
                10000.0,
                9999.99,
                3000.0,
                2999.99,
                0.0,
                500.0,
                500.0,
                100.0,
                50.0,
            ]
        }
    )
    assert value_tiers(m).tolist() == [
        "高价值",
        "高价值",
        "中价值",
        "中价值",
        "低价值",
        "低价值",
        "低价值",
        "低价值",
        "低价值",
        "低价值",
    ]
    assert value_tiers(m, high=5000, mid=500).tolist()[5:8] == ["低价值", "中价值", "中价值"]
    top = value_tiers(m, method="top", top_high_pct=10, top_mid_pct=50)
    # top 10% of 10 = 1 customer; top 50% = ranks ≤ 5
    assert top.tolist() == [
        "高价值",
        "中价值",
        "中价值",
        "中价值",
        "中价值",
        "低价值",
        "低价值",
        "低价值",
        "低价值",
        "低价值",
    ]
    tie = value_tiers(
        pd.DataFrame({"monetary_365d": [100.0, 100.0, 50.0, 10.0]}),
        method="top",
        top_high_pct=25,
        top_mid_pct=50,
    )
    assert tie.tolist() == ["高价值", "高价值", "低价值", "低价值"]  # ties share a tier
    with pytest.raises(ConfigError):
        value_tiers(m, method="top", top_high_pct=60, top_mid_pct=50)


def test_lifecycle_default_and_configured(metrics):
    m, _ = metrics
    life = assign_lifecycle(m)
    assert life["lifecycle"].tolist() == [
        "成熟",
        "新客户",
        "沉睡",
        "流失",
        "新客户",
        "流失",
        "沉睡",
        "新客户",
        "潜在",
        "新客户",
    ]
    life2 = assign_lifecycle(m, new_days=10, sleep_days=60, lost_days=180, mature_orders=2)
    assert life2["lifecycle"].tolist() == [
        "成熟",
        "新客户",
        "沉睡",
        "流失",
        "成熟",
        "沉睡",
        "成熟",
        "成长",
        "潜在",
        "成熟",
    ]
    assert not life["potential"].any()
    with pytest.raises(ConfigError):
        assign_lifecycle(m, sleep_days=100, lost_days=90)


# --------------------------------------------------------------------------- whole step, config
def test_segment_customers_summary_and_shares():
    res = segment_customers(orders_df(), clean_customers(), as_of="2024-06-30")
    seg = res.customers.set_index("customer_id")
    assert seg.loc["C00000010", "rfm_class"] == "重要价值客户"
    assert seg.loc["C00000003", "tier"] == "中价值"
    assert seg.loc["C00000009", "lifecycle"] == "潜在" and seg.loc["C00000009", "rfm_class"] == ""
    # too few customers for BG/NBD (9 < 20): LTV falls back to historical value
    assert res.ltv.bgnbd is None and "only 9 customers" in res.ltv.bgnbd_reason
    assert seg["ltv"].tolist() == seg["historical_value"].tolist()
    s = res.summary.set_index(["dimension", "segment"])
    assert s.loc[("rfm_class", "重要保持客户"), "revenue"] == 8000
    assert s.loc[("rfm_class", "重要保持客户"), "revenue_share"] == pytest.approx(
        8000 / 22350 * 100
    )
    assert s.loc[("rfm_class", "一般价值客户"), "customers"] == 3
    assert s.loc[("rfm_class", "（无订单）"), "customer_share"] == 10.0
    d = res.to_dict()
    assert d["customers"] == 10 and d["orders_used"] == 17 and d["orders_unmatched"] == 1
    assert d["classes"]["一般价值客户"] == {
        "customers": 3,
        "customer_share": 30.0,
        "revenue": 4200.0,
        "revenue_share": round(4200 / 22350 * 100, 4),
    }
    assert d["ltv"]["bgnbd"]["fitted"] is False


def test_every_threshold_from_config(tmp_path):
    p = tmp_path / "seg.yaml"
    p.write_text(
        """
timezone: UTC
metrics: {window: 180d}
rfm:
  method: thresholds
  thresholds: {recency: [7, 30, 60, 120], frequency: [2, 3, 4, 5], monetary: [200, 1000, 3000, 6000]}
classes:
  reference: thresholds
  thresholds: {recency: 30, frequency: 2, monetary: 3000}
tiers: {method: thresholds, high: 5000, mid: 1000}
lifecycle: {new_days: 10, sleep_days: 60, lost_days: 180, mature_orders: 2, potential_growth: 0.5}
ltv: {horizon: 6m, unit: weeks, churn_p_alive: 0.5, min_customers: 100, min_repeat: 5}
""",
        encoding="utf-8",
    )
    cfg = load_segment_config(p)
    res = segment_customers(orders_df(), clean_customers(), as_of="2024-06-30", config=cfg)
    seg = res.customers.set_index("customer_id")
    # window 180d: C04's 2023-12-01 order (212 days back) is outside → F=0, M=0
    assert seg.loc["C00000004", ["frequency", "monetary"]].tolist() == [0, 0]
    assert seg.loc["C00000001", ["r_score", "f_score", "m_score"]].tolist() == [5, 3, 3]
    assert seg.loc["C00000003", "rfm_class"] == "重要保持客户"
    assert seg.loc["C00000001", "tier"] == "中价值" and seg.loc["C00000004", "tier"] == "高价值"
    assert (
        seg.loc["C00000005", "lifecycle"] == "成熟" and seg.loc["C00000008", "lifecycle"] == "成长"
    )
    assert res.ltv.horizon_days == 183 and res.ltv.unit == "weeks"
    assert "need 100" in res.ltv.bgnbd_reason


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rfm: {methd: quantile}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="methd"):
        load_segment_config(bad)
    bad.write_text("rfm: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="YAML"):
        load_segment_config(bad)
    with pytest.raises(ConfigError):
        load_segment_config(tmp_path / "missing.yaml")


def test_shipped_config_equals_defaults():
    from pathlib import Path

    shipped = load_segment_config(Path(__file__).parent.parent / "rules" / "segments.yaml")
    defaults = load_segment_config()
    assert shipped["rfm"]["method"] == defaults["rfm"]["method"] == "quantile"
    assert shipped["tiers"]["high"] == 10000 and shipped["lifecycle"]["lost_days"] == 90
    assert shipped["ltv"]["churn_p_alive"] == defaults["ltv"]["churn_p_alive"]


def test_engines_agree():
    rng = np.random.default_rng(3)
    n = 3000
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in rng.integers(0, 2500, n)],
            "customer_id": [f"T{i}" for i in rng.integers(1, 300, n)],
            "channel": "天猫",
            "order_time": pd.Timestamp("2023-01-01")
            + pd.to_timedelta(rng.integers(0, 600 * 24, n), unit="h"),
            "amount": np.round(rng.gamma(2, 150, n) * np.where(rng.random(n) < 0.05, -1, 1), 2),
        }
    )
    a, ra = customer_metrics(orders, None, as_of="2024-06-30", engine="pandas")
    b, rb = customer_metrics(orders, None, as_of="2024-06-30", engine="duckdb")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert ra.orders_used == rb.orders_used
    assert rfm_scores(a).equals(rfm_scores(b))


@pytest.mark.slow
@settings(max_examples=examples(14), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 400))
def test_property_engines_agree_on_line_items_duplicates_refunds_and_dropped_rows(seed, n):
    # line items (an order id on several lines and days), exact duplicate rows, refunds,
    # rows without a valid time, after the as-of day, or of no customer: the pandas engine
    # (bucketed bincounts, one sort for purchase days) equals the SQL of the duckdb engine
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2023-06-01") + pd.to_timedelta(rng.integers(0, 500 * 24, n), unit="h")
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i}" if i else "" for i in rng.integers(0, max(2, n // 2), n)],
            "customer_id": [f"C{i:08d}" for i in rng.integers(1, 13, n)],
            # some times missing, never all (no order with a time is an error, tested elsewhere)
            "order_time": pd.Series(times).where((rng.random(n) > 0.03) | (np.arange(n) == 0)),
            "amount": np.round(rng.gamma(2, 150, n) * np.where(rng.random(n) < 0.1, -1, 1), 2),
        }
    )
    dup = orders.sample(frac=0.1, random_state=int(rng.integers(0, 1000)))
    orders = (
        pd.concat([orders, dup], ignore_index=True)
        .sample(frac=1.0, random_state=1)
        .reset_index(drop=True)
    )
    as_of = "2024-06-30" if rng.random() < 0.5 else None
    a, ra = customer_metrics(orders, clean_customers(), as_of=as_of, engine="pandas")
    b, rb = customer_metrics(orders, clean_customers(), as_of=as_of, engine="duckdb")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert ra.to_dict() == rb.to_dict()


# --------------------------------------------------------------------------- CLI
def _write_inputs(tmp_path):
    from custtool.io import write_table

    write_table(clean_customers(), tmp_path / "clean.parquet")
    write_table(orders_df(), tmp_path / "orders.parquet")
    surveys = pd.DataFrame(
        {
            "customer_id": ["", "", "", "", ""],
            "phone": ["13800000001", "13800000003", "13800000010", "13800000004", "13900000000"],
            "email": [""] * 5,
            "time": pd.to_datetime(["2024-06-01"] * 5),
            "score": [10.0, 6.0, 9.0, np.nan, 7.0],
            "satisfaction": [5.0, 3.0, 4.0, np.nan, 4.0],
            "comments": [""] * 5,
        }
    )
    write_table(surveys, tmp_path / "surveys.parquet")
    inter = pd.DataFrame(
        {
            "record_id": ["1", "2"],
            "customer_id": ["", ""],
            "phone": ["13800000001", "13800000001"],
            "email": ["", ""],
            "time": pd.to_datetime(["2024-06-20 10:00", "2024-06-25 10:00"]),
            "method": ["电话", "投诉"],
            "content": ["", "物流"],
        }
    )
    write_table(inter, tmp_path / "interactions.parquet")


def test_cli_segment_json_equals_library(tmp_path):
    from typer.testing import CliRunner

    from custtool.cli import app

    _write_inputs(tmp_path)
    out = tmp_path / "seg.parquet"
    r = CliRunner().invoke(
        app,
        [
            "segment",
            str(tmp_path / "clean.parquet"),
            "--orders",
            str(tmp_path / "orders.parquet"),
            "--surveys",
            str(tmp_path / "surveys.parquet"),
            "--as-of",
            "2024-06-30",
            "--interactions",
            str(tmp_path / "interactions.parquet"),
            "-o",
            str(out),
            "--summary",
            str(tmp_path / "summary.xlsx"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    for key in (
        "customers",
        "orders_used",
        "orders_unmatched",
        "classes",
        "tiers",
        "lifecycle",
        "nps",
        "ltv",
    ):
        assert key in d
    assert d["customers"] == 10 and d["orders_unmatched"] == 1
    assert d["classes"]["重要价值客户"]["customers"] == 1
    # NPS: 10, 6, 9 valid, 7 unmatched but valid, NaN invalid → 2 promoters, 1 detractor of 4
    assert d["nps"]["nps"] == 25.0 and d["nps"]["invalid"] == 1
    assert d["nps"]["by_class"]["重要价值客户"] == 100.0
    assert "reason" in d["ltv"]["bgnbd"]
    lib = segment_customers(
        orders_df(),
        clean_customers(),
        as_of="2024-06-30",
        surveys=pd.read_parquet(tmp_path / "surveys.parquet"),
    ).to_dict()
    assert d["classes"] == lib["classes"] and d["nps"] == lib["nps"]
    seg = pd.read_parquet(out).set_index("customer_id")
    assert (
        seg.loc["C00000010", "nps_score"] == 9
        and seg.loc["C00000004", "nps_score"] != seg.loc["C00000004", "nps_score"]
    )
    assert seg.loc[
        "C00000001", ["days_since_last_interaction", "interactions_30d", "complaints_365d"]
    ].tolist() == [5, 2, 1]
    assert (tmp_path / "seg_unmatched_orders.csv").exists()
    from openpyxl import load_workbook

    wb = load_workbook(tmp_path / "summary.xlsx", read_only=True)
    assert wb.sheetnames[:3] == ["RFM分类", "价值等级", "生命周期"]
    rows = list(wb["RFM分类"].values)
    assert rows[0][:3] == ("分群", "客户数", "客户占比(%)")


def test_cli_segment_human_output_and_errors(tmp_path):
    from typer.testing import CliRunner

    from custtool.cli import app

    _write_inputs(tmp_path)
    runner = CliRunner()
    r = runner.invoke(
        app, ["segment", "--orders", str(tmp_path / "orders.parquet"), "--as-of", "2024-06-30"]
    )
    assert r.exit_code == 0
    assert "客户分群" in r.stderr and r.stdout == ""
    r = runner.invoke(app, ["segment", str(tmp_path / "clean.parquet")])
    assert r.exit_code == 2 and "orders" in r.stderr
    r = runner.invoke(app, ["segment", "--orders", str(tmp_path / "nope.parquet")])
    assert r.exit_code == 2 and "not found" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: {methd: top}\n", encoding="utf-8")
    out = tmp_path / "x.parquet"
    r = runner.invoke(
        app,
        [
            "segment",
            "--orders",
            str(tmp_path / "orders.parquet"),
            "--config",
            str(bad),
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 2 and not out.exists()
    r = runner.invoke(app, ["segment", "--help"])
    assert r.exit_code == 0 and "$ custtool segment" in r.stdout


def test_order_codes_hash_and_text_paths_agree():
    from custtool.metrics import _order_codes

    rng = np.random.default_rng(5)
    ids = pd.Series(
        [f"O{i}" for i in rng.integers(0, 40_000, 50_000)] + ["", " ", None, " O7 "], dtype=object
    )
    a = _order_codes(ids, method="hash")
    b = _order_codes(ids, method="encode")
    # the same partition: singles (-1) equal, and repeated ids grouped identically
    assert ((a < 0) == (b < 0)).all()
    _same_partition(np.asarray(a), np.asarray(b))
    assert (a[-4:-1] == -1).all()  # blanks are each their own order
    counts = ids.str.strip().value_counts()
    assert (b >= 0).sum() == counts[counts > 1].drop("", errors="ignore").sum()


def _same_partition(a: np.ndarray, b: np.ndarray) -> None:
    """Two order-code arrays group the rows identically (-1 = an order by itself)."""
    assert ((a < 0) == (b < 0)).all()
    rep = a >= 0
    if rep.any():  # one-to-one: as many distinct (a, b) pairs as distinct a and as distinct b
        pairs = pd.DataFrame({"a": a[rep], "b": b[rep]}).drop_duplicates()
        assert len(pairs) == pairs["a"].nunique() == pairs["b"].nunique()


@pytest.mark.parametrize("dtype", [object, "str"])
def test_order_codes_hash_path_trims_like_the_text_path(dtype):
    # fixed-width ids (strided reads), mixed widths (gathers), ids longer than 8 and 16 bytes,
    # Chinese text, and the spaces _encode_text trims: tab, CR/LF, the ideographic space
    ids = [
        "O0000000001",
        "O0000000002",
        "O0000000001",
        " O0000000002",
        "O0000000002\t",
        "订单号一",
        "订单号一\u3000",
        "\u3000订单号二",
        "订单号二",
        "x" * 25,
        "x" * 24 + "y",
        "x" * 25,
        "",
        "\u3000",
        None,
        "7",
        "7 ",
        "70",
    ]
    a = _order_codes_of(pd.Series(ids, dtype=dtype), "hash")
    b = _order_codes_of(pd.Series(ids, dtype=dtype), "encode")
    _same_partition(a, b)
    assert (
        a[0] == a[2]
        and a[1] == a[3] == a[4]
        and a[5] == a[6]
        and a[7] == a[8]
        and a[9] == a[11]
        and a[15] == a[16]
    )
    assert a[0] != a[1] and a[10] == -1 and a[17] == -1 and (a[12:15] == -1).all()
    fixed = pd.Series(
        [f"O{i % 7:010d}" for i in range(50)] + [f"O{i:010d}" for i in range(100, 120)], dtype=dtype
    )
    _same_partition(_order_codes_of(fixed, "hash"), _order_codes_of(fixed, "encode"))


def test_order_codes_never_merge_different_ids_whose_hashes_collide(monkeypatch):
    import custtool.metrics as rfm

    rng = np.random.default_rng(7)
    ids = pd.Series(
        [f"O{i}" for i in rng.integers(0, 60, 400)]
        + [f"U{i}" for i in range(30)]
        + ["", None, " O7 "],
        dtype=object,
    )
    expected = _order_codes_of(ids, "encode")
    real_hash = rfm.text_hash
    for fake in (
        lambda arr: real_hash(arr) & np.uint64(3),
        lambda arr: np.zeros(len(arr), dtype=np.uint64),
    ):
        monkeypatch.setattr(rfm, "text_hash", fake)
        got = _order_codes_of(ids, "hash")
        _same_partition(got, expected)
        assert (got[400:430] == -1).all()  # ids seen once stay orders by themselves
    monkeypatch.setattr(rfm, "text_hash", lambda arr: np.zeros(len(arr), dtype=np.uint64))
    assert (_order_codes_of(pd.Series([f"U{i}" for i in range(20)]), "hash") == -1).all()


def test_order_codes_of_chunked_arrow_ids_and_phone_keys():
    import pyarrow as pa

    from custtool.attribution import phone_keys as _norm_phone_pa

    ids = pa.chunked_array(
        [pa.array([], pa.string()), pa.array(["a", " a", "b"]), pa.array(["b", None, "", "c"])]
    )
    _same_partition(
        _order_codes_of(ids, "hash"),
        _order_codes_of(pd.Series(ids.to_pylist(), dtype=object), "encode"),
    )
    assert _order_codes_of(ids, "hash").tolist()[4:] == [-1, -1, -1]
    # plain digits are their own key; anything else is normalised (13 digits with 86 too)
    phones = ["13800000001", "", None, "8613800000001", "+86 138-0000-0001", "１３８00000001"]
    assert _norm_phone_pa(pa.array(phones[:3])).to_pylist() == ["13800000001", "", None]
    assert (
        _norm_phone_pa(pa.array(phones)).to_pylist()
        == ["13800000001", "", None] + ["13800000001"] * 3
    )


def test_errors_of_the_order_id_thread_and_of_matching_reach_the_caller(monkeypatch):
    import custtool.metrics as rfm

    def broken(values, method="auto"):
        raise RuntimeError("order ids failed")

    monkeypatch.setattr(rfm, "_order_codes", broken)
    with pytest.raises(RuntimeError, match="order ids failed"):
        customer_metrics(orders_df(), clean_customers(), as_of="2024-06-30")
    monkeypatch.undo()
    with pytest.raises(InputError, match="valid order time"):
        customer_metrics(orders_df().assign(order_time=pd.NaT), clean_customers())


def test_customer_index_builds_each_lookup_once_across_threads(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import custtool.attribution as rfm

    calls = []
    real = rfm._contact_keys

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(rfm, "_contact_keys", counted)
    index = rfm.CustomerIndex(clean_customers())
    with ThreadPoolExecutor(4) as pool:
        tables = list(pool.map(lambda _: index.phone, range(8)))
    assert calls == ["phones"] and all(t is tables[0] for t in tables)
    assert index.qualified is index.qualified and len(index.email) == 1


def test_every_cell_has_text():
    from custtool.arrow_text import has_text as _has_text

    for dtype in (object, "str"):
        assert _has_text(pd.Series(["a", "b"], dtype=dtype), every=True)
        assert not _has_text(pd.Series(["a", ""], dtype=dtype), every=True)
        assert not _has_text(pd.Series(["a", None], dtype=dtype), every=True)


def test_key_lookup_same_with_and_without_the_all_keys_differ_shortcut(monkeypatch):
    import pyarrow as pa

    import custtool.attribution as rfm

    keys = pa.array(["T1", "1001", "1001", "", None, "M5", "x" * 20])
    owners = pa.array([0, 1, 2, 3, 4, 5, 6])
    probe = pa.array(["T1", "1001", "M5", "", None, "nope", "x" * 20])
    fast_keys = pa.array(["T1", "M5", "x" * 20, "", None])
    for ks, os_ in ((keys, owners), (fast_keys, pa.array([0, 5, 6, 3, 4]))):
        lut, amb = rfm._unique_map(ks, os_, with_ambiguous=True)
        got = lut.lookup(probe).tolist()
        monkeypatch.setattr(rfm, "text_hash", lambda arr: np.zeros(len(arr), dtype=np.uint64))
        lut2, amb2 = rfm._unique_map(
            ks, os_, with_ambiguous=True
        )  # every hash repeats: no shortcut
        monkeypatch.undo()
        assert got == lut2.lookup(probe).tolist() == [0, -1, 5, -1, -1, -1, 6]
        assert amb.to_pylist() == amb2.to_pylist() == (["1001"] if ks is keys else [])


def test_take_rows_chunk_by_chunk_equals_pyarrow_take():
    import pyarrow as pa

    from custtool.arrow_text import take_rows as _take

    ca = pa.chunked_array(
        [pa.array(["a", "b"]), pa.array([], pa.string()), pa.array(["c", None, "e"])]
    )
    for rows in ([0, 2, 4], [], [3], [1, 0], [0, 1, 2, 3, 4]):
        r = np.array(rows, dtype=np.int64)
        assert _take(ca, r).to_pylist() == ca.take(pa.array(r)).to_pylist()
    assert _take(pa.array(["x", "y"]), np.array([1])).to_pylist() == ["y"]


def _order_codes_of(ids, method):
    from custtool.metrics import _order_codes

    return _order_codes(ids, method=method)


def test_cli_segment_prints_order_row_accounting(tmp_path):
    from typer.testing import CliRunner

    from custtool.cli import app

    _write_inputs(tmp_path)
    r = CliRunner().invoke(
        app,
        [
            "segment",
            str(tmp_path / "clean.parquet"),
            "--orders",
            str(tmp_path / "orders.parquet"),
            "--as-of",
            "2024-06-30",
        ],
    )
    assert r.exit_code == 0
    # 21 rows: 18 used (17 orders and a refund line), O19 of no customer, one duplicate line, one after the as-of date
    assert (
        "order rows 21 = 18 used (17 orders) + 1 matched no customer + 1 duplicate + 1 after the as-of date + 0 without a valid time"
        in " ".join(r.stderr.split())
    )


def test_age_at_the_as_of_date_from_birth_date():
    # the shipped tag library has age rules (18-24岁 …) and exports carry 出生日期, not 年龄
    cust = clean_customers().assign(
        birth_date=pd.to_datetime(
            [
                "2000-06-30",
                "2000-07-01",
                "1960-01-01",
                None,
                "2030-01-01",
                "1990-02-28",
                None,
                None,
                None,
                None,
            ]
        ),
    )
    res = segment_customers(orders_df(), cust, as_of="2024-06-30")
    age = res.customers.set_index("customer_id")["age"]
    assert age.dtype == "Int64"
    # birthday on the as-of day counts; the day after does not; unknown or future births stay empty
    assert age.tolist()[:6] == [24, 23, 64, pd.NA, pd.NA, 34]
    # an age column (from the export, or an earlier run) fills in where there is no birth date
    given = cust.assign(
        age=pd.array([30, None, None, 41, None, None, None, None, None, None], dtype="Int64")
    )
    assert segment_customers(orders_df(), given, as_of="2024-06-30").customers["age"].tolist()[
        :4
    ] == [24, 23, 64, 41]
    # segmenting the output again at a later date ages everyone with a birth date
    later = (
        segment_customers(orders_df(), res.customers, as_of="2025-07-01").customers["age"].tolist()
    )
    assert later[:3] == [25, 25, 65]


def test_segmenting_a_segmented_table_again_recomputes_everything():
    # e.g. `custtool segment out/2026-10-31/customers.parquet --orders … --as-of …`: the old
    # scores, classes and LTV columns are replaced, not duplicated (a ValueError before)
    first = segment_customers(orders_df(), clean_customers(), as_of="2024-06-30").customers
    again = segment_customers(orders_df(), first, as_of="2024-06-30").customers
    assert again.columns.is_unique and again.columns.tolist() == first.columns.tolist()
    pd.testing.assert_frame_equal(again, first)
    later = segment_customers(orders_df(), first, as_of="2024-12-31").customers
    assert later.columns.is_unique
    assert (
        later.set_index("customer_id").loc["C00000001", "recency"]
        == first.set_index("customer_id").loc["C00000001", "recency"] + 184
    )


def test_has_repeats_agrees_with_repeated_rows():
    """The matcher's shortcut (every key distinct?) is one sort: the same answer as the
    rows repeated_rows finds, on hand cases and on hashes with and without repeats."""
    from custtool.arrow_text import has_repeats, repeated_rows

    u = np.uint64
    assert not has_repeats(np.array([], dtype=u)) and not has_repeats(np.array([5], dtype=u))
    assert not has_repeats(np.array([3, 1, 2], dtype=u))
    assert has_repeats(np.array([3, 1, 3], dtype=u))
    rng = np.random.default_rng(5)
    for n, high in ((1000, 2**63), (1000, 5000), (2, 1)):
        h = rng.integers(0, high, n, dtype=u)
        assert has_repeats(h) == bool(len(repeated_rows(h)))


def test_one_customer_index_serves_the_run_where_it_fits(index_builds):
    """attribute(index=): the segment's CustomerIndex is reused for a later table with the
    same rows (same customer_id row by row) and gives what a fresh index gives; a table
    whose rows differ (reordered, one fewer) gets an index of its own."""
    import custtool.attribution as A

    customers = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4"],
            "source_ids": ["shop:9001", "crm:A7", "shop:9003;crm:A9", ""],
            "phones": ["13800000001", "13800000002", "", "13800000004"],
            "emails": ["", "b@x.cn", "c@x.cn", ""],
        }
    )
    records = pd.DataFrame(
        {
            "customer_id": ["9001", "", "A9", "", "ZZ"],
            "phone": ["", "13800000004", "", "", ""],
            "email": ["", "", "", "b@x.cn", ""],
        }
    )
    fresh = A.attribute(records, customers, kind="surveys")
    assert fresh.records["customer_id"].tolist() == ["C1", "C4", "C3", "C2", ""]
    index = A.CustomerIndex(customers)
    tagged = customers.assign(tags=[["a"], [], [], ["b"]])  # a later table, same rows
    assert index.fits(tagged)
    built = index_builds
    assert built == [4, 4]  # the fresh match's and this one
    built.clear()
    reused = A.attribute(records, tagged, kind="surveys", index=index)
    assert built == []  # no index built
    pd.testing.assert_frame_equal(reused.records, fresh.records)
    assert reused.positions.tolist() == fresh.positions.tolist()
    # other rows: the index does not fit and a fresh one is built
    reordered = customers.iloc[[1, 0, 2, 3]].reset_index(drop=True)
    assert not index.fits(reordered) and not index.fits(customers.iloc[:3])
    again = A.attribute(records, reordered, kind="surveys", index=index)
    assert built == [4]
    assert again.records["customer_id"].tolist() == ["C1", "C4", "C3", "C2", ""]
    assert again.positions.tolist() == [1, 3, 2, 0, -1]


def test_segment_and_run_match_surveys_and_log_with_the_metrics_index(index_builds):
    """The segment step hands its CustomerIndex to the surveys' match (no second index over
    the customers) and keeps it on the MatchReport for the run's follow-up log."""
    from custtool.segment import segment_customers

    customers = pd.DataFrame(
        {"customer_id": ["C1", "C2", "C3"], "phone": ["13800000001", "13800000002", ""]}
    )
    orders = pd.DataFrame(
        {
            "order_id": ["O1", "O2", "O3"],
            "customer_id": ["C1", "C2", "C3"],
            "order_time": pd.to_datetime(["2024-05-01", "2024-05-02", "2024-05-03"]),
            "amount": [10.0, 20.0, 30.0],
        }
    )
    surveys = pd.DataFrame(
        {
            "phone": ["13800000002", "13800000001"],
            "score": [10, 3],
            "time": pd.to_datetime(["2024-04-05", "2024-04-06"]),
        }
    )
    built = index_builds
    res = segment_customers(orders, customers, surveys=surveys)
    assert built == [3]  # the metrics' index, used for the surveys too
    assert res.customers.set_index("customer_id")["nps_score"].to_dict() == pytest.approx(
        {"C1": 3.0, "C2": 10.0, "C3": float("nan")}, nan_ok=True
    )
    assert res.report.customer_index is not None and res.report.customer_index.fits(res.customers)
    assert "customer_index" not in res.report.to_dict()
