"""Tag rules: the condition language, loading/checking YAML, apply (cap, manual), statistics, CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custtool.cli import app
from custtool.errors import ConfigError, RuleError
from custtool.io import read_table, write_table
from custtool.tags import (
    DEFAULT_RULES,
    MANUAL_CATEGORY,
    apply_tags,
    check_rules,
    evaluate_condition,
    load_rules,
    parse_condition,
    tag_customers,
    tag_statistics,
)
from tests.conftest import examples

runner = CliRunner()


# --------------------------------------------------------------------------- fixtures
def segmented() -> pd.DataFrame:
    """Six segmented customers shaped as docs/DATA.md says (Chinese values, gaps, "" for missing text)."""
    return pd.DataFrame(
        {
            "customer_id": [
                "C00000001",
                "C00000002",
                "C00000003",
                "C00000004",
                "C00000005",
                "C00000006",
            ],
            "name": ["张三", "李四", "王五", "赵六", "钱七", "孙八"],
            "phone": ["13812345678", "13900001111", "", "021-62345678", "", "13700002222"],
            "email": ["zs@example.com", "", "", "", "", "sb@qq.com"],
            "gender": ["女", "男", "女", "未知", "男", "女"],
            "age": pd.array([28, 45, None, 25, 61, 30], dtype="Int64"),
            "city": ["北京市", "成都市", "", "上海市", "深圳市", "杭州市"],
            "region": ["华北", "西南", "", "华东", "华南", "华东"],
            "industry": ["互联网", "制造业", "", "软件和信息技术服务", "零售", ""],
            "position": ["产品经理", "工程师", "", "技术总监", "", "店长"],
            "customer_type": ["个人", "企业", "个人", "企业", "个人", "个人"],
            "member_level": ["钻石会员", "普通", "", "VIP", "", "银卡"],
            "needs": ["希望定制家居", "价格优惠", "", "24小时在线支持", "", "高性价比"],
            "notes": ["关注产品定制", "", "", "", "近期投诉过物流", ""],
            "first_contact_date": pd.to_datetime(
                ["2023-01-15", "2022-05-01", None, "2024-03-01", "2021-08-08", "2024-06-01"]
            ),
            "follow_up_flag": [False, True, False, False, True, False],
            "last_order": pd.to_datetime(
                ["2024-06-25", "2024-03-01", None, "2024-06-01", "2023-10-01", "2024-06-28"]
            ),
            "frequency": [12, 3, 0, 2, 1, 5],
            "monetary": [130000.0, 3600.0, 0.0, 2400.0, 300.0, 9000.0],
            "aov": [800.0, 1200.0, np.nan, 1200.0, 300.0, 600.0],
            "orders_30d": [4, 0, 0, 1, 0, 3],
            "orders_90d": [12, 0, 0, 3, 0, 9],  # 高频消费: 月均≥3 = 9 in 90 days
            # columns of the newer default rules, present but matching nothing here
            "company_size": [""] * 6,
            "channel_mode": [""] * 6,
            "preferred_contact": [""] * 6,
            "events_365d": [0] * 6,
            "monetary_365d": [120000.0, 3600.0, 0.0, 2400.0, 0.0, 9000.0],
            "growth": [0.5, np.nan, np.nan, 0.3, -1.0, 0.1],
            "repurchase": [True, True, False, True, False, True],
            "days_since_last_interaction": [10.0, 75.0, np.nan, 61.0, 200.0, 3.0],
            "interactions_30d": [3, 0, 0, 0, 0, 5],
            "complaints_365d": [0, 0, 0, 0, 2, 1],
            "rfm_class": [
                "重要价值客户",
                "一般挽留客户",
                "",
                "重要发展客户",
                "一般挽留客户",
                "重要保持客户",
            ],
            "tier": ["高价值", "中价值", "低价值", "低价值", "低价值", "中价值"],
            "lifecycle": ["成熟", "沉睡", "潜在", "新客户", "流失", "成长"],
            "ltv": [15000.0, 800.0, np.nan, 1200.0, 0.0, 9999.0],
            "churn_risk": [False, True, False, False, True, False],
            "nps_score": [10.0, 5.0, np.nan, 9.0, 0.0, 7.0],
            "as_of": pd.to_datetime(["2024-06-30"] * 6),
        }
    )


def write_rules(tmp_path: Path, body: str, name: str = "rules.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body), encoding="utf-8")
    return p


def cond(df: pd.DataFrame, expr: str) -> list[bool]:
    return evaluate_condition(df, expr).tolist()


# --------------------------------------------------------------------------- condition language
SMALL = pd.DataFrame(
    {
        "age": pd.array([28, None, 40, 30], dtype="Int64"),
        "aov": [800.0, np.nan, 1000.0, 499.99],
        "city": ["北京市", "", None, "上海市"],
        "notes": ["想要定制款 between 1 and 2", "", "VIP客户", "定制"],
        "email": ["a@b.cn", "", "", "c@d.cn"],
        "last_order": pd.to_datetime(["2024-01-01", None, "2023-06-01", "2024-06-29"]),
        "churn_risk": pd.array([True, None, False, True], dtype="boolean"),
        "as_of": pd.to_datetime(["2024-06-30"] * 4),
    }
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("age == 28", [True, False, False, False]),
        ("age != 28", [False, False, True, True]),  # missing age: false, not "not equal"
        ("age < 30", [True, False, False, False]),
        ("age <= 30", [True, False, False, True]),
        ("age > 28", [False, False, True, True]),
        ("age >= 40", [False, False, True, False]),
        ("18 <= age < 30", [True, False, False, False]),  # chained
        ("30 >= age", [True, False, False, True]),  # constant on the left
        ("age between 25 and 30", [True, False, False, True]),  # inclusive
        ("age between 29 and 40 and aov >= 1000", [False, False, True, False]),
        ("not age between 25 and 30", [False, True, True, False]),
        ("len(city) between 3 and 3", [True, False, False, True]),
        ("(aov + 0) between 500 and 1000", [True, False, True, False]),
        ("aov between 400 + 100 and 2 * 500", [True, False, True, False]),
        ("between(age, 25, 30)", [True, False, False, True]),
        ("aov between 500 and 1000 or age == 28", [True, False, True, False]),
        ("age in [28, 40]", [True, False, True, False]),
        ("age not in [28, 40]", [False, False, False, True]),
        ('city == "北京市"', [True, False, False, False]),
        ('city != "北京市"', [False, False, False, True]),  # "" and None are missing
        ('city in ["北京市", "上海市"]', [True, False, False, True]),
        ('city not in ["北京市"]', [False, False, False, True]),
        ('"定制" in notes', [True, False, False, True]),
        ('"定制" not in notes', [False, False, True, False]),
        ("is_null(city)", [False, True, True, False]),
        ("not_null(city)", [True, False, False, True]),
        ("not is_null(email)", [True, False, False, True]),
        ('contains(notes, "定制")', [True, False, False, True]),
        ('contains(notes, "VIP", "定制")', [True, False, True, True]),
        ('contains(notes, ["VIP", "nothing"])', [False, False, True, False]),
        (
            'contains(notes, "between 1 and 2")',
            [True, False, False, False],
        ),  # not rewritten inside strings
        ('startswith(notes, "想要")', [True, False, False, False]),
        ('endswith(email, ".cn")', [True, False, False, True]),
        ('lower(notes) == "vip客户"', [False, False, True, False]),
        ('upper(email) == "A@B.CN"', [True, False, False, False]),
        ("len(city) == 3", [True, False, False, True]),
        ("len(city) == 0", [False, True, True, False]),
        ("days_since(last_order) > 100", [True, False, True, False]),
        ("days_since(last_order) <= 1", [False, False, False, True]),
        ('last_order >= "2024-01-01"', [True, False, False, True]),
        ("year(last_order) == 2024 and month(last_order) == 6", [False, False, False, True]),
        ("churn_risk", [True, False, False, True]),
        ("churn_risk == false", None),  # lower-case false is a (unknown) field name
        ("churn_risk == False", [False, False, True, False]),  # missing stays false
        ("not churn_risk", [False, True, True, False]),
        ("aov / 2 >= 400", [True, False, True, False]),
        ("aov - 1000 >= 0", [False, False, True, False]),
        ("aov * 2 + 1 > 2000", [False, False, True, False]),
        ("-aov < -900", [False, False, True, False]),
        ("abs(-aov) == 800", [True, False, False, False]),
        ("aov >= 50%", [True, False, True, True]),  # 50% = 0.5
        ("not (age > 30 or aov > 900)", [True, True, False, True]),
        ('col("city") == "上海市"', [False, False, False, True]),
        ("True", [True, True, True, True]),
        ("1 == 2", [False, False, False, False]),
    ],
)
def test_operators_and_functions(expr, expected):
    if expected is None:
        with pytest.raises(RuleError, match="unknown field"):
            evaluate_condition(SMALL, expr)
        return
    assert cond(SMALL, expr) == expected


def test_contains_treats_needles_as_literal_text():
    df = pd.DataFrame({"n": ["x.y", "xzy", "a|b", "(c)", ""]})
    assert cond(df, 'contains(n, "x.y", "(c)")') == [True, False, False, True, False]
    assert cond(df, 'contains(n, "a|b", "zz")') == [False, False, True, False, False]
    assert cond(df, 'contains(n, ".*")') == [False] * 5


def test_evaluation_is_vectorised_numpy_aligned_with_index():
    df = SMALL.set_axis([10, 20, 30, 40])
    out = evaluate_condition(df, "age between 25 and 30")
    assert out.index.tolist() == [10, 20, 30, 40]
    assert out.dtype == bool


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("__import__('os').system('ls')", "attribute access"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("getattr(age, 'real')", "unknown function 'getattr'"),
        ("age.real > 1", "attribute access"),
        ("().__class__.__bases__", "attribute access"),
        ("(lambda: 1)()", "lambda"),
        ("[x for x in age]", "comprehension"),
        ("any(x for x in age)", "comprehension"),
        ("age[0] > 1", "indexing"),
        ("{1: 2}", "dict"),
        ("age ** 999999 > 1", "'\\*\\*'"),
        ("(y := 1)", "assignment"),
        ("f'{age}' == '1'", "f-string"),
        ("age if age else 1", "if"),
        ("age is None", "'is'"),
        ("age > ", "syntax error"),
        ("age between 1", "between"),
        ('contains(notes, x="a")', "keyword"),
        ("contains(notes)", "at least 2"),
        ("age in [age, 1]", "lists may only hold constants"),
        ("b'x' == notes", "not allowed"),
        ("age > " + "9" * 400, "too large"),
        ("age > 1e999", "too large"),
        ("(" * 300 + "age > 1" + ")" * 300, "syntax error|nested"),
    ],
)
def test_malicious_or_invalid_expressions_are_refused(expr, message):
    with pytest.raises(RuleError, match=message):
        evaluate_condition(SMALL, expr)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("city > 5", "cannot compare 'city' \\(text\\) with '5' \\(a number\\)"),
        ('age == "28"', "cannot compare 'age' \\(a number\\) with"),
        ("city in [1, 2]", "non-text"),
        ("age", "not true/false"),
        ("age and churn_risk", "'age' is a number, not true/false"),
        ('contains(age, "1")', "contains\\(\\) needs text"),
        ("days_since(city) > 3", "days_since\\(\\) needs a date"),
        ('last_order > "昨天"', "not a date"),
        ("churn_risk > True", "cannot order yes/no"),
        ("city + 1 > 2", "needs numbers"),
        ("city in notes", "needs a list"),
    ],
)
def test_type_errors(expr, message):
    with pytest.raises(RuleError, match=message):
        evaluate_condition(SMALL, expr)


def test_parse_condition_lists_fields_not_functions():
    _, fields = parse_condition(
        'contains(notes, "a") and age between 1 and 2 and col("会员 等级") == "x" and city in ["a"]'
    )
    assert fields == ("notes", "age", "city", "会员 等级")


# --------------------------------------------------------------------------- loading and checking
def test_default_library_loads_with_levels_and_lines():
    rules = load_rules()
    assert len(rules) >= 25
    by = {r.name: r for r in rules}
    assert by["高价值"].condition == "monetary_365d >= 100000 or ltv >= 10000"
    assert (by["高价值"].level1, by["高价值"].level2) == ("价值评估", "客户价值")
    assert by["高频消费"].condition == "orders_90d >= 9"  # 月均≥3次 over 3 months (seed 000)
    assert by["流失风险"].condition == "days_since_last_interaction > 60"
    assert {r.level1 for r in rules} == {"基础属性", "动态行为", "需求特征", "价值评估", "风险"}
    # the line is the rule's own line in the file
    lines = DEFAULT_RULES.read_text(encoding="utf-8").splitlines()
    assert lines[by["高价值"].line - 1].strip() == "- name: 高价值"
    assert check_rules(DEFAULT_RULES) == []


def test_declared_fields_and_levels(tmp_path):
    p = write_rules(
        tmp_path,
        """
        fields:
          会员积分: number
          渠道来源: text
        tags:
          - name: 积分大户
            path: 会员/积分
            condition: 会员积分 >= 1000
            priority: 7
          - name: 小红书来源
            level1: 渠道
            condition: 渠道来源 == "小红书"
          - name: 停用
            path: [x]
            condition: 会员积分 > 0
            enabled: false
        """,
    )
    rules = load_rules(p)
    assert [(r.name, r.level1, r.level2, r.priority, r.line) for r in rules] == [
        ("积分大户", "会员", "积分", 7, 6),
        ("小红书来源", "渠道", "", 50, 10),
    ]
    df = pd.DataFrame({"会员积分": [1500, 10, None], "渠道来源": ["小红书", "", "抖音"]})
    out = apply_tags(df, rules)
    assert out["tags"].tolist() == [["小红书来源", "积分大户"], [], []]  # priority 50 before 7
    assert out["tag_会员"].tolist() == ["积分大户", "", ""]
    assert out["tag_渠道"].tolist() == ["小红书来源", "", ""]


BAD = """\
fields:
  会员积分: number
tags:
  - name: A
    path: [x, y]
    condition: agee > 3
  - name: B
    path: x
    condition: city > 5
  - name: C
    path: x
    condition: __import__("os").system("ls")
  - name: D
    path: [x]
    conditon: 会员积分 > 100
    condition: 会员积分 > 100
  - name: E
    path: [x]
    condition: 会员积分 >= 100 and (age > 3
  - name: B
    path: [x]
    condition: age > 3
    priority: high
  - name: F
    condition: age > 3
"""


def test_check_rules_reports_every_problem_with_line(tmp_path):
    p = write_rules(tmp_path, BAD)
    problems = check_rules(p)
    got = [(pr.line, pr.rule, pr.message) for pr in problems]
    assert got == [
        (6, "A", "unknown field 'agee'"),
        (9, "B", "cannot compare 'city' (text) with '5' (a number)"),
        (12, "C", "attribute access (x.y) is not allowed in a tag condition"),
        (15, "D", "unknown key 'conditon'"),
        (19, "E", "syntax error: a bracket is not closed"),
        (23, "B", "priority must be a whole number, not 'high'"),
        (24, "F", "no level-1 category"),
    ]
    assert "did you mean 'age'" in problems[0].hint
    # load_rules raises the first one, naming file, line and rule, and counts the rest
    with pytest.raises(RuleError) as exc:
        load_rules(p)
    assert str(exc.value) == "rules.yaml:6, rule 'A': unknown field 'agee' (and 6 more problem(s))"
    assert (exc.value.rule, exc.value.file, exc.value.line) == ("A", "rules.yaml", 6)


def test_duplicate_tag_names_across_files(tmp_path):
    a = write_rules(
        tmp_path, "tags:\n  - {name: 高价值, path: [x], condition: ltv > 1}\n", "a.yaml"
    )
    problems = check_rules([DEFAULT_RULES, a])
    assert len(problems) == 1
    assert problems[0].file == "a.yaml" and problems[0].line == 2
    assert problems[0].message.startswith("tag defined twice (first at tags.yaml:")


@pytest.mark.parametrize(
    "body",
    [
        'tags:\n  - !!python/object/apply:os.system ["echo pwned"]\n',
        "tags:\n  - name: x\n    condition: !!python/name:os.system\n",
        "!!python/object:collections.OrderedDict {}\n",
    ],
)
def test_yaml_python_tags_are_refused(tmp_path, body):
    p = write_rules(tmp_path, body)
    with pytest.raises(ConfigError, match="YAML tag refused") as exc:
        load_rules(p)
    assert "!!python/object" in exc.value.hint
    [problem] = check_rules(p)
    assert problem.message.startswith("YAML tag refused") and problem.line is not None


def test_not_yaml_and_missing_file(tmp_path):
    p = write_rules(tmp_path, "tags:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"rules.yaml:\d+: not valid YAML"):
        load_rules(p)
    with pytest.raises(ConfigError, match="not found"):
        load_rules(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- applying
def test_default_library_on_segmented_customers():
    res = tag_customers(segmented(), max_tags=10)
    out = res.customers
    tags = dict(zip(out["customer_id"], out["tags"], strict=True))
    # C1: 28岁女, 北京, 互联网产品经理, 4 orders/30d, aov 800, spend 120k, growth 50%, 钻石会员, 定制, NPS 10
    #     17 rules match; the cap of 10 keeps priorities 95…45 (近30天下单 and 咨询频次高 tie at 45:
    #     rule order) and drops 7
    assert tags["C00000001"] == [
        "高价值",
        "重要价值客户",
        "潜力客户",
        "核心会员",
        "高频消费",
        "推荐者",
        "定制需求",
        "复购客户",
        "近30天下单",
        "咨询频次高",
    ]
    assert res.dropped.tolist()[0] == 8  # 17 matches + 华北
    # C3: nothing known but gender → 女性 and no contact → 缺少联系方式
    assert tags["C00000003"] == ["缺少联系方式", "女性"]
    # C5: complaint, churn, no interaction for 200 days, 61岁, 深圳
    assert tags["C00000005"] == [
        "投诉客户",
        "流失风险",
        "流失预警",
        "贬损者",
        "待跟进",
        "缺少联系方式",
        "一线城市",
        "50岁以上",
        "华南",  # region tags (priority 18)
        "男性",
    ]
    assert out.loc[4, "tag_风险"] == "投诉客户;流失风险;流失预警;待跟进;缺少联系方式"
    assert out.loc[4, "tag_价值评估"] == "贬损者"
    # C4: growth exactly 30% is 潜力; 61 days without interaction is 流失风险
    assert "潜力客户" in tags["C00000004"] and "流失风险" in tags["C00000004"]
    # C6: ltv 9999 and spend 9000 are not 高价值
    assert "高价值" not in tags["C00000006"]
    assert res.skipped.empty
    # C2: 12 matches, 41-50岁 (20) and 男性 (15) dropped; 复购客户 before 待跟进 (both 50) by rule order
    assert tags["C00000002"] == [
        "流失风险",
        "流失预警",
        "贬损者",
        "沉睡客户",
        "复购客户",
        "待跟进",
        "客单价1000元以上",
        "价格敏感",
        "企业客户",
        "新一线城市",
    ]
    # region tags (priority 18) fall under the cap for C1, C2, C4 and C6 (华北/西南/华东/华东)
    assert res.dropped.tolist() == [8, 3, 0, 5, 0, 2]
    assert res.customers_capped == 4
    assert [c for c in out.columns if c.startswith("tag_")] == [
        "tag_基础属性",
        "tag_动态行为",
        "tag_需求特征",
        "tag_价值评估",
        "tag_风险",
    ]


def test_c1_full_match_list_without_cap():
    out = apply_tags(segmented(), max_tags=None)
    # ties by rule order: 一线城市 (25) before 中高层管理 (25); 25-30岁 (20) before 互联网行业 (20)
    assert out["tags"][0] == [
        "高价值",
        "重要价值客户",
        "潜力客户",
        "核心会员",
        "高频消费",
        "推荐者",
        "定制需求",
        "复购客户",
        "近30天下单",
        "咨询频次高",
        "客单价500-1000元",
        "近期有互动",
        "一线城市",
        "中高层管理",
        "25-30岁",
        "互联网行业",
        "华北",
        "女性",
    ]


def test_rules_with_absent_fields_are_skipped_with_warning():
    df = segmented().drop(
        columns=[
            "days_since_last_interaction",
            "interactions_30d",
            "complaints_365d",
            "member_level",
        ]
    )
    res = tag_customers(df)
    assert res.skipped["tag"].tolist() == [
        "咨询频次高",
        "近期有互动",
        "核心会员",
        "流失风险",
        "投诉客户",
    ]
    assert res.skipped["reason"].tolist()[0] == "no column interactions_30d in the table"
    assert res.applied == len(load_rules()) - 5
    assert res.warnings[0].startswith("tag '咨询频次高' (tags.yaml:")
    out = apply_tags(df)
    assert [s["tag"] for s in out.attrs["tags"]["skipped"]][:2] == ["咨询频次高", "近期有互动"]
    assert "tag_风险" in out.columns


def test_csv_round_trip_gives_the_same_tags(tmp_path):
    """CSV brings yes/no and some dates back as text; canonical columns are read in their kind."""
    df = segmented().assign(
        last_interaction=pd.to_datetime(
            ["2024-06-20", None, None, "2024-01-01", None, "2024-06-27"]
        )
    )
    p = write_table(df, tmp_path / "seg.csv")
    back = read_table(p)
    assert back["follow_up_flag"].dtype != bool  # read_table keeps True/False as text
    rules = load_rules() + load_rules(
        write_rules(
            tmp_path,
            "tags:\n  - {name: 近10天互动, path: [x], condition: days_since(last_interaction) <= 10}\n",
        )
    )
    assert apply_tags(back, rules)["tags"].tolist() == apply_tags(df, rules)["tags"].tolist()
    assert apply_tags(back, rules)["tag_x"].tolist() == ["近10天互动", "", "", "", "", "近10天互动"]


def test_type_error_at_apply_time_names_tag_file_line(tmp_path):
    p = write_rules(tmp_path, "tags:\n  - name: 高龄\n    path: [x]\n    condition: age > 60\n")
    df = pd.DataFrame({"age": ["六十一", "30"]})  # text where a number was expected
    with pytest.raises(RuleError) as exc:
        apply_tags(df, load_rules(p))
    assert (
        str(exc.value)
        == "rules.yaml:4, rule '高龄': cannot compare 'age' (text) with '60' (a number)"
    )


CAP_RULES = """\
fields: {x: number}
tags:
  - {name: a, path: [L1], condition: x >= 1, priority: 10}
  - {name: b, path: [L1], condition: x >= 2, priority: 30}
  - {name: c, path: [L2], condition: x >= 3, priority: 20}
  - {name: d, path: [L2], condition: x >= 4, priority: 30}
  - {name: e, path: [L2], condition: x >= 5, priority: 5}
"""


def test_cap_keeps_highest_priorities_ties_by_rule_order(tmp_path):
    rules = load_rules(write_rules(tmp_path, CAP_RULES))
    df = pd.DataFrame({"x": [5, 4, 2, 0]})
    res = tag_customers(df, rules, max_tags=2)
    # x=5 matches all five: priorities b30 d30 c20 a10 e5 → b, d (b before d: rule order)
    assert res.customers["tags"].tolist() == [["b", "d"], ["b", "d"], ["b", "a"], []]
    assert res.dropped.tolist() == [3, 2, 0, 0]
    assert (res.dropped_total, res.customers_capped) == (5, 2)
    assert res.customers["tag_L1"].tolist() == ["b", "b", "b;a", ""]
    assert res.customers["tag_L2"].tolist() == ["d", "d", "", ""]
    res3 = tag_customers(df, rules, max_tags=3)
    assert res3.customers["tags"].tolist()[0] == ["b", "d", "c"]


def test_a_cap_beyond_every_tag_caps_nothing_not_exit_3(tmp_path):
    # --max-tags 99999999999999999999 overflowed numpy's int (OverflowError, exit 3)
    rules = load_rules(write_rules(tmp_path, CAP_RULES))
    df = pd.DataFrame({"x": [5, 4, 2, 0]})
    res = tag_customers(df, rules, max_tags=10**20)
    assert res.customers["tags"].tolist() == tag_customers(df, rules).customers["tags"].tolist()
    assert res.dropped_total == 0
    src, out = tmp_path / "c.parquet", tmp_path / "t.parquet"
    df.to_parquet(src)
    rules_file = write_rules(tmp_path, CAP_RULES)
    r = CliRunner().invoke(
        app, ["tag", str(src), "-r", str(rules_file), "--max-tags", str(10**20), "-o", str(out)]
    )
    assert r.exit_code == 0, r.output


def test_manual_tags_from_column_add_and_remove(tmp_path):
    rules = load_rules(write_rules(tmp_path, CAP_RULES))
    df = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "x": [5, 1, 0],
            "manual_tags": ["VIP;-b", "a、重点客户,VIP", ""],
        }
    )
    res = tag_customers(df, rules, max_tags=2)
    # C1: b removed; VIP pinned and takes one slot, then d (30)
    # C2: a was already matched; manual re-add pins it; 重点客户 and VIP pinned too: 3 > cap, all kept
    assert res.customers["tags"].tolist() == [["VIP", "d"], ["VIP", "重点客户", "a"], []]
    assert res.customers[f"tag_{MANUAL_CATEGORY}"].tolist() == ["VIP", "VIP;重点客户", ""]
    assert res.customers["tag_L1"].tolist() == ["", "a", ""]


def test_manual_tags_from_file_with_op(tmp_path):
    rules = load_rules(write_rules(tmp_path, CAP_RULES))
    df = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "x": [5, 1, 0]})
    manual = pd.DataFrame(
        {
            "客户编号": ["C2", "C1", "C1", "C3", "C3", "C9"],
            "标签": ["展会;重点", "d", "b", "展会", "展会", "VIP"],
            "操作": ["添加", "remove", "删除", "add", "删除", "add"],
        }
    )
    res = tag_customers(df, rules, manual=manual, max_tags=10)
    # C3: add and remove of the same tag: the removal wins; C9 is not in the table
    assert res.customers["tags"].tolist() == [["c", "a", "e"], ["展会", "重点", "a"], []]
    assert res.manual_unmatched == 1
    assert "1 manual tag row(s) name customers not in the table" in res.warnings


def test_manual_file_bad_columns_and_ops(tmp_path):
    df = pd.DataFrame({"customer_id": ["C1"], "x": [1]})
    rules = load_rules(write_rules(tmp_path, CAP_RULES))
    with pytest.raises(Exception, match="needs a 'customer_id' column"):
        tag_customers(df, rules, manual=pd.DataFrame({"id": ["C1"], "tag": ["a"]}))
    with pytest.raises(Exception, match="unknown op"):
        tag_customers(
            df, rules, manual=pd.DataFrame({"customer_id": ["C1"], "tag": ["a"], "op": ["toggle"]})
        )


def test_input_is_not_modified():
    df = segmented()
    before = df.copy()
    out = apply_tags(df)
    out.loc[0, "orders_30d"] = 99
    pd.testing.assert_frame_equal(df, before)


def test_retagging_replaces_tag_columns():
    once = apply_tags(segmented())
    twice = apply_tags(once)
    pd.testing.assert_frame_equal(once, twice)


@settings(max_examples=examples(16), deadline=None)
@given(
    perm_seed=st.integers(0, 2**32 - 1),
    x=st.lists(st.integers(0, 6), min_size=1, max_size=12),
    ops=st.lists(
        st.tuples(st.integers(0, 11), st.sampled_from(["a", "b", "c", "z"]), st.booleans()),
        max_size=10,
    ),
)
def test_tags_independent_of_row_order(tmp_path_factory, perm_seed, x, ops):
    rules = load_rules(write_rules(tmp_path_factory.mktemp("r"), CAP_RULES))
    n = len(x)
    ids = [f"C{i}" for i in range(n)]
    df = pd.DataFrame(
        {
            "customer_id": ids,
            "x": x,
            "manual_tags": [("-a" if i % 3 == 0 else "") for i in range(n)],
        }
    )
    manual = pd.DataFrame(
        {
            "customer_id": [f"C{i % n}" for i, _, _ in ops],
            "tag": [t for _, t, _ in ops],
            "op": ["add" if a else "remove" for _, _, a in ops],
        }
    )
    base = tag_customers(df, rules, manual=manual, max_tags=2).customers.set_index("customer_id")
    rng = np.random.default_rng(perm_seed)
    shuffled = tag_customers(
        df.iloc[rng.permutation(n)],
        rules,
        manual=manual.iloc[rng.permutation(len(manual))],
        max_tags=2,
    ).customers.set_index("customer_id")
    pd.testing.assert_frame_equal(base, shuffled.loc[base.index])
    # manual additions that are not also removed are always kept; the rest fills up to the cap
    removed = {(f"C{i % n}", t) for i, t, a in ops if not a} | {
        (f"C{i}", "a") for i in range(0, n, 3)
    }
    pinned = {(f"C{i % n}", t) for i, t, a in ops if a} - removed
    for cid, tags in base["tags"].items():
        mine = {t for c, t in pinned if c == cid}
        assert mine <= set(tags)
        assert len(tags) <= max(2, len(mine))
        assert not {t for c, t in removed if c == cid} & set(tags)


# --------------------------------------------------------------------------- statistics
def test_statistics_on_known_example(tmp_path):
    rules = load_rules(write_rules(tmp_path, CAP_RULES))
    tagged = pd.DataFrame({"tags": [["b", "d"], ["b", "a"], ["b"], ["b", "VIP"], []]})
    st_ = tag_statistics(tagged, rules, broad_share=0.7, top=3)
    assert st_.customers == 5
    usage = st_.usage.set_index("tag")
    assert usage["customers"].to_dict() == {"b": 4, "VIP": 1, "a": 1, "d": 1, "c": 0, "e": 0}
    assert usage.loc["b", "share"] == pytest.approx(0.8)
    assert usage.loc["VIP", "source"] == "manual" and usage.loc["VIP", "level1"] == MANUAL_CATEGORY
    assert st_.unused["tag"].tolist() == ["c", "e"]
    assert st_.broad["tag"].tolist() == ["b"]
    # top 3 by customers, ties by name: b, VIP, a
    assert st_.cooccurrence.index.tolist() == ["b", "VIP", "a"]
    assert st_.cooccurrence.to_numpy().tolist() == [[4, 1, 1], [1, 1, 0], [1, 0, 1]]
    assert st_.per_customer["customers"].tolist() == [1, 1, 3]
    assert set(st_.sheets()) == {"标签使用", "未使用标签", "覆盖过广", "标签共现", "标签数分布"}
    # a rule that was not applied (its column absent) is not a pruning candidate
    st2 = tag_statistics(tagged, rules, skipped=["e"])
    assert st2.unused["tag"].tolist() == ["c"]
    assert st2.usage.set_index("tag").loc["e", "applied"] == False  # noqa: E712


def test_statistics_after_parquet_and_csv_round_trip(tmp_path):
    out = apply_tags(segmented())
    rules = load_rules()
    direct = tag_statistics(out, rules).usage
    for suffix in (".parquet", ".csv"):
        p = write_table(out, tmp_path / f"tagged{suffix}")
        back = read_table(p)
        if suffix == ".csv":
            assert back.loc[4, "tags"].startswith("投诉客户;流失风险;")
        pd.testing.assert_frame_equal(tag_statistics(back, rules).usage, direct)


# --------------------------------------------------------------------------- CLI
def test_cli_tag_json_equals_library_and_writes_stats(tmp_path):
    src = write_table(segmented(), tmp_path / "segmented.parquet")
    manual = tmp_path / "手工.csv"
    manual.write_text(
        "客户编号,标签,操作\nC00000003,展会客户,添加\nC00000001,女性,删除\n", encoding="utf-8-sig"
    )
    out, stats = tmp_path / "tagged.parquet", tmp_path / "stats.xlsx"
    r = runner.invoke(
        app,
        ["tag", str(src), "--manual", str(manual), "-o", str(out), "--stats", str(stats), "--json"],
    )
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    lib = tag_customers(segmented(), manual=read_table(manual))
    assert payload["tags_dropped"] == lib.dropped_total
    assert payload["customers"] == 6 and payload["rules"] == len(load_rules())
    got = read_table(out)
    assert [list(t) for t in got["tags"]] == lib.customers["tags"].tolist()
    assert list(got["tags"][2]) == ["展会客户", "缺少联系方式", "女性"]
    usage = {u["tag"]: u["customers"] for u in payload["usage"]}
    assert usage["缺少联系方式"] == 2 and usage["展会客户"] == 1
    from openpyxl import load_workbook

    wb = load_workbook(stats, read_only=True)
    assert wb.sheetnames == ["标签使用", "未使用标签", "覆盖过广", "标签共现", "标签数分布"]
    rows = list(wb["标签使用"].iter_rows(values_only=True))
    assert rows[0][:2] == ("tag", "level1")
    ci = rows[0].index("customers")
    assert {r[0]: r[ci] for r in rows[1:]}["缺少联系方式"] == 2


def test_cli_tag_human_output_and_csv(tmp_path):
    src = write_table(segmented().drop(columns=["complaints_365d"]), tmp_path / "seg.parquet")
    r = runner.invoke(app, ["tag", str(src), "-o", str(tmp_path / "t.csv"), "--max-tags", "3"])
    assert r.exit_code == 0, r.output
    assert "skipped: no column complaints_365d" in r.stderr
    assert "tag(s) dropped" in r.stderr and r.stdout == ""
    unused_line = next(line for line in r.stderr.splitlines() if line.startswith("未使用标签"))
    assert "投诉客户" not in unused_line  # skipped, not unused
    back = read_table(tmp_path / "t.csv")
    assert back.loc[0, "tags"] == "高价值;重要价值客户;潜力客户"


def test_cli_tag_bad_rules_and_missing_input_exit_2(tmp_path):
    src = write_table(segmented(), tmp_path / "seg.parquet")
    bad = write_rules(tmp_path, BAD)
    r = runner.invoke(
        app, ["tag", str(src), "--rules", str(bad), "-o", str(tmp_path / "o.parquet")]
    )
    assert r.exit_code == 2
    assert "Error: rules.yaml:6, rule 'A': unknown field 'agee'" in r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "o.parquet").exists()
    r = runner.invoke(
        app, ["tag", str(tmp_path / "nope.parquet"), "-o", str(tmp_path / "o.parquet")]
    )
    assert r.exit_code == 2 and "not found" in r.stderr


def test_cli_rules_check(tmp_path):
    r = runner.invoke(app, ["rules", "check", str(DEFAULT_RULES)])
    assert r.exit_code == 0, r.output
    assert "高价值" in r.stderr and "monetary_365d >= 100000" in r.stderr
    bad = write_rules(tmp_path, BAD)
    r = runner.invoke(app, ["rules", "check", str(bad)])
    assert r.exit_code == 2
    assert "7 problem(s)" in r.stderr and "rules.yaml:24: rule 'F': no level-1 category" in r.stderr
    r = runner.invoke(app, ["rules", "check", str(bad), "--json"])
    assert r.exit_code == 2
    payload = json.loads(r.stdout)
    assert payload["ok"] is False and [p["line"] for p in payload["problems"]] == [
        6,
        9,
        12,
        15,
        19,
        23,
        24,
    ]
    r = runner.invoke(app, ["rules", "check", str(DEFAULT_RULES), "--json"])
    payload = json.loads(r.stdout)
    assert payload["ok"] is True and len(payload["tags"]) == len(load_rules())


# --------------------------------------------------------------------------- examples/
def test_default_rules_apply_to_examples(example_data):
    customers = example_data.frame("customers")  # examples/ imported (conftest)
    res = tag_customers(customers)
    assert len(res.customers) == len(customers)
    assert res.customers["tags"].map(len).sum() > 0
    # no segment metrics on imported customers: those rules are skipped, listed
    assert "高频消费" in set(res.skipped["tag"])
    # segmented, only the rules on columns examples/ does not have are skipped, and tags
    # do not depend on the order of the rows
    seg = example_data.frame("segmented")
    res = tag_customers(seg)
    assert set(res.skipped["reason"]) == {
        "no column position in the table",
        "no column customer_type in the table",
        "no column company_size in the table",
        "no column preferred_contact in the table",
    }
    assert res.customers["tags"].map(len).between(1, 10).all()
    backwards = tag_customers(seg.iloc[::-1]).customers.set_index("customer_id")["tags"]
    assert backwards.loc[res.customers["customer_id"]].tolist() == res.customers["tags"].tolist()
