"""The fast paths of the import (issue 2 speed-up) give what the full rules give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from custtool import normalize as nz
from custtool.ingest import _arrow_memory_pool, _blank_and_total_rows, _bytes_contain, import_files
from custtool.schemas import validate

PHONES = [
    "13812345678",
    "+86 138-1234-5678",
    "0086 13812345678",
    "8613812345678",
    "+868613812345678",
    "13812345678.0",
    "8613812345678.0",
    "+8613812345678.0",
    "138 1234 5678",
    "(138)1234-5678",
    "１３８１２３４５６７８",
    "",
    "  ",
    "nan",
    "无",
    "-",
    "/",
    "保密",
    "138****5678",
    "1381234abcd",
    "1.38001E+10",
    "010-62345678",
    "+86 21 6234 5678",
    "400-820-8820",
    "+1 415 555 0123",
    "13812345678 转 123",
    "12812345678",
    "+86+13812345678",
    "++8613812345678",
    # placeholder numbers and landlines the metadata refuses: invalid on every path
    "00000000000",
    "0000-0000000",
    "11111111111",
    "13800138000",
    "+86 138 0013 8000",
    "13800138000.0",
    "8613800138000",
    "010-00000000",
    "0755-8888888",
    "0755-88888888",
    "400-000-0000",
    # two numbers in a cell, an extension
    "13812345678/13912345678",
    "13800138000、021-62345678",
    "021-62345678 ext. 45",
]


def test_phone_fast_path_agrees_with_the_full_rules():
    s = pd.Series(PHONES)
    fast_values, fast_codes = nz.normalize_phone(s)
    prepared = nz._text(s).str.replace(r"^([0-9]+)\.0+$", r"\1", regex=True)
    full_values, full_codes = nz._phone_full(prepared)
    assert fast_values.tolist() == full_values.tolist()
    assert fast_codes.tolist() == full_codes.tolist()


@pytest.mark.parametrize(
    ("raw", "value", "code"),
    [
        ("+86 138-1234-5678", "13812345678", ""),
        ("+868613812345678", "13812345678", ""),
        ("8613812345678.0", "13812345678", ""),
        # the Excel-float tail is only read as such on plain digits
        ("+8613812345678.0", "", "phone_invalid"),
        ("无", "", "phone_placeholder"),
        ("-", "", "phone_placeholder"),
        ("", "", ""),
    ],
)
def test_phone_fast_path_values(raw, value, code):
    values, codes = nz.normalize_phone(pd.Series(["13900000000", raw]))
    assert (values.iloc[1], codes.iloc[1]) == (value, code)
    assert values.dtype == "str" and codes.dtype == object


def test_join_problems_leaves_its_inputs_alone():
    a = pd.Series(["x", "", "y"], dtype=object)
    b = pd.Series(["", "z", "w"], dtype=object)
    assert nz.join_problems(a, b).tolist() == ["x", "z", "y;w"]
    assert a.tolist() == ["x", "", "y"] and b.tolist() == ["", "z", "w"]


def test_bytes_contain_looks_only_at_the_values_of_a_slice():
    arr = pa.array(["累计消费", "12", "合计"])
    assert _bytes_contain(arr, "计")
    assert not _bytes_contain(arr.slice(1, 1), "计")  # the header's bytes are outside the slice
    assert _bytes_contain(arr.slice(2), "计")
    assert _bytes_contain(pa.chunked_array([arr.slice(1, 1), arr.slice(0, 1)]), "计")


def test_blank_and_totals_rows():
    text = pd.DataFrame(
        {
            "a": ["张三", " \u3000", "合计：", "小计 ", "累计消费", ""],
            "b": ["1", "\t", "100", "", "5", ""],
        },
        dtype="str",
    )
    blank, total = _blank_and_total_rows(text)
    assert blank.tolist() == [False, True, False, False, False, True]
    assert total.tolist() == [False, False, True, True, False, False]


def test_validate_skip_rows_are_neither_rejected_nor_reported():
    df = pd.DataFrame(
        {
            "_source_file": pd.Series(["f.csv"] * 3, dtype="str"),
            "_sheet": pd.Series([""] * 3, dtype="str"),
            "_row": np.array([2, 3, 4], dtype="int64"),
            "phone": pd.Series(["13812345678", "", ""], dtype="str"),
            "email": pd.Series(["", "", ""], dtype="str"),
        }
    )
    rejected, rejects = validate(df, "customers")
    assert rejected.tolist() == [False, True, True]
    assert rejects["row"].tolist() == [3, 4]
    rejected, rejects = validate(df, "customers", skip=np.array([False, True, False]))
    assert rejected.tolist() == [False, False, True]
    assert rejects["row"].tolist() == [4] and rejects["code"].tolist() == ["no_contact"]
    rejected, rejects = validate(df, "customers", skip=np.array([False, True, True]))
    assert not rejected.any() and rejects.empty


def test_import_restores_the_arrow_memory_pool(make_csv):
    before = pa.default_memory_pool().backend_name
    with _arrow_memory_pool():
        pass
    path = make_csv("c.csv", [["姓名", "手机"], ["张三", "13812345678"]])
    assert import_files(path).data["phone"].tolist() == ["13812345678"]
    assert pa.default_memory_pool().backend_name == before


def test_utf8_reader_keeps_quoted_newlines_and_reports_encoding(tmp_path):
    path = tmp_path / "n.csv"
    path.write_bytes(
        '\ufeff姓名,手机,备注\n张三,13812345678,"第一行\n第二行"\n李四,13912345678,\n'.encode()
    )
    result = import_files(path)
    assert result.files[0].encoding == "utf-8-sig"
    assert result.data["notes"].tolist() == ["第一行\n第二行", ""]
    assert result.data["_row"].tolist() == [2, 3]
    assert import_files(path, encoding="utf8").files[0].encoding == "utf-8-sig"
    plain = tmp_path / "p.csv"
    plain.write_bytes("姓名,手机\n张三,13812345678\n".encode())
    assert import_files(plain, encoding="utf8").files[0].encoding == "utf8"


def _messy_rows(kind: str, n: int, seed: int = 3) -> list[list[str]]:
    """n rows of a customers or orders export with every kind of kept problem and some
    rejected, blank and totals rows."""
    rng = np.random.default_rng(seed)
    phones = np.array(PHONES + ["13912345678", "13700001111"])
    emails = np.array(["a@x.com", " B@Y.COM ", "bad@", "", "c@d", "e。f@g.cn", "x y@z.com"])
    dates = np.array(
        [
            "2024/1/5",
            "2024年1月5日",
            "20240105",
            "45000",
            "2023-02-29",
            "",
            "昨天",
            "2024-01-05 10:30",
        ]
    )
    if kind == "customers":
        rows = [["客户编号", "姓名", "手机号", "邮箱", "性别", "年龄", "城市", "注册时间", "备注"]]
        for i in range(n):
            rows.append(
                [
                    f"C{i % 997}",
                    ["张伟", "张先生", "", "李 娜", "Tom  Lee"][i % 5],
                    str(rng.choice(phones)),
                    str(rng.choice(emails)),
                    ["男", "F", "保密", "?", ""][i % 5],
                    ["30", "30岁", "200", "x", ""][i % 5],
                    ["北京市朝阳区", "深圳", "火星", ""][i % 4],
                    str(rng.choice(dates)),
                    "",
                ]
            )
    else:
        rows = [["订单号", "客户编号", "手机号", "下单时间", "实付金额", "数量", "是否退款"]]
        for i in range(n):
            rows.append(
                [
                    f"O{i % 1500}",
                    f"C{i % 300}" if i % 7 else "",
                    str(rng.choice(phones)),
                    str(rng.choice(dates)),
                    ["¥1,200.00", "(300)", "1.2万", "abc", "", "-50"][i % 6],
                    ["1", "2", "x", ""][i % 4],
                    ["否", "是", "", "?"][i % 4],
                ]
            )
    for at in (5, n // 2, n - 3):
        rows[at] = [""] * len(rows[0])
    rows.append(["合计"] + [""] * (len(rows[0]) - 1))
    return rows


@pytest.mark.parametrize("kind", ["customers", "orders"])
def test_threaded_import_equals_the_single_thread_one(make_csv, monkeypatch, kind):
    import custtool.ingest as ingest

    path = make_csv(f"{kind}.csv", _messy_rows(kind, 3000))
    monkeypatch.setenv("CUSTTOOL_THREADS", "1")
    one = import_files(path, kind=kind)
    monkeypatch.setenv("CUSTTOOL_THREADS", "3")
    monkeypatch.setattr(ingest, "THREADED_ROWS", 0)
    many = import_files(path, kind=kind)
    pd.testing.assert_frame_equal(one.data, many.data)
    pd.testing.assert_frame_equal(one.rejects, many.rejects)
    assert one.totals == many.totals
    assert one.totals["skipped_total"] == 1 and one.totals["skipped_blank"] == 3
    assert one.totals["rejected"] > 0 and one.totals["flagged"] > 0


@pytest.mark.parametrize("kind", ["customers", "orders"])
def test_every_flag_on_a_kept_row_has_its_rejects_line(make_csv, kind):
    """The rejects file's "kept" lines are exactly the codes in _flags, row by row, in order,
    with the column they are about and the value as written."""
    path = make_csv(f"{kind}.csv", _messy_rows(kind, 600))
    result = import_files(path, kind=kind)
    guess = {
        "excel": "phone",
        "phone": "phone",
        "email": "email",
        "amount": "amount",
        "name": "name",
        "gender": "gender",
        "score": "score",
        "age": "age",
    }
    expected = []
    for row, flags in zip(result.data["_row"], result.data["_flags"], strict=True):
        for part in filter(None, flags.split(";")):
            code, _, column = part.partition(":")
            expected.append((row, code, column or guess.get(code.split("_")[0], "")))
    kept = result.rejects[result.rejects["action"] == "kept"]
    assert list(zip(kept["row"], kept["code"], kept["column"], strict=True)) == expected
    assert len(expected) > 50
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    header = {
        "phone": "手机号",
        "email": "邮箱",
        "amount": "实付金额",
        "first_contact_date": "注册时间",
        "order_time": "下单时间",
    }
    for _, line in kept.iterrows():
        if (
            line["column"] in header
        ):  # the value quoted is the cell as written (row 2 is the first data row)
            assert line["value"] == raw[header[line["column"]]].iloc[line["row"] - 2].strip()


def test_totals_rows_in_any_column_on_the_pool():
    from concurrent.futures import ThreadPoolExecutor

    text = pd.DataFrame(
        {
            "a": ["张伟", "", " ", "x", "", "y"],
            "b": ["1", "", "合计", " Grand Total: ", "", "小计x"],
            "c": ["", "", "", "", "总计", ""],
        },
        dtype="str",
    )
    expected = ([False, True, False, False, False, False], [False, False, True, True, True, False])
    with ThreadPoolExecutor(2) as pool:
        blank, total = _blank_and_total_rows(text, pool)
    assert (blank.tolist(), total.tolist()) == expected
    blank, total = _blank_and_total_rows(text)
    assert (blank.tolist(), total.tolist()) == expected


def test_old_mac_line_ends_and_a_quoted_newline(make_csv):
    mac = make_csv("mac.csv", [["姓名", "手机号"]])
    mac.write_bytes('姓名,手机号\r张伟,13812345678\r"李\n娜",13912345678\r合计,\r'.encode())
    result = import_files(mac)
    assert result.totals["skipped_total"] == 1 and result.totals["accepted"] == 2


def test_old_mac_line_ends_with_a_title_row_in_gbk(tmp_path):
    """ "CSV (Macintosh)" from old Excel ends lines with \\r alone; with a title row the
    rows are ragged and take the general reader."""
    path = tmp_path / "mac.csv"
    path.write_bytes(
        "客户名单\r姓名,手机号\r张伟,13812345678\r李娜,13912345678\r合计,\r".encode("gbk")
    )
    result = import_files(path)
    assert result.data["phone"].tolist() == ["13812345678", "13912345678"]
    assert result.totals["skipped_total"] == 1 and result.files[0].encoding == "gb18030"


@pytest.mark.parametrize("fn", ["normalize_email", "normalize_phone"])
def test_sparse_columns_give_what_every_cell_gives(fn):
    """Mostly-empty columns are normalised on their non-empty cells only."""
    values = [
        "",
        "A@B.COM",
        "",
        "",
        "bad@",
        "",
        " ",
        "13812345678",
        "+86 138 1234 5678",
        "",
        "",
        "无",
        "x。y@z.cn",
        "",
    ] * 5
    s = pd.Series(values, index=pd.RangeIndex(100, 100 + len(values)), dtype="str")
    sparse_v, sparse_p = getattr(nz, fn)(s)
    full_v, full_p = getattr(nz, "_" + fn)(s)
    pd.testing.assert_series_equal(sparse_v, full_v)
    pd.testing.assert_series_equal(sparse_p, full_p)
    assert (sparse_v != "").sum() > 0 and (sparse_p != "").sum() > 0


def test_scatter_text_over_sliced_and_chunked_values():
    base = pa.chunked_array(
        [pa.array(["zz", "ab", "", "cde"], pa.string()).slice(1), pa.array(["f"], pa.string())]
    )
    out = nz._scatter_text(base, np.array([0, 2, 5, 6]), 8)
    assert out.to_pylist() == ["ab", "", "", "", "", "cde", "f", ""]
    assert nz._scatter_text(
        pa.array([], pa.string()), np.array([], dtype=np.int64), 3
    ).to_pylist() == ["", "", ""]


def test_plain_mobiles_read_from_the_buffers():
    arr = pa.chunked_array(
        [
            pa.array(
                ["x", "13812345678", "12812345678", "1381234567", "138123456789"], pa.string()
            ).slice(1),
            pa.array(
                ["19900000000", "１３８１２３４５６７８", "13812345678.0", "", "1381234567a"],
                pa.string(),
            ),
        ]
    )
    assert nz._plain_mobiles(arr).tolist() == [
        True,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]
    assert (
        nz._plain_mobiles(arr.cast(pa.large_string())).tolist() == nz._plain_mobiles(arr).tolist()
    )
    for values in (
        ["13812345678", "13912345678"],
        ["13812345678", "+86 13912345678", "无", "010-62345678"],
    ):
        chunked = pa.chunked_array(
            [pa.array(values * 2, pa.large_string()), pa.array(values, pa.large_string())]
        )
        got = nz.normalize_phone(pd.Series(chunked, dtype="str"))
        want = nz._phone_full(pd.Series(values * 3, dtype="str"))
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


def test_phone_and_email_checks_reject_what_the_normalisers_never_give():
    """The schema's safety net on canonical phones/e-mails still fails a bad value."""
    df = pd.DataFrame(
        {
            "_source_file": ["f"] * 5,
            "_sheet": [""] * 5,
            "_row": np.arange(2, 7, dtype="int64"),
            "phone": pd.Series(
                ["13812345678", "12345", "", "021-62345678", "+14155550123"], dtype="str"
            ),
            "email": pd.Series(["a@b.cn", "", "x@y.com", "no-at-sign", ""], dtype="str"),
        }
    )
    rejected, rejects = validate(df, "customers")
    assert rejected.tolist() == [False, True, False, True, False]
    assert sorted(zip(rejects["row"], rejects["code"], strict=True)) == [
        (3, "phone_invalid"),
        (5, "email_invalid"),
    ]
    objects = df.assign(phone=df["phone"].astype(object), email=df["email"].astype(object))
    assert validate(objects, "customers")[0].tolist() == rejected.tolist()


@pytest.mark.parametrize("kind", ["customers", "orders"])
def test_columns_checked_on_their_own_give_what_one_validation_gives(kind):
    """Checks run column by column as each is normalised report the same failures, in the
    same order, as the whole schema at once."""
    from custtool.schemas import check_column, check_keys, key_columns

    n = 6
    df = pd.DataFrame(
        {
            "_source_file": ["f"] * n,
            "_sheet": [""] * n,
            "_row": np.arange(2, 2 + n, dtype="int64"),
            "customer_id": pd.Series(["", "C1", "", "", "C2", ""], dtype="str"),
            "phone": pd.Series(
                ["13812345678", "12345", "", "021-62345678", "bad", ""], dtype="str"
            ),
            "email": pd.Series(["a@b.cn", "", "x@y.com", "no-at-sign", "", ""], dtype="str"),
        }
    )
    if kind == "customers":
        df["gender"] = pd.Series(["男", "女", "?", "未知", "男", "X"], dtype="str")
        df["age"] = pd.array([30, 200, None, 5, -1, 40], dtype="Int64")
    else:
        df["amount"] = [1.0, np.nan, 3.0, 4.0, np.nan, 6.0]
        df["order_time"] = pd.to_datetime(
            ["2024-01-01", None, "2024-01-03", None, "2024-01-05", "2024-01-06"]
        )
    whole = validate(df, kind)
    checked = {c: fc for c in df.columns if (fc := check_column(kind, c, df[c])) is not None}
    assert "phone" in checked and len(checked["phone"])
    checked["_key_present"] = check_keys(kind, {c: df[c] for c in key_columns(kind)})
    assert len(checked["_key_present"])
    alone = validate(df, kind, checked=checked)
    pd.testing.assert_series_equal(whole[0], alone[0])
    pd.testing.assert_frame_equal(whole[1], alone[1])
    assert whole[0].sum() >= 3


def test_flags_joined_on_the_flagged_rows_as_join_problems_joins_them():
    from custtool.ingest import _join_flags
    from custtool.normalize import code_rows as _hits

    a = np.array(["x", "", "", "y", ""], dtype=object)
    b = np.array(["", "z", "", "w", ""], dtype=object)
    c = np.array(["", "", "", "v", np.nan], dtype=object)
    got = _join_flags([(_hits(p), p[_hits(p)]) for p in (a, b, c)], 5).to_pylist()
    assert got == ["x", "z", "", "y;w;v", ""]
    assert (
        got == nz.join_problems(pd.Series(a), pd.Series(b), pd.Series(c.copy()).fillna("")).tolist()
    )
    assert _join_flags([], 3).to_pylist() == ["", "", ""]


def test_validate_on_a_frame_with_repeated_row_labels():
    df = pd.DataFrame(
        {
            "_source_file": ["f"] * 3,
            "_sheet": [""] * 3,
            "_row": np.array([2, 3, 4], dtype="int64"),
            "phone": pd.array(["", "13812345678", ""], dtype="str"),
            "email": pd.array(["", "", "a@b.cn"], dtype="str"),
        },
        index=[7, 7, 8],
    )
    original = {"phone": pd.Series(["无", "138 1234 5678", ""], index=df.index, dtype="str")}
    rejected, rejects = validate(df, "customers", original)
    assert rejected.tolist() == [True, False, False] and rejected.index.tolist() == [7, 7, 8]
    assert rejects[["row", "code", "value"]].values.tolist() == [[2, "no_contact", "无"]]


def test_a_wide_row_below_the_width_sample_takes_the_general_reader(tmp_path, monkeypatch):
    import custtool.io as cio

    monkeypatch.setattr(cio, "WIDTH_SAMPLE", 200)
    lines = ["姓名,手机号"] + [f"张{i},138{i:08d}" for i in range(400)]
    lines[350] += ",多出来的备注"
    path = tmp_path / "wide.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = import_files(path)
    assert result.totals["rows_read"] == 400 and result.totals["accepted"] == 400
    assert result.data["phone"].iloc[349] == "13800000349"


def test_openpyxl_reads_what_calamine_reads(shop_xlsx):
    """The fallback for workbooks calamine cannot open gives the same grids."""
    from openpyxl import load_workbook

    from custtool.io import _read_workbook_openpyxl, read_raw

    wb = load_workbook(shop_xlsx)
    wb["会员"].merge_cells("E4:E5")  # a merged cell below the header
    wb.create_sheet("码表").sheet_state = "hidden"
    wb.save(shop_xlsx)
    fast, slow = read_raw(shop_xlsx), _read_workbook_openpyxl(shop_xlsx, None)
    assert slow is not None and [r.sheet for r in slow] == [r.sheet for r in fast] == [
        "会员",
        "说明",
    ]
    for a, b in zip(fast, slow, strict=True):
        pd.testing.assert_frame_equal(
            a.grid.astype(object), b.grid.astype(object), check_dtype=False
        )
        assert sorted(a.merged) == sorted(b.merged)


def test_a_workbook_calamine_cannot_open_is_read_with_openpyxl(shop_xlsx, monkeypatch):
    import python_calamine

    def refuse(path):
        raise python_calamine.CalamineError("unsupported workbook part")

    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_path", staticmethod(refuse))
    result = import_files(shop_xlsx)
    assert result.data["phone"].tolist()[:2] == ["13812345678", "13900001111"]
    assert result.totals["skipped_total"] == 1 and result.totals["rejected"] == 1
    assert any("openpyxl" in w for w in result.warnings)
    bad = shop_xlsx.with_name("broken.xlsx")
    bad.write_bytes(b"PK\x03\x04 not a workbook")
    with pytest.raises(Exception, match="cannot open the workbook"):
        import_files(bad)


@pytest.mark.parametrize("keep_time", [False, True])
def test_fixed_width_dates_agree_with_the_patterns(monkeypatch, keep_time):
    rng = np.random.default_rng(5)
    n = 3000
    y = rng.integers(1890, 2110, n)
    m = rng.integers(0, 14, n)
    d = rng.integers(0, 33, n)
    hh, mm, ss = rng.integers(0, 25, n), rng.integers(0, 61, n), rng.integers(0, 61, n)
    sep = np.where(rng.random(n) < 0.5, "-", "/")
    date = [f"{a:04d}{s}{b:02d}{s}{c:02d}" for a, b, c, s in zip(y, m, d, sep, strict=True)]
    stamp = [
        f"{x}{'T' if i % 7 == 0 else ' '}{h:02d}:{mi:02d}:{se:02d}"
        for i, (x, h, mi, se) in enumerate(zip(date, hh, mm, ss, strict=True))
    ]
    odd = [
        "2024-01-05 10:30",
        "2024-1-5",
        "2024/01-05",
        "2024-01-05 10:30:00+08:00",
        "20240105",
        "2024年1月5日",
        "",
        "45000",
        "2024-01-05x10:30:00",
        "2024-01-0510:30:00",
        "abcd-ef-gh",
        "2024-02-29 23:59:59",
        "2023-02-29",
    ]
    s = pd.Series(date[:1000] + stamp[1000:] + odd, dtype="str")
    fast = nz.normalize_date(s, keep_time=keep_time)

    def none(arr):
        return np.zeros(len(arr), dtype=bool), {
            k: np.full(len(arr), np.nan) for k in ("y", "m", "d", "H", "M", "S")
        }

    monkeypatch.setattr(nz, "_fixed_width_dates", none)
    slow = nz.normalize_date(s, keep_time=keep_time)
    pd.testing.assert_series_equal(fast[0], slow[0])
    pd.testing.assert_series_equal(fast[1], slow[1])
    assert fast[0].notna().sum() > 500 and (fast[1] == "date_invalid").sum() > 500


def test_distinct_values_path_and_whole_column_path_agree(monkeypatch):
    stamps = pd.Series(
        [f"2024-01-{d:02d} 10:{m:02d}:00" for d in range(1, 29) for m in range(60)]
        + ["", "bad", "2023-02-29 10:00:00"],
        dtype="str",
    )
    normal = nz.on_uniques_codes(nz.normalize_date, stamps, keep_time=True)
    monkeypatch.setattr(nz, "_LOOK", 10)  # the first values all differ: no distinct-value pass
    whole = nz.on_uniques_codes(nz.normalize_date, stamps, keep_time=True)
    pd.testing.assert_series_equal(normal[0], whole[0])
    assert normal[1][0].tolist() == whole[1][0].tolist() == [len(stamps) - 2, len(stamps) - 1]
    assert normal[1][1].tolist() == whole[1][1].tolist() == ["date_invalid", "date_invalid"]


@pytest.mark.parametrize("width", [1, 3])
def test_quoted_newlines_below_the_top_of_a_file_across_blocks(tmp_path, monkeypatch, width):
    """The reader sees only the top of the file for quotes: a value holding a newline
    further down, across pyarrow's block boundaries, still reads whole."""
    import custtool.io as cio

    monkeypatch.setattr(cio, "WIDTH_SAMPLE", 40)
    monkeypatch.setattr(cio, "CSV_BLOCK_SIZE", 64)
    header = ["姓名", "手机号", "备注"][:width] if width > 1 else ["手机号"]
    lines = [",".join(header)]
    for i in range(300):
        note = f'"第{i}行\n备注,含逗号"' if i % 7 == 3 else f"备注{i}"
        row = (
            [f"张{i}", f"138{i:08d}", note]
            if width > 1
            else [f'"138{i:08d}\n"' if i % 7 == 3 else f"138{i:08d}"]
        )
        lines.append(",".join(row))
    path = tmp_path / f"notes{width}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = import_files(path, kind="customers")
    assert result.totals["rows_read"] == 300 and result.totals["accepted"] == 300
    assert result.data["phone"].tolist() == [f"138{i:08d}" for i in range(300)]
    if width > 1:
        assert result.data["notes"].iloc[3] == "第3行\n备注,含逗号"


@pytest.mark.parametrize("kind", ["customers", "orders", "surveys"])
def test_key_rule_on_distinct_combinations_names_every_failing_row(kind):
    """The key rule is checked by pandera once per combination of given keys; every row
    of a failing combination is named, in row order, as pandera names them on all rows."""
    from custtool.schemas import _has_any, check_column, check_keys, key_columns

    rng = np.random.default_rng(11)
    n = 500
    cols = {
        c: pd.Series(
            np.where(rng.random(n) < 0.5, "", f"{c[0]}1"),
            index=pd.RangeIndex(100, 100 + n),
            dtype="str",
        )
        for c in key_columns(kind)
    }
    cols["email"] = cols["email"].where(
        rng.random(n) < 0.9, "   "
    )  # blank after trimming: not given
    got = check_keys(kind, cols)
    present = _has_any(key_columns(kind))(pd.DataFrame(cols)).rename("_key_present")
    want = check_column(kind, "_key_present", present)
    assert len(want) > 20
    assert got["index"].tolist() == want["index"].tolist()
    assert set(got["check"].astype(str)) == set(want["check"].astype(str))
    assert list(got.columns) == list(want.columns)


def test_phone_dummies_leave_every_fast_path():
    """A listed dummy shaped like a plain mobile is invalid whether the column is all plain
    mobiles (the Arrow-buffer path), mostly text (the pyarrow path) or objects."""
    plain = ["13912345678"] * 5 + ["13800138000"]
    written = ["+86 139-1234-5678"] * 5 + ["+86 138-0013-8000"]
    for values in (plain, written):
        for s in (pd.Series(values, dtype="str"), pd.Series(values, dtype=object)):
            got, codes = nz.normalize_phone(s)
            assert got.tolist() == ["13912345678"] * 5 + [""]
            assert codes.tolist() == [""] * 5 + ["phone_dummy"]


def test_phone_lists_agree_with_the_full_rules():
    """phones and phone_ext from the import's path (only cells with a separator or an
    extension word read again) equal those of the full rules on every cell."""
    s = pd.Series(PHONES * 3, dtype="str")
    values, _ = nz.normalize_phone(s)
    phones, ext = nz.phone_lists(s, values)
    prepared = nz._text(s).str.replace(r"^([0-9]+)\.0+$", r"\1", regex=True)
    _, _, want_phones, want_ext = nz._phone_parts(prepared)
    assert phones.tolist() == want_phones.tolist()
    assert ext.tolist() == want_ext.tolist()
    got = dict(zip(PHONES, zip(phones, ext, strict=False), strict=False))
    assert got["13812345678/13912345678"] == ("13812345678;13912345678", "")
    assert got["13800138000、021-62345678"] == ("021-62345678", "")
    assert got["021-62345678 ext. 45"] == ("021-62345678", "45")
    assert got["13812345678 转 123"] == ("13812345678", "123")
    assert got["13812345678"] == ("13812345678", "")
