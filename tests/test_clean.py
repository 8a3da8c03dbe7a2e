"""custtool.clean.dedupe and `custtool clean`: linking, survivorship, lineage, stable ids, report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custtool.clean import FillRule, dedupe, load_clean_rules, rules_from_dict
from custtool.cli import app
from custtool.errors import ConfigError, InputError
from tests.conftest import examples

T = pd.Timestamp
TEXT = [
    "customer_id",
    "name",
    "phone",
    "email",
    "city",
    "region",
    "industry",
    "owner",
    "needs",
    "notes",
]


def customers(*rows: dict) -> pd.DataFrame:
    """An imported customers table (docs/DATA.md shape): "" for missing text, NaT for dates."""
    out = []
    for i, r in enumerate(rows):
        base = {c: "" for c in TEXT}
        base.update(
            first_contact_date=pd.NaT,
            _source_file="客户.xlsx",
            _sheet="Sheet1",
            _row=i + 2,
            _channel="电商",
            _flags="",
        )
        base.update(r)
        out.append(base)
    cols = [*TEXT, "first_contact_date", "_source_file", "_sheet", "_row", "_channel", "_flags"]
    df = pd.DataFrame(out, columns=list(dict.fromkeys([*cols, *(k for r in out for k in r)])))
    df["first_contact_date"] = pd.to_datetime(df["first_contact_date"])
    df["_row"] = df["_row"].astype("int64")
    return df


def ids_by_row(lineage: pd.DataFrame) -> dict[tuple[str, int], str]:
    return {
        (f, int(r)): c
        for f, r, c in zip(
            lineage["_source_file"], lineage["_row"], lineage["customer_id"], strict=True
        )
    }


# --------------------------------------------------------------------------- linking
def test_transitive_linking_phone_then_email():
    df = customers(
        dict(name="张伟", phone="13812345678", _channel="电商", customer_id="E1"),
        dict(
            name="张伟", phone="13812345678", email="zw@163.com", _channel="门店", customer_id="M7"
        ),
        dict(name="张 伟", email="zw@163.com", _channel="公众号"),
        dict(name="李娜", phone="13900001111", _channel="电商", customer_id="E2"),
    )
    cust, lin, rep = dedupe(df)
    assert len(cust) == 2
    assert lin["customer_id"].tolist() == ["C00000001", "C00000001", "C00000001", "C00000002"]
    assert lin["match_key"].tolist() == ["phone", "phone;email", "email", ""]
    zw = cust.iloc[0]
    assert zw["channels"] == "电商;门店;公众号"
    assert zw["source_ids"] == "电商:E1;门店:M7"
    assert zw["phones"] == "13812345678" and zw["emails"] == "zw@163.com"
    assert (rep.rows_in, rep.exact_duplicates, rep.merged_rows, rep.customers_out) == (4, 0, 2, 2)
    by_key = dict(
        zip(rep.merges_by_key["merge_key"], rep.merges_by_key["linked_rows"], strict=True)
    )
    assert by_key == {"phone": 2, "email": 2, "customer_id": 0}


def test_strangers_with_same_name_and_city_stay_apart():
    df = customers(
        dict(name="王芳", city="北京市", phone="13811112222"),
        dict(name="王芳", city="北京市", phone="13933334444", email="wf@qq.com"),
        dict(name="王芳", city="北京市", email="wangfang@126.com"),
    )
    cust, lin, rep = dedupe(df)
    assert len(cust) == 3
    assert lin["customer_id"].nunique() == 3
    assert rep.merged_rows == 0 and rep.conflicts == 0


def test_source_id_links_only_within_its_channel():
    df = customers(
        dict(name="甲", customer_id="1001", _channel="电商", phone="13800000001"),
        dict(name="乙", customer_id="1001", _channel="门店", phone="13800000002"),
        dict(name="甲", customer_id="1001", _channel="电商", email="jia@qq.com"),
    )
    cust, lin, _ = dedupe(df)
    assert len(cust) == 2
    assert lin["customer_id"].tolist() == ["C00000001", "C00000002", "C00000001"]
    assert lin["match_key"].tolist() == ["customer_id", "", "customer_id"]
    assert cust.iloc[0]["source_ids"] == "电商:1001"
    assert cust.iloc[0]["phones"] == "13800000001" and cust.iloc[0]["emails"] == "jia@qq.com"


def test_keys_option_limits_linking():
    df = customers(
        dict(name="张三", phone="13800000001", email="a@x.cn"),
        dict(name="张三", phone="13800000002", email="a@x.cn"),
    )
    assert len(dedupe(df)[0]) == 1
    cust, _, rep = dedupe(df, keys="phone")
    assert len(cust) == 2 and rep.keys == ["phone"]


def test_exact_duplicates_collapse_and_accounting():
    row = dict(
        name="赵六",
        phone="13700001234",
        city="上海市",
        owner="小王",
        needs="续费",
        first_contact_date="2024-03-01",
    )
    df = customers(
        row,
        {**row, "_row": 9},
        {**row, "_row": 10, "_channel": "门店"},
        dict(name="孙七", email="s7@qq.com"),
    )
    cust, lin, rep = dedupe(df)
    assert rep.exact_duplicates == 2
    assert rep.merged_rows == 0
    assert rep.customers_out == 2
    assert rep.rows_in == rep.exact_duplicates + rep.merged_rows + rep.customers_out
    assert lin["exact_duplicate"].tolist() == [False, True, True, False]
    assert lin["match_key"].tolist() == ["", "exact", "exact", ""]
    # the duplicate from another channel still counts as a channel of the person
    assert cust.iloc[0]["channels"] == "电商;门店"


def test_person_with_two_phones():
    df = customers(
        dict(name="陈晨", phone="13811110000", email="cc@163.com", first_contact_date="2023-05-01"),
        dict(
            name="陈晨",
            phone="13922220000",
            email="cc@163.com",
            first_contact_date="2024-02-01",
            _channel="门店",
        ),
    )
    cust, _, rep = dedupe(df)
    assert len(cust) == 1
    c = cust.iloc[0]
    assert c["phones"] == "13811110000;13922220000"
    assert c["phone"] == "13922220000"  # newest record's phone
    assert c["first_contact_date"] == T(
        "2023-05-01"
    )  # the earliest contact stays the first contact
    assert rep.conflicts == 0  # two phones are not a conflict: both are kept


# --------------------------------------------------------------------------- survivorship
def _three_channels() -> pd.DataFrame:
    return customers(
        dict(
            name="周杰",
            phone="13600006666",
            city="杭州市",
            owner="",
            company="甲公司",
            _channel="门店",
            first_contact_date="2024-01-10",
        ),
        dict(
            name="周杰",
            phone="13600006666",
            city="宁波市",
            owner="李经理",
            company="",
            _channel="电商",
            first_contact_date="2024-03-15",
        ),
        dict(
            name="周杰",
            phone="13600006666",
            city="温州市",
            owner="",
            company="乙公司",
            _channel="公众号",
            first_contact_date="2024-02-20",
        ),
    )


def test_survivorship_newest_non_empty_wins():
    df = _three_channels()
    before = df.copy()
    cust, _, _ = dedupe(df)
    pd.testing.assert_frame_equal(df, before)  # the input is not changed
    c = cust.iloc[0]
    assert c["city"] == "宁波市"  # 2024-03-15 is the newest
    assert c["owner"] == "李经理"
    assert c["company"] == "乙公司"  # newest record has no company: next newest (2024-02-20) wins
    assert c["first_contact_date"] == T("2024-01-10")


def test_survivorship_by_channel_priority():
    cust, _, _ = dedupe(
        _three_channels(), survivorship="channel", channel_priority="门店,电商,公众号"
    )
    c = cust.iloc[0]
    assert c["city"] == "杭州市"
    assert c["owner"] == "李经理"  # 门店 has none: 电商 is next
    assert c["company"] == "甲公司"
    cust2, _, _ = dedupe(_three_channels(), survivorship="channel", channel_priority=["公众号"])
    assert cust2.iloc[0]["city"] == "温州市"
    assert cust2.iloc[0]["company"] == "乙公司"
    assert cust2.iloc[0]["owner"] == "李经理"  # unlisted channels come after, newest first


def test_real_names_and_known_gender_win_over_placeholders():
    df = customers(
        dict(name="韩欣思", phone="13500000009", first_contact_date="2024-01-01"),
        dict(
            name="韩老师",
            phone="13500000009",
            first_contact_date="2024-06-01",
            _flags="name_honorific",
        ),
    )
    df["gender"] = ["男", "未知"]
    cust, _, rep = dedupe(df)
    assert cust.iloc[0]["name"] == "韩欣思"  # the newer row only has an honorific
    assert cust.iloc[0]["gender"] == "男"  # 未知 is no value
    assert rep.conflict_table["conflict_field"].tolist() == ["name"]  # 男 vs 未知 is no conflict
    unknown = customers(
        dict(name="甲", phone="13500000008"), dict(name="甲", phone="13500000008", email="j@x.cn")
    )
    unknown["gender"] = ["未知", "未知"]
    assert dedupe(unknown)[0].iloc[0]["gender"] == "未知"


def test_newest_ties_broken_by_import_order():
    df = customers(
        dict(name="吴", phone="13500000001", city="北京市"),
        dict(name="吴", phone="13500000001", city="天津市"),
    )
    assert dedupe(df)[0].iloc[0]["city"] == "天津市"


def test_conflicts_are_listed():
    cust, _, rep = dedupe(_three_channels())
    t = rep.conflict_table
    assert rep.conflicts == 2
    assert t["conflict_field"].tolist() == ["city", "company"]
    city = t[t["conflict_field"] == "city"].iloc[0]
    assert city["customer_id"] == "C00000001" and city["name"] == "周杰"
    assert city["kept_value"] == "宁波市"
    assert city["all_values"] == "宁波市;温州市;杭州市"  # in priority order
    assert city["n_values"] == 3


def test_channel_survivorship_needs_priority():
    # the shipped rules/clean.yaml gives a priority (门店, 电商, 公众号); an empty one is an error
    with pytest.raises(ConfigError):
        dedupe(_three_channels(), survivorship="channel", channel_priority=[])
    with pytest.raises(ConfigError):
        dedupe(_three_channels(), survivorship="oldest")
    with pytest.raises(ConfigError):
        dedupe(_three_channels(), keys=["phone", "name"])


# --------------------------------------------------------------------------- hubs
def test_hub_phone_is_not_a_merge_key():
    store = "021-62345678"
    df = customers(
        dict(name="张一", phone=store, email="z1@qq.com"),
        dict(name="张二", phone=store),
        dict(name="张三", phone=store),
        dict(name="张四", phone=store),
        dict(name="张一", email="z1@qq.com", _channel="门店"),
    )
    cust, lin, rep = dedupe(df)  # default: more than 3 names → hub
    assert len(cust) == 4  # 张一's two rows still merge by email
    assert rep.hub_rows == 4
    assert rep.review["key_value"].unique().tolist() == [store]
    assert rep.review["n_names"].tolist() == [4, 4, 4, 4]
    assert sorted(rep.review["name"]) == ["张一", "张三", "张二", "张四"]
    assert lin["customer_id"].tolist() == [
        "C00000001",
        "C00000002",
        "C00000003",
        "C00000004",
        "C00000001",
    ]
    merged, _, rep5 = dedupe(df, hub_max_names=5)
    assert len(merged) == 1 and rep5.hub_rows == 0


def test_parents_phone_with_few_names_still_links():
    df = customers(
        dict(name="林妈妈", phone="13300000000"), dict(name="林小宝", phone="13300000000")
    )
    assert len(dedupe(df)[0]) == 1


# --------------------------------------------------------------------------- 待跟进, fill rules
def test_missing_key_fields_are_flagged_not_filled():
    df = customers(
        dict(name="甲", phone="13800000001", owner="王", needs="报价"),
        dict(name="乙", email="b@x.cn", owner="", needs="报价"),
        dict(name="丙", customer_id="X9", owner="", needs=""),
    )
    cust, _, rep = dedupe(df)
    assert cust["follow_up_flag"].tolist() == [False, True, True]
    assert cust["missing_fields"].tolist() == ["", "owner", "phone/email;needs;owner"]
    assert cust["owner"].tolist() == ["王", "", ""]
    assert rep.flagged == 2
    assert rep.followup["customer_id"].tolist() == ["C00000002", "C00000003"]


def test_explicit_fill_rules_are_recorded():
    df = customers(
        dict(name="乙", email="b@x.cn", owner="", company=""),
        dict(name="丙", email="c@x.cn", owner="赵"),
    )
    rules = dataclasses.replace(
        load_clean_rules(),
        fill=(FillRule("owner", value="公海"), FillRule("company", source="name")),
    )
    cust, _, _ = dedupe(df, rules=rules)
    assert cust["owner"].tolist() == ["公海", "赵"]
    assert cust["company"].tolist() == ["乙", "丙"]
    assert cust["follow_up_flag"].tolist() == [
        True,
        True,
    ]  # flagged before filling (needs is empty too)
    assert cust["missing_fields"].tolist() == ["needs;owner", "needs"]
    assert cust["_flags"].tolist() == ["filled:owner;filled:company", "filled:company"]


def test_fill_rules_from_yaml():
    r = rules_from_dict(
        {"fill": [{"field": "owner", "value": "公海"}, {"field": "company", "from": "name"}]}
    )
    assert r.fill == (FillRule("owner", value="公海"), FillRule("company", source="name"))


def test_typed_and_extra_columns_survive():
    df = customers(
        dict(name="郑", phone="13800000001", 微信号="wx_old", first_contact_date="2024-01-01"),
        dict(name="郑", phone="13800000001", 微信号="", first_contact_date="2024-05-01"),
        dict(name="冯", phone="13800000002", 微信号="wx_f"),
    )
    df["age"] = pd.array([30, None, 41], dtype="Int64")
    df["birth_date"] = pd.to_datetime(["1994-02-03", None, None])
    cust, _, rep = dedupe(df)
    assert cust["微信号"].tolist() == ["wx_old", "wx_f"]  # unknown columns kept; newest is empty
    assert cust["age"].dtype == "Int64" and cust["age"].tolist() == [30, 41]
    assert str(cust["birth_date"].dtype).startswith("datetime64")
    assert cust["birth_date"].iloc[0] == T("1994-02-03") and pd.isna(cust["birth_date"].iloc[1])
    assert rep.conflicts == 0


def test_flags_are_united_per_customer():
    df = customers(
        dict(name="张先生", phone="13800000001", _flags="name_honorific"),
        dict(
            name="张先生",
            phone="13800000001",
            email="z@x.cn",
            _flags="date_invalid:birth_date;name_honorific",
        ),
    )
    assert dedupe(df)[0].iloc[0]["_flags"] == "name_honorific;date_invalid:birth_date"


# --------------------------------------------------------------------------- stable ids
def _may() -> pd.DataFrame:
    return customers(
        dict(
            name="张伟",
            phone="13812345678",
            _channel="电商",
            customer_id="E1",
            _source_file="2024-05.xlsx",
        ),
        dict(
            name="李娜",
            email="lina@qq.com",
            _channel="门店",
            customer_id="M1",
            _source_file="2024-05.xlsx",
        ),
        dict(name="王芳", phone="13700000003", _channel="公众号", _source_file="2024-05.xlsx"),
        dict(
            name="张伟",
            email="zw@163.com",
            phone="13812345678",
            _channel="门店",
            _source_file="2024-05.xlsx",
        ),
    )


def test_ids_identical_on_rerun_and_independent_of_input_order():
    df = _may()
    a, la, _ = dedupe(df)
    b, lb, _ = dedupe(df)
    shuffled = df.sample(frac=1, random_state=3)
    c, lc, _ = dedupe(shuffled)
    assert a["customer_id"].tolist() == ["C00000001", "C00000002", "C00000003"]
    pd.testing.assert_frame_equal(a, b)
    assert ids_by_row(la) == ids_by_row(lb) == ids_by_row(lc)


def test_ids_carried_over_to_next_month():
    may, _, _ = dedupe(_may())
    june = customers(
        # new person first in the file: must not take a returning person's id
        dict(
            name="赵敏",
            phone="13600000009",
            _channel="电商",
            customer_id="E9",
            _source_file="2024-06.xlsx",
        ),
        # returning: 张伟 now only by his email (his phone is not in June's file)
        dict(name="张伟", email="zw@163.com", _channel="公众号", _source_file="2024-06.xlsx"),
        # returning: 李娜 by her store member id
        dict(
            name="李娜",
            customer_id="M1",
            _channel="门店",
            phone="13900000002",
            _source_file="2024-06.xlsx",
        ),
        dict(name="钱多", email="qd@126.com", _channel="门店", _source_file="2024-06.xlsx"),
    )
    cust, lin, rep = dedupe(june, previous=may)
    assert dict(zip(cust["name"], cust["customer_id"], strict=True)) == {
        "赵敏": "C00000004",
        "张伟": "C00000001",
        "李娜": "C00000002",
        "钱多": "C00000005",
    }
    assert (rep.ids_kept, rep.ids_new) == (2, 2)
    # and a re-run of June with the same previous file gives the same ids
    again, _, _ = dedupe(june, previous=may)
    assert again["customer_id"].tolist() == cust["customer_id"].tolist()
    # July builds on June: the numbering continues after the highest id seen
    july = customers(dict(name="孙悟", phone="13100000000", _source_file="2024-07.xlsx"),
                     dict(name="赵敏", phone="13600000009", _source_file="2024-07.xlsx"))  # fmt: skip
    jul, _, _ = dedupe(july, previous=cust)
    assert jul["customer_id"].tolist() == ["C00000006", "C00000004"]


def test_previous_ids_merged_are_reported():
    prev = pd.DataFrame(
        {
            "customer_id": ["C00000007", "C00000003"],
            "phones": ["13800000001", "13800000002"],
            "emails": ["", ""],
            "source_ids": ["", ""],
        }
    )
    now = customers(
        dict(name="甲", phone="13800000001", email="j@x.cn"),
        dict(name="甲", phone="13800000002", email="j@x.cn"),
    )
    cust, _, rep = dedupe(now, previous=prev)
    assert cust["customer_id"].tolist() == ["C00000007"]  # the earlier previous customer wins
    assert rep.id_changes["id_change"].tolist() == ["merged previous ids"]
    assert rep.id_changes["previous_ids"].tolist() == ["C00000007;C00000003"]


def test_previous_id_split_goes_to_the_first_appearance():
    prev = pd.DataFrame(
        {
            "customer_id": ["C00000005"],
            "phones": ["13800000001"],
            "emails": ["j@x.cn"],
            "source_ids": [""],
        }
    )
    now = customers(dict(name="甲", phone="13800000001"), dict(name="乙", email="j@x.cn"))
    cust, _, rep = dedupe(now, previous=prev)
    assert cust["customer_id"].tolist() == ["C00000005", "C00000006"]
    assert rep.id_changes.to_dict("list") == {
        "customer_id": ["C00000005", "C00000006"],
        "id_change": ["previous id split", "previous id split"],
        "previous_ids": ["C00000005", "C00000005"],
    }


def test_previous_without_ids_is_an_input_error():
    with pytest.raises(InputError):
        dedupe(
            _may(),
            previous=pd.DataFrame({"customer_id": ["C1", "C1"], "phones": ["13812345678", ""]}),
        )


def test_id_format_from_fields_and_code_tables():
    rules = load_clean_rules()
    df = customers(
        dict(
            name="甲",
            phone="13800000001",
            region="华北",
            industry="互联网",
            first_contact_date="2024-03-01",
        ),
        dict(
            name="乙",
            phone="13800000002",
            region="华北",
            industry="IT",
            first_contact_date="2024-07-01",
        ),
        dict(
            name="丙",
            phone="13800000003",
            region="华东",
            industry="制造业",
            first_contact_date="2023-01-01",
        ),
        dict(name="丁", phone="13800000004", region="", industry="养殖", first_contact_date=None),
    )
    fmt = "{region_code}-{industry_code}-{year}-{seq:03d}"
    cust, _, _ = dedupe(df, id_format=fmt, rules=rules)
    assert cust["customer_id"].tolist() == [
        "HB-IT-2024-001",
        "HB-IT-2024-002",
        "HD-MF-2023-001",
        "XX-OT-0000-001",
    ]
    nxt = customers(
        dict(
            name="乙",
            phone="13800000002",
            region="华北",
            industry="IT",
            first_contact_date="2024-07-01",
        ),
        dict(
            name="戊",
            phone="13800000005",
            region="华北",
            industry="软件",
            first_contact_date="2024-09-09",
        ),
    )
    cust2, _, _ = dedupe(nxt, id_format=fmt, rules=rules, previous=cust)
    assert cust2["customer_id"].tolist() == ["HB-IT-2024-002", "HB-IT-2024-003"]
    ym, _, _ = dedupe(df.iloc[:2], id_format="C{year}{month}{seq:03d}")
    assert ym["customer_id"].tolist() == ["C202403001", "C202407001"]


def test_bad_id_formats():
    with pytest.raises(ConfigError, match="seq"):
        dedupe(_may(), id_format="C{year}")
    with pytest.raises(ConfigError, match="unknown field"):
        dedupe(_may(), id_format="{shoe_size}-{seq}")
    with pytest.raises(ConfigError):
        dedupe(_may(), id_format="C{seq")
    # a spec the number cannot take was a ValueError from format() and exit 3
    for fmt in ("C{seq:zz}", "C{seq:08s}", "{seq}-{city:d}"):
        with pytest.raises(ConfigError, match="is not a valid format"):
            dedupe(_may(), id_format=fmt)


def test_bad_id_format_on_the_command_line_is_exit_2(tmp_path):
    src = tmp_path / "customers.parquet"
    _may().to_parquet(src)
    out = tmp_path / "clean.parquet"
    r = CliRunner().invoke(app, ["clean", str(src), "-o", str(out), "--id-format", "C{seq:zz}"])
    assert r.exit_code == 2, r.output
    assert "{seq:zz} is not a valid format" in r.output and "Internal error" not in r.output
    assert not out.exists()


# --------------------------------------------------------------------------- fuzzy names
def test_fuzzy_names_are_proposed_not_merged():
    df = customers(
        dict(name="欧阳娜娜", phone="13812340001", city="北京市"),
        dict(name="欧阳娜娜", phone="13812340099", city="北京市"),
        dict(name="欧阳娜", phone="13812340055", city="北京市"),
        dict(name="刘洋", email="ly@corp.cn"),
        dict(name="刘洋洋", email="liuyy@corp.cn"),
        dict(name="欧阳娜娜", phone="13812340077", city="上海市"),  # other city: other block
    )
    cust, _, rep = dedupe(df, fuzzy_names=True)
    assert len(cust) == 6  # nothing merged
    f = rep.fuzzy
    pairs = set(zip(f["customer_id_a"], f["customer_id_b"], f["similarity"], strict=True))
    # ratio(欧阳娜娜, 欧阳娜娜)=100; ratio(欧阳娜娜, 欧阳娜)=2*3/7=85.7; ratio(刘洋, 刘洋洋)=80 < 85
    assert pairs == {
        ("C00000001", "C00000002", 100.0),
        ("C00000001", "C00000003", 85.7),
        ("C00000002", "C00000003", 85.7),
    }
    assert rep.fuzzy_matches == 3
    assert dedupe(df)[2].fuzzy.empty


# --------------------------------------------------------------------------- lineage property
@st.composite
def duplicate_structures(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    phones = ["", "13800000001", "13800000002", "13800000003", "021-62345678"]
    emails = ["", "a@x.cn", "b@x.cn", "c@x.cn"]
    chans = ["电商", "门店", "公众号"]
    ids = ["", "1", "2"]
    names = ["张伟", "王芳", "李娜", ""]
    rows = []
    for i in range(n):
        if (
            rows and draw(st.booleans()) and draw(st.booleans())
        ):  # an exact duplicate of an earlier row
            src = dict(rows[draw(st.integers(0, len(rows) - 1))])
            src["_row"] = i + 2
            src["_source_file"] = draw(st.sampled_from(["a.csv", "b.xlsx"]))
            rows.append(src)
            continue
        phone = draw(st.sampled_from(phones))
        # import rejects a customer without a phone or an email: every row has one of them
        email = draw(st.sampled_from(emails if phone else emails[1:]))
        rows.append(
            dict(
                name=draw(st.sampled_from(names)),
                phone=phone,
                email=email,
                customer_id=draw(st.sampled_from(ids)),
                _channel=draw(st.sampled_from(chans)),
                _source_file=draw(st.sampled_from(["a.csv", "b.xlsx"])),
                _row=i + 2,
                first_contact_date=draw(st.sampled_from([None, "2024-01-01", "2024-06-01"])),
            )
        )
    return customers(*rows)


def _reference_components(df: pd.DataFrame) -> list[int]:
    """Naive union-find over rows sharing phone, email, channel+id or all content (test oracle only)."""
    parent = list(range(len(df)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen: dict[str, int] = {}
    content = [c for c in df.columns if not c.startswith("_")]
    whole = ["|".join(map(str, row)) for row in df[content].to_numpy().tolist()]
    for i, (p, e, c, ch, w) in enumerate(
        zip(df["phone"], df["email"], df["customer_id"], df["_channel"], whole, strict=True)
    ):
        for key in (p and "p" + p, e and "e" + e, c and f"i{ch}:{c}", "w" + w):
            if key:
                if key in seen:
                    parent[find(i)] = find(seen[key])
                else:
                    seen[key] = i
    return [find(i) for i in range(len(df))]


@pytest.mark.slow
@settings(max_examples=examples(14), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(duplicate_structures())
def test_lineage_covers_every_row_once(df):
    cust, lin, rep = dedupe(df, hub_max_names=10)
    # every input row exactly once, in input order
    assert len(lin) == len(df)
    assert list(zip(lin["_source_file"], lin["_row"], strict=True)) == list(
        zip(df["_source_file"], df["_row"], strict=True)
    )
    assert not lin.duplicated(["_source_file", "_sheet", "_row"]).any()
    # every lineage id is an output customer and every customer has rows
    assert set(lin["customer_id"]) == set(cust["customer_id"])
    assert cust["customer_id"].is_unique
    assert rep.rows_in == len(df) == rep.exact_duplicates + rep.merged_rows + rep.customers_out
    # ids depend on the people, not on the order of the rows, and survive a re-run on --previous
    by_row = ids_by_row(lin)
    assert ids_by_row(dedupe(df.iloc[::-1], hub_max_names=10)[1]) == by_row
    assert ids_by_row(dedupe(df, hub_max_names=10, previous=cust)[1]) == by_row
    # the grouping is exactly the transitive closure over the keys
    ref = _reference_components(df)
    ours = lin["customer_id"].tolist()
    for i in range(len(df)):
        for j in range(i + 1, len(df)):
            assert (ref[i] == ref[j]) == (ours[i] == ours[j])


def test_empty_input():
    df = customers(dict(name="x", phone="13800000000")).iloc[:0]
    cust, lin, rep = dedupe(df)
    assert len(cust) == 0 and len(lin) == 0
    assert rep.counts()["customers_out"] == 0


def test_missing_provenance_is_an_input_error():
    with pytest.raises(InputError, match="_source_file"):
        dedupe(pd.DataFrame({"phone": ["13800000000"]}))
    with pytest.raises(InputError, match="none of the keys"):
        dedupe(customers(dict(name="x")).drop(columns=["phone", "email", "customer_id"]))


# --------------------------------------------------------------------------- rules file
def test_shipped_rules_match_defaults():
    r = load_clean_rules()
    assert r.keys == ("phone", "email", "customer_id")
    assert r.hub_max_names == 3
    assert r.id_format == "C{seq:08d}"
    assert r.channel_priority == ("门店", "电商", "公众号")
    assert r.codes["region"]["华北"] == "HB"
    assert r.required == (("phone", "email"), ("needs",), ("owner",))


def test_bad_rules_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="keyz: unknown key"):
        rules_from_dict({"keyz": ["phone"]})
    with pytest.raises(ConfigError, match=r"fill\[0\]: a fill rule needs exactly one of value"):
        rules_from_dict({"fill": [{"field": "owner"}]})
    bad = tmp_path / "clean.yaml"
    bad.write_text("keys: [phone\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_clean_rules(bad)


# --------------------------------------------------------------------------- report + CLI
def test_report_sheets_read_back(tmp_path):
    from custtool.io import write_xlsx_sheets

    _, _, rep = dedupe(_three_channels())
    path = tmp_path / "r.xlsx"
    write_xlsx_sheets(rep.sheets(), path)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == [
        "汇总",
        "按键合并",
        "字段冲突",
        "共用号码待审核",
        "疑似重复",
        "合并示例",
        "待跟进",
        "编号变更",
    ]
    summary = {r[0]: r[2] for r in wb["汇总"].iter_rows(min_row=2, values_only=True)}
    assert summary["rows_in"] == 3 and summary["customers_out"] == 1 and summary["conflicts"] == 2
    conflicts = list(wb["字段冲突"].iter_rows(values_only=True))
    assert conflicts[0] == ("客户编号", "姓名", "冲突字段", "保留值", "全部取值", "取值个数")
    assert conflicts[1] == ("C00000001", "周杰", "city", "宁波市", "宁波市;温州市;杭州市", 3)
    examples = list(wb["合并示例"].iter_rows(values_only=True))
    assert [r[1] for r in examples[1:]] == ["合并前", "合并前", "合并前", "合并后"]
    assert examples[-1][6] == "周杰" and examples[-1][5] == "门店;电商;公众号"


runner = CliRunner()


def test_cli_clean_json_matches_library(tmp_path):
    src = tmp_path / "customers.parquet"
    _three_channels().to_parquet(src)
    out = tmp_path / "out" / "clean.csv"
    rep_path = tmp_path / "out" / "report.xlsx"
    res = runner.invoke(
        app, ["clean", str(src), "-o", str(out), "--report", str(rep_path), "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    _, _, rep = dedupe(_three_channels())
    for k in (
        "rows_in",
        "exact_duplicates",
        "customers_out",
        "merged_rows",
        "conflicts",
        "flagged",
    ):
        assert payload[k] == rep.counts()[k]
    assert payload["customers_out"] == 1 and payload["merged_rows"] == 2
    assert payload["output"] == str(out) and payload["report"] == str(rep_path)
    assert payload["lineage"] == str(tmp_path / "out" / "clean_lineage.csv")
    lineage = pd.read_csv(payload["lineage"], dtype=str, keep_default_na=False)
    assert lineage["customer_id"].tolist() == ["C00000001"] * 3
    assert openpyxl.load_workbook(rep_path).sheetnames[0] == "汇总"


def test_cli_previous_keeps_ids(tmp_path):
    may = tmp_path / "may.parquet"
    _may().to_parquet(may)
    assert (
        runner.invoke(
            app, ["clean", str(may), "-o", str(tmp_path / "may_clean.csv"), "-q"]
        ).exit_code
        == 0
    )
    june = tmp_path / "june.parquet"
    customers(
        dict(name="新人", phone="13000000000", _source_file="06.xlsx"),
        dict(name="王芳", phone="13700000003", _source_file="06.xlsx"),
    ).to_parquet(june)
    res = runner.invoke(
        app,
        [
            "clean",
            str(june),
            "-o",
            str(tmp_path / "june.parquet.out.parquet"),
            "--previous",
            str(tmp_path / "may_clean.csv"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(tmp_path / "june.parquet.out.parquet")
    assert got["customer_id"].tolist() == ["C00000004", "C00000003"]
    assert json.loads(res.stdout)["ids_kept"] == 1


def test_cli_human_summary_and_errors(tmp_path):
    src = tmp_path / "c.parquet"
    _three_channels().to_parquet(src)
    res = runner.invoke(app, ["clean", str(src)])
    assert res.exit_code == 0
    assert "输出客户数" in res.stderr and res.stdout == ""
    assert (tmp_path / "c_clean.parquet").exists() and (
        tmp_path / "c_clean_lineage.parquet"
    ).exists()
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"phone": ["13800000000"]}).to_parquet(bad)
    res = runner.invoke(app, ["clean", str(bad), "-o", str(tmp_path / "x.parquet")])
    assert res.exit_code == 2 and "provenance" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "x.parquet").exists()
    res = runner.invoke(app, ["clean", str(src), "--survivorship", "oldest"])
    assert res.exit_code == 2 and "unknown survivorship" in res.stderr
    # the shipped rules give a channel priority (门店 first)
    res = runner.invoke(
        app,
        ["clean", str(src), "-o", str(tmp_path / "ch.parquet"), "--survivorship", "channel", "-q"],
    )
    assert res.exit_code == 0 and res.stderr == ""
    assert pd.read_parquet(tmp_path / "ch.parquet")["city"].tolist() == ["杭州市"]
    res = runner.invoke(app, ["clean", str(src), "-o", str(src)])
    assert res.exit_code == 2 and "never overwrites" in res.stderr
    res = runner.invoke(app, ["clean", str(tmp_path / "missing.parquet")])
    assert res.exit_code == 2


def test_cli_bad_files_exit_2_nothing_written(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip")
    for name in ["empty.csv", "broken.xlsx", "missing.parquet"]:
        out = tmp_path / f"{name}.clean.parquet"
        res = runner.invoke(
            app,
            ["clean", str(tmp_path / name), "-o", str(out), "--report", str(tmp_path / "r.xlsx")],
        )
        assert res.exit_code == 2, (name, res.output)
        assert "Error:" in res.stderr and name in res.stderr and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken.xlsx",
        "empty.csv",
    ]  # no outputs, no temp files


def test_vectorised_property_on_numpy_arrays():
    # guard against accidental object-dtype blow-ups: ids are plain str
    cust, lin, _ = dedupe(_may())
    assert cust["customer_id"].map(type).eq(str).all()
    assert lin["exact_duplicate"].dtype == np.bool_


def test_cli_warns_about_a_key_that_is_not_a_column(tmp_path):
    # a typo in --keys (emial) silently turned e-mail linking off
    src = tmp_path / "c.parquet"
    _three_channels().to_parquet(src)
    res = runner.invoke(
        app, ["clean", str(src), "-o", str(tmp_path / "k.parquet"), "--keys", "phone,emial"]
    )
    assert res.exit_code == 0
    assert "Warning: --keys emial: no such column; linked on phone" in " ".join(res.stderr.split())
    res = runner.invoke(
        app, ["clean", str(src), "-o", str(tmp_path / "k2.parquet"), "--keys", "phone,emial", "-q"]
    )
    assert res.exit_code == 0 and res.stderr == ""


def test_orders_table_is_refused():
    orders = pd.DataFrame(
        {
            "order_id": ["A1"],
            "customer_id": ["M1"],
            "amount": [10.0],
            "order_time": pd.to_datetime(["2024-01-01"]),
            "_source_file": ["o.csv"],
            "_sheet": [""],
            "_row": [2],
            "_channel": ["门店"],
        }
    )
    with pytest.raises(InputError, match="holds orders"):
        dedupe(orders)


def test_clean_report_followup_sheet_capped_with_full_csv(example_data, tmp_path):
    from openpyxl import load_workbook

    from custtool.steps import run_clean

    rep = tmp_path / "clean_report.xlsx"
    res = run_clean(
        example_data.paths["customers"], output=tmp_path / "c.parquet", report=rep, sheet_rows=2
    )
    full = pd.read_csv(tmp_path / "clean_report_followup.csv", encoding="utf-8-sig", dtype=str)
    assert res.data["followup_csv"] == str(tmp_path / "clean_report_followup.csv")
    assert len(full) == res.data["flagged"] > 2
    rows = list(load_workbook(rep, read_only=True)["待跟进"].iter_rows(values_only=True))
    assert rows[0][0] == (
        f"本表列出前 2 行，另有 {len(full) - 2:,} 行未列出：完整数据见 clean_report_followup.csv"
    )
    assert len(rows) == 4 and [r[0] for r in rows[2:]] == full.iloc[:2, 0].tolist()
    # under the cap: no note, no CSV
    res = run_clean(
        example_data.paths["customers"], output=tmp_path / "d.parquet", report=tmp_path / "r2.xlsx"
    )
    assert res.data["followup_csv"] is None and not (tmp_path / "r2_followup.csv").exists()
