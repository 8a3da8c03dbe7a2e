"""custtool.portrait and the 客户等级: hand-checked portrait columns (SPEC D8).

As-of 2024-06-30, window 365 days. 2024-06-03 is a Monday, 2024-06-01/08 Saturdays.

    A  o1 06-03 20:30 天猫 服装 300 · o2 06-04 21:10 天猫 美妆 300 · o2 refund 06-05 −100 美妆
       o3 06-08 10:00 门店 服装 100 · o4 06-10 00:00 门店 食品 50 (a date only: no slot)
       spend 服装 400, 美妆 200, 食品 50 → top 服装, "服装、美妆、食品"
       orders 天猫 2, 门店 2 (tie → 天猫 < 门店 in code-point order) → 天猫; both kinds → 全渠道
       slots: 工作日 20-22 ×2, 周末 10-12 ×1 → 工作日 20:00-22:00
    B  p1 06-01 (Sat) 14:00 京东, two lines: 数码 500 + 配件 400 (one order)
       p2 06-03 (Mon) 09:00 京东 配件 100
       spend tie 数码 = 配件 500 → 数码 first (code-point order); "数码、配件"; 京东 → 线上
       slots: 周末 14-16 ×1 (the two lines are one order), 工作日 08-10 ×1 → tie → 工作日 08:00-10:00
    C  no orders → every portrait column ""
    D  q0 2023-01-01 10:00 门店 家电 1000 (outside the window: not used)
       q1 06-20 (Thu) 12:30 朋友介绍 图书 80 → 图书; 朋友介绍 (in no map) → channel_mode ""
       slot 工作日 12:00-14:00
    复购率: buyers in the window A (4 orders), B (2), D (1) → 2/3 = 0.6667
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from custtool.portrait import channel_kinds, portrait_columns, repurchase_rate, slot_labels
from custtool.rfm import assign_level
from custtool.segment import segment_customers


def customers() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["A", "B", "C", "D"]})


def orders() -> pd.DataFrame:
    rows = [
        ("o1", "A", "2024-06-03 20:30", "天猫", "服装", 300),
        ("o2", "A", "2024-06-04 21:10", "天猫", "美妆", 300),
        ("o2", "A", "2024-06-05 12:00", "天猫", "美妆", -100),
        ("o3", "A", "2024-06-08 10:00", "门店", "服装", 100),
        ("o4", "A", "2024-06-10 00:00", "门店", "食品", 50),
        ("p1", "B", "2024-06-01 14:00", "京东", "数码", 500),
        ("p1", "B", "2024-06-01 14:00", "京东", "配件", 400),
        ("p2", "B", "2024-06-03 09:00", "京东", "配件", 100),
        ("q0", "D", "2023-01-01 10:00", "门店", "家电", 1000),
        ("q1", "D", "2024-06-20 12:30", "朋友介绍", "图书", 80),
    ]
    d = pd.DataFrame(
        rows, columns=["order_id", "customer_id", "order_time", "channel", "category", "amount"]
    )
    d["order_time"] = pd.to_datetime(d["order_time"])
    d["amount"] = d["amount"].astype(float)
    return d


def interactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["A", "A", "B"],
            "time": pd.to_datetime(["2024-06-20", "2023-01-01", "2024-06-01"]),
            "method": ["投诉", "电话", "电话"],
            "content": ["物流慢", "投诉包装破损", "回访"],
        }
    )


def segmented():
    return segment_customers(orders(), customers(), interactions=interactions(), as_of="2024-06-30")


def test_portrait_columns_hand_checked():
    seg = segmented().customers.set_index("customer_id")
    assert seg["top_category"].to_dict() == {"A": "服装", "B": "数码", "C": "", "D": "图书"}
    assert seg["top_categories"].to_dict() == {
        "A": "服装、美妆、食品",
        "B": "数码、配件",
        "C": "",
        "D": "图书",
    }
    assert seg["preferred_channel"].to_dict() == {
        "A": "天猫",
        "B": "京东",
        "C": "",
        "D": "朋友介绍",
    }
    assert seg["channel_mode"].to_dict() == {"A": "全渠道", "B": "线上", "C": "", "D": ""}
    assert seg["active_slot"].to_dict() == {
        "A": "工作日 20:00-22:00",
        "B": "工作日 08:00-10:00",
        "C": "",
        "D": "工作日 12:00-14:00",
    }
    assert seg["frequency"].to_dict() == {"A": 4, "B": 2, "C": 0, "D": 1}
    assert seg["aov"]["A"] == 162.5  # (300 + 300 − 100 + 100 + 50) / 4
    assert seg["repurchase"].to_dict() == {"A": True, "B": True, "C": False, "D": False}
    # interactions: A's last contact 06-20 → 10 days; complaints: 2 in all, 1 in 365 days
    assert seg["days_since_interaction"]["A"] == 10.0
    assert np.isnan(seg["days_since_interaction"]["C"])
    assert seg["complaints"].to_dict() == {"A": 2, "B": 0, "C": 0, "D": 0}
    assert seg["complaints_365d"]["A"] == 1


def test_repurchase_rate_one_figure():
    from custtool.report.workbook import kpis

    res = segmented()
    assert res.to_dict()["repurchase_rate"] == 0.6667
    assert repurchase_rate(res.customers) == kpis(res.customers)["repurchase"] == 0.6667


def test_portrait_by_customer_id_equals_positions():
    res = segmented()
    by_id = portrait_columns(res.orders, res.customers)
    cols = list(by_id.columns)
    pd.testing.assert_frame_equal(by_id, res.customers[cols])


def test_portrait_without_orders_or_columns():
    out = portrait_columns(pd.DataFrame(), customers())
    assert (out == "").all().all() and len(out) == 4
    o = orders().drop(columns=["channel", "category"])
    out = portrait_columns(o.assign(in_window=True), customers())
    assert out["top_category"].tolist() == ["", "", "", ""]
    assert out["active_slot"].tolist()[0] == "工作日 20:00-22:00"


def test_channel_kinds_and_slots():
    m = {"门店": "offline", "天猫": "online", "小程序": "online"}
    assert channel_kinds(
        pd.Series(["杭州西湖门店", "天猫旗舰店", "微信小程序", "朋友", None]), m
    ).tolist() == [
        "offline",
        "online",
        "online",
        "",
        "",
    ]
    labels = slot_labels(2)
    assert (
        len(labels) == 24 and labels[0] == "工作日 00:00-02:00" and labels[-1] == "周末 22:00-24:00"
    )
    assert slot_labels(6)[3] == "工作日 18:00-24:00"


def test_assign_level_hand_checked():
    df = pd.DataFrame(
        {
            "last_order": pd.to_datetime(["2024-01-01"] * 7 + [None]),
            "rfm_score": [14, 13, 12.5, 10, 9, 9, 9, np.nan],
            "potential": [False, False, False, False, True, False, False, False],
            "lifecycle": ["成熟", "成熟", "成熟", "成长", "成长", "新客户", "沉睡", "潜在"],
        }
    )
    assert assign_level(df).tolist() == [
        "核心客户",
        "核心客户",
        "高价值客户",
        "高价值客户",
        "潜力客户",
        "潜力客户",
        "普通客户",
        "",
    ]
    assert assign_level(df, potential_new=False, potential_growth=False).tolist()[4:6] == [
        "普通客户",
        "普通客户",
    ]


def test_level_in_segment_summary_and_json():
    res = segmented()
    d = res.to_dict()
    lv = res.customers["level"]
    assert set(lv) <= {"核心客户", "高价值客户", "潜力客户", "普通客户", ""}
    assert lv[res.customers["customer_id"] == "C"].tolist() == [""]
    assert sum(v["customers"] for v in d["levels"].values()) == 4


def test_cards_show_the_portrait():
    from custtool.cards import group_cards, individual_cards

    res = segmented()
    seg = res.customers.assign(
        gender=["女", "女", "男", "未知"],
        needs=["性价比;配送速度", "性价比", "", "售后"],
    )
    card = individual_cards(seg, ["A", "C"], orders=res.orders, mask=False)
    a = card.iloc[0]
    assert "偏好全渠道消费" in a["behaviour"] and "常用渠道天猫" in a["behaviour"]
    # the portrait's top categories (by net spend), not a second count of the orders
    assert "常购品类：服装、美妆、食品" in a["behaviour"]
    assert "活跃时段工作日 20:00-22:00" in a["behaviour"]
    assert "距上次互动10天" in a["behaviour"]
    level_a = seg.loc[seg["customer_id"] == "A", "level"].item()
    assert a["value_assessment"].startswith(f"客户等级：{level_a}")
    c = card.iloc[1]  # no orders: no portrait phrases
    assert "偏好" not in c["behaviour"] and "活跃时段" not in c["behaviour"]

    g = group_cards(seg, by="lifecycle", orders=res.orders).set_index("segment")
    # one segment per lifecycle; the 潜在 segment is C alone (男, no orders)
    assert g.loc["潜在", "gender_split"] == "男 100%"
    assert g.loc["潜在", "channel_modes"] == ""
    everyone = group_cards(seg.assign(all="全部"), by="all", orders=res.orders).iloc[0]
    assert everyone["gender_split"] == "女 50%、男 25%"
    assert everyone["common_needs"] == "性价比 50%、售后 25%、配送速度 25%"
    assert everyone["channel_modes"] == "全渠道 25%、线上 25%"
    assert everyone["active_slots"].startswith("工作日 08:00-10:00 25%")


def test_contact_and_deal_classes_hand_checked():
    """A last contact 06-20 (10 days), B 06-01 (29 days), C/D never contacted; with
    sleep_days 20: A 活跃, B 沉睡, C/D 沉睡. First orders: A 06-03 (27 days), B 06-01 (29),
    D 2023-01-01 (546) → with new_deal_days 28: A 新成交, B 老客户, D 老客户, C ""."""
    from custtool.rfm import assign_contact_classes

    seg = segmented().customers
    assert seg["contact_stage"].tolist() == ["活跃", "活跃", "沉睡", "沉睡"]  # default 90 days
    assert seg["deal_stage"].tolist() == ["新成交", "新成交", "", "老客户"]  # default 90 days
    out = assign_contact_classes(seg, sleep_days=20, new_deal_days=28)
    assert out["contact_stage"].tolist() == ["活跃", "沉睡", "沉睡", "沉睡"]
    assert out["deal_stage"].tolist() == ["新成交", "老客户", "", "老客户"]
    no_log = assign_contact_classes(seg.drop(columns=["days_since_last_interaction"]))
    assert no_log["contact_stage"].tolist() == ["", "", "", ""]


def test_default_tags_the_seeds_name():
    """Region, company size, channel mode, contact preference, events and 高频消费 (月均≥3:
    9 orders in 90 days) from the shipped library, each on a hand-made customer."""
    from custtool.tags import apply_tags

    df = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "region": ["华北", "华东", ""],
            "company_size": ["100-500人", "1000人以上", ""],
            "channel_mode": ["全渠道", "线上", ""],
            "preferred_contact": ["微信", "电话", ""],
            "events_365d": [2, 1, 0],
            "orders_90d": [9, 8, 0],
            "orders_30d": [3, 3, 0],
        }
    )
    tags = apply_tags(df, max_tags=None)["tags"].tolist()
    assert {"华北", "中型企业", "全渠道客户", "偏好微信联系", "积极参与活动", "高频消费"} <= set(
        tags[0]
    )
    assert {"华东", "大型企业", "偏好线上购物", "偏好电话联系"} <= set(tags[1])
    assert "高频消费" not in tags[1] and "积极参与活动" not in tags[1]  # 8 orders in 90 days
    assert tags[2] == []


def test_events_from_the_follow_up_log():
    from custtool.attribution import CustomerIndex
    from custtool.metrics import interaction_metrics

    cust = customers()
    log = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "B"],
            "time": pd.to_datetime(["2024-06-01", "2024-05-01", "2022-01-01", "2024-06-01"]),
            "method": ["活动", "线下活动", "活动", "电话"],
        }
    )
    m = interaction_metrics(log, CustomerIndex(cust), pd.Timestamp("2024-06-30"))
    assert m["events_365d"].tolist() == [2, 0, 0, 0]  # the 2022 event is outside 365 days


def test_repurchase_rate_from_csv_text():
    df = pd.DataFrame({"frequency": [2, 1, 0, 3], "repurchase": ["True", "False", "False", "True"]})
    assert repurchase_rate(df) == round(2 / 3, 4)  # "False" text is not a repurchase
    assert repurchase_rate(df.assign(frequency=0)) is None


def _joined_by_hand(n, c, k, rank, labels, top):
    out = [""] * n
    for r in range(top):
        for ci, ki, ri in zip(c, k, rank, strict=True):
            if ri == r:
                out[ci] = labels[ki] if r == 0 else out[ci] + "、" + labels[ki]
    return out


@pytest.mark.parametrize(("n_labels", "top"), [(5, 3), (300, 8)])
def test_joined_top_equals_per_customer_join(n_labels, top):
    """The joined top labels equal a per-customer join, with codes packed in one key (few
    labels) and compared row by row (300 labels × top 8 does not fit 62 bits)."""
    from custtool.portrait import _joined_top

    rng = np.random.default_rng(7)
    n = 400
    per = rng.integers(0, top + 2, n)
    c = np.repeat(np.arange(n), per)
    rank = np.concatenate([np.arange(m) for m in per])
    k = rng.integers(0, n_labels, len(c))
    labels = np.array([f"品类{i}" for i in range(n_labels)], dtype=object)
    got = _joined_top(n, c, k, rank, labels, top)
    assert list(got) == _joined_by_hand(n, c, k, rank, labels, top)
    assert got[per == 0].tolist() == [""] * int((per == 0).sum())
    first = int(np.flatnonzero(per >= 2)[0])
    assert got[first].count("、") == min(per[first], top) - 1
