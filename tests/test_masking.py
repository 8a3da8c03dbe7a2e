"""The one masking policy and the one formula-safe workbook factory (SPEC E4, E5, H3)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from custtool.cli import app
from custtool.report.masking import column_maskers, mask_bank_cards, mask_frame, mask_free_text

runner = CliRunner()

ID = "11010119900307123X"
CARD = "6222021234567890123"
CARD2 = "6217000010001234567"  # written inside a note
PHONE = "13812345678"
UNMATCHED_PHONE = "13900001111"  # orders of nobody in the customers file

CUSTOMERS = f"""客户编号,姓名,手机号,身份证号,银行卡号,所属行业,备注
V001,张三,{PHONE},{ID},{CARD},零售,老客户 卡号{CARD2}
V002,李四明,13987654321,,,金融,=HYPERLINK("http://x")
V003,王五,13711112222,,,零售,
"""
ORDERS = f"""订单号,客户ID,手机号,下单时间,实付金额
O1,V001,{PHONE},2026-09-01,100
O2,V002,13987654321,2026-09-10,250.5
O3,V003,13711112222,2026-08-02,80
O4,,{UNMATCHED_PHONE},2026-09-20,60
"""
INTERACTIONS = f"""客户编号,手机号,跟进时间,跟进内容,跟进结果,下次跟进时间,跟进人
V001,{PHONE},2026-09-02,回访 客户身份证{ID},有意向,2026-09-25,王经理
V002,13987654321,2026-09-11,电话沟通,有意向,2026-09-28,王经理
"""


@pytest.fixture(scope="module", autouse=True)
def _key():
    """These inputs hold ID and card numbers: they are imported encrypted (custtool.crypto)."""
    from custtool.crypto import new_key

    before = os.environ.get("CUSTTOOL_KEY")
    os.environ["CUSTTOOL_KEY"] = new_key()
    yield
    if before is None:
        os.environ.pop("CUSTTOOL_KEY", None)
    else:
        os.environ["CUSTTOOL_KEY"] = before


def _write_inputs(d: Path, report: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (d / "orders.csv").write_text(ORDERS, encoding="utf-8")
    (d / "log.csv").write_text(INTERACTIONS, encoding="utf-8")
    (d / "pipeline.yaml").write_text(
        "name: t\nout: out\ninputs:\n  customers: [customers.csv]\n  orders: [orders.csv]\n"
        f"  interactions: [log.csv]\nreport: {report}\ncards:\n  format: html\n",
        encoding="utf-8",
    )
    return d / "pipeline.yaml"


def _text_of_outputs(folder: Path) -> dict[str, str]:
    """Every xlsx/html/csv/json/md output of a run as text (xlsx: all its XML members)."""
    out: dict[str, str] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".xlsx":
            with zipfile.ZipFile(p) as z:
                out[p.name] = "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
        elif p.suffix in {".html", ".csv", ".json", ".md"}:
            out[p.name] = p.read_text(encoding="utf-8-sig")
    return out


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """The run folder of the small pipeline for a ``report:`` setting (each run once)."""
    folders: dict[str, Path] = {}

    def run(report: str) -> Path:
        if report not in folders:
            yaml_path = _write_inputs(tmp_path_factory.mktemp("run"), report)
            result = runner.invoke(app, ["run", str(yaml_path), "--json", "--quiet"])
            assert result.exit_code == 0, result.output + result.stderr
            folders[report] = Path(json.loads(result.stdout)["folder"])
        return folders[report]

    return run


@pytest.mark.parametrize("report", ["{role: admin, mask: false}", "{}"])
def test_id_and_bank_card_never_reach_an_output(run_folder, report):
    folder = run_folder(report)
    texts = _text_of_outputs(folder)
    # the outputs this test is about are there (and hold the masked forms)
    assert {
        "report.xlsx",
        "clean_report.xlsx",
        "followups.xlsx",
        "segment_summary.xlsx",
        "cards.html",
        "rejects.csv",
    } <= set(texts)
    assert "6222***********0123" in texts["report.xlsx"]  # the bank card, masked
    assert "110***********123X" in texts["report.xlsx"]  # the ID number, masked
    for name, text in texts.items():
        for secret in (ID, CARD, CARD2):
            assert secret not in text, (name, secret, report)
    # the bank card is imported as its own canonical field, kept encrypted in the data
    from custtool.crypto import load_key, reveal_frame

    data = pd.read_parquet(folder / "customers.parquet")
    stored = data.loc[data["bank_card"] != "", "bank_card"]
    assert stored.str.startswith("enc1:").all()
    assert reveal_frame(data, load_key())["bank_card"][stored.index].tolist() == [CARD]
    if report == "{}":  # masked by default: no full phone in any export either
        for name, text in texts.items():
            for phone in (PHONE, UNMATCHED_PHONE, "13987654321"):
                assert phone not in text, (name, phone)
    else:  # an admin who asked for --no-mask sees phones, but never the ID or bank card
        assert PHONE in texts["report.xlsx"]


def test_unmatched_orders_sheet_has_no_full_phone(run_folder):
    from openpyxl import load_workbook

    folder = run_folder("{}")
    wb = load_workbook(folder / "segment_summary.xlsx", read_only=True)
    assert "未匹配订单" in wb.sheetnames
    cells = [
        v for row in wb["未匹配订单"].iter_rows(values_only=True) for v in row if isinstance(v, str)
    ]
    assert "139****1111" in cells
    assert not any(UNMATCHED_PHONE in v for v in cells)


def test_role_that_may_not_unmask_is_exit_2_for_every_command(tmp_path):
    _write_inputs(tmp_path, "{}")
    cust = tmp_path / "customers.csv"
    seg = tmp_path / "seg.csv"
    pd.DataFrame(
        {
            "customer_id": ["C1"],
            "name": ["张三"],
            "phone": [PHONE],
            "monetary": [1.0],
            "tier": ["A"],
        }
    ).to_csv(seg, index=False)
    commands = {
        "report": [
            "report",
            str(seg),
            "-o",
            str(tmp_path / "r.xlsx"),
            "--role",
            "analyst",
            "--no-mask",
        ],
        "followups": [
            "followups",
            str(seg),
            "--log",
            str(tmp_path / "log.csv"),
            "-o",
            str(tmp_path / "f.xlsx"),
            "--role",
            "analyst",
            "--no-mask",
        ],
        "clean": [
            "clean",
            str(cust),
            "-o",
            str(tmp_path / "c.parquet"),
            "--report",
            str(tmp_path / "cr.xlsx"),
            "--role",
            "analyst",
            "--no-mask",
        ],
    }
    yaml_path = _write_inputs(tmp_path / "run", "{role: analyst, mask: false}")
    commands["run"] = ["run", str(yaml_path), "--quiet"]
    for name, args in commands.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output, result.stderr)
        assert "always sees masked personal data" in result.stderr, name
    assert not list(tmp_path.glob("*.xlsx")) and not (tmp_path / "c.parquet").exists()
    assert not (tmp_path / "run" / "out").exists()  # the run stopped before writing anything


def test_followups_no_mask_for_admin_keeps_id_masked(tmp_path):
    from openpyxl import load_workbook

    _write_inputs(tmp_path, "{}")
    seg = tmp_path / "seg.csv"
    pd.DataFrame(
        {"customer_id": ["V001"], "name": ["张三"], "phone": [PHONE], "owner": ["王经理"]}
    ).to_csv(seg, index=False)
    out = tmp_path / "f.xlsx"
    result = runner.invoke(
        app,
        [
            "followups",
            str(seg),
            "--log",
            str(tmp_path / "log.csv"),
            "-o",
            str(out),
            "--as-of",
            "2026-09-30",
            "--no-mask",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    with zipfile.ZipFile(out) as z:
        text = "".join(z.read(n).decode() for n in z.namelist())
    assert "张三" in text  # unmasked, as asked
    assert ID not in text  # ID numbers are masked even then
    wb = load_workbook(out, read_only=True)
    assert wb.sheetnames


def test_clean_report_masked_by_default(tmp_path):
    from openpyxl import load_workbook

    _write_inputs(tmp_path, "{}")
    cust = tmp_path / "customers.csv"
    dup = CUSTOMERS + f"V009,张三,{PHONE},,,零售,\n"  # a duplicate: the report's examples show it
    cust.write_text(dup, encoding="utf-8")
    imported = tmp_path / "imported.parquet"
    assert runner.invoke(app, ["import", str(cust), "-o", str(imported), "--quiet"]).exit_code == 0

    def report_strings(*extra: str) -> list[str]:
        rep = tmp_path / "cr.xlsx"
        result = runner.invoke(
            app,
            [
                "clean",
                str(imported),
                "-o",
                str(tmp_path / "c.parquet"),
                "--report",
                str(rep),
                "--quiet",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output + result.stderr
        wb = load_workbook(rep, read_only=True)
        return [
            v
            for ws in wb.worksheets
            for row in ws.iter_rows(values_only=True)
            for v in row
            if isinstance(v, str)
        ]

    masked = report_strings()
    assert "138****5678" in masked and "张*" in masked
    assert not any(PHONE in v or ID in v or "张三" == v for v in masked)
    unmasked = report_strings("--no-mask")
    assert PHONE in unmasked and "张三" in unmasked
    assert not any(ID in v or CARD in v for v in unmasked)


def test_policy_by_name_label_alias_and_content():
    df = pd.DataFrame(
        {
            "银行卡号": [CARD, ""],  # an alias of bank_card
            "身份证号": [ID, ""],  # the label of id_number
            "扩展信息": [f"卡 {CARD2}", f"电话{PHONE}"],  # unknown column: scanned
            "order_id": ["1234567890123456789", "O2"],  # never personal: not scanned
            "tier": ["重要价值", ""],
        }
    )
    assert set(column_maskers(df)) == {"银行卡号", "身份证号", "扩展信息"}
    assert set(column_maskers(df, mask=False)) == {"银行卡号", "身份证号", "扩展信息"}
    masked = mask_frame(df)
    assert masked["银行卡号"].tolist() == ["6222***********0123", ""]
    assert masked["身份证号"].tolist() == ["110***********123X", ""]
    assert masked["扩展信息"].tolist() == ["卡 6217***********4567", "电话138****5678"]
    assert masked["order_id"].tolist() == ["1234567890123456789", "O2"]
    kept = mask_frame(df, mask=False)  # --no-mask: phones stay, ID numbers and cards do not
    assert kept["扩展信息"].tolist() == ["卡 6217***********4567", f"电话{PHONE}"]
    assert kept["身份证号"].tolist() == ["110***********123X", ""]


def test_bank_card_and_text_maskers_hand_checked():
    assert mask_bank_cards(pd.Series(["6222 0212 3456 7890", "1234", ""])).tolist() == [
        "6222********7890",
        "****",
        "",
    ]
    assert mask_free_text(pd.Series([f"身份证{ID},卡{CARD}"])).tolist() == [
        "身份证110***********123X,卡6222***********0123"
    ]


def test_rejects_masked_by_their_field():
    rej = pd.DataFrame(
        {
            "column": ["phone", "id_number", "bank_card", "notes"],
            "value": ["1381234567x", ID, "62220212", f"tel {PHONE}"],
        }
    )
    assert mask_frame(rej)["value"].tolist() == [
        "138****567x",
        "110***********123X",
        "********",
        "tel 138****5678",
    ]
    assert mask_frame(rej, mask=False)["value"].tolist() == [
        "1381234567x",
        "110***********123X",
        "********",
        f"tel {PHONE}",
    ]


# --------------------------------------------------------------------------- workbook factory
FORMULAS = ["=1+1", "@SUM(A1)", "+8613812345678", "-1"]


def _cells(path: Path) -> dict[str, tuple[str, object]]:
    """Every cell of every sheet: value → (openpyxl data type, value)."""
    from openpyxl import load_workbook

    wb = load_workbook(path)
    out = {}
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if c.value is not None:
                    out.setdefault(str(c.value), (c.data_type, c.value))
    return out


def _assert_text(path: Path) -> None:
    cells = _cells(path)
    for f in FORMULAS:
        assert f in cells, (path.name, f)
        assert cells[f][0] == "s", (path.name, f, cells[f])  # a string, never a formula ("f")
    with zipfile.ZipFile(path) as z:
        assert not any(
            "<f>" in z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/")
        )


def test_every_factory_workbook_writes_formula_text_as_text(tmp_path):
    from custtool.cards import write_cards
    from custtool.io import write_table
    from custtool.report import write_workbook
    from custtool.report.pivot import write_pivot
    from custtool.xlsx import open_workbook, write_sheets

    frame = pd.DataFrame(
        {"customer_id": ["C1", "C2", "C3", "C4"], "notes": FORMULAS, "n": [-5, 2, 3, 4]}
    )
    write_sheets({"s": frame}, tmp_path / "sheets.xlsx")
    write_table(frame, tmp_path / "table.xlsx")
    write_pivot(frame.rename(columns={"notes": "tier"}), tmp_path / "pivot.xlsx")
    seg = frame.assign(tier=["A", "B", "A", "B"], monetary=[1.0, 2.0, 3.0, 4.0], company=FORMULAS)
    write_workbook(seg, tmp_path / "report.xlsx")
    cards = pd.DataFrame({"customer_id": ["C1", "C2", "C3", "C4"], "basic": FORMULAS})
    write_cards(cards, None, tmp_path / "cards.xlsx", fmt="xlsx")
    for name in ("sheets.xlsx", "table.xlsx", "pivot.xlsx", "report.xlsx", "cards.xlsx"):
        _assert_text(tmp_path / name)
    assert _cells(tmp_path / "sheets.xlsx")["-5"][0] == "n"  # a number stays a number
    # a crash while writing leaves nothing behind (atomic temp + rename)
    with pytest.raises(RuntimeError), open_workbook(tmp_path / "crash.xlsx") as wb:
        wb.add_worksheet("x").write_string(0, 0, "a")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["sheets.xlsx", "table.xlsx", "pivot.xlsx", "report.xlsx", "cards.xlsx"]
    )


def test_segment_summary_writes_formula_text_as_text(tmp_path):
    from custtool.segment import segment_customers, write_summary_workbook

    orders = pd.DataFrame(
        {
            "order_id": ["O1", "O2"],
            "customer_id": ["C1", "C2"],
            "order_time": pd.to_datetime(["2026-01-01", "2026-02-01"]),
            "amount": [10.0, 20.0],
        }
    )
    customers = pd.DataFrame(
        {"customer_id": ["C1", "C2"], "name": ["张三", "李四"], "industry": ["=1+1", "@SUM(A1)"]}
    )
    result = segment_customers(orders, customers)
    write_summary_workbook(result, tmp_path / "s.xlsx")
    with zipfile.ZipFile(tmp_path / "s.xlsx") as z:
        assert not any(
            "<f>" in z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/")
        )


def test_import_rejects_masked_when_asked(tmp_path):
    src = tmp_path / "leads.csv"
    src.write_text(
        f"姓名,手机号,身份证号,银行卡号\n张三,1381234567a,{ID},{CARD}\n李四,{PHONE},,\n",
        encoding="utf-8",
    )
    for extra, expected in (([], "1381234567a"), (["--mask-rejects"], "138****567a")):
        rej = tmp_path / "rej.csv"
        result = runner.invoke(
            app,
            [
                "import",
                str(src),
                "-o",
                str(tmp_path / "c.parquet"),
                "--rejects",
                str(rej),
                "--quiet",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output + result.stderr
        assert pd.read_csv(rej, dtype=str)["value"].tolist() == [expected]
    data = pd.read_parquet(tmp_path / "c.parquet")
    assert data["bank_card"].tolist() == [""] and data["phone"].tolist() == [PHONE]


def test_addresses_keep_province_city_district_only():
    import pandas as pd

    from custtool.report.masking import mask_addresses, mask_frame

    s = pd.Series(
        [
            "广东省深圳市南山区科技园路1号",
            "北京市朝阳区建国路88号",
            "",
            "上海市浦东新区",
            "内蒙古自治区呼和浩特市新城区中山路5号",
            "某某路12号",
        ]
    )
    want = [
        "广东省深圳市南山区****",
        "北京市朝阳区****",
        "",
        "上海市浦东新区",
        "内蒙古自治区呼和浩特市新城区****",
        "****",
    ]
    assert mask_addresses(s).tolist() == want
    assert mask_frame(pd.DataFrame({"address": s}))["address"].tolist() == want
    assert mask_frame(pd.DataFrame({"address": s}), mask=False)["address"].tolist() == s.tolist()


# ---- the maskers of names, phones and emails (Arrow kernels over the column, issue 12)
def _ref_phone(v: str) -> str:
    """One value as the policy masks it (per-value Python: the reference of the test)."""
    import re

    v = v.strip()
    if ";" in v:
        return ";".join(_ref_phone(x) for x in v.split(";"))
    if re.fullmatch(r"0\d{2,3}-\d{7,8}(-\d+)?", v):
        return re.sub(r"^(0\d{2,3})-\d+?(\d{4})(-\d+)?$", r"\1-****\2", v)
    return "" if not v else v[:3] + "****" + v[-4:] if len(v) >= 8 else "****"


def _ref_email(v: str) -> str:
    v = v.strip()
    if ";" in v:
        return ";".join(_ref_email(x) for x in v.split(";"))
    if "@" in v:
        return v[:1] + "***@" + v.split("@", 1)[1]
    return v[:1] + "***" if v else ""


def _ref_name(v: str) -> str:
    v = v.strip()
    return {0: "", 1: "*", 2: v[:1] + "*"}.get(len(v), v[:1] + "*" + v[-1:])


def test_phone_email_name_maskers_hand_checked():
    from custtool.report.masking import mask_emails, mask_names, mask_phones

    phones = ["13812345678", " 021-62345678 ", "0755-1234567-89", "0２1-62345678", "1234567"]
    phones += ["12345678", "", None, "138;021-62345678", "１３８１２３４５６７８"]
    out = mask_phones(pd.Series(phones, dtype="string", index=range(10, 20), name="phone"))
    assert out.tolist() == [
        "138****5678",
        "021-****5678",
        "0755-****4567",
        "0２1-****5678",  # a full-width digit is a digit (Python's \d, as before)
        "****",
        "123****5678",
        "",
        "",
        "****;021-****5678",
        "１３８****５６７８",
    ]
    assert out.dtype == "str" and list(out.index) == list(range(10, 20)) and out.name == "phone"
    emails = ["zhang@example.com", "@x.com", "a@b@c", "abc", "", None, "张@例子.中国"]
    assert mask_emails(pd.Series(emails + ["a@x.com;b@y.org"], dtype=object)).tolist() == [
        "z***@example.com",
        "@***@x.com",
        "a***@b@c",
        "a***",
        "",
        "",
        "张***@例子.中国",
        "a***@x.com;b***@y.org",
    ]
    names = ["张三", "欧阳小明", "张", "", None, " 李四 ", "ab"]
    assert mask_names(pd.Series(names)).tolist() == ["张*", "欧*明", "*", "", "", "李*", "a*"]


@pytest.mark.parametrize("dtype", ["string", object])
def test_phone_email_name_maskers_match_the_per_value_rule(dtype):
    """Random text (digits, full-width digits, CJK, @, ;, -, spaces, newlines) masked column
    at once as the per-value rule masks each value, in any chunk."""
    import random

    from custtool.report.masking import mask_emails, mask_names, mask_phones

    rng = random.Random(7)
    alphabet = list("0123456789０１２-@.;aZé张三 \n") + ["021-", "@@", "138"]
    vals = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(3000)]
    vals += ["021-62345678", "0755-1234567-89", "13812345678", "a@b.cn"]
    s = pd.Series(vals, dtype=dtype)
    for fn, ref in ((mask_phones, _ref_phone), (mask_emails, _ref_email), (mask_names, _ref_name)):
        expected = [ref(v) for v in vals]
        assert fn(s).tolist() == expected, fn.__name__
        assert fn(s.iloc[1000:1500]).tolist() == expected[1000:1500], fn.__name__


def test_free_text_columns_without_a_digit_or_at_are_not_scanned_and_still_masked():
    """The masking pre-filter skips a text column with no digit and no ``@`` (most columns
    of a customer table) without a regex over its values; a column with one phone, e-mail or
    ID number in a later row is still found and masked, by role as before."""
    import pandas as pd

    from custtool.report.masking import _ALWAYS_HINT, _PERSONAL_HINT, _candidates, mask_frame

    plain = pd.Series(["北京", "上海", None, "高价值;活跃"] * 3, dtype="string")
    assert not _candidates(plain, _PERSONAL_HINT).any()
    assert not _candidates(plain, _ALWAYS_HINT).any()
    notes = pd.Series(["北京"] * 5 + ["电话13800138000请回电", "邮箱 a.b@x.cn", ""], dtype="string")
    assert _candidates(notes, _PERSONAL_HINT).tolist() == [False] * 5 + [True, True, False]
    ids = pd.Series(["无"] * 3 + ["身份证 110101199003071234"], dtype="string")
    assert _candidates(ids, _ALWAYS_HINT).tolist() == [False] * 3 + [True]
    df = pd.DataFrame({"备注": notes, "城市": pd.Series(["北京"] * 8, dtype="string")})
    masked = mask_frame(df, mask=True)
    assert "13800138000" not in masked["备注"].iloc[5] and "138" in masked["备注"].iloc[5]
    assert masked["备注"].iloc[6] != "邮箱 a.b@x.cn"
    assert masked["城市"].tolist() == ["北京"] * 8
    kept = mask_frame(pd.DataFrame({"备注": ids, "x": ids}), mask=False)
    assert "110101199003071234" not in kept["备注"].iloc[3]
