"""Normalisers: every form from SPEC B1 and the reject contract, hand-checked."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from custtool.normalize import (
    dummy_phones,
    join_problems,
    normalize_amount,
    normalize_city,
    normalize_date,
    normalize_email,
    normalize_gender,
    normalize_name,
    normalize_phone,
)


def one(fn, value, **kw):
    out = fn(pd.Series([value]), **kw)
    return tuple(x.iloc[0] for x in out)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("13812345678.0", "13812345678"),
        (13812345678.0, "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("+8613812345678", "13812345678"),
        ("0086 138 1234 5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),
        ("(138)1234-5678", "13812345678"),
        ("13812345678转123", "13812345678"),
        ("021-62345678", "021-62345678"),
        ("(021) 6234 5678", "021-62345678"),
        ("02162345678", "021-62345678"),
        ("010 6234 5678", "010-62345678"),
        ("0571-88886666", "0571-88886666"),
        ("075588886666", "0755-88886666"),
        ("+86 21 6234 5678", "021-62345678"),
        ("400-820-8820", "400-820-8820"),
        ("+1 415 555 0123", "+14155550123"),
    ],
)
def test_phone_valid_forms(raw, expected):
    value, problem = one(normalize_phone, raw)
    assert value == expected
    assert problem == ""


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("1381234abcd", "phone_letters"),
        ("138****5678", "phone_masked"),
        ("无", "phone_placeholder"),
        ("暂无", "phone_placeholder"),
        ("不详", "phone_placeholder"),
        ("1.38001E+10", "excel_precision_lost"),
        ("12345", "phone_invalid"),
        ("1381234567", "phone_invalid"),
        ("138123456789", "phone_invalid"),
        ("12812345678", "phone_invalid"),
        ("62345678", "phone_invalid"),
    ],
)
def test_phone_invalid_forms(raw, code):
    value, problem = one(normalize_phone, raw)
    assert value == ""
    assert problem == code


def test_phone_blank_is_not_a_problem():
    values, problems = normalize_phone(pd.Series(["", "  ", None, float("nan")]))
    assert values.tolist() == ["", "", "", ""]
    assert problems.tolist() == ["", "", "", ""]


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
@settings(max_examples=60, deadline=None)
def test_phone_idempotent_and_decorations_removed(mobile):
    assume(mobile not in dummy_phones() and len(set(mobile)) > 1)
    decorated = pd.Series([mobile, f"+86 {mobile[:3]}-{mobile[3:7]}-{mobile[7:]}", mobile + ".0", "86" + mobile])
    values, problems = normalize_phone(decorated)
    assert set(values) == {mobile}
    again, _ = normalize_phone(values)
    assert again.tolist() == values.tolist()
    assert (problems == "").all()


@pytest.mark.parametrize(
    ("raw", "expected", "code"),
    [
        (" Zhang.Wei@Example.COM ", "zhang.wei@example.com", ""),
        ("\u3000li@qq.com\u3000", "li@qq.com", ""),
        ("ｗａｎｇ＠１６３．ｃｏｍ", "wang@163.com", ""),
        ("not-an-email", "", "email_invalid"),
        ("a@b", "", "email_invalid"),
        ("a@@b.com", "", "email_invalid"),
        ("", "", ""),
    ],
)
def test_email(raw, expected, code):
    assert one(normalize_email, raw) == (expected, code)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-05", "2024-01-05"),
        ("2024/1/5", "2024-01-05"),
        ("2024.1.5", "2024-01-05"),
        ("2024年1月5日", "2024-01-05"),
        ("20240105", "2024-01-05"),
        ("45296", "2024-01-05"),  # Excel serial as text
        ("45296.75", "2024-01-05"),
        ("2024-01-05 10:30:00", "2024-01-05"),
        ("2024/1/5 9:05", "2024-01-05"),
        ("２０２４－０１－０５", "2024-01-05"),
        ("2024-02-29", "2024-02-29"),
    ],
)
def test_dates_to_iso(raw, expected):
    value, problem = one(normalize_date, raw)
    assert value == pd.Timestamp(expected)
    assert problem == ""


@pytest.mark.parametrize("raw", ["2023-02-29", "2024-13-45", "2024-04-31", "01/05/2024", "明天", "12345678901"])
def test_impossible_or_ambiguous_dates_are_invalid(raw):
    value, problem = one(normalize_date, raw)
    assert pd.isna(value)
    assert problem == "date_invalid"


def test_dates_keep_time_and_convert_offsets():
    values, _ = normalize_date(
        pd.Series(["2024-01-05 10:30:15", "2024-01-05T02:30:00Z", "2024-01-05 10:30:00+08:00", "45296.5"]), keep_time=True
    )
    assert values.tolist() == [
        pd.Timestamp("2024-01-05 10:30:15"),
        pd.Timestamp("2024-01-05 10:30:00"),  # UTC 02:30 is 10:30 in Shanghai
        pd.Timestamp("2024-01-05 10:30:00"),
        pd.Timestamp("2024-01-05 12:00:00"),
    ]


@pytest.mark.parametrize(
    ("raw", "expected", "code"),
    [
        ("男", "男", ""),
        ("M", "男", ""),
        ("male", "男", ""),
        ("男性", "男", ""),
        ("女", "女", ""),
        ("f", "女", ""),
        ("Female", "女", ""),
        ("女性", "女", ""),
        ("保密", "未知", ""),
        ("", "未知", ""),
        ("先生", "未知", "gender_unknown_value"),
    ],
)
def test_gender(raw, expected, code):
    assert one(normalize_gender, raw) == (expected, code)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("¥12,500.00", 12500.0),
        ("￥12,500.00", 12500.0),
        ("12500元", 12500.0),
        ("1.25万", 12500.0),
        ("1.25万元", 12500.0),
        ("(1,200)", -1200.0),
        ("-20", -20.0),
        ("８００", 800.0),
        ("RMB 99.9", 99.9),
    ],
)
def test_amounts(raw, expected):
    value, problem = one(normalize_amount, raw)
    assert value == pytest.approx(expected)
    assert problem == ""


def test_amount_invalid_and_blank():
    values, problems = normalize_amount(pd.Series(["abc", "", "12..5"]))
    assert values.isna().all()
    assert problems.tolist() == ["amount_invalid", "", "amount_invalid"]


def test_names():
    values, problems = normalize_name(pd.Series(["张 伟", "  John   Smith ", "张先生", "李女士", "欧阳 娜娜", "王老师"]))
    assert values.tolist() == ["张伟", "John Smith", "张先生", "李女士", "欧阳娜娜", "王老师"]
    assert problems.tolist() == ["", "", "name_honorific", "name_honorific", "", "name_honorific"]


@pytest.mark.parametrize(
    ("raw", "city", "region"),
    [
        ("北京", "北京市", "华北"),
        ("北京市朝阳区", "北京市", "华北"),
        ("上海市浦东新区", "上海市", "华东"),
        ("广东省深圳市南山区", "深圳市", "华南"),
        ("深圳", "深圳市", "华南"),
        ("Shenzhen", "深圳市", "华南"),
        ("吉林省吉林市", "吉林市", "东北"),
        ("浙江杭州", "杭州市", "华东"),
        ("成都", "成都市", "西南"),
        ("西安市", "西安市", "西北"),
        ("武汉", "武汉市", "华中"),
        ("火星市", "火星市", ""),
    ],
)
def test_city_and_region(raw, city, region):
    c, r, _ = one(normalize_city, raw)
    assert (c, r) == (city, region)


def test_join_problems():
    a = pd.Series(["x", "", "", "y"])
    b = pd.Series(["", "z", "", "w"])
    assert join_problems(a, b).tolist() == ["x", "z", "", "y;w"]
