"""The CLI end to end with typer's CliRunner: exit codes, messages, --json, every command."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from custtool.cli import app
from custtool.ingest import import_files

runner = CliRunner()

HEADER = ["会员卡号", "姓名", "联系电话", "邮箱"]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("custtool ")


def test_import_json_equals_library_result(make_csv, tmp_path):
    rows = [
        HEADER,
        ["M1", "张三", "13800000001", ""],
        ["M2", "李四", "", ""],
        ["", "", "", ""],
        ["M3", "王五", "", "w@x.com"],
    ]
    src = make_csv("门店.csv", rows, "gbk")
    out = tmp_path / "out" / "customers.parquet"
    result = runner.invoke(app, ["import", str(src), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    lib = import_files(src)
    assert payload["totals"]["rows_read"] == lib.totals["rows_read"] == 4
    assert (
        payload["totals"]["accepted"] == 2
        and payload["totals"]["rejected"] == 1
        and payload["totals"]["skipped"] == 1
    )
    f = payload["files"][0]
    assert {
        k: f[k] for k in ("file", "sheet", "kind", "rows_read", "accepted", "rejected", "skipped")
    } == {
        "file": "门店.csv",
        "sheet": "",
        "kind": "customers",
        "rows_read": 4,
        "accepted": 2,
        "rejected": 1,
        "skipped": 1,
    }
    assert payload["output"] == str(out)
    written = pd.read_parquet(out)
    assert written["phone"].tolist() == ["13800000001", ""]
    rejects = pd.read_csv(payload["rejects"], dtype=str, keep_default_na=False)
    assert rejects[["row", "code", "action"]].values.tolist() == [["3", "no_contact", "rejected"]]


def test_import_max_rejects_exit_1(make_csv, tmp_path):
    src = make_csv("c.csv", [HEADER, ["M1", "张三", "bad", ""], ["M2", "李四", "13800000002", ""]])
    out = tmp_path / "c.parquet"
    result = runner.invoke(
        app, ["import", str(src), "-o", str(out), "--max-rejects", "0", "--quiet"]
    )
    assert result.exit_code == 1
    assert out.exists()  # done, but over the limit
    ok = runner.invoke(app, ["import", str(src), "--max-rejects", "1", "--quiet"])
    assert ok.exit_code == 0


def test_values_that_look_like_rich_markup_are_printed_as_text(example_data, tmp_path):
    # an owner or city "[/b]" in the data, or --keys "phone,[/x]", raised rich's MarkupError
    # in a summary table or warning: exit 3 "nothing was written" after the report was written
    tagged = example_data.frame("tagged")
    tagged.loc[tagged.index[:3], "owner"] = "[/b]"
    tagged.loc[tagged.index[:3], "city"] = "[/red]"
    src = tmp_path / "tagged.parquet"
    tagged.to_parquet(src)
    cases = [
        (["pivot", str(src), "--rows", "city,owner"], "[/b]"),
        (["funnel", str(src)], "[/b]"),
        (["report", str(src), "-o", str(tmp_path / "r.xlsx"), "--split-by", "owner"], "[/b]"),
        (["clean", str(example_data.paths["customers"]), "-o", str(tmp_path / "c.parquet")]
         + ["--keys", "phone,[/x]"], "--keys [/x]: no such column"),
    ]  # fmt: skip
    for args, shown in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (args, r.output)
        assert shown in r.output, (args, r.output)


def test_paths_that_look_like_rich_markup_are_printed_as_written(make_csv, tmp_path):
    # info() read its line as markup: -o 'o/[x]/m.parquet' printed "Wrote o//m.parquet"
    src = make_csv("门店.csv", [HEADER, ["M1", "张三", "13800000001", ""]], "utf-8")
    out = tmp_path / "[x]" / "m.parquet"
    r = runner.invoke(app, ["import", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"Wrote {out}" in r.output and out.exists()


def test_negative_reject_limits_are_usage_errors(make_csv, tmp_path):
    # --max-rejects -5 / --fail-on-rejects -5 were taken: every run "over the limit", exit 1
    # (a pipeline's fail_on_rejects: -5 is refused by its model)
    src = make_csv("门店.csv", [HEADER, ["M1", "张三", "13800000001", ""]], "utf-8")
    out = tmp_path / "c.parquet"
    for args in (
        ["import", str(src), "-o", str(out), "--max-rejects", "-5"],
        ["run", str(tmp_path / "p.yaml"), "--fail-on-rejects", "-5"],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "greater than or equal to 0" in r.output and not out.exists()


def test_bad_inputs_exit_2_one_line_no_traceback_nothing_written(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip")
    for name in ["empty.csv", "broken.xlsx", "missing.csv"]:
        out = tmp_path / f"{name}.parquet"
        result = runner.invoke(app, ["import", str(tmp_path / name), "-o", str(out)])
        assert result.exit_code == 2, (name, result.output)
        assert "Error:" in result.stderr and name in result.stderr
        assert "Traceback" not in result.output + result.stderr
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_missing_column_message(make_csv, tmp_path):
    src = make_csv("订单.csv", [["订单号", "会员ID", "实付金额"], ["1", "M1", "10"]])
    result = runner.invoke(app, ["import", str(src), "--kind", "orders"])
    assert result.exit_code == 2
    assert (
        "订单.csv" in result.stderr
        and "order_time" in result.stderr
        and "下单时间" in result.stderr
    )


def test_unknown_kind_is_usage_error(make_csv):
    src = make_csv("c.csv", [HEADER, ["M1", "张三", "13800000001", ""]])
    result = runner.invoke(app, ["import", str(src), "--kind", "widgets"])
    assert result.exit_code == 2
    assert "unknown kind" in result.stderr


def test_import_writes_xlsx_and_csv_without_live_formulas(make_csv, tmp_path):
    from openpyxl import load_workbook

    src = make_csv(
        "c.csv",
        [
            HEADER + ["备注"],
            ["M1", "=1+2", "13800000001", "", "@SUM(A1)"],
            ["M2", "-2+3", "13800000002", "", "+cmd"],
        ],
    )
    xlsx, csvp = tmp_path / "c.xlsx", tmp_path / "c.csv.out.csv"
    assert runner.invoke(app, ["import", str(src), "-o", str(xlsx), "-q"]).exit_code == 0
    assert runner.invoke(app, ["import", str(src), "-o", str(csvp), "-q"]).exit_code == 0
    ws = load_workbook(xlsx).active
    for row in ws.iter_rows():
        for cell in row:
            assert cell.data_type != "f", cell.coordinate
    text = csvp.read_text(encoding="utf-8-sig")
    for bad in ("\n=1+2", ",=1+2", ",@SUM", ",+cmd", ",-2+3"):
        assert bad not in text
    assert "'=1+2" in text and "'@SUM(A1)" in text


def test_template_command(tmp_path):
    from openpyxl import load_workbook

    out = tmp_path / "客户信息导入模板.xlsx"
    result = runner.invoke(app, ["template", "customers", "-o", str(out)])
    assert result.exit_code == 0, result.output
    wb = load_workbook(out)
    assert wb.sheetnames == ["客户档案导入", "选项", "填写说明"]
    ws = wb["客户档案导入"]
    headers = [c.value for c in ws[1]]
    assert "姓名*" in headers and "手机号*" in headers and "备注" in headers
    validations = ws.data_validations.dataValidation
    gender_col = headers.index("性别*")
    from openpyxl.utils import get_column_letter

    letter = get_column_letter(gender_col + 1)
    assert any(str(dv.sqref).startswith(f"{letter}2") and dv.type == "list" for dv in validations)
    options = [wb["选项"].cell(row=i, column=gender_col + 1).value for i in (1, 2, 3)]
    assert options == ["男", "女", "未知"]
    assert ws.cell(row=2, column=headers.index("手机号*") + 1).value == "13812345678"
    # the template imports as customers with its example row, and the import says so
    imported = import_files(out)
    assert imported.kind == "customers" and imported.data["phone"].tolist() == ["13812345678"]
    assert [w for w in imported.warnings if "example row" in w] == [
        "客户信息导入模板.xlsx, sheet '客户档案导入': row 2 is the import template's example "
        "row (custtool template), imported as 客户档案; delete it from the file if it is not "
        "a real record"
    ]
    bad = runner.invoke(app, ["template", "widgets", "-o", str(tmp_path / "x.xlsx")])
    assert bad.exit_code == 2


def test_examples_import(tmp_path):
    from pathlib import Path

    ex = Path(__file__).resolve().parent.parent / "examples"
    result = runner.invoke(
        app,
        [
            "import",
            str(ex / "电商平台会员.xlsx"),
            str(ex / "门店会员.csv"),
            str(ex / "公众号线索.csv"),
            "-o",
            str(tmp_path / "c.parquet"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    t = json.loads(result.stdout)["totals"]
    assert t["rows_read"] == t["accepted"] + t["rejected"] + t["skipped"]
    assert t["accepted"] > 400 and t["rejected"] >= 4
