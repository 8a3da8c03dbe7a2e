"""Import: encodings, header detection, accounting, rejects, field mapping."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custtool.errors import InputError
from custtool.ingest import import_files
from tests.conftest import examples

HEADER = ["会员卡号", "姓名", "联系电话", "邮箱", "性别", "生日", "城市", "积分"]
GOOD = ["M001", "张伟", "138-1234-5678", "", "男", "1990/3/4", "北京", "10"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_encodings_detected(make_csv, encoding):
    rows = [HEADER, GOOD, ["M002", "李娜", "", "LI@QQ.COM", "女", "1991年5月6日", "上海市", "0"]]
    path = make_csv(f"门店_{encoding}.csv", rows, encoding)
    result = import_files(path)
    assert result.kind == "customers"
    assert result.data["name"].tolist() == ["张伟", "李娜"]
    assert result.data["email"].tolist() == ["", "li@qq.com"]
    expected = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gbk": "gb18030", "gb18030": "gb18030"}[
        encoding
    ]
    assert result.files[0].encoding == expected


def test_gb18030_only_characters(make_csv):
    path = make_csv(
        "g.csv", [HEADER, ["M001", "王䶮", "13812345678", "", "男", "", "北京", "€5"]], "gb18030"
    )
    result = import_files(path)
    assert result.data["name"].tolist() == ["王䶮"]


def test_wrong_encoding_override_is_a_clear_error(make_csv):
    path = make_csv("g.csv", [HEADER, GOOD], "gbk")
    with pytest.raises(InputError) as err:
        import_files(path, encoding="utf-8")
    assert "g.csv is not valid utf-8" in err.value.message
    assert "gb18030" in err.value.hint


def test_xlsx_title_rows_merged_totals_blank_and_notes_sheet(shop_xlsx):
    result = import_files(shop_xlsx, channel="电商")
    report = result.files[0]
    assert (report.sheet, report.header_row) == ("会员", 3)
    assert report.rows_read == 6
    assert (report.accepted, report.rejected, report.skipped_blank, report.skipped_total) == (
        3,
        1,
        1,
        1,
    )
    assert report.accepted + report.rejected + report.skipped == report.rows_read
    d = result.data
    assert d["_row"].tolist() == [4, 5, 8]
    assert d["phone"].tolist() == ["13812345678", "13900001111", "13700001111"]
    assert d["first_contact_date"].tolist()[:2] == [
        pd.Timestamp("2024-01-05"),
        pd.Timestamp("2024-02-01"),
    ]
    assert pd.isna(d["first_contact_date"].iloc[2])
    assert "date_invalid:first_contact_date" in d["_flags"].iloc[2]
    assert d["name"].tolist() == ["张三", "李四", "赵六"]
    assert d["city"].tolist() == ["北京市", "深圳市", "杭州市"]
    assert d["region"].tolist() == ["华北", "华南", "华东"]
    assert (d["_channel"] == "电商").all()
    assert "会员积分" in d.columns  # unknown columns kept
    assert any("说明" in w for w in result.warnings)
    rej = result.rejects
    rejected = rej[rej["action"] == "rejected"]
    assert rejected[["row", "code", "value"]].values.tolist() == [[7, "no_contact", "138****0000"]]
    kept = rej[rej["action"] == "kept"]
    assert set(zip(kept["row"], kept["code"])) == {(8, "date_invalid")}
    assert kept["value"].tolist() == ["2023-02-29"]


def test_merged_cells_in_data_are_filled_down(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["客户ID", "姓名", "手机号", "负责人"])
    ws.append(["C1", "张三", "13800000001", "王五"])
    ws.append(["C2", "李四", "13800000002", None])
    ws.merge_cells("D2:D3")
    wb.save(tmp_path / "m.xlsx")
    result = import_files(tmp_path / "m.xlsx")
    assert result.data["owner"].tolist() == ["王五", "王五"]


def test_two_sheets_of_one_kind_become_one_table(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    a = wb.active
    a.title = "一月"
    a.append(["客户ID", "姓名", "手机号"])
    a.append(["C1", "张三", "13800000001"])
    b = wb.create_sheet("二月")
    b.append(["客户ID", "姓名", "手机号", "邮箱"])
    b.append(["C2", "李四", "", "li@x.com"])
    wb.save(tmp_path / "two.xlsx")
    result = import_files(tmp_path / "two.xlsx")
    assert result.data["_sheet"].tolist() == ["一月", "二月"]
    assert result.data["email"].tolist() == ["", "li@x.com"]
    only = import_files(tmp_path / "two.xlsx", sheet="二月")
    assert only.data["name"].tolist() == ["李四"]


def test_csv_row_numbers_count_records_with_multiline_notes(make_csv):
    rows = [
        ["姓名", "手机号", "备注"],
        ["张三", "13800000001", "第一行\n第二行"],
        ["", "", ""],
        ["李四", "bad", ""],
        ["王五", "13800000003", ""],
    ]
    result = import_files(make_csv("n.csv", rows))
    assert result.data["_row"].tolist() == [2, 5]
    assert result.data["notes"].iloc[0] == "第一行\n第二行"
    assert result.rejects.query("action == 'rejected'")["row"].tolist() == [4]


def test_tsv_and_ragged_rows(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text(
        "姓名\t手机号\t城市\n张三\t13800000001\n李四\t13800000002\t上海\n", encoding="utf-8"
    )
    result = import_files(path)
    assert result.data["city"].tolist() == ["", "上海市"]
    assert result.totals["accepted"] == 2


def test_missing_required_column_names_file_and_aliases(make_csv):
    path = make_csv("orders.csv", [["订单号", "客户ID", "下单时间"], ["1", "C1", "2024-01-01"]])
    with pytest.raises(InputError) as err:
        import_files(path, kind="orders")
    msg = err.value.message
    assert "orders.csv" in msg and "amount" in msg and "实付金额" in msg


def test_no_header_found(make_csv):
    path = make_csv("x.csv", [["a", "b"], ["1", "2"]])
    with pytest.raises(InputError, match="no header row found"):
        import_files(path)


def test_empty_and_corrupt_files(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        import_files(tmp_path / "empty.csv")
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 this is not a workbook")
    with pytest.raises(InputError, match="cannot open the workbook"):
        import_files(tmp_path / "broken.xlsx")
    with pytest.raises(InputError, match="not found"):
        import_files(tmp_path / "missing.csv")


def test_mixed_kinds_refused(make_csv):
    c = make_csv("c.csv", [HEADER, GOOD])
    o = make_csv(
        "o.csv", [["订单号", "会员ID", "下单时间", "实付金额"], ["1", "M001", "2024-01-01", "10"]]
    )
    with pytest.raises(InputError, match="different kinds"):
        import_files([c, o])


def test_orders_amounts_refunds_and_rejects(make_csv):
    rows = [
        ["订单号", "会员ID", "手机号", "下单时间", "实付金额", "订单状态"],
        ["A1", "M1", "", "2024-01-05 10:00", "¥1,200.00", "交易成功"],
        ["A2", "M1", "", "2024/1/6 11:00", "300元", "已退款"],
        ["A3", "", "", "2024-01-07", "50", "交易成功"],  # no key
        ["A4", "M2", "", "", "50", "交易成功"],  # no time
        ["A5", "M2", "", "2024-01-08", "abc", "交易成功"],  # bad amount
        ["合计", "", "", "", "1550", ""],
    ]
    result = import_files(make_csv("o.csv", rows))
    assert result.kind == "orders"
    d = result.data
    assert d["amount"].tolist() == [1200.0, -300.0]
    assert d["refund"].tolist() == [False, True]
    assert d["order_time"].tolist() == [
        pd.Timestamp("2024-01-05 10:00"),
        pd.Timestamp("2024-01-06 11:00"),
    ]
    rej = result.rejects.query("action == 'rejected'").sort_values("row")
    assert rej[["row", "code"]].values.tolist() == [
        [4, "no_customer_key"],
        [5, "time_missing"],
        [6, "amount_missing"],
    ]
    assert rej["value"].tolist()[2] == "abc"
    t = result.totals
    assert (t["rows_read"], t["accepted"], t["rejected"], t["skipped"]) == (6, 2, 3, 1)


def test_surveys_bad_scores_kept_and_flagged(make_csv):
    rows = [
        ["手机号", "推荐意愿(0-10)", "满意度"],
        ["13800000001", "9", "5"],
        ["13800000002", "11", "4"],
        ["13800000003", "", "3"],
    ]
    result = import_files(make_csv("s.csv", rows))
    assert result.kind == "surveys"
    assert result.data["score"].tolist()[0] == 9.0
    assert result.data["score"].isna().tolist() == [False, True, True]
    assert result.problem_counts() == {"score_invalid": 2}


def test_user_field_aliases_extend_the_shipped_ones(make_csv, tmp_path):
    path = make_csv("x.csv", [["顾客大名", "手机号"], ["张三", "13800000001"]])
    fields = tmp_path / "my.yaml"
    fields.write_text("customers:\n  fields:\n    name: [顾客大名]\n", encoding="utf-8")
    assert "name" not in import_files(path).data.columns
    assert import_files(path, fields=fields).data["name"].tolist() == ["张三"]


def test_yaml_with_python_tags_is_refused(make_csv, tmp_path):
    from custtool.errors import ConfigError

    path = make_csv("x.csv", [HEADER, GOOD])
    evil = tmp_path / "evil.yaml"
    evil.write_text("customers: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        import_files(path, fields=evil)


row_kind = st.sampled_from(["good", "bad", "blank", "total", "flagged"])


@given(st.lists(row_kind, min_size=1, max_size=40), st.sampled_from(["utf-8", "gbk"]))
@pytest.mark.slow
@settings(
    max_examples=examples(14),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_row_accounting_property(tmp_path, kinds, encoding):
    """rows read = accepted + rejected + skipped, and each row lands where it should."""
    import csv

    rows = [["姓名", "手机号", "邮箱", "生日"]]
    for i, k in enumerate(kinds):
        rows.append(
            {
                "good": [f"客户{i}", f"138{i:08d}", "", "1990-01-01"],
                "bad": [f"客户{i}", "abc", "nope", ""],
                "blank": ["", " ", "", ""],
                "total": ["合计", "", "", ""],
                "flagged": [f"客户{i}", "", f"u{i}@x.com", "2023-02-30"],
            }[k]
        )
    path = tmp_path / f"acc_{encoding}.csv"
    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)
    result = import_files(path, kind="customers")
    t = result.totals
    assert t["rows_read"] == len(kinds)
    assert t["accepted"] + t["rejected"] + t["skipped"] == t["rows_read"]
    assert t["accepted"] == kinds.count("good") + kinds.count("flagged")
    assert t["rejected"] == kinds.count("bad")
    assert t["skipped_blank"] == kinds.count("blank")
    assert t["skipped_total"] == kinds.count("total")
    assert sorted(result.data["_row"]) == [
        i + 2 for i, k in enumerate(kinds) if k in ("good", "flagged")
    ]


def test_semicolon_and_pipe_separated_exports(tmp_path):
    (tmp_path / "semi.csv").write_text(
        "客户导出 2026-10\n姓名;手机号;城市\n张三;13800000001;北京\n李四;13800000002;上海\n",
        encoding="utf-8",
    )
    (tmp_path / "pipe.txt").write_text("姓名|手机号|城市\n张三|13800000001|北京\n", encoding="gbk")
    semi = import_files(tmp_path / "semi.csv")
    assert semi.data["city"].tolist() == ["北京市", "上海市"]
    assert semi.files[0].rows_read == 2
    assert import_files(tmp_path / "pipe.txt").data["phone"].tolist() == ["13800000001"]


def test_refund_lines_without_their_order_are_flagged(make_csv):
    rows = [
        ["订单号", "会员ID", "下单时间", "实付金额", "订单状态"],
        ["A1", "M1", "2024-01-05", "100", "交易成功"],
        ["A1", "M1", "2024-01-07", "100", "已退款"],  # the refund of A1: fine
        ["B9", "M2", "2024-01-08", "50", "已退款"],  # B9 was sold before this export
    ]
    result = import_files(make_csv("o.csv", rows), kind="orders")
    assert result.data["amount"].tolist() == [100.0, -100.0, -50.0]
    assert [("refund_without_order" in f) for f in result.data["_flags"]] == [False, False, True]
    kept = result.rejects.query("code == 'refund_without_order'")
    assert kept["row"].tolist() == [4] and (kept["action"] == "kept").all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["", "A", "B", "C", "D", "订1"]), st.sampled_from([-1, 0, 1])),
        max_size=40,
    ),
    st.booleans(),
)
def test_refunds_without_order_are_those_no_sale_names(lines, pandas_text):
    import numpy as np

    from custtool.ingest import _refunds_without_order

    ids = pd.Series([i for i, _ in lines], dtype="str" if pandas_text else object)
    sign = np.array([s for _, s in lines], dtype=np.int64)
    back = np.flatnonzero(sign < 0)
    sold_ids = {i for i, s in lines if s > 0}
    want = [r for r in back if lines[r][0] != "" and lines[r][0] not in sold_ids]
    got = _refunds_without_order(ids, back, sign > 0)
    assert got.tolist() == want


def test_same_file_twice_warns(make_csv):
    path = make_csv("c.csv", [HEADER, GOOD])
    result = import_files([path, path])
    assert result.totals["accepted"] == 2
    assert any("named twice" in w for w in result.warnings)


# --------------------------------------------------------------------------- phones, places
def test_import_keeps_every_number_of_a_cell_and_extensions(make_csv):
    path = make_csv(
        "c.csv",
        [
            ["姓名", "手机号"],
            ["张伟", "13812345678/13912345678"],
            ["李娜", "021-62345678 转 123"],
            ["王五", "00000000000"],  # a placeholder number: no contact, rejected
            ["赵六", "13700001111"],
        ],
    )
    result = import_files(path)
    data = result.data
    assert data["phone"].tolist() == ["13812345678", "021-62345678", "13700001111"]
    assert data["phones"].tolist() == ["13812345678;13912345678", "021-62345678", "13700001111"]
    assert data["phone_ext"].tolist() == ["", "123", ""]
    assert result.totals["rejected"] == 1
    assert result.rejects[["row", "value", "code"]].values.tolist() == [
        [4, "00000000000", "no_contact"]
    ]


def test_clean_links_records_on_a_second_number_of_a_cell(make_csv):
    """张伟's first row lists two numbers; his second row has only the second: one customer,
    both numbers in phones. 王五 and 赵六 wrote the placeholder 0000-0000000 beside an
    e-mail: the placeholder is cleared, so it never joins them."""
    from custtool.clean import dedupe

    path = make_csv(
        "c.csv",
        [
            ["姓名", "手机号", "邮箱"],
            ["张伟", "13812345678、13912345678", ""],
            ["张伟", "13912345678", "zw@example.cn"],
            ["王五", "0000-0000000", "w5@example.cn"],
            ["赵六", "0000-0000000", "z6@example.cn"],
        ],
    )
    imported = import_files(path).data
    assert imported["phone"].tolist() == ["13812345678", "13912345678", "", ""]
    assert imported["_flags"].tolist() == ["", "", "phone_dummy", "phone_dummy"]
    customers, lineage, _ = dedupe(imported)
    assert customers["name"].tolist() == ["张伟", "王五", "赵六"]
    assert customers["phones"].tolist() == ["13812345678;13912345678", "", ""]
    assert lineage["customer_id"].nunique() == 3
    assert lineage["customer_id"].iloc[0] == lineage["customer_id"].iloc[1]


def test_address_and_city_columns_give_province_district_and_region(make_csv):
    path = make_csv(
        "c.csv",
        [
            ["姓名", "手机号", "城市", "地址"],
            ["张伟", "13812345678", "深圳", "广东省深圳市南山区科技园"],
            ["李娜", "13912345678", "", "北京市朝阳区建国路88号"],
            ["王五", "13712345678", "杭州市西湖区", ""],
            ["赵六", "13612345678", "火星", ""],
        ],
    )
    data = import_files(path).data
    # the address stays as written; the city column holds the standard city
    assert data["address"].tolist() == [
        "广东省深圳市南山区科技园",
        "北京市朝阳区建国路88号",
        "",
        "",
    ]
    assert data["city"].tolist() == ["深圳市", "北京市", "杭州市", "火星"]
    assert data["province"].tolist() == ["广东省", "北京市", "浙江省", ""]
    assert data["district"].tolist() == ["南山区", "朝阳区", "西湖区", ""]
    assert data["region"].tolist() == ["华南", "华北", "华东", ""]


def test_an_address_column_alone_gives_the_city(make_csv):
    path = make_csv(
        "c.csv", [["姓名", "手机号", "联系地址"], ["张伟", "13812345678", "广东省深圳市南山区"]]
    )
    data = import_files(path).data
    row = data.iloc[0]
    assert (row["address"], row["province"], row["city"], row["district"], row["region"]) == (
        "广东省深圳市南山区",
        "广东省",
        "深圳市",
        "南山区",
        "华南",
    )


# --------------------------------------------------------------------------- DataFrames in
def test_import_files_takes_a_dataframe_as_one_file(make_csv, tmp_path):
    """A DataFrame imports as the CSV written from it would: same values, flags, rejects
    and row accounting; its file is <DataFrame n> (n: its place among the inputs)."""
    import numpy as np

    df = pd.DataFrame(
        {
            "姓名": ["张三", "李四", None, "王五"],
            "手机号": [
                13812345678.0,
                np.nan,
                13912345678.0,
                13800138000.0,
            ],  # as pandas reads a number column
            "注册时间": pd.to_datetime(
                ["2024-01-05", None, "2024-02-01 10:30", "2024-03-01"], format="ISO8601"
            ),
            "城市": ["深圳", "北京市朝阳区", "", "上海"],
        }
    )
    from_frame = import_files([df])
    path = tmp_path / "df.csv"
    df.to_csv(path, index=False)
    from_csv = import_files(path)
    provenance = ["_source_file", "_channel"]
    pd.testing.assert_frame_equal(
        from_frame.data.drop(columns=provenance), from_csv.data.drop(columns=provenance)
    )
    assert from_frame.data["_source_file"].unique().tolist() == ["<DataFrame 0>"]
    assert from_frame.data["phone"].tolist() == ["13812345678", "13912345678"]
    assert from_frame.data["_row"].tolist() == [2, 4]  # the header is row 1, as in a CSV
    assert (
        from_frame.totals
        == from_csv.totals
        == {
            "rows_read": 4,
            "accepted": 2,
            "rejected": 2,
            "skipped": 0,
            "skipped_blank": 0,
            "skipped_total": 0,
            "flagged": 0,
        }
    )
    assert from_frame.rejects["file"].tolist() == ["<DataFrame 0>", "<DataFrame 0>"]
    assert from_frame.rejects["row"].tolist() == from_csv.rejects["row"].tolist() == [3, 5]


def test_dataframes_and_paths_mix(make_csv):
    path = make_csv("shop.csv", [["姓名", "手机号"], ["张三", "13812345678"]])
    df = pd.DataFrame({"name": ["李四"], "phone": ["13912345678"]})
    result = import_files([path, df], channel=None)
    assert result.data["_source_file"].tolist() == ["shop.csv", "<DataFrame 1>"]
    assert result.data["_channel"].tolist() == ["shop", "<DataFrame 1>"]
    assert [f.file for f in result.files] == ["shop.csv", "<DataFrame 1>"]


def test_a_dataframe_without_known_headers_is_refused():
    with pytest.raises(InputError, match="DataFrame 0"):
        import_files(pd.DataFrame({"x": [1], "y": [2]}))


def test_phone_ext_stays_text_through_a_csv(make_csv, tmp_path):
    from custtool.io import read_table, write_table

    path = make_csv("c.csv", [["姓名", "手机号"], ["李娜", "021-62345678 分机 0123"]])
    data = import_files(path).data
    assert data["phone_ext"].tolist() == ["0123"]
    write_table(data, tmp_path / "out.csv")
    assert read_table(tmp_path / "out.csv")["phone_ext"].tolist() == ["0123"]


def test_the_templates_example_row_left_in_is_named(tmp_path):
    """An orders template filled below its example row: the example is named by row (once),
    a row that differs from it in one identity field is not, and every row is accounted for
    as before (the warning takes nothing away)."""
    from openpyxl import load_workbook

    from custtool.template import TEMPLATE_FIELDS, write_template

    path = tmp_path / "订单导入.xlsx"
    write_template("orders", path)
    wb = load_workbook(path)
    ws = wb.worksheets[0]
    example = [e for _f, _r, e, _c, _n in TEMPLATE_FIELDS["orders"]]
    real = ["SO2", "C9", "13900000000", "2024-05-11 09:00", "120.00", "门店", "", "", "1", "否"]
    near = list(example)
    near[2] = "13900000001"  # the example's order and customer, another phone
    for r, values in ((3, real), (4, near)):
        for c, v in enumerate(values, start=1):
            ws.cell(row=r, column=c, value=v)
    wb.save(path)
    got = import_files(path)
    assert [(r.rows_read, r.accepted) for r in got.files] == [(3, 3)]
    named = [w for w in got.warnings if "example row" in w]
    assert len(named) == 1 and ": row 2 is the import template's example row" in named[0]


@pytest.mark.parametrize("kind", ["customers", "orders", "interactions", "surveys"])
def test_every_template_imports_back_as_its_kind(tmp_path, kind):
    """`custtool template KIND` then `custtool import` of the file as it is (no --sheet, no
    --kind): the data sheet is found, the 填写说明 sheet is not taken for data (its notes
    must not read as a header row), and the example row is the one row, named as such."""
    from custtool.template import write_template

    path = tmp_path / f"{kind}.xlsx"
    write_template(kind, path)
    got = import_files(path)
    assert got.kind == kind
    assert [(r.rows_read, r.accepted) for r in got.files] == [(1, 1)]
    assert any(": row 2 is the import template's example row" in w for w in got.warnings)
