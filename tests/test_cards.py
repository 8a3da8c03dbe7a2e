"""Profile cards: individual fields carry the customer's values, group traits hand-checked."""

from __future__ import annotations

import json
import warnings

import numpy as np
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from custtool.cards import (
    group_cards,
    individual_cards,
    render_html,
    render_markdown,
    tag_lift,
    write_cards,
)
from custtool.errors import InputError
from custtool.io import FORMULA_PREFIXES
from custtool.report.strategies import load_strategies


def six() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4", "C5", "C6"],
            "name": ["张三丰", "李四", '=HYPERLINK("x")', "赵六", "钱七", "<b>孙八</b>"],
            "phone": ["13812345678", "13900001111", "", "", "", ""],
            "gender": ["女", "男", "男", "女", "女", "未知"],
            "age": pd.array([28, 30, 45, 52, 22, pd.NA], dtype="Int64"),
            "city": ["上海市", "上海市", "北京市", "北京市", "广州市", "广州市"],
            "industry": ["互联网", "", "金融", "", "", ""],
            "position": ["产品经理", "", "", "", "", ""],
            "channels": ["天猫;门店", "天猫", "京东", "门店", "京东", ""],
            "needs": ["环保材质;智能功能", "", "", "", "", ""],
            "notes": [
                "曾咨询产品定制，电话13812345678",
                "",
                "",
                "",
                "",
                "<script>alert(1)</script>",
            ],
            "frequency": [4, 3, 1, 1, 1, 0],
            "orders_90d": [4, 0, 1, 0, 0, 0],
            "monetary": [1000.0, 2000.0, 1000.0, 100.0, 50.0, 0.0],
            "aov": [800.0, 600.0, 1000.0, 100.0, 50.0, np.nan],
            "recency": [10.0, 40.0, 5.0, 300.0, 400.0, np.nan],
            "last_order": pd.to_datetime(
                ["2024-06-20", "2024-05-21", "2024-06-25", "2023-09-04", "2023-05-27", None]
            ),
            "repurchase": [True, True, False, False, False, False],
            "ltv": [12000.0, 9000.0, 3000.0, 200.0, 60.0, 0.0],
            "nps_score": [10.0, np.nan, 7.0, np.nan, 3.0, np.nan],
            "rfm_class": [
                "重要价值客户",
                "重要价值客户",
                "重要价值客户",
                "一般挽留客户",
                "一般挽留客户",
                "一般挽留客户",
            ],
            "tier": ["高价值", "高价值", "中价值", "低价值", "低价值", "低价值"],
            "lifecycle": ["成熟", "成熟", "新客户", "沉睡", "流失", "潜在"],
            "churn_risk": [False, False, False, True, True, False],
            "tags": [
                ["高频消费", "女性"],
                ["高频消费"],
                ["高频消费", "价格敏感"],
                ["价格敏感"],
                ["价格敏感", "女性"],
                [],
            ],
        }
    )


# --------------------------------------------------------------------------- individual
def test_individual_card_has_the_customers_values():
    cards = individual_cards(six(), ["C1"])
    assert len(cards) == 1
    c = cards.iloc[0].to_dict()
    assert c["customer_id"] == "C1"
    assert c["basic_info"] == "张*丰，女，28岁，上海市，互联网 产品经理"
    assert (
        c["behaviour"]
        == "近90天消费4次，统计期内消费4次，客单价800元，最近消费2024-06-20（10天前），渠道：天猫、门店"
    )
    assert c["preferences"] == "需求：环保材质、智能功能"
    assert (
        c["value_assessment"]
        == "高价值，重要价值客户，LTV 12000元，复购：是，推荐评分(NPS) 10，生命周期：成熟"
    )
    assert c["tags"] == "高频消费、女性"
    assert c["notes"] == "曾咨询产品定制，电话138****5678"  # phone inside the note masked
    vip = load_strategies().query("dimension == 'rfm_class' and segment == '重要价值客户'").iloc[0]
    assert c["suggested_action"] == vip["strategy_goal"] + "：" + vip["strategy_measures"]


def test_individual_cards_order_unmasked_top_and_errors():
    cards = individual_cards(six(), ["C2", "C1"], mask=False)
    assert cards["customer_id"].tolist() == ["C2", "C1"]
    assert cards["basic_info"].iloc[1].startswith("张三丰，")
    assert "churn" not in cards["value_assessment"].iloc[0]
    top = individual_cards(six(), top=2)
    assert top["customer_id"].tolist() == ["C1", "C2"]  # by LTV
    assert "流失风险" in individual_cards(six(), ["C4"])["value_assessment"].iloc[0]
    with pytest.raises(InputError, match="C9"):
        individual_cards(six(), ["C1", "C9"])


def test_individual_card_categories_from_orders_and_english():
    orders = pd.DataFrame(
        {"customer_id": ["C1", "C1", "C1", "C2"], "category": ["家居", "数码", "家居", "美妆"]}
    )
    c = individual_cards(six(), ["C1"], orders=orders).iloc[0]
    assert c["behaviour"].endswith("常购品类：家居、数码")
    en = individual_cards(six(), ["C1"], lang="en").iloc[0]
    assert en["value_assessment"].startswith("High value, Champions")
    assert "28 years" in en["basic_info"]


def test_service_role_card_has_no_amounts():
    c = individual_cards(six(), ["C1"], role="service").iloc[0]
    assert "客单价" not in c["behaviour"] and "LTV" not in c["value_assessment"]


# --------------------------------------------------------------------------- groups
def test_group_card_traits_hand_checked():
    g = group_cards(six(), "rfm_class", min_count=1).set_index("segment")
    vip = g.loc["重要价值客户"]
    assert vip["customers"] == 3 and vip["customer_share"] == 0.5
    assert vip["revenue"] == 4000.0 and vip["revenue_share"] == pytest.approx(4000 / 4150)
    assert vip["top_cities"] == "上海市 67%、北京市 33%"
    assert vip["age_bands"] == "25-34岁 67%、45-54岁 33%"  # 28, 30 and 45
    assert vip["top_channels"] == "天猫 67%、京东 33%、门店 33%"
    assert vip["typical_aov"] == 800.0
    assert vip["top_tags"] == "高频消费 ×2.0（100%）"
    low = g.loc["一般挽留客户"]
    assert low["age_bands"] == "25岁以下 33%、45-54岁 33%"
    assert low["top_tags"] == "价格敏感 ×1.3（67%）"
    assert low["typical_aov"] == 75.0
    assert list(g.index) == ["重要价值客户", "一般挽留客户"]


def test_tag_lift_numbers():
    lift = tag_lift(six(), "rfm_class", min_count=1)
    row = lift[(lift["segment"] == "一般挽留客户") & (lift["tag"] == "价格敏感")].iloc[0]
    assert (row["n"], row["share_in_segment"], row["share_overall"]) == (2, 2 / 3, 0.5)
    assert row["lift"] == pytest.approx(4 / 3)
    assert tag_lift(six(), "rfm_class", min_count=3)["tag"].tolist() == ["高频消费"]


def test_group_cards_by_segment_names_across_dimensions():
    g = group_cards(six(), segments=["高价值", "沉睡"], min_count=1)
    assert g[["dimension", "segment", "customers"]].values.tolist() == [
        ["tier", "高价值", 2],
        ["lifecycle", "沉睡", 1],
    ]
    with pytest.raises(InputError, match="no segment"):
        group_cards(six(), segments=["不存在"])


def test_group_categories_from_orders():
    orders = pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C2", "C3", "C4"],
            "category": ["家居", "家居", "家居", "数码", "食品"],
        }
    )
    g = group_cards(six(), "rfm_class", orders=orders).set_index("segment")
    assert g.loc["重要价值客户", "top_categories"] == "家居 67%、数码 33%"
    assert g.loc["一般挽留客户", "top_categories"] == "食品 33%"


def test_text_codes_equal_s_row_by_row():
    """_text_codes (the orders' ids and categories coded, _s applied to distinct values
    only) gives _s of every row: spaces stripped, missing as "", over Arrow chunks and
    object columns alike."""
    import pyarrow as pa

    from custtool.cards import _s, _text_codes

    rows = [" C1", None, "C2", "C1", "  ", "C1 ", "C3", None]
    want = ["C1", "", "C2", "C1", "", "C1", "C3", ""]
    chunked = pd.Series(
        pd.arrays.ArrowStringArray(pa.chunked_array([rows[:3], rows[3:6], rows[6:], []]))
    )
    coded = pd.Series(rows, dtype="str").astype("category")  # read_attributed(codes=True)
    for x in (pd.Series(rows, dtype="str"), chunked, pd.Series(rows, dtype=object), coded):
        codes, values = _text_codes(x)
        assert values.take(codes.to_numpy()).tolist() == want
        assert values.take(codes.to_numpy()).tolist() == _s(x.to_frame("v"), "v").tolist()
    codes, values = _text_codes(pd.Series([], dtype="str"))
    assert len(codes) == 0


def test_group_categories_from_messy_orders():
    """Ids with spaces, a missing id or category, an unknown customer, a category with
    spaces: the same shares as the clean orders above (hand-checked: 重要价值客户 = C1, C2,
    C3: 家居 2 of 3, 数码 1 of 3)."""
    import pyarrow as pa

    ids = [" C1", "C1", "C2 ", "C3", "C4", None, "C9", "C2"]
    cats = ["家居", " 家居 ", "家居", "数码", "食品", "家居", "家居", None]
    orders = pd.DataFrame(
        {
            "customer_id": pd.arrays.ArrowStringArray(pa.chunked_array([ids[:4], ids[4:]])),
            "category": pd.arrays.ArrowStringArray(pa.chunked_array([cats[:2], cats[2:]])),
        }
    )
    g = group_cards(six(), "rfm_class", orders=orders).set_index("segment")
    assert g.loc["重要价值客户", "top_categories"] == "家居 67%、数码 33%"
    assert g.loc["一般挽留客户", "top_categories"] == "食品 33%"
    as_objects = orders.astype(object)
    g2 = group_cards(six(), "rfm_class", orders=as_objects).set_index("segment")
    assert g2["top_categories"].tolist() == g["top_categories"].tolist()
    # the run reads the orders' text as codes (categoricals): the same shares
    coded = orders.astype("category")
    g3 = group_cards(six(), "rfm_class", orders=coded).set_index("segment")
    assert g3["top_categories"].tolist() == g["top_categories"].tolist()


def test_individual_categories_from_messy_and_coded_orders():
    """A card's 常购品类 from orders with spaces, missing cells and other customers' rows,
    as text, as objects and as codes (categoricals): C1 bought 家居 twice (one with spaces)
    and 数码 once; C2's rows and the missing category are not C1's."""
    ids = [" C1", "C1", "C1 ", "C2", None, "C1"]
    cats = ["家居", " 家居 ", "数码", "美妆", "食品", None]
    orders = pd.DataFrame({"customer_id": pd.Series(ids, dtype="str"), "category": cats})
    for o in (orders, orders.astype(object), orders.astype("category")):
        c = individual_cards(six(), ["C1", "C3"], orders=o)
        assert c.loc[0, "behaviour"].endswith("常购品类：家居、数码"), o.dtypes
        assert "常购品类" not in c.loc[1, "behaviour"]


# --------------------------------------------------------------------------- renderers
def test_html_is_self_contained_and_escaped(tmp_path):
    ind = individual_cards(six(), ["C1", "C6"])
    grp = group_cards(six())
    page = render_html(ind, grp)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "@media print" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing loaded from elsewhere
    assert "张*丰" in page and "重要价值客户" in page and "客户画像卡（群体）" in page
    path = write_cards(ind, grp, tmp_path, "html")
    assert path.name == "cards.html" and path.read_text(encoding="utf-8") == page


def test_markdown_cards(tmp_path):
    md = render_markdown(individual_cards(six(), ["C1"]), group_cards(six(), min_count=1))
    assert "## 客户画像卡（个体）：C1" in md
    assert "- **基础信息**：张*丰，女，28岁，上海市，互联网 产品经理" in md
    assert "- **显著标签**：高频消费 ×2.0（100%）" in md
    assert "- **客户占比**：50.0%" in md


def test_markdown_cards_show_html_and_links_in_the_data_as_text():
    # notes or an industry such as <script>…</script> or [点我](http://…) went into cards.md
    # as written: a Markdown viewer ran the HTML and showed the link
    df = six()
    df.loc[0, "industry"] = "<script>alert(1)</script>"
    df.loc[0, "needs"] = "[点我](http://evil.example) & more"
    md = render_markdown(individual_cards(df, ["C1"]))
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "[点我](http" not in md and "\\[点我\\](http://evil.example) &amp; more" in md


def test_a_format_that_does_not_match_the_file_name_is_refused(tmp_path):
    # --format xlsx -o cards.html wrote a workbook into cards.html (exit 0)
    ind = individual_cards(six(), ["C1"])
    for fmt, name in (("xlsx", "cards.html"), ("md", "cards.xlsx"), ("html", "cards.md")):
        with pytest.raises(InputError, match=f"--format {fmt} writes a .{fmt} file"):
            write_cards(ind, None, tmp_path / name, fmt)
        assert not (tmp_path / name).exists()
    assert write_cards(ind, None, tmp_path / "c.markdown", "md").exists()
    assert write_cards(ind, None, tmp_path / "c.XLSX", "xlsx").exists()


def test_xlsx_cards_quote_prefix(tmp_path):
    path = write_cards(
        individual_cards(six(), ["C1", "C2", "C3"], mask=False),
        group_cards(six()),
        tmp_path / "c.xlsx",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["群体画像", "个体画像"]
    ws = wb["个体画像"]
    assert [c.value for c in ws[1]] == [
        "客户编号",
        "基础信息",
        "行为特征",
        "需求偏好",
        "价值评估",
        "标签",
        "备注",
        "建议措施",
    ]
    hits = 0
    for sheet in wb.worksheets:
        for row in sheet.iter_rows():
            for c in row:
                assert c.data_type != "f"
                if isinstance(c.value, str) and c.value.startswith(FORMULA_PREFIXES):
                    assert c.quotePrefix
                    hits += 1
    assert hits == 1  # C3's name
    with pytest.raises(InputError, match="format"):
        write_cards(individual_cards(six(), ["C1"]), None, tmp_path / "c.pdf")


def test_cli_cards(tmp_path):
    from custtool.cli import app

    seg = tmp_path / "seg.parquet"
    six().to_parquet(seg)
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "cards",
            str(seg),
            "--customer",
            "C1",
            "--segment",
            "重要价值客户",
            "-o",
            str(tmp_path / "out.md"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {
        "output": str(tmp_path / "out.md"),
        "individual": 1,
        "group": 1,
    }
    text = (tmp_path / "out.md").read_text(encoding="utf-8")
    assert "张*丰" in text and "13812345678" not in text
    res = runner.invoke(app, ["cards", str(seg), "-o", str(tmp_path / "g.html")])
    assert res.exit_code == 0 and "一般挽留客户" in (tmp_path / "g.html").read_text(
        encoding="utf-8"
    )
    res = runner.invoke(
        app, ["cards", str(seg), "--customer", "C404", "-o", str(tmp_path / "x.html")]
    )
    assert res.exit_code == 2 and "C404" in res.output and not (tmp_path / "x.html").exists()


def test_individual_cards_keep_each_customers_own_tags():
    # rows picked out of the table keep their own tags (not those of the rows at positions 0, 1)
    cards = individual_cards(six(), ["C5", "C3"])
    assert cards["tags"].tolist() == ["价格敏感、女性", "高频消费、价格敏感"]
    top = individual_cards(six().iloc[::-1], top=2)
    assert top["customer_id"].tolist() == ["C1", "C2"]
    assert top["tags"].tolist() == ["高频消费、女性", "高频消费"]


def test_window_counts_are_not_called_cumulative():
    # C4 bought 300 days before the as-of date but not in a 90-day window: frequency counts the
    # segment window only, so the card must not claim "累计消费0次" next to a last order
    df = six()
    df.loc[3, ["frequency", "monetary"]] = [0, 0.0]
    c = individual_cards(df, ["C4"]).iloc[0]
    assert "累计" not in c["behaviour"]
    assert c["behaviour"].startswith(
        "近90天消费0次，统计期内消费0次，客单价100元，最近消费2023-09-04（300天前）"
    )
    assert (
        individual_cards(df, ["C4"], lang="en")
        .iloc[0]["behaviour"]
        .startswith("0 orders in 90 days, 0 orders in the window")
    )


def test_cli_cards_negative_top_is_a_usage_error(tmp_path):
    # --top -1 made head(-1): cards for every customer but the last
    from custtool.cli import app

    seg = tmp_path / "seg.parquet"
    six().to_parquet(seg)
    res = CliRunner().invoke(
        app, ["cards", str(seg), "--top", "-1", "-o", str(tmp_path / "x.html")]
    )
    assert res.exit_code == 2 and not (tmp_path / "x.html").exists()
    with pytest.raises(InputError, match="top"):
        individual_cards(six(), top=-1)


def test_individual_top_by_value_ties_and_missing():
    """The top N by value are taken by position (no sorted copy of the table): highest
    first, ties in table order, missing values last; a text value column sorts as before."""
    df = six().assign(monetary=[5.0, np.nan, 9.0, 5.0, 1.0, np.nan])
    df = df.drop(columns=[c for c in ("ltv",) if c in df.columns])
    assert individual_cards(df, top=5)["customer_id"].tolist() == ["C3", "C1", "C4", "C5", "C2"]
    as_text = df.assign(monetary=["5", None, "9", "5", "10", None])
    # text sorts as text (as sort_values did): "9" > "5" > "10"
    assert individual_cards(as_text, top=4)["customer_id"].tolist() == ["C3", "C1", "C4", "C5"]


def test_tag_lift_counts_each_customer_once_from_lists_and_text():
    """A tag listed twice for one customer, with spaces, empty and missing tags: hand-checked
    counts (A: 3 customers, 甲 in 2 (c1 twice, c2 with spaces), 乙 in 1; B: 1 customer, 甲 in
    it; 4 customers in all: 甲 3/4 overall, lift in A (2/3) / (3/4))."""
    frame = pd.DataFrame(
        {
            "seg": ["A", "A", "A", "B"],
            "tags": [["甲", "甲", "乙"], [" 甲 "], [], ["甲", ""]],
        }
    )
    as_text = frame.assign(tags=pd.Series(["甲;甲;乙", " 甲 ", None, "甲;"], dtype="str"))
    for f in (frame, as_text):
        lift = tag_lift(f, "seg", min_count=1)
        got = {
            (r.segment, r.tag): (r.n, r.share_in_segment, r.share_overall)
            for r in lift.itertuples()
        }
        assert got == {
            ("A", "甲"): (2, 2 / 3, 3 / 4),
            ("A", "乙"): (1, 1 / 3, 1 / 4),
            ("B", "甲"): (1, 1.0, 3 / 4),
        }
        assert lift.loc[0, "lift"] == pytest.approx((1 / 3) / (1 / 4))  # A's 乙 first
    assert tag_lift(frame.assign(tags=[[], [], [""], None]), "seg").empty


def test_unique_keys_bitmap_and_sort_agree():
    """_unique_keys (the group cards' and tag_lift's distinct pairs): sorted distinct keys
    whether it takes the bitmap (small space) or the sort (large space)."""
    import numpy as np

    from custtool.cards import _unique_keys

    key = np.array([7, 3, 3, 0, 7, 9, 1, 3], dtype=np.int64)
    assert _unique_keys(key, 10).tolist() == [0, 1, 3, 7, 9]  # bitmap: 10 <= 8 * 8
    assert _unique_keys(key, 10**9).tolist() == [0, 1, 3, 7, 9]  # sort
    assert _unique_keys(key[:0], 10**9).tolist() == []
    assert _unique_keys(key[:0], 0).tolist() == []


def test_cards_from_the_runs_two_card_columns_equal_cards_from_all(example_run):
    """The run reads only customer_id and category of orders_attributed.parquet for the cards
    (``attributed=True``): the same individual and group cards as from every attributed
    column (source ids and match keys, which mark the rows as attributed)."""
    from pathlib import Path

    from custtool.io import read_table
    from custtool.pipeline import ATTRIBUTED_ORDER_COLUMNS, CARD_ORDER_COLUMNS, read_attributed

    _work, out = example_run
    folder = Path(out["folder"])
    customers = read_table(folder / "customers.parquet")
    full = read_attributed(folder / "orders_attributed.parquet", ATTRIBUTED_ORDER_COLUMNS)
    two = read_attributed(folder / "orders_attributed.parquet", CARD_ORDER_COLUMNS, codes=True)
    assert list(two.columns) == ["customer_id", "category"]
    for by in ("rfm_class", "tier"):
        want = group_cards(customers, by=by, orders=full)
        got = group_cards(customers, by=by, orders=two, attributed=True)
        pd.testing.assert_frame_equal(got, want)
        assert want["top_categories"].ne("").any()  # the orders' categories are in them
    want = individual_cards(customers, None, top=20, orders=full)
    got = individual_cards(customers, None, top=20, orders=two, attributed=True)
    pd.testing.assert_frame_equal(got, want)
    assert want["behaviour"].str.contains("常购品类").any()


def test_the_runs_cards_equal_cards_from_its_orders_frame(example_run):
    """The run counts the cards' categories in orders_attributed.parquet with DuckDB: its
    cards.html is, byte for byte, the page from the attributed orders read into a DataFrame
    (the run's settings: analyst, masked, top 20, by rfm_class)."""
    from pathlib import Path

    from custtool.io import read_table
    from custtool.pipeline import CARD_ORDER_COLUMNS, read_attributed

    _work, out = example_run
    folder = Path(out["folder"])
    customers = read_table(folder / "customers.parquet")
    orders = read_attributed(folder / "orders_attributed.parquet", CARD_ORDER_COLUMNS, codes=True)
    ind = individual_cards(customers, None, top=20, orders=orders, role="analyst", attributed=True)
    grp = group_cards(customers, by="rfm_class", orders=orders, role="analyst", attributed=True)
    assert grp["top_categories"].ne("").any()
    assert (folder / "cards.html").read_text(encoding="utf-8") == render_html(ind, grp, "zh")


# --------------------------------------------------------------------------- orders as a file
def _messy_customers_and_orders(seed: int, n: int = 120, n_orders: int = 1500):
    """Generated customers (segments, owners, tags, a phone-number id, a missing id, the
    portrait column filled for some) and attributed orders (ids with spaces, missing ids,
    ids of no customer, categories missing, empty, with spaces and full-width spaces)."""
    rng = np.random.default_rng(seed)
    ids = [f"C{i:04d}" for i in range(n)]
    ids[3] = "13812345678"  # keyed by phone: the masked id is what the cards see
    ids[4] = None
    classes = ["重要价值客户", "一般挽留客户", "重要发展客户", ""]
    customers = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="str"),
            "name": [f"客户{i}" for i in range(n)],
            "owner": rng.choice(["王五", "赵六", ""], n),
            "rfm_class": pd.array(rng.choice(classes, n, p=[0.4, 0.3, 0.25, 0.05]), dtype="str"),
            "tier": pd.array(rng.choice(["高价值", "中价值", "低价值"], n), dtype="str"),
            "lifecycle": pd.array(rng.choice(["成熟", "新客户", "沉睡"], n), dtype="str"),
            "city": pd.array(rng.choice(["上海市", "北京市", "广州市"], n), dtype="str"),
            "monetary": rng.integers(0, 5000, n).astype(float),
            "aov": rng.integers(50, 900, n).astype(float),
            "ltv": np.round(rng.random(n) * 100, 0),  # ties among the top by value
            "tags": [list(rng.choice(["甲", "乙", "丙"], rng.integers(0, 3))) for _ in range(n)],
            "top_categories": pd.array(
                rng.choice(["", "", "家居、数码"], n), dtype="str"
            ),  # the portrait column wins where filled
        }
    )
    cats = ["家居", "数码", "美妆", " 家居", "家居\u3000", "", None, "食品 ", "图书"]
    pool = [*ids, " C0001", "C0002 ", "\u3000C0005", "C9999", None]
    rows = rng.integers(0, len(pool), n_orders)
    busy = rng.random(n_orders) < 0.7  # most orders by the first 40 customers: ties, repeats
    rows[busy] = rng.integers(0, 40, busy.sum())
    orders = pd.DataFrame(
        {
            "customer_id": pd.array([pool[i] for i in rows], dtype="str"),
            "category": pd.array([cats[i] for i in rng.integers(0, len(cats), n_orders)], "str"),
        }
    )
    return customers, orders


def _card_calls(customers):
    """(kwargs of individual_cards, kwargs of group_cards) the cards are compared under."""
    some = [c for c in customers["customer_id"].dropna()[:8] if c != "13812345678"]
    return [
        ({"customer_ids": None, "top": 20}, {"by": "rfm_class"}),
        ({"customer_ids": some, "role": "analyst"}, {"by": "tier", "role": "analyst"}),
        ({"customer_ids": None, "top": 5, "lang": "en"}, {"segments": ["高价值", "沉睡"]}),
        (
            {"customer_ids": None, "top": 10, "role": "sales", "owner": "王五"},
            {"by": "lifecycle", "role": "sales", "owner": "王五"},
        ),
        ({"customer_ids": ["13812345678"], "mask": False}, {"by": "rfm_class", "top": 5}),
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cards_from_the_orders_file_equal_cards_from_the_orders_frame(tmp_path, seed):
    """The run passes orders_attributed.parquet's path (DuckDB counts the categories): the
    same individual and group cards, cell by cell, as from the file read as a DataFrame
    (as the run read it before: codes; and as text) — with ids and categories to strip,
    missing and unknown ids, empty categories, customers without orders, a customer filtered
    out by owner, a phone-number id (masked), ties in counts and in value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from custtool.pipeline import CARD_ORDER_COLUMNS, read_attributed

    customers, orders = _messy_customers_and_orders(seed)
    path = tmp_path / "orders_attributed.parquet"
    pq.write_table(pa.Table.from_pandas(orders, preserve_index=False), path)
    coded = read_attributed(path, CARD_ORDER_COLUMNS, codes=True)
    shown = 0
    for ind_kw, grp_kw in _card_calls(customers):
        ind_kw = dict(ind_kw)
        ids = ind_kw.pop("customer_ids")
        for frame in (coded, orders):
            want = individual_cards(customers, ids, orders=frame, attributed=True, **ind_kw)
            got = individual_cards(customers, ids, orders=path, attributed=True, **ind_kw)
            pd.testing.assert_frame_equal(got, want)
            want_g = group_cards(customers, orders=frame, attributed=True, **grp_kw)
            got_g = group_cards(customers, orders=path, attributed=True, **grp_kw)
            pd.testing.assert_frame_equal(got_g, want_g)
        shown += want["behaviour"].str.contains("常购品类|categories").sum()
        assert want_g["top_categories"].ne("").any()
    assert shown  # categories from the orders are on some individual cards


def test_cards_from_the_orders_file_edge_files(tmp_path):
    """No order of a listed customer (no top_categories), only empty categories (""),
    no rows at all, a file without category and one whose ids are numbers: the same cards
    as from the DataFrame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {
        "strangers": pa.table({"customer_id": ["C9", None], "category": ["家居", "数码"]}),
        "empty_categories": pa.table({"customer_id": ["C1", "C4 "], "category": ["", None]}),
        "no_rows": pa.table(
            {"customer_id": pa.array([], pa.string()), "category": pa.array([], pa.string())}
        ),
        "no_category": pa.table({"customer_id": ["C1", "C2"], "amount": [1.0, 2.0]}),
        "number_ids": pa.table({"customer_id": [1, 2], "category": ["家居", "数码"]}),
    }
    for name, table in files.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        frame = table.to_pandas()
        for by in ("rfm_class", "tier"):
            want = group_cards(six(), by=by, orders=frame, attributed=True)
            got = group_cards(six(), by=by, orders=path, attributed=True)
            pd.testing.assert_frame_equal(got, want, obj=name)
        want = individual_cards(six(), ["C1", "C4"], orders=frame, attributed=True)
        got = individual_cards(six(), ["C1", "C4"], orders=path, attributed=True)
        pd.testing.assert_frame_equal(got, want, obj=name)
    # customers without ids: the cards read their own categories column, as before
    no_ids = six().drop(columns="customer_id").assign(categories=["家居;数码", "", "美妆"] * 2)
    path = tmp_path / "strangers.parquet"
    frame = files["strangers"].to_pandas()
    for kw in ({"top": 3}, {"top": 6, "lang": "en"}):
        want = individual_cards(no_ids, None, orders=frame, attributed=True, **kw)
        got = individual_cards(no_ids, None, orders=path, attributed=True, **kw)
        pd.testing.assert_frame_equal(got, want)
        assert want["behaviour"].str.contains("家居").any()
    want = group_cards(no_ids, orders=frame, attributed=True)
    pd.testing.assert_frame_equal(group_cards(no_ids, orders=path, attributed=True), want)
    g = group_cards(six(), orders=tmp_path / "strangers.parquet", attributed=True)
    assert "top_categories" not in g.columns
    g = group_cards(six(), orders=tmp_path / "empty_categories.parquet", attributed=True)
    assert g["top_categories"].tolist() == ["", ""]


def test_cards_orders_file_not_attributed_is_read_and_attributed(tmp_path):
    """Without ``attributed`` a path is read and attributed as a DataFrame would be."""
    path = tmp_path / "orders.parquet"
    orders = pd.DataFrame({"customer_id": ["C1", "C1", "C2"], "category": ["家居", "数码", "家居"]})
    orders.to_parquet(path)
    want = group_cards(six(), orders=orders).set_index("segment")
    got = group_cards(six(), orders=path).set_index("segment")
    pd.testing.assert_frame_equal(got, want)
    assert got.loc["重要价值客户", "top_categories"] == "家居 67%、数码 33%"


def test_whitespace_stripped_in_duckdb_is_what_s_strips():
    """DuckDB strips the orders' ids as _s does: WHITESPACE is every code point str.strip
    and Arrow's utf8_trim_whitespace remove, and the SQL gives _s of tricky values."""
    import sys

    import pyarrow as pa
    import pyarrow.compute as pc

    from custtool.cards import _s
    from custtool.engines import duckdb_connect
    from custtool.engines.attributed import WHITESPACE
    from custtool.engines.attributed import sql_text as _sql_text

    chars = [chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i < 0xE000]
    assert set(WHITESPACE) == {c for c in chars if c.isspace()}
    trimmed = pc.utf8_trim_whitespace(pa.array([c + "x" for c in chars])).to_pylist()
    assert set(WHITESPACE) == {c for c, t in zip(chars, trimmed) if t == "x"}
    values = [" C1", "C1\u3000", "\u2003 家居 \u00a0", "", " ", None, "a b", "x\u200b", " \u0301a"]
    con = duckdb_connect(threads=1)
    con.register("t", pa.table({"v": pa.array(values, pa.string())}))
    got = [r[0] for r in con.execute(f"SELECT {_sql_text('v')} FROM t").fetchall()]
    assert got == _s(pd.Series(values, dtype=object).to_frame("v"), "v").tolist()


def test_list_items_are_the_items_of_the_joined_tags():
    """_list_items (tags cut straight from the lists) gives the non-empty items that
    _split_items cuts from prepare_customers' joined text: a missing cell, empty lists, a
    list holding a missing item (its text is missing: no items), items with ``;`` and
    spaces, tuples and arrays; None where prepare_customers would not join in Arrow."""
    from custtool.cards import _list_items, _split_items
    from custtool.report.workbook import prepare_customers

    tags = pd.Series(
        [
            ["甲", " 乙 "],
            None,
            [],
            ["丙", None],
            ("甲;丁", "", " ;戊"),
            np.array(["乙", "乙"], dtype=object),
            ["\u3000甲"],
        ],
        dtype=object,
    )
    rows, items = _list_items(tags)
    text = prepare_customers(pd.DataFrame({"tags": tags}))["tags"]
    want_rows, want_items = _split_items(text)

    def pairs(r, i):
        return sorted((int(a), b) for a, b in zip(r, i.tolist()) if b != "")

    assert pairs(rows, items) == pairs(want_rows, want_items)
    assert pairs(rows, items) == [
        (0, "乙"), (0, "甲"), (4, "丁"), (4, "戊"), (4, "甲"), (5, "乙"), (5, "乙"), (6, "甲"),
    ]  # fmt: skip
    assert _list_items(pd.Series([["甲"], "乙;丙"], dtype=object)) is None  # text among lists
    assert _list_items(pd.Series([[1, 2], ["甲"]], dtype=object)) is None  # not text
    assert _list_items(pd.Series(["甲;乙"], dtype="str")) is None
    assert _list_items(pd.Series([None, []], dtype=object))[1].tolist() == []


@pytest.mark.parametrize("seed", [0, 1])
def test_group_cards_from_tag_lists_equal_cards_from_tag_text(seed):
    """Tags as lists are cut into items straight from the lists (tag_lift's items); the
    same group cards, cell by cell, as from the same tags joined to text (cut by tag_lift
    as before) — for every role, with an owner filter, and with a tag that looks like a
    ciphertext (the masker hides such a cell: those cards take the joined text)."""
    from custtool.crypto import PREFIX
    from custtool.report.workbook import prepare_customers

    customers, _orders = _messy_customers_and_orders(seed, n=400)
    rng = np.random.default_rng(seed)
    pool = ["高频消费", " 价格敏感", "女性;男性", "", None, "老客户"]
    customers["tags"] = [
        [pool[j] for j in rng.integers(0, len(pool), rng.integers(0, 4))] for _ in range(400)
    ]
    customers.loc[7, "tags"] = None
    as_text = prepare_customers(customers[["tags"]])["tags"].astype("str")
    hidden = customers.copy()
    hidden.loc[9, "tags"] = [PREFIX + "abc", "高频消费"]
    hidden_text = prepare_customers(hidden[["tags"]])["tags"].astype("str")
    for kw in (
        {"by": "rfm_class", "min_count": 1},
        {"by": "tier", "role": "service"},
        {"by": "lifecycle", "role": "sales", "owner": "王五", "min_count": 1},
        {"segments": ["高价值", "沉睡"], "min_count": 2},
    ):
        for lists, text in ((customers, as_text), (hidden, hidden_text)):
            want = group_cards(lists.assign(tags=text), **kw)
            got = group_cards(lists, **kw)
            pd.testing.assert_frame_equal(got, want)
            assert want["top_tags"].ne("").any()
    g = group_cards(hidden, by="rfm_class", min_count=1)
    assert g["top_tags"].str.contains("******", regex=False).any()  # hidden as before


def test_top_values_counted_on_codes_equal_a_groupby():
    """_top_values (segments factorized once, pairs counted with bincount or np.unique by
    the size of their space) equals a plain pandas groupby of the same values: the k most
    common per segment, ties by value, shares of the segment."""
    from custtool.cards import _segment_codes, _top_values

    rng = np.random.default_rng(3)
    seg = pd.Series(rng.choice(["A", "B", "", "C"], 3000), dtype="str")
    for n_values in (4, 2500):  # a small space (bincount) and a large one (np.unique)
        values = pd.Series(
            [f"v{i}" if i else " " for i in rng.integers(0, n_values, 3000)], dtype="str"
        )
        sizes = seg.value_counts()
        frame = pd.DataFrame({"segment": seg, "v": values.str.strip()})
        frame = frame[frame["v"] != ""]
        ref = frame.groupby(["segment", "v"]).size().rename("n").reset_index()
        ref = ref.sort_values(["segment", "n", "v"], ascending=[True, False, True])
        ref = ref.groupby("segment").head(3)
        pct = (ref["n"] / ref["segment"].map(sizes) * 100).round(0).astype(int).astype(str)
        want = (ref["v"] + " " + pct + "%").groupby(ref["segment"]).agg("、".join)
        for codes in (None, _segment_codes(seg)):
            got = _top_values(seg, values, 3, "、", codes=codes)
            assert got.to_dict() == want.to_dict()


def test_masked_by_values_equals_mask_for_output():
    """The group cards mask text columns of few distinct values value by value: the same
    frame, cell by cell, as mask_for_output — a column of unknown meaning holding a phone
    number (masked as free text) or not, a name column, a ciphertext, missing values, a
    column of many distinct values, phone-number ids, an owner filter and a role hiding
    amounts."""
    from custtool.cards import _masked_by_values
    from custtool.crypto import PREFIX
    from custtool.report.masking import get_role, mask_for_output

    rng = np.random.default_rng(5)
    n = 400
    df = pd.DataFrame(
        {
            "customer_id": pd.array([f"C{i}" if i % 7 else f"138{i:08d}" for i in range(n)], "str"),
            "owner": pd.array(rng.choice(["王五", "赵六"], n), "str"),
            "city": pd.array(rng.choice(["上海市", "北京市", None], n), "str"),
            "channel_mode": pd.array(rng.choice(["线上", "电话13812345678", "门店"], n), "str"),
            "level": pd.array(rng.choice(["A", "B", PREFIX + "xyz"], n), "str"),
            "name": pd.array(rng.choice(["张三丰", "李四"], n), "str"),
            "gender": pd.array(rng.choice(["男", "女"], n), "str"),
            "active_slot": pd.array([f"slot {i}" for i in range(n)], "str"),  # many values
            "monetary": rng.random(n),
            "age": rng.integers(18, 80, n),
        }
    )
    for role, owner in (("analyst", None), ("sales", "王五"), ("service", None), (None, "赵六")):
        want = mask_for_output(df, role=get_role(role), owner=owner, mask=True)
        got = _masked_by_values(df, get_role(role), owner)
        pd.testing.assert_frame_equal(got, want)
    got = _masked_by_values(df, get_role("analyst"), None)
    assert got["channel_mode"].str.contains("138****5678", regex=False).any()
    assert (got["level"] == "******").any() and set(got["name"]) == {"张*丰", "李*"}


def test_cards_over_the_orders_file_past_the_memory_limit_is_exit_2(tmp_path):
    """DuckDB over orders_attributed.parquet (the seam's bounded connection): a limit too
    small is the memory error naming the file and the limit (exit 2), not a crash."""
    from custtool.engines.attributed import category_counts
    from custtool.errors import CusttoolError

    n = 3_000_000
    path = tmp_path / "orders_attributed.parquet"
    ids = [f"C{i}" for i in range(n)]
    pd.DataFrame({"customer_id": ids, "category": [f"cat{i}" for i in range(n)]}).to_parquet(path)
    with pytest.raises(CusttoolError, match="orders_attributed.parquet.*5.0MB") as err:
        category_counts(path, ids, 5_000_000, lambda s: s.astype("string").str.strip())
    assert err.value.exit_code == 2
