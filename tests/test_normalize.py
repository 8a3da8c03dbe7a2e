"""Normalisers: every form from SPEC B1 and the reject contract, hand-checked."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custtool.cli import app
from custtool.normalize import (
    dummy_phones,
    join_problems,
    normalize_amount,
    normalize_city,
    normalize_date,
    normalize_email,
    normalize_gender,
    normalize_name,
    normalize_number,
    normalize_phone,
)
from tests.conftest import examples

runner = CliRunner()


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
@settings(max_examples=examples(40), deadline=None)
def test_phone_idempotent_and_decorations_removed(mobile):
    assume(mobile not in dummy_phones() and len(set(mobile)) > 1)
    decorated = pd.Series(
        [mobile, f"+86 {mobile[:3]}-{mobile[3:7]}-{mobile[7:]}", mobile + ".0", "86" + mobile]
    )
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


@pytest.mark.parametrize(
    "raw", ["2023-02-29", "2024-13-45", "2024-04-31", "01/05/2024", "明天", "12345678901"]
)
def test_impossible_or_ambiguous_dates_are_invalid(raw):
    value, problem = one(normalize_date, raw)
    assert pd.isna(value)
    assert problem == "date_invalid"


def test_dates_keep_time_and_convert_offsets():
    values, _ = normalize_date(
        pd.Series(
            ["2024-01-05 10:30:15", "2024-01-05T02:30:00Z", "2024-01-05 10:30:00+08:00", "45296.5"]
        ),
        keep_time=True,
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


def test_absurd_amounts_and_numbers_are_invalid_not_inf(tmp_path):
    # "9" * 400 was read as inf and kept: the DuckDB engine then failed casting it to cents
    # (exit 3), and 1e18 the same; pandas warned "overflow encountered in multiply" on stderr
    huge = ["9" * 400, "1" + "0" * 18, "-" + "9" * 400, "9" * 305 + "万", "999999999999.99"]
    values, problems = normalize_amount(pd.Series(huge))
    assert problems.tolist() == ["amount_invalid"] * 4 + [""]
    assert values.iloc[:4].isna().all() and values.iloc[4] == 999999999999.99
    values, problems = normalize_number(pd.Series(["9" * 400, "12"]))
    assert problems.tolist() == ["number_invalid", ""] and values.iloc[1] == 12

    src = tmp_path / "orders.csv"
    src.write_text(
        "订单号,客户ID,下单时间,实付金额\n"
        + "".join(f"O{i},C{i},2024-01-0{i},{a}\n" for i, a in enumerate([*huge[:2], "100"], 1)),
        encoding="utf-8",
    )
    orders = tmp_path / "orders.parquet"
    r = runner.invoke(app, ["import", str(src), "--kind", "orders", "-o", str(orders)])
    assert r.exit_code == 0, r.output
    assert pd.read_parquet(orders)["order_id"].tolist() == ["O3"]
    for engine in ("pandas", "duckdb"):
        out = tmp_path / f"seg_{engine}.parquet"
        r = runner.invoke(
            app, ["segment", "--orders", str(orders), "--engine", engine, "-o", str(out)]
        )
        assert r.exit_code == 0, r.output
        assert "overflow" not in r.output


def test_names():
    values, problems = normalize_name(
        pd.Series(["张 伟", "  John   Smith ", "张先生", "李女士", "欧阳 娜娜", "王老师"])
    )
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


# --------------------------------------------------------------------------- placeholder numbers
@pytest.mark.parametrize(
    "raw",
    [
        "00000000000",  # once read as the landline 0000-0000000, linking strangers
        "0000-0000000",
        "11111111111",
        "8888 8888 888",
        "010-00000000",  # a subscriber number of zeros (the metadata calls it valid)
        "0755-00000000",
        "400-000-0000",
        "13800138000",  # listed in rules/phones.yaml
        "+86 138 0013 8000",
        "13800138000.0",
        "12345678901",
    ],
)
def test_placeholder_numbers_are_invalid(raw):
    assert one(normalize_phone, raw) == ("", "phone_dummy")


def test_every_listed_dummy_is_invalid_however_written():
    listed = sorted(dummy_phones())
    assert {"13800138000", "12345678901"} <= set(listed)
    cells = [form.format(d) for d in listed for form in ("{}", "+86 {}", "{}.0", "0086{}")]
    values, problems = normalize_phone(pd.Series(cells))
    assert (values == "").all()
    assert set(problems) == {"phone_dummy"}


# --------------------------------------------------------------------------- landlines
@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("021-62345678", "021-62345678"),
        ("010-12345678", "010-12345678"),
        ("(0755) 8888 8888", "0755-88888888"),
        ("0571-88888888", "0571-88888888"),
        ("0991-1234567", "0991-1234567"),  # 乌鲁木齐 numbers have 7 digits
        ("0754-8888888", "0754-8888888"),  # 汕头 has 7 and 8
        ("0755-8888888", ""),  # 深圳 numbers have 8 digits
        ("0571-8888888", ""),  # 杭州 too
        ("0310-12345678", ""),  # 邯郸 numbers have 7
        ("020-2345678", ""),
        ("0000-1234567", ""),  # no such area code
    ],
)
def test_landlines_follow_the_area_metadata(raw, value):
    assert one(normalize_phone, raw) == (value, "" if value else "phone_invalid")


def test_landlines_are_looked_up_once_per_distinct_number(monkeypatch):
    import custtool.normalize as nz

    asked = []
    real = nz._landline_valid.__wrapped__
    monkeypatch.setattr(nz, "_landline_valid", lambda d: asked.append(d) or real(d))
    values, _ = normalize_phone(pd.Series(["021-62345678", "0755-8888888", "13812345678"] * 400))
    assert sorted(asked) == ["02162345678", "07558888888"]
    assert values.tolist()[:3] == ["021-62345678", "", "13812345678"]


# --------------------------------------------------------------------------- several numbers
@pytest.mark.parametrize(
    ("raw", "phone", "phones", "ext"),
    [
        ("13812345678/13912345678", "13812345678", "13812345678;13912345678", ""),
        ("13812345678、13912345678", "13812345678", "13812345678;13912345678", ""),
        ("13812345678;13912345678", "13812345678", "13812345678;13912345678", ""),
        ("13812345678；13912345678", "13812345678", "13812345678;13912345678", ""),
        ("13812345678，13912345678", "13812345678", "13812345678;13912345678", ""),
        ("13812345678, 021-62345678", "13812345678", "13812345678;021-62345678", ""),
        ("无/13912345678", "13912345678", "13912345678", ""),  # the first valid one
        ("00000000000/13912345678", "13912345678", "13912345678", ""),
        ("13912345678/13912345678", "13912345678", "13912345678", ""),  # each once
        ("138/1234/5678", "13812345678", "13812345678", ""),  # one number with slashes
        ("021-62345678 转 123", "021-62345678", "021-62345678", "123"),
        ("021-62345678 ext. 123", "021-62345678", "021-62345678", "123"),
        ("021-62345678分机8/13912345678", "021-62345678", "021-62345678;13912345678", "8"),
        ("13812345678", "13812345678", "13812345678", ""),
        ("无", "", "", ""),
        ("", "", "", ""),
    ],
)
def test_a_cell_with_several_numbers(raw, phone, phones, ext):
    from custtool.normalize import phone_lists

    s = pd.Series(["13700001111", raw], dtype="str")
    values, problems = normalize_phone(s)
    listed, extension = phone_lists(s, values)
    assert (values.iloc[1], listed.iloc[1], extension.iloc[1]) == (phone, phones, ext)
    assert problems.iloc[1] == ("" if phone or raw == "" else "phone_placeholder")


# --------------------------------------------------------------------------- addresses
@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        ("广东省深圳市南山区", ("广东省", "深圳市", "南山区", "华南")),
        ("广东省深圳市南山区科技园南路1号", ("广东省", "深圳市", "南山区", "华南")),
        ("深圳南山区", ("广东省", "深圳市", "南山区", "华南")),
        ("北京市朝阳区建国路88号", ("北京市", "北京市", "朝阳区", "华北")),
        ("上海浦东新区", ("上海市", "上海市", "浦东新区", "华东")),
        ("江苏省苏州市昆山市", ("江苏省", "苏州市", "昆山市", "华东")),
        ("吉林省吉林市船营区", ("吉林省", "吉林市", "船营区", "东北")),
        ("南山区科技园", ("广东省", "深圳市", "南山区", "华南")),  # listed under one city only
        ("朝阳区", ("", "", "朝阳区", "")),  # 北京 and 长春 both have one
        ("浙江", ("浙江省", "", "", "华东")),
        ("深圳市", ("广东省", "深圳市", "", "华南")),
        ("火星基地", ("", "", "", "")),
        ("", ("", "", "", "")),
    ],
)
def test_address_parts(raw, parts):
    from custtool.normalize import normalize_address

    province, city, district, region, problems = normalize_address(pd.Series([raw]))
    assert (province.iloc[0], city.iloc[0], district.iloc[0], region.iloc[0]) == parts
    assert problems.iloc[0] == ""
