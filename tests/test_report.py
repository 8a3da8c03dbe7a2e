"""Report workbook, masking, roles, strategies, pivots, migration and the CLI commands.

The workbook is read back with openpyxl: sheet names, headers, row counts, charts, formats,
masking and that no cell can run as a formula.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import openpyxl
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custtool.errors import ConfigError, InputError
from custtool.io import FORMULA_PREFIXES, read_table, write_table
from custtool.report import write_workbook
from custtool.report.masking import (
    get_role,
    mask_emails,
    mask_for_output,
    mask_frame,
    mask_free_text,
    mask_id_numbers,
    mask_names,
    mask_phones,
    role_view,
)
from custtool.report.migration import fallen_customers, migration_matrix
from custtool.report.pivot import flatten_pivot, pivot, write_pivot
from custtool.report.strategies import load_strategies, suggested_actions
from custtool.report.workbook import kpis, monthly_revenue, prepare_customers, segment_table
from tests.conftest import examples

warnings.filterwarnings("ignore", message=".*extension is not supported.*", category=UserWarning)

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗")
GIVEN = [
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀兰",
    "霞",
]
CITIES = [
    ("北京市", "华北"),
    ("上海市", "华东"),
    ("广州市", "华南"),
    ("深圳市", "华南"),
    ("杭州市", "华东"),
    ("成都市", "西南"),
    ("武汉市", "华中"),
    ("西安市", "西北"),
    ("沈阳市", "东北"),
]
INDUSTRIES = ["互联网", "制造业", "零售", "金融", "教育", "医疗", ""]
CHANNELS = ["天猫", "京东", "门店", "微信小程序", "抖音"]
OWNERS = ["王经理", "李经理", "赵经理"]
RFM = [
    "重要价值客户",
    "重要发展客户",
    "重要保持客户",
    "重要挽留客户",
    "一般价值客户",
    "一般发展客户",
    "一般保持客户",
    "一般挽留客户",
]
LIFE = ["潜在", "新客户", "成长", "成熟", "沉睡", "流失"]
TAGS = [
    "高频消费",
    "高客单价",
    "价格敏感",
    "一线城市",
    "女性",
    "男性",
    "新品偏好",
    "投诉过",
    "会员活跃",
    "沉睡预警",
]
INJECT = [
    '=HYPERLINK("http://evil.example","点我")',
    "+86 138 0013 8000",
    "@SUM(1)",
    "-2+3",
    "\t=1+1",
    "=cmd|' /C calc'!A0",
]


def make_segmented(n=300, seed=7, as_of="2024-06-30"):
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    sur = np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)]
    giv = np.array(GIVEN)[rng.integers(0, len(GIVEN), n)]
    name = pd.Series(sur, dtype=object) + pd.Series(giv, dtype=object)
    city_i = rng.integers(0, len(CITIES), n)
    freq = rng.integers(0, 15, n)
    mon = np.where(freq > 0, np.round(rng.gamma(2.0, 800.0, n) * np.maximum(freq, 1), 2), 0.0)
    rec = np.where(freq > 0, rng.integers(0, 700, n).astype(float), np.nan)
    as_of_ts = pd.Timestamp(as_of)
    last = pd.Series(as_of_ts - pd.to_timedelta(np.nan_to_num(rec, nan=0), unit="D")).where(
        freq > 0
    )
    first = (last - pd.to_timedelta(rng.integers(0, 900, n), unit="D")).where(freq > 0)
    r = np.where(freq > 0, rng.integers(1, 6, n), 0)
    f = np.where(freq > 0, rng.integers(1, 6, n), 0)
    m = np.where(freq > 0, rng.integers(1, 6, n), 0)
    rfm_class = np.where(freq > 0, np.array(RFM)[rng.integers(0, 8, n)], "")
    tier = np.array(["高价值", "中价值", "低价值"])[np.digitize(mon, [3000, 15000])[::1] * -1 + 2]
    phone = pd.Series([f"13{d:09d}" for d in rng.integers(0, 10**9, n)], dtype=object)
    phone[idx % 17 == 3] = ""
    email = pd.Series([f"user{i}@example.com" for i in idx], dtype=object)
    email[idx % 5 == 0] = ""
    owners = np.array(OWNERS)[idx % 3]
    notes = (
        pd.Series(
            ["客户有定制需求", "近期投诉过物流问题", "", "关注新品，电话13812345678"], dtype=object
        )
        .iloc[idx % 4]
        .reset_index(drop=True)
    )
    needs = (
        pd.Series(["环保材质;智能功能", "性价比高", "", "售后上门"], dtype=object)
        .iloc[idx % 4]
        .reset_index(drop=True)
    )
    for k, s in enumerate(INJECT):
        name[k * 7 + 1] = s
        notes[k * 11 + 2] = s
    ch_a = np.array(CHANNELS)[rng.integers(0, 5, n)]
    ch_b = np.array(CHANNELS)[rng.integers(0, 5, n)]
    channels = pd.Series(
        np.where(ch_a == ch_b, ch_a, pd.Series(ch_a) + ";" + pd.Series(ch_b)), dtype=object
    )
    tag_lists = [
        list(np.array(TAGS)[rng.choice(len(TAGS), size=int(k), replace=False)])
        for k in rng.integers(0, 4, n)
    ]
    df = pd.DataFrame(
        {
            "customer_id": [f"C{i + 1:08d}" for i in idx],
            "name": name,
            "phone": phone,
            "email": email,
            "gender": np.array(["男", "女", "未知"])[idx % 3],
            "age": pd.array(np.where(idx % 9 == 0, pd.NA, 18 + idx % 50), dtype="Int64"),
            "id_number": pd.Series(
                [f"1101011990{i % 12 + 1:02d}01{i % 1000:03d}X" if i % 4 == 0 else "" for i in idx],
                dtype=object,
            ),
            "city": np.array([c for c, _ in CITIES])[city_i],
            "region": np.array([r for _, r in CITIES])[city_i],
            "industry": np.array(INDUSTRIES)[idx % len(INDUSTRIES)],
            "source_channel": ch_a,
            "owner": owners,
            "needs": needs,
            "notes": notes,
            "channels": channels,
            "_flags": np.where(
                idx % 10 == 0,
                "phone_invalid",
                np.where(idx % 10 == 1, "name_honorific;date_invalid:birth_date", ""),
            ),
            "missing_fields": np.where(idx % 17 == 3, "phone", ""),
            "follow_up_flag": idx % 6 == 0,
            "first_order": first,
            "last_order": last,
            "recency": rec,
            "frequency": freq.astype("int64"),
            "monetary": mon,
            "aov": np.where(freq > 0, np.round(mon / np.maximum(freq, 1), 2), np.nan),
            "repurchase": freq >= 2,
            "r_score": r,
            "f_score": f,
            "m_score": m,
            "rfm_score": r + f + m,
            "rfm_class": rfm_class,
            "tier": tier,
            "lifecycle": np.where(freq == 0, "潜在", np.array(LIFE[1:])[rng.integers(0, 5, n)]),
            "ltv": np.round(mon * 1.3, 2),
            "churn_risk": rng.random(n) < 0.2,
            "nps_score": np.where(idx % 3 == 0, np.nan, (idx % 11).astype(float)),
            "as_of": as_of_ts,
            "tags": tag_lists,
        }
    )
    return df


def make_orders(customers: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """Orders shaped like DATA.md (order_time, amount, channel, category) over 2024-01..2024-06."""
    rng = np.random.default_rng(seed)
    n = 500
    ids = customers["customer_id"].to_numpy()[rng.integers(0, len(customers), n)]
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 182, n), unit="D")
    return pd.DataFrame(
        {
            "order_id": [f"O{i:06d}" for i in range(n)],
            "customer_id": ids,
            "order_time": times,
            "amount": np.round(rng.uniform(-50, 900, n), 2),
            "channel": np.array(CHANNELS)[rng.integers(0, 5, n)],
            "category": np.array(["家居", "数码", "美妆", "食品"])[rng.integers(0, 4, n)],
        }
    )


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return openpyxl.load_workbook(path)


def all_cells(wb):
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if c.value is not None:
                    yield ws.title, c


def header(ws):
    return [c.value for c in ws[1]]


@pytest.fixture(scope="module")
def segmented():
    return make_segmented(300)


@pytest.fixture(scope="module")
def report(tmp_path_factory, segmented):
    path = tmp_path_factory.mktemp("rep") / "report.xlsx"
    orders = make_orders(segmented)
    result = write_workbook(segmented, path, orders=orders)
    return path, result, load(path), orders


# --------------------------------------------------------------------------- structure
RFM = [
    "重要价值客户",
    "重要发展客户",
    "重要保持客户",
    "重要挽留客户",
    "一般价值客户",
    "一般发展客户",
    "一般保持客户",
    "一般挽留客户",
]


def test_sheet_names_in_order(report):
    _, result, wb, _ = report
    assert wb.sheetnames == [
        "概览",
        "高价值",
        "中价值",
        "低价值",
        *RFM,
        "客户明细",
        "策略",
        "数据质量",
    ]
    assert list(result.sheets) == wb.sheetnames


def test_detail_headers_are_chinese_labels_and_all_rows(report, segmented):
    _, _, wb, _ = report
    ws = wb["客户明细"]
    head = header(ws)
    assert head[:4] == ["客户编号", "姓名", "手机号", "邮箱"]
    assert "RFM分类" in head and "价值等级" in head and "标签" in head and "生命周期价值" in head
    assert ws.max_row - 1 == len(segmented) == 300


def top_list(ws):
    """(header, rows) of the top-customers list on a tier / class sheet (below the summary)."""
    rows = list(ws.iter_rows(values_only=True))
    at = next(i for i, r in enumerate(rows) if r[0] in ("客户编号", "Customer ID"))
    return list(rows[at]), [r for r in rows[at + 1 :] if r[0] is not None]


def test_rows_per_tier_and_class_equal_segment_counts(report, segmented):
    # 300 customers, cap 1,000 (rules/report.yaml): every segment is listed whole
    _, result, wb, _ = report
    assert result.sheet_rows == 1000 and result.capped == {}
    for value, n in segmented["tier"].value_counts().items():
        assert len(top_list(wb[value])[1]) == n
        assert result.sheets[value] == n
        assert wb[value]["A2"].value == f"全部 {n:,} 位客户，按价值从高到低"
    for value, n in segmented.loc[segmented["rfm_class"] != "", "rfm_class"].value_counts().items():
        assert len(top_list(wb[value])[1]) == n
    assert sum(len(top_list(wb[v])[1]) for v in RFM) == int((segmented["rfm_class"] != "").sum())


def test_segment_sheets_sorted_by_value_with_tags(report, segmented):
    _, _, wb, _ = report
    head, rows = top_list(wb["高价值"])
    ltv_col = head.index("生命周期价值")
    ltvs = [r[ltv_col] for r in rows]
    assert ltvs == sorted(ltvs, reverse=True)
    assert ltvs[0] == segmented.loc[segmented["tier"] == "高价值", "ltv"].max()
    tags_col = head.index("标签")
    ids = [r[0] for r in rows]
    tags = [r[tags_col] for r in rows]
    expected = dict(zip(segmented["customer_id"], segmented["tags"].map(";".join), strict=True))
    assert [t or "" for t in tags] == [expected[i] for i in ids]


def test_formats_frozen_header_filter_and_conditional(report):
    _, _, wb, _ = report
    ws = wb["客户明细"]
    head = header(ws)
    col = {h: i + 1 for i, h in enumerate(head)}
    assert ws.freeze_panes == "B2"
    assert ws.auto_filter.ref == f"A1:{openpyxl.utils.get_column_letter(len(head))}301"
    cell = ws.cell(row=2, column=col["消费金额"])
    assert cell.number_format == "#,##0.00"
    assert ws.cell(row=2, column=col["R得分"]).number_format == "#,##0"
    last = next(
        r for r in range(2, 302) if ws.cell(row=r, column=col["最近消费"]).value is not None
    )
    assert ws.cell(row=last, column=col["最近消费"]).number_format == "yyyy-mm-dd"
    assert ws.cell(row=last, column=col["最近消费"]).is_date
    ranges = [str(cf.sqref) for cf in ws.conditional_formatting]
    r_letter = openpyxl.utils.get_column_letter(col["R得分"])
    assert f"{r_letter}2:{r_letter}301" in ranges
    assert ws.column_dimensions["A"].width >= 8


def test_summary_kpis_and_tables(report, segmented):
    _, _, wb, _ = report
    ws = wb["概览"]
    values = {r[0]: r[1] for r in ws.iter_rows(min_row=1, max_col=2, values_only=True) if r[0]}
    assert values["客户数"] == 300
    assert values["消费总额"] == pytest.approx(segmented["monetary"].sum(), abs=0.01)
    assert values["平均客单价"] == pytest.approx(
        segmented["monetary"].sum() / segmented["frequency"].sum(), abs=0.01
    )
    rows = list(ws.iter_rows(min_row=1, max_col=5, values_only=True))
    start = next(i for i, r in enumerate(rows) if r[0] == "按RFM分类")
    assert rows[start + 1] == ("分群", "客户数", "客户占比", "消费金额", "金额占比")
    block = rows[start + 2 : start + 2 + 9]
    counts = segmented["rfm_class"].value_counts()
    assert [r[0] for r in block] == [*RFM, "（无订单）"]
    assert [r[1] for r in block] == [int(counts[c]) for c in RFM] + [int(counts[""])]
    assert sum(r[2] for r in block) == pytest.approx(1.0)
    assert sum(r[4] for r in block) == pytest.approx(1.0)


def test_summary_charts_with_series_lengths(report, segmented):
    _, result, wb, orders = report
    charts = wb["概览"]._charts
    assert result.charts == len(charts) >= 7
    kinds = [type(c).__name__ for c in charts]
    assert kinds.count("PieChart") >= 2 and "LineChart" in kinds and "BarChart" in kinds

    def length(ref):
        m = re.search(r"\$[A-Z]+\$(\d+):\$[A-Z]+\$(\d+)", ref)
        return int(m.group(2)) - int(m.group(1)) + 1

    rfm_bar = charts[0]
    assert type(rfm_bar).__name__ == "BarChart"
    assert (
        length(rfm_bar.series[0].val.numRef.f) == segmented["rfm_class"].nunique()
    )  # 8 classes + no orders
    line = next(c for c in charts if type(c).__name__ == "LineChart")
    assert (
        length(line.series[0].val.numRef.f) == orders["order_time"].dt.to_period("M").nunique() == 6
    )


def test_channel_chart_is_not_a_pie_when_customers_are_in_several_channels(report, segmented):
    # a customer in 天猫 and 门店 counts in both: the shares add up to more than 100%, and a pie
    # would show other percentages than the table beside it
    _, _, wb, _ = report
    assert segmented["channels"].str.contains(";").any()
    titles = {c.title.tx.rich.p[0].r[0].t: type(c).__name__ for c in wb["概览"]._charts}
    assert titles["渠道分布"] == "BarChart"


def test_monthly_revenue_hand_checked():
    orders = pd.DataFrame(
        {
            "order_time": pd.to_datetime(
                ["2024-01-05", "2024-01-30 13:00", "2024-03-01", None], format="ISO8601"
            ),
            "amount": [100.0, -20.0, 55.5, 999.0],
        }
    )
    out = monthly_revenue(orders)
    assert out.to_dict("list") == {
        "month": ["2024-01", "2024-03"],
        "revenue": [80.0, 55.5],
        "orders": [2, 1],
    }


# --------------------------------------------------------------------------- KPIs by hand
def tiny():
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4"],
            "name": ["张三", "李四明", "王五", "欧阳小明"],
            "phone": ["13812345678", "", "021-62345678", "13900001111"],
            "owner": ["王经理", "李经理", "王经理", "李经理"],
            "monetary": [1000.0, 500.0, 0.0, 300.0],
            "frequency": [4, 1, 0, 2],
            "aov": [250.0, 500.0, np.nan, 150.0],
            "repurchase": [True, False, False, True],
            "nps_score": [10.0, 6.0, np.nan, 9.0],
            "lifecycle": ["成熟", "新客户", "潜在", "流失"],
            "rfm_class": ["重要价值客户", "一般发展客户", "", "重要价值客户"],
            "tier": ["高价值", "低价值", "低价值", "中价值"],
            "ltv": [1300.0, 650.0, 0.0, 390.0],
        }
    )


def test_kpis_hand_checked():
    k = kpis(tiny(), nps={"surveys": True, "nps": 12.5})
    assert k == {
        "customers": 4,
        "active": 2,
        "revenue": 1800.0,
        "aov": round(1800 / 7, 2),
        "repurchase": round(2 / 3, 4),
        "nps": 12.5,
    }
    assert "revenue" not in kpis(tiny(), amounts=False)
    # the NPS is the segment step's one figure (SPEC D6), never re-derived from the latest
    # score per customer (which would give (2 - 1) / 3 = 33.3 here)
    assert "nps" not in kpis(tiny())


def test_segment_table_hand_checked():
    t = segment_table(tiny(), "rfm_class")
    assert t["segment"].tolist() == ["重要价值客户", "一般发展客户", "（无订单）"]
    assert t["customers"].tolist() == [2, 1, 1]
    assert t["customer_share"].tolist() == [0.5, 0.25, 0.25]
    assert t["revenue"].tolist() == [1300.0, 500.0, 0.0]
    assert t["revenue_share"].round(4).tolist() == [
        round(1300 / 1800, 4),
        round(500 / 1800, 4),
        0.0,
    ]


def test_summary_sheet_shows_hand_checked_kpis(tmp_path):
    path = tmp_path / "t.xlsx"
    write_workbook(tiny(), path, nps={"surveys": True, "nps": -2.0})
    ws = load(path)["概览"]
    values = {r[0]: r[1] for r in ws.iter_rows(max_col=2, values_only=True) if r[0]}
    assert values["客户数"] == 4 and values["活跃客户"] == 2 and values["消费总额"] == 1800
    assert values["平均客单价"] == pytest.approx(257.14) and values["复购率"] == pytest.approx(
        0.6667
    )
    assert values["NPS"] == pytest.approx(-2.0)
    assert any(str(k).startswith("NPS = 推荐者(9–10分)占比 − 贬损者(0–6分)占比") for k in values)
    assert ws["B9"].number_format == "0.0%"  # 复购率


# --------------------------------------------------------------------------- masking
def test_mask_functions_hand_checked():
    assert mask_names(pd.Series(["张三", "张三明", "欧阳小明", "李", ""])).tolist() == [
        "张*",
        "张*明",
        "欧*明",
        "*",
        "",
    ]
    assert mask_phones(
        pd.Series(
            [
                "13812345678",
                "021-62345678",
                "0755-1234567",
                "+14155550123",
                "",
                "13812345678;13900001111",
            ]
        )
    ).tolist() == [
        "138****5678",
        "021-****5678",
        "0755-****4567",
        "+14****0123",
        "",
        "138****5678;139****1111",
    ]
    assert mask_emails(pd.Series(["zhang@example.com", "", "a@b.cn;cc@d.com"])).tolist() == [
        "z***@example.com",
        "",
        "a***@b.cn;c***@d.com",
    ]
    # lists among single values, on an index that is not 0..n-1: only the list rows are split
    idx = [10, 5, 7, 3]
    assert mask_phones(
        pd.Series(["13812345678", "13900001111;021-62345678", "", "15000002222"], index=idx)
    ).to_dict() == {10: "138****5678", 5: "139****1111;021-****5678", 7: "", 3: "150****2222"}
    assert mask_emails(
        pd.Series(
            ["a@b.cn;", "zhang@example.com", None, "x@y.com;ww@z.org"], index=idx, name="emails"
        )
    ).to_dict() == {10: "a***@b.cn;", 5: "z***@example.com", 7: "", 3: "x***@y.com;w***@z.org"}
    assert mask_emails(pd.Series(["a@b.cn;c@d.cn"], index=[4], name="emails")).name == "emails"
    assert mask_id_numbers(pd.Series(["11010119900101123X", "", "12345"])).tolist() == [
        "110***********123X",
        "",
        "*****",
    ]
    assert mask_free_text(pd.Series(["回电13812345678或z@qq.com"])).tolist() == [
        "回电138****5678或z***@qq.com"
    ]


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.from_regex(r"1[3-9]\d{9}", fullmatch=True), min_size=1, max_size=20))
def test_mask_phones_property(phones):
    masked = mask_phones(pd.Series(phones))
    for raw, m in zip(phones, masked, strict=True):
        assert m == raw[:3] + "****" + raw[-4:]
        assert m[3:7] == "****" and len(m) == 11  # the middle digits are gone


@settings(max_examples=examples(60), deadline=None)
@given(
    st.lists(
        st.text(alphabet="张王李赵欧阳小明华伟芳", min_size=1, max_size=6), min_size=1, max_size=20
    )
)
def test_mask_names_property(names):
    masked = mask_names(pd.Series(names))
    for raw, m in zip(names, masked, strict=True):
        assert "*" in m
        assert m[0] == raw[0] or len(raw) == 1
        assert len(m) <= max(3, len(raw))
        if len(raw) >= 3:
            assert m == raw[0] + "*" + raw[-1]


def test_workbook_masked_by_default(report, segmented):
    _, result, wb, _ = report
    assert result.masked
    ws = wb["客户明细"]
    head = header(ws)
    names = [r[head.index("姓名")] for r in ws.iter_rows(min_row=2, values_only=True)]
    phones = [
        r[head.index("手机号")]
        for r in ws.iter_rows(min_row=2, values_only=True)
        if r[head.index("手机号")]
    ]
    assert all("*" in n for n in names if n)
    assert all(re.fullmatch(r"1\d\d\*{4}\d{4}", p) for p in phones)
    raw_phones = set(segmented["phone"]) - {""}
    raw_ids = set(segmented["id_number"]) - {""}
    for _sheet, c in all_cells(wb):
        assert c.value not in raw_phones and c.value not in raw_ids
        if isinstance(c.value, str):
            assert "13812345678" not in c.value  # phone inside notes masked too


def test_no_mask_shows_data_for_admin(tmp_path, segmented):
    path = tmp_path / "plain.xlsx"
    result = write_workbook(segmented, path, mask=False)
    assert not result.masked
    ws = load(path)["客户明细"]
    head = header(ws)
    got = {
        r[0]: (r[head.index("姓名")], r[head.index("手机号")])
        for r in ws.iter_rows(min_row=2, values_only=True)
    }
    for cid, name, phone in segmented[["customer_id", "name", "phone"]].itertuples(index=False):
        assert got[cid] == (name, phone or None)


# --------------------------------------------------------------------------- roles
AMOUNT_HEADERS = {
    "消费金额",
    "客单价",
    "生命周期价值",
    "消费总额",
    "平均客单价",
    "金额占比",
    "近30天消费",
}


def test_service_role_sees_no_amounts(tmp_path, segmented):
    path = tmp_path / "service.xlsx"
    write_workbook(segmented, path, role="service", orders=make_orders(segmented))
    wb = load(path)
    for ws in wb.worksheets:
        for row in ws.iter_rows(values_only=True):
            assert not AMOUNT_HEADERS & {v for v in row if isinstance(v, str)}, ws.title
    assert not any(type(c).__name__ == "LineChart" for c in wb["概览"]._charts)
    assert "身份证号" not in header(wb["客户明细"])


def test_customer_ids_that_are_phones_or_emails_are_masked(tmp_path):
    # `segment --orders` without a customers file keys customers by phone/email when the
    # order has no member id: the id is then personal data
    df = pd.DataFrame(
        {
            "customer_id": [
                "C00000001",
                "13911505056",
                "wu@example.com",
                "TB100091",
                "021-62345678",
            ],
            "monetary": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    assert mask_frame(df)["customer_id"].tolist() == [
        "C00000001",
        "139****5056",
        "w***@example.com",
        "TB100091",
        "021-****5678",
    ]
    path = tmp_path / "r.xlsx"
    write_workbook(df, path)
    cells = {str(c.value) for _, c in all_cells(load(path))}
    assert "13911505056" not in cells and "wu@example.com" not in cells and "139****5056" in cells
    write_workbook(df, tmp_path / "open.xlsx", mask=False)
    assert "13911505056" in {str(c.value) for _, c in all_cells(load(tmp_path / "open.xlsx"))}


def test_service_role_view_drops_every_amount_column():
    df = pd.DataFrame(
        {
            "customer_id": ["C1"],
            "frequency": [3],
            "monetary": [900.0],
            "monetary_prev": [100.0],
            "aov": [300.0],
            "bg_x": [2],
            "bg_repeat_avg": [450.0],
            "ltv": [2000.0],
        }
    )
    view = role_view(df, get_role("service"))
    assert view.columns.tolist() == ["customer_id", "frequency", "bg_x"]


def test_sales_role_sees_only_own_customers(tmp_path, segmented):
    path = tmp_path / "sales.xlsx"
    result = write_workbook(segmented, path, role="sales", owner="王经理")
    own = segmented[segmented["owner"] == "王经理"]
    wb = load(path)
    ws = wb["客户明细"]
    owner_col = header(ws).index("负责人")
    owners = {r[owner_col] for r in ws.iter_rows(min_row=2, values_only=True)}
    assert owners == {"王经理"} and ws.max_row - 1 == len(own) == result.customers
    assert wb["概览"]["B5"].value == len(own)


def test_role_errors():
    with pytest.raises(InputError, match="--owner"):
        mask_for_output(tiny(), role=get_role("sales"))
    table = tiny()
    if "owner" not in table.columns:
        table = table.assign(owner="王经理")
    with pytest.raises(InputError, match="no customers have owner '王经里'"):
        mask_for_output(table, role=get_role("sales"), owner="王经里")
    with pytest.raises(ConfigError, match="masked"):
        mask_for_output(tiny(), role=get_role("analyst"), mask=False)
    with pytest.raises(ConfigError, match="unknown role"):
        get_role("boss")
    masked = mask_for_output(tiny(), role=get_role("analyst"))
    assert masked["name"].tolist() == ["张*", "李*明", "王*", "欧*明"]


def test_role_file_validation(tmp_path):
    bad = tmp_path / "roles.yaml"
    bad.write_text("roles:\n  x:\n    hide_colums: [a]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"roles\.yaml:3: roles\.x\.hide_colums: unknown key"):
        get_role("x", bad)


# --------------------------------------------------------------------------- formula injection
def assert_no_live_formula(wb):
    hits = 0
    for sheet, c in all_cells(wb):
        assert c.data_type != "f", (sheet, c.coordinate, c.value)
        if isinstance(c.value, str) and c.value.startswith(FORMULA_PREFIXES):
            assert c.quotePrefix, (sheet, c.coordinate, c.value)
            hits += 1
    return hits


def test_no_cell_can_run_as_formula_masked_and_unmasked(tmp_path, report, segmented):
    _, _, wb, _ = report
    assert assert_no_live_formula(wb) >= 6  # the injected notes
    path = tmp_path / "raw.xlsx"
    write_workbook(segmented, path, mask=False)
    wb2 = load(path)
    assert assert_no_live_formula(wb2) >= 12  # names and notes
    values = {c.value for _s, c in all_cells(wb2)}
    assert '=HYPERLINK("http://evil.example","点我")' in values  # shown as typed, as text


def test_csv_pivot_neutralises_formula_text(tmp_path, segmented):
    flat = flatten_pivot(pivot(segmented, "name", None, "customer_id:count"))
    path = write_pivot(flat, tmp_path / "p.csv")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    cells = raw.to_numpy().ravel().tolist() + list(raw.columns)
    assert any(v.startswith("'=HYPERLINK") for v in cells)
    for v in cells:
        assert not v.startswith(("=", "+", "@", "\t", "\r")) and not (
            v.startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", v)
        )
    wb = load(write_pivot(flat, tmp_path / "p.xlsx"))
    assert assert_no_live_formula(wb) >= 6


# --------------------------------------------------------------------------- strategies
def test_strategies_default_and_actions():
    s = load_strategies()
    assert len(s) == 8 + 3 + 6
    vip = s[(s["dimension"] == "rfm_class") & (s["segment"] == "重要价值客户")].iloc[0]
    assert vip["strategy_owner"] == "客户成功部" and "15%" in vip["strategy_goal"]
    actions = suggested_actions(tiny(), s)
    assert actions[0].startswith(vip["strategy_goal"])
    lost = s[(s["dimension"] == "lifecycle") & (s["segment"] == "潜在")].iloc[0]
    assert actions[2].startswith(lost["strategy_goal"])  # no RFM class: lifecycle's strategy


def test_strategies_yaml_errors(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("rfm_class:\n  重要价值客户:\n    budget: 1\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"s\.yaml:3: rfm_class\.重要价值客户\.budget: unknown key"
    ):
        load_strategies(p)
    p.write_text("tier:\n  高价值:\n    目标: 提升\n    负责人: 我\n", encoding="utf-8")
    s = load_strategies(p).set_index(["dimension", "segment"])
    shipped = load_strategies().set_index(["dimension", "segment"])
    # the user's file overlays the shipped one field by field (Chinese names as English ones)
    assert (
        s.loc[("tier", "高价值"), "strategy_goal"] == "提升"
        and s.loc[("tier", "高价值"), "strategy_owner"] == "我"
    )
    assert (
        s.loc[("tier", "高价值"), "strategy_measures"]
        == shipped.loc[("tier", "高价值"), "strategy_measures"]
        != ""
    )
    assert s.drop(("tier", "高价值")).equals(shipped.drop(("tier", "高价值")))


def test_strategy_sheet(report, segmented):
    _, _, wb, _ = report
    ws = wb["策略"]
    assert header(ws) == [
        "维度",
        "分群",
        "客户数",
        "目标",
        "措施",
        "渠道",
        "频率",
        "负责人",
        "周期",
    ]
    rows = {(r[0], r[1]): r[2] for r in ws.iter_rows(min_row=2, values_only=True)}
    assert rows[("价值等级", "高价值")] == int((segmented["tier"] == "高价值").sum())
    assert rows[("RFM分类", "重要价值客户")] == int(
        (segmented["rfm_class"] == "重要价值客户").sum()
    )


# --------------------------------------------------------------------------- quality
def test_quality_sheet_rejects_and_counts(tmp_path, segmented):
    rejects = pd.DataFrame(
        {
            "file": ["a.csv", "a.csv", "b.xlsx"],
            "sheet": ["", "", "会员"],
            "row": [3, 9, 12],
            "column": ["phone", "email", "amount"],
            "value": ["13812345678x", "zhang@@x", "=1+1"],
            "code": ["phone_invalid", "email_invalid", "amount_invalid"],
            "reason_zh": ["手机号无效", "邮箱无效", "金额无效"],
        }
    )
    path = tmp_path / "q.xlsx"
    result = write_workbook(
        segmented,
        path,
        rejects=rejects,
        clean_report={"rows_in": 320, "customers_out": 300, "merged": {"phone": 15}},
    )
    wb = load(path)
    ws = wb["数据质量"]
    rows = [r for r in ws.iter_rows(values_only=True) if any(v is not None for v in r)]
    flat = [v for r in rows for v in r if v is not None]
    assert ("rows_in", 320) in [(r[0], r[1]) for r in rows]
    assert ("merged.phone", 15) in [(r[0], r[1]) for r in rows]
    assert ("phone_invalid", 30) in [(r[0], r[1]) for r in rows]  # _flags of every 10th customer
    assert "13812345678x" not in flat and "138****678x" in flat  # reject value masked
    assert result.sheets["数据质量"] == 3
    assert assert_no_live_formula(wb) >= 1


def test_quality_sheet_explains_codes_in_chinese(tmp_path):
    # a manager reads 输入行数 and 姓名仅为称呼, not rows_in and name_honorific
    df = pd.DataFrame(
        {"customer_id": ["C1", "C2"], "_flags": ["name_honorific;date_invalid:birth_date", ""]}
    )
    rejects = pd.DataFrame(
        {
            "file": ["a.csv"],
            "row": [3],
            "column": ["phone/email"],
            "value": [""],
            "code": ["no_contact"],
        }
    )
    path = tmp_path / "q.xlsx"
    write_workbook(
        df,
        path,
        rejects=rejects,
        clean_report={"rows_in": 3, "customers_out": 2, "merges_by_key": {"phone": 2}},
    )
    rows = [
        r
        for r in load(path)["数据质量"].iter_rows(values_only=True)
        if any(v is not None for v in r)
    ]
    got = {r[0]: r[1:3] for r in rows}
    assert got["指标"] == ("数值", "说明")
    assert got["rows_in"] == (3, "输入行数") and got["customers_out"] == (2, "输出客户数")
    assert got["merges_by_key.phone"] == (2, "按键合并(phone)")
    assert got["name_honorific"] == (1, "姓名仅为称呼(如张先生)")
    assert got["date_invalid:birth_date"] == (1, "日期无效或无法识别(出生日期)")
    assert got["no_contact"] == (1, "无有效手机号或邮箱(至少需要一项)")


# --------------------------------------------------------------------------- migration
def runs():
    before = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4", "C5", "C6"],
            "name": ["张三", "李四", "王五", "赵六", "钱七", "孙八"],
            "rfm_class": [
                "重要价值客户",
                "重要价值客户",
                "重要价值客户",
                "一般发展客户",
                "重要挽留客户",
                "一般挽留客户",
            ],
            "lifecycle": ["成熟", "成熟", "成熟", "新客户", "沉睡", "流失"],
        }
    )
    after = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4", "C5", "C7"],
            "name": ["张三", "李四", "王五", "赵六", "钱七", "周九"],
            "rfm_class": [
                "重要价值客户",
                "重要挽留客户",
                "一般挽留客户",
                "重要价值客户",
                "重要挽留客户",
                "一般发展客户",
            ],
            "lifecycle": ["成熟", "沉睡", "流失", "成长", "沉睡", "新客户"],
            "monetary": [900.0, 500.0, 300.0, 800.0, 50.0, 20.0],
        }
    )
    return before, after


def test_migration_matrix_hand_checked():
    before, after = runs()
    m = migration_matrix(before, after)
    assert m.index.tolist() == [
        "重要价值客户",
        "重要挽留客户",
        "一般发展客户",
        "一般挽留客户",
        "（新增）",
    ]
    assert m.columns.tolist() == [
        "重要价值客户",
        "重要挽留客户",
        "一般发展客户",
        "一般挽留客户",
        "（已不在）",
    ]
    assert m.loc["重要价值客户"].tolist() == [1, 1, 0, 1, 0]
    assert m.loc["一般发展客户", "重要价值客户"] == 1
    assert m.loc["重要挽留客户", "重要挽留客户"] == 1
    assert m.loc["一般挽留客户", "（已不在）"] == 1
    assert m.loc["（新增）", "一般发展客户"] == 1
    assert int(m.to_numpy().sum()) == 7


def test_fallen_customers_hand_checked():
    before, after = runs()
    fell = fallen_customers(before, after)
    assert fell["customer_id"].tolist() == ["C2", "C3"]  # → 重要挽留客户, → lifecycle 流失
    assert fell["before"].tolist() == ["重要价值客户", "重要价值客户"]
    assert fell["now"].tolist() == ["重要挽留客户", "一般挽留客户"]


def test_migration_sheet(tmp_path):
    before, after = runs()
    path = tmp_path / "m.xlsx"
    write_workbook(after, path, previous=before)
    ws = load(path)["迁移"]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[1][:6] == (
        "上期分类 \\ 本期分类",
        "重要价值客户",
        "重要挽留客户",
        "一般发展客户",
        "一般挽留客户",
        "（已不在）",
    )
    assert rows[2][:6] == ("重要价值客户", 1, 1, 0, 1, 0)
    start = next(i for i, r in enumerate(rows) if r[0] and str(r[0]).startswith("从重要价值客户"))
    assert rows[start + 1][:4] == ("上期分类", "本期分类", "客户编号", "姓名")
    assert [r[2] for r in rows[start + 2 : start + 4]] == ["C2", "C3"]
    assert [r[3] for r in rows[start + 2 : start + 4]] == ["李*", "王*"]


# --------------------------------------------------------------------------- pivot
def test_pivot_equals_pandas_pivot_table(segmented):
    ours = pivot(segmented, "tier", "source_channel", "monetary:sum,customer_id:count")
    ours = ours.drop(index="合计")[
        [c for c in ours.columns if c[-1] != "合计"]
    ]  # the totals: see test_pivot_totals_*
    ref = pd.pivot_table(
        segmented,
        index="tier",
        columns="source_channel",
        values=["monetary", "customer_id"],
        aggfunc={"monetary": ["sum"], "customer_id": ["count"]},
    )
    ours.index = ours.index.astype(str)
    ours = ours.reindex(
        index=ref.index, columns=ref.columns
    )  # pandas sorts the values; ours keep the order asked
    pd.testing.assert_frame_equal(ours, ref, check_names=False, check_dtype=False)
    ours2 = pivot(segmented, ["region", "tier"], None, "monetary:mean,frequency:max").drop(
        index=[("合计", "合计")]
    )
    ref2 = pd.pivot_table(
        segmented,
        index=["region", "tier"],
        values=["monetary", "frequency"],
        aggfunc={"monetary": ["mean"], "frequency": ["max"]},
    )
    ours2.index = pd.MultiIndex.from_tuples(
        [tuple(map(str, t)) for t in ours2.index], names=ours2.index.names
    )
    pd.testing.assert_frame_equal(
        ours2.reindex(index=ref2.index, columns=ref2.columns), ref2, check_dtype=False
    )
    assert ours.loc["高价值"].sum() > 0


def test_pivot_tier_order_and_errors(segmented):
    t = pivot(segmented, "tier", None, "customer_id:count")
    assert [str(i) for i in t.index] == ["高价值", "中价值", "低价值", "合计"]
    with pytest.raises(InputError, match="no column 'colour'"):
        pivot(segmented, "tier", "colour", "monetary:sum")
    by_channel = pivot(
        segmented, "tier", "channel", "customer_id:count"
    )  # → channels, one count per channel
    n_high = segmented.loc[segmented["tier"] == "高价值", "channels"].str.split(";").map(len).sum()
    cells = by_channel[[c for c in by_channel.columns if c[-1] != "合计"]]
    assert int(cells.loc["高价值"].sum()) == n_high
    assert (
        by_channel.loc["高价值", ("customer_id", "count", "合计")]
        == (segmented["tier"] == "高价值").sum()
    )  # once each
    assert by_channel.attrs["repeated"] == ["channels"]
    with pytest.raises(InputError, match="unknown aggregate"):
        pivot(segmented, "tier", None, "monetary:total")
    with pytest.raises(InputError, match="text column"):
        pivot(segmented, "tier", None, "city:sum")


def test_pivot_names_blank_keys_like_the_report():
    df = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "rfm_class": ["重要价值客户", "", ""],
            "industry": ["金融", "", "金融"],
        }
    )
    flat = flatten_pivot(pivot(df, "rfm_class", None, "customer_id:count"))
    assert flat["RFM分类"].tolist() == ["重要价值客户", "（无订单）", "合计"]
    assert flatten_pivot(pivot(df, "industry", None, "customer_id:count", lang="en"), lang="en")[
        "Industry"
    ].tolist() == ["(blank)", "金融", "Total"]


def test_pivot_over_tags_lists_counts_each_tag(segmented):
    t = pivot(segmented, "tags", None, "customer_id:count")
    counts = {str(k): int(v) for k, v in t[("customer_id", "count")].items()}
    expected = pd.Series([t for tags in segmented["tags"] for t in tags]).value_counts()
    for tag, n in expected.items():
        assert counts[tag] == n


# --------------------------------------------------------------------------- inputs as files
def test_tags_as_joined_text_from_csv(tmp_path, segmented):
    csv = write_table(segmented, tmp_path / "seg.csv")
    back = read_table(csv)
    assert isinstance(back["tags"].iloc[0], str)
    path = tmp_path / "csv.xlsx"
    write_workbook(back, path)
    ws = load(path)["客户明细"]
    head = header(ws)
    got = {r[0]: r[head.index("标签")] or "" for r in ws.iter_rows(min_row=2, values_only=True)}
    assert got["C00000001"] == ";".join(segmented["tags"].iloc[0])


def test_works_on_partial_columns(tmp_path):
    df = tiny()[["customer_id", "name", "tier"]]
    path = tmp_path / "partial.xlsx"
    result = write_workbook(df, path)
    assert load(path).sheetnames == [
        "概览",
        "高价值",
        "中价值",
        "低价值",
        "客户明细",
        "策略",
        "数据质量",
    ]
    assert result.sheets["低价值"] == 2


def test_english_labels(tmp_path, segmented):
    path = tmp_path / "en.xlsx"
    write_workbook(segmented, path, lang="en")
    wb = load(path)
    assert wb.sheetnames[:4] == ["Summary", "High value", "Medium value", "Low value"]
    assert "Customers" in wb.sheetnames and "Strategies" in wb.sheetnames
    head = header(wb["Customers"])
    assert head[:3] == ["Customer ID", "Name", "Phone"] and "RFM class" in head
    tiers = {
        r[head.index("Value tier")] for r in wb["Customers"].iter_rows(min_row=2, values_only=True)
    }
    assert tiers == {"High value", "Medium value", "Low value"}


def test_failed_report_leaves_old_file(tmp_path, segmented):
    path = tmp_path / "keep.xlsx"
    path.write_bytes(b"old")
    with pytest.raises(InputError):
        write_workbook(segmented, path, role="sales")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.xlsx"]


def test_workbook_over_zip64_limit_is_written(tmp_path, segmented, monkeypatch):
    # 1M customers make a detail sheet of 2.6 GB of XML, over zipfile's 2 GiB ZIP64 limit;
    # xlsxwriter refuses to close such a workbook unless ZIP64 is allowed. Lower the limit
    # so that 300 customers exceed it.
    import zipfile

    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 50_000)
    path = tmp_path / "big.xlsx"
    write_workbook(segmented, path)
    monkeypatch.undo()
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("xl/worksheets/sheet1.xml").file_size > 0
    ws = openpyxl.load_workbook(path, read_only=True)["客户明细"]
    assert sum(1 for _ in ws.iter_rows(min_row=2)) == 300


def test_plain_sheets_over_zip64_limit_are_written(tmp_path, monkeypatch):
    import zipfile

    from custtool.io import write_xlsx_sheets

    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 20_000)
    df = pd.DataFrame({"customer_id": [f"C{i:08d}" for i in range(2000)], "n": np.arange(2000)})
    write_xlsx_sheets({"明细": df}, tmp_path / "t.xlsx")
    monkeypatch.undo()
    back = pd.read_excel(tmp_path / "t.xlsx", sheet_name="明细", engine="openpyxl")
    assert len(back) == 2000 and back["n"].sum() == 1999 * 2000 // 2


# --------------------------------------------------------------------------- CLI
runner = CliRunner()


def cli_app():
    from custtool.cli import app

    return app


@pytest.fixture(scope="module")
def files(tmp_path_factory, segmented):
    d = tmp_path_factory.mktemp("cli")
    seg = d / "seg.parquet"
    segmented.to_parquet(seg)
    orders = d / "orders.parquet"
    make_orders(segmented).to_parquet(orders)
    prev = d / "prev.parquet"
    before = segmented.copy()
    before["rfm_class"] = "重要价值客户"
    before.to_parquet(prev)
    return d, seg, orders, prev


def test_cli_report_json_matches_library(example_data, tmp_path):
    # a realistic segmented and tagged table: examples/ through the library (conftest)
    from custtool.steps import run_report

    p = example_data.paths
    out = tmp_path / "cli.xlsx"
    args = [
        "report",
        str(p["tagged"]),
        "--orders",
        str(p["orders"]),
        "--previous",
        str(p["segmented"]),
        "-o",
        str(out),
    ]
    res = runner.invoke(cli_app(), [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    lib = run_report(
        p["tagged"], tmp_path / "lib.xlsx", orders=p["orders"], previous=p["segmented"]
    ).to_dict()
    assert data.pop("path") == str(out) and lib.pop("path") == str(tmp_path / "lib.xlsx")
    assert data.pop("files") == {"xlsx": str(out)}  # every file written, by format
    assert lib.pop("files") == {"xlsx": str(tmp_path / "lib.xlsx")}
    assert data == json.loads(json.dumps(lib, ensure_ascii=False, default=str))
    assert data["masked"] is True and data["customers"] == len(example_data.frame("tagged"))
    wb = load(out)
    assert wb.sheetnames[-1] == "迁移"
    tagged = example_data.frame("tagged")
    for value, n in (
        tagged["tier"].value_counts().items()
    ):  # one sheet per tier, one row per customer
        assert data["sheets"][value] == len(top_list(wb[value])[1]) == n


def test_cli_report_errors_exit_2(files, tmp_path):
    d, seg, _, _ = files
    res = runner.invoke(
        cli_app(), ["report", str(d / "missing.parquet"), "-o", str(tmp_path / "r.xlsx")]
    )
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(
        cli_app(),
        ["report", str(seg), "--role", "analyst", "--no-mask", "-o", str(tmp_path / "r.xlsx")],
    )
    assert res.exit_code == 2 and "masked" in res.output
    res = runner.invoke(cli_app(), ["report", str(seg), "-o", str(tmp_path / "r.csv")])
    assert res.exit_code == 2
    assert not list(tmp_path.iterdir())


def test_cli_pivot(files, tmp_path, segmented):
    _, seg, _, _ = files
    res = runner.invoke(
        cli_app(),
        [
            "pivot",
            str(seg),
            "--rows",
            "tier",
            "--values",
            "monetary:sum,customer_id:count",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    rows = {r["价值等级"]: r for r in data["rows"]}
    assert rows["高价值"]["客户编号·count"] == int((segmented["tier"] == "高价值").sum())
    assert rows["低价值"]["消费金额·sum"] == pytest.approx(
        segmented.loc[segmented["tier"] == "低价值", "monetary"].sum()
    )
    res = runner.invoke(
        cli_app(), ["pivot", str(seg), "--rows", "tier", "--cols", "source_channel"]
    )
    assert res.exit_code == 0 and "高价值" in res.stdout and "京东" in res.stdout
    res = runner.invoke(
        cli_app(),
        ["pivot", str(seg), "--rows", "tier", "--values", "monetary:sum", "--role", "service"],
    )
    assert res.exit_code == 2 and "may not see" in res.output
    out = tmp_path / "p.xlsx"
    res = runner.invoke(
        cli_app(), ["pivot", str(seg), "--rows", "rfm_class", "--cols", "tier", "-o", str(out)]
    )
    assert res.exit_code == 0 and load(out).sheetnames == ["透视"]


def test_flags_from_csv_text_are_booleans(tmp_path):
    df = tiny()
    back = read_table(write_table(df, tmp_path / "t.csv"))
    assert kpis(prepare_customers(back)) == kpis(df)
    path = tmp_path / "csv_flags.xlsx"
    write_workbook(back, path)
    ws = load(path)["客户明细"]
    col = header(ws).index("复购")
    assert [r[col] for r in ws.iter_rows(min_row=2, values_only=True)] == [
        "是",
        "否",
        "是",
        "否",
    ]  # C1, C2, C4, C3 by LTV


def test_rows_past_excels_limit_are_reported_not_dropped_silently(
    tmp_path, example_segmented, monkeypatch
):
    import custtool.report.workbook as wbmod

    monkeypatch.setattr(wbmod, "EXCEL_MAX_ROWS", 41)  # header + 40 rows fit a sheet
    path = tmp_path / "big.xlsx"
    result = write_workbook(example_segmented, path)
    assert len(example_segmented) > 40
    detail = load(path)["客户明细"]
    assert detail.max_row == 41
    assert result.sheets["客户明细"] == 40
    assert any("客户明细" in w and f"{len(example_segmented):,}" in w for w in result.warnings)


# --------------------------------------------------------------------------- issue 12: capped sheets
def test_segment_sheets_capped_by_sheet_rows_with_note(tmp_path, segmented):
    from custtool.report.workbook import segment_table

    path = tmp_path / "cap.xlsx"
    result = write_workbook(segmented, path, sheet_rows=50)
    wb = load(path)
    n_high = int((segmented["tier"] == "高价值").sum())
    assert n_high > 50
    head, rows = top_list(wb["高价值"])
    assert len(rows) == 50 == result.sheets["高价值"]
    assert result.capped["高价值"] == {
        "customers": n_high,
        "listed": 50,
        "full_list": "customers.csv",
    }
    assert wb["高价值"]["A2"].value == (
        f"按价值列出前 50 位客户，另有 {n_high - 50:,} 位未列出：完整名单见「客户明细」表"
        "（按「价值等级」筛选「高价值」）或报告旁的 customers.csv"
    )
    # the top 50 by LTV of the tier, in order
    want = (
        segmented[segmented["tier"] == "高价值"]
        .sort_values("ltv", ascending=False, kind="stable")["customer_id"]
        .head(50)
        .tolist()
    )
    assert [r[0] for r in rows] == want
    # every customer still once in 客户明细
    assert wb["客户明细"].max_row - 1 == len(segmented)
    # the segment's summary row is 概览's row for it: one function computes both
    table = segment_table(segmented, "tier").set_index("segment")
    sheet = list(wb["高价值"].iter_rows(min_row=5, max_row=6, values_only=True))
    assert sheet[0][:5] == ("分群", "客户数", "客户占比", "消费金额", "金额占比")
    assert sheet[1][1] == table.loc["高价值", "customers"] == n_high
    assert sheet[1][3] == pytest.approx(table.loc["高价值", "revenue"])
    summary = {
        r[0]: r[1]
        for r in wb["概览"].iter_rows(values_only=True)
        if r[0] == "高价值" and isinstance(r[1], int | float)
    }
    assert summary["高价值"] == n_high


def test_segment_traits_hand_checked():
    from custtool.report.workbook import segment_traits

    df = pd.DataFrame(
        {
            "tier": ["高价值", "高价值", "低价值", "低价值"],
            "monetary": [100.0, 300.0, 10.0, 30.0],
            "recency": [10.0, np.nan, 100.0, 200.0],
            "churn_risk": [True, False, False, False],
        }
    )
    t = segment_traits(df, "tier", "高价值").set_index("trait")
    assert t.loc["monetary"].tolist() == [200.0, 110.0]
    assert t.loc["recency"].tolist() == [10.0, pytest.approx(310 / 3)]
    assert t.loc["churn_risk"].tolist() == [0.5, 0.25]


def test_sheet_rows_default_from_rules_and_pipeline_option(tmp_path):
    from custtool.config import ReportStep, load_report_settings, sheet_rows_setting

    assert load_report_settings().sheet_rows == 1000 == sheet_rows_setting(None)
    assert sheet_rows_setting(7) == 7
    assert ReportStep(sheet_rows=5).sheet_rows == 5
    with pytest.raises(ValueError):
        ReportStep(sheet_rows=0)


def test_detail_over_excel_limit_says_so_in_the_workbook(tmp_path, segmented, monkeypatch):
    import custtool.report.workbook as wbmod

    monkeypatch.setattr(wbmod, "EXCEL_MAX_ROWS", 101)  # 100 data rows a sheet
    path = tmp_path / "big.xlsx"
    result = write_workbook(segmented, path, segment_sheets=False)
    wb = load(path)
    assert wb["客户明细"].max_row == 101 and result.sheets["客户明细"] == 100
    notes = [c.value for c in wb["概览"]["A"] if isinstance(c.value, str)]
    assert (
        "共 300 位客户，超过 Excel 每表 100 行的上限：「客户明细」只含价值最高的 100 位，"
        "完整名单见报告旁的 customers.csv"
    ) in notes
    assert any("customers.csv" in w for w in result.warnings)


def test_cli_report_sheet_rows_writes_the_full_list_beside_it(files, tmp_path, segmented):
    d, seg, _, _ = files
    out = tmp_path / "r.xlsx"
    res = runner.invoke(
        cli_app(), ["report", str(seg), "-o", str(out), "--sheet-rows", "10", "--json"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    full = tmp_path / "r_customers.csv"
    assert data["full_list"] == str(full) and data["sheet_rows"] == 10
    assert data["capped"]["高价值"]["listed"] == 10
    back = pd.read_csv(full, encoding="utf-8-sig", dtype=str)
    assert len(back) == len(segmented) and back["customer_id"].is_unique
    raw = set(segmented["phone"][segmented["phone"] != ""])
    assert not set(back["phone"].dropna()) & raw  # masked by the one policy
    note = load(out)["高价值"]["A2"].value
    assert note.endswith("或报告旁的 r_customers.csv")
    # not capped: no CSV written
    out2 = tmp_path / "r2.xlsx"
    res = runner.invoke(cli_app(), ["report", str(seg), "-o", str(out2), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["full_list"] is None
    assert not (tmp_path / "r2_customers.csv").exists()


@pytest.mark.parametrize(("role", "owner"), [("analyst", None), ("sales", "王经理")])
def test_summary_from_the_orders_file_equals_the_frame(example_run, tmp_path, role, owner):
    """write_workbook(orders=<orders_attributed.parquet>) — the run's way, reading 概览's
    columns while it is written — gives the same 概览 cell for cell as the frame, for all
    customers and for one owner's (the customer ids read too), monthly revenue included."""
    from pathlib import Path

    import openpyxl

    _work, manifest = example_run
    out = Path(manifest["folder"])
    customers = pd.read_parquet(out / "customers.parquet")
    if owner is not None:
        customers = customers.assign(owner=np.where(np.arange(len(customers)) % 3, "李", owner))
    parquet = out / "orders_attributed.parquet"
    sheets = []
    for orders in (pd.read_parquet(parquet), parquet):
        path = tmp_path / f"r{len(sheets)}.xlsx"
        # 概览 is compared: the tier/class sheets (half the workbook's time) are left out
        write_workbook(customers, path, orders=orders, role=role, owner=owner, segment_sheets=False)
        ws = openpyxl.load_workbook(path, read_only=True)["概览"]
        sheets.append([tuple(r) for r in ws.iter_rows(values_only=True)])
    assert sheets[0] == sheets[1]
    rows = sheets[1]
    at = next(i for i, r in enumerate(rows) if r and r[0] == "月度消费额")  # the section shown
    months = [r for r in rows[at + 1 :] if r and isinstance(r[1], (int, float))]
    assert months and sum(r[1] for r in months) > 0


def test_take_rows_of_chunked_arrow_equals_a_take_of_the_whole():
    """客户明细's rows taken chunk by chunk from a chunked Arrow column (empty chunks, nulls,
    repeated and unsorted positions, a slice) equal Arrow's take of the combined array."""
    import numpy as np
    import pyarrow as pa

    from custtool.arrow_text import take_rows

    chunks = [["a", None, "c"], [], ["d", "e"], ["f"], [], ["g", "h", None, "j"]]
    arr = pa.chunked_array(chunks, type=pa.large_string())
    whole = arr.combine_chunks()
    rng = np.random.default_rng(3)
    for rows in (
        np.array([9, 0, 3, 3, 7, 1, 5]),
        rng.integers(0, len(whole), 40),
        np.arange(len(whole))[::-1],
        np.array([], dtype=np.int64),
    ):
        got = take_rows(arr, rows)
        assert got.to_pylist() == whole.take(pa.array(rows, type=pa.int64())).to_pylist()
        assert got.type == pa.large_string()
    assert take_rows(arr, slice(2, 8)).to_pylist() == whole[2:8].to_pylist()
    assert take_rows(whole, np.array([4, 2])).to_pylist() == ["e", "c"]
    assert take_rows(pa.chunked_array([["x", "y"]]), np.array([1])).to_pylist() == ["y"]
