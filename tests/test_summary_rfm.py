"""R, F and M from a member list's summary columns (SPEC D1b): 最近消费时间 / 累计消费次数 /
累计消费金额 → last_purchase_date / order_count / total_spend, `segment` without orders.

Hand-checked member list (as-of = the latest last purchase, 2024-06-30):

    customer  last purchase  count  spend    recency  F  M
    A         2024-06-30     5      1200.50  0        5  1200.50
    B         2024-06-10     1      300      20       1  300
    C         2024-03-02     2      5000     120      2  5000
    D         (none)         0      0        NaN      0  0      → no orders
Means over A–C: recency 140/3 = 46.67, F 8/3 = 2.67, M 6500.5/3 = 2166.83, so
A: R high, F high, M low → 一般价值客户; B: R high, F low, M low → 一般发展客户;
C: R low, F low, M high → 重要挽留客户.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custtool.errors import InputError
from custtool.metrics import customer_metrics, summary_metrics
from custtool.rfm import rfm_classes, rfm_scores
from custtool.segment import segment_customers
from tests.conftest import examples


def members() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D"],
            "phone": ["13911062837", "13605718294", "18620937451", "13511112222"],
            "last_purchase_date": pd.to_datetime(["2024-06-30", "2024-06-10", "2024-03-02", None]),
            "order_count": [5, 1, 2, 0],
            "total_spend": [1200.5, 300.0, 5000.0, 0.0],
        }
    )


def test_summary_metrics_hand_checked():
    m, rep = summary_metrics(members())
    assert str(rep.as_of.date()) == "2024-06-30"
    assert m["recency"].tolist()[:3] == [0.0, 20.0, 120.0] and np.isnan(m["recency"][3])
    assert m["frequency"].tolist() == [5, 1, 2, 0]
    assert m["monetary"].tolist() == [1200.5, 300.0, 5000.0, 0.0]
    assert m["aov"].tolist()[:3] == [240.1, 300.0, 2500.0] and np.isnan(m["aov"][3])
    assert m["repurchase"].tolist() == [True, False, True, False]
    # the export's own columns are kept beside the metrics
    assert m["order_count"].tolist() == [5, 1, 2, 0]


def test_summary_metrics_as_of_and_later_purchases():
    m, rep = summary_metrics(members(), as_of="2024-06-20")
    # A's last purchase is after the as-of day: counted as not (yet) a buyer, and reported
    assert rep.rows_after_as_of == 1
    assert np.isnan(m["recency"][0]) and m["frequency"][0] == 0
    assert m["recency"][1] == 10.0 and m["recency"][2] == 110.0


def test_segment_without_orders_uses_summary_columns():
    res = segment_customers(None, members())
    seg = res.customers
    assert res.rfm_source == "summary_columns"
    assert seg["rfm_class"].tolist() == ["一般价值客户", "一般发展客户", "重要挽留客户", ""]
    assert seg["lifecycle"].tolist()[3] == "潜在"
    assert seg["lifecycle"].tolist()[2] == "流失"  # 120 days > lost_days 90
    # tiers by the total spend (no 365-day window in a member list): 5000 ≥ 3000 → 中价值
    assert seg["tier"].tolist() == ["低价值", "低价值", "中价值", "低价值"]
    d = res.to_dict()
    assert d["rfm_source"] == "summary_columns" and "最近消费时间" in d["rfm_source_note"]
    assert d["customers_with_orders"] == 3
    assert d["ltv"]["bgnbd"]["fitted"] is False
    assert "purchase days" in d["ltv"]["bgnbd"]["reason"]
    # LTV falls back to the historical value = the total spend
    assert seg["ltv"].tolist() == [1200.5, 300.0, 5000.0, 0.0]
    json.dumps(d)


def test_segment_without_orders_needs_the_columns():
    with pytest.raises(InputError, match="last_purchase_date"):
        segment_customers(None, members().drop(columns=["last_purchase_date"]))
    with pytest.raises(InputError, match="orders"):
        segment_customers(None, None)


def test_orders_win_and_summary_columns_are_kept():
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "customer_id": ["A", "B"],
            "order_time": pd.to_datetime(["2024-06-01", "2024-06-30"]),
            "amount": [100.0, 50.0],
        }
    )
    res = segment_customers(orders, members())
    seg = res.customers
    assert res.rfm_source == "orders"
    assert seg["frequency"].tolist() == [1, 1, 0, 0]  # from the orders, not order_count
    assert seg["order_count"].tolist() == [5, 1, 2, 0]  # kept for comparison


def test_import_recognises_the_summary_columns(tmp_path):
    from custtool.ingest import import_files

    p = tmp_path / "会员.csv"
    p.write_text(
        "会员ID,姓名,手机号,最近消费时间,累计消费次数,累计消费金额\n"
        'M1,张三,13911062837,2024-06-01,5次,"¥1,200.50"\n'
        "M2,李四,13605718294,2024/05/01,1,300\n",
        encoding="utf-8",
    )
    res = import_files([p])
    d = res.data
    assert res.kind == "customers"
    assert d["last_purchase_date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-06-01", "2024-05-01"]
    assert d["order_count"].tolist() == [5, 1]
    assert d["total_spend"].tolist() == [1200.5, 300.0]


def test_cli_segment_member_list_json(tmp_path):
    from typer.testing import CliRunner

    from custtool.cli import app

    p = tmp_path / "members.parquet"
    members().to_parquet(p)
    r = CliRunner().invoke(app, ["segment", str(p), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["rfm_source"] == "summary_columns"
    assert d["classes"]["重要挽留客户"]["customers"] == 1


@st.composite
def order_sets(draw):
    n_cust = draw(st.integers(1, 8))
    n = draw(st.integers(1, 30))
    cust = draw(st.lists(st.integers(0, n_cust - 1), min_size=n, max_size=n))
    day = draw(st.lists(st.integers(0, 300), min_size=n, max_size=n))
    cents = draw(st.lists(st.integers(1, 500_000), min_size=n, max_size=n))
    return n_cust, cust, day, cents


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order_sets(), st.sampled_from(["quantile", "thresholds"]), st.sampled_from(["mean", "median"])
)
def test_property_summary_rfm_equals_order_rfm(data, method, reference):
    """RFM from summary columns computed from the orders = RFM from those orders (all
    orders inside the window, so the totals are the window's)."""
    n_cust, cust, day, cents = data
    base = pd.Timestamp("2024-01-01")
    customers = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n_cust)]})
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(len(cust))],
            "customer_id": [f"C{c}" for c in cust],
            "order_time": base + pd.to_timedelta(day, unit="D"),
            "amount": np.array(cents, dtype=float) / 100,
        }
    )
    as_of = "2024-12-01"  # every order inside the 365-day window
    by_orders, _ = customer_metrics(orders, customers, as_of=as_of, window="365d")
    # the member list's summary columns, computed from the same orders
    g = orders.groupby("customer_id")
    summ = customers.assign(
        last_purchase_date=customers["customer_id"].map(g["order_time"].max()),
        order_count=customers["customer_id"].map(g.size()).fillna(0).astype(int),
        total_spend=customers["customer_id"].map(g["amount"].sum()).fillna(0.0),
    )
    by_summary, _ = summary_metrics(summ, as_of=as_of)
    for col in ("recency", "frequency", "monetary"):
        pd.testing.assert_series_equal(by_orders[col], by_summary[col], check_dtype=False, obj=col)
    a, b = rfm_scores(by_orders, method=method), rfm_scores(by_summary, method=method)
    pd.testing.assert_frame_equal(a, b)
    a = rfm_classes(by_orders, reference=reference)
    b = rfm_classes(by_summary, reference=reference)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["reference"] == b.attrs["reference"]


def test_member_list_example_as_in_the_readme(tmp_path):
    """examples/会员消费汇总.csv (a member list only) through import and segment, as the
    README runs it. Means over the 9 buyers: recency 666/9 = 74, F 75/9 = 8.33,
    M 69389.5/9 = 7709.94; V0004 (135 days, 9 orders, 1.2万) → R low, F and M high →
    重要保持客户; V0008 never bought → no class, 潜在."""
    from pathlib import Path

    from custtool.steps import run_import, run_segment

    src = Path(__file__).resolve().parent.parent / "examples" / "会员消费汇总.csv"
    imp = run_import([src], output=tmp_path / "members.parquet")
    assert imp.data["kind"] == "customers" and imp.data["totals"]["accepted"] == 10
    res = run_segment(tmp_path / "members.parquet", summary=tmp_path / "s.xlsx")
    d = res.to_dict()
    assert d["rfm_source"] == "summary_columns" and d["as_of"] == "2026-10-31"
    assert d["class_reference"] == {"recency": 74.0, "frequency": 8.3333, "monetary": 7709.9444}
    seg = res.value.customers.set_index("customer_id")
    assert seg.loc["V0004", "monetary"] == 12000.0  # 1.2万
    assert seg.loc["V0002", "frequency"] == 6  # 6次
    assert seg.loc["V0004", "rfm_class"] == "重要保持客户"
    assert seg.loc["V0008", "rfm_class"] == "" and seg.loc["V0008", "lifecycle"] == "潜在"
    assert d["classes"]["重要价值客户"]["customers"] == 2  # V0001, V0007
    # the summary workbook says where R, F and M came from, and why there is no LTV
    notes = pd.read_excel(tmp_path / "s.xlsx", sheet_name="模型与说明", engine="openpyxl")
    items = dict(zip(notes["item"], notes["value"], strict=True))
    assert items["rfm_source"] == "summary_columns"
    assert "purchase days" in items["bgnbd.reason"]


def test_member_list_with_interactions():
    """Without orders, the follow-up log still gives the contact columns: A contacted
    06-20 (10 days before the as-of 06-30), twice about a complaint."""
    log = pd.DataFrame(
        {
            "customer_id": ["A", "A", "B"],
            "time": pd.to_datetime(["2024-06-20", "2024-01-05", "2024-02-01"]),
            "method": ["投诉", "投诉", "电话"],
        }
    )
    seg = segment_customers(None, members(), interactions=log).customers.set_index("customer_id")
    assert seg.loc["A", "days_since_interaction"] == 10.0
    assert seg.loc["A", "complaints"] == 2
    assert seg.loc["B", "contact_stage"] == "沉睡"  # 150 days > 90
    assert seg.loc["A", "contact_stage"] == "活跃"
    # no orders: no portrait from orders, no deal stage (no first order in a member list)
    assert (seg["top_category"] == "").all() and (seg["deal_stage"] == "").all()
