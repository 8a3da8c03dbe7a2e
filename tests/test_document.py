"""report.html / report.pdf (one template) and the per-owner workbooks (issue 17)."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from custtool.cli import app
from tests.conftest import EXAMPLES, require_system

PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")  # a full mainland mobile number


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cli_report(example_data, tmp_path_factory):
    """`custtool report --format xlsx,html --split-by owner --json` on the example's tagged
    customers."""
    out = tmp_path_factory.mktemp("doc") / "report.xlsx"
    p = example_data.paths
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(p["tagged"]),
            "--surveys",
            str(p["surveys"]),
            "--format",
            "xlsx,html",
            "--split-by",
            "owner",
            "--sheet-rows",
            "5",  # capped tier/class sheets: quicker, and the masked CSVs beside them
            "-o",
            str(out),
            "--json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    return out.parent, json.loads(result.stdout)


@pytest.fixture(scope="module")
def owner_run(tmp_path_factory):
    """`custtool run` on a copy of examples/ with report: formats [xlsx, html, pdf] and
    split_by: owner (no cards, tier/class sheets or book: not read here)."""
    d = tmp_path_factory.mktemp("ownerrun")
    shutil.copytree(EXAMPLES, d / "examples")
    pl = d / "examples" / "pipeline.yaml"
    text = pl.read_text(encoding="utf-8")
    text = re.sub(r"\n  formats: \[xlsx, html\].*\n", "\n", text)
    assert "\n  lang: zh\n" in text
    text = text.replace(
        "\n  lang: zh\n",
        "\n  lang: zh\n  formats: [xlsx, html, pdf]\n  split_by: owner\n  sheet_rows: 5\n",
    )
    text = text.replace("cards:\n  format: html", "cards:\n  enabled: false\n  format: html")
    # what no test here reads: report.xlsx's tier/class sheets (概览 is compared), the book
    assert "segment_sheets: true" in text
    text = text.replace("segment_sheets: true", "segment_sheets: false")
    pl.write_text(text + "\nbook: false\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(pl), "--out", str(d / "out"), "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    folder = next(p for p in (d / "out").iterdir() if p.is_dir() and not p.name.startswith("."))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return folder, manifest


# --------------------------------------------------------------------------- helpers
class _Figures(HTMLParser):
    """The data-kpi / data-col values of report.html."""

    def __init__(self) -> None:
        super().__init__()
        self.kpis: dict[str, str] = {}
        self.rows: dict[tuple[str, str], dict[str, str]] = {}
        self._dim = ""
        self._seg = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-dimension" in a:
            self._dim = a["data-dimension"]
        if "data-segment" in a:
            self._seg = a["data-segment"]
        if "data-kpi" in a:
            self.kpis[a["data-kpi"]] = a["data-value"]
        if "data-col" in a:
            self.rows.setdefault((self._dim, self._seg), {})[a["data-col"]] = a["data-value"]


def html_figures(path: Path) -> _Figures:
    f = _Figures()
    f.feed(path.read_text(encoding="utf-8"))
    return f


def summary_sheet(path: Path) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """概览 of report.xlsx: {KPI label: value} and the 按RFM分类 table {segment: (customers, share)}."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    rows = [list(r) for r in wb["概览"].iter_rows(values_only=True)]
    wb.close()
    kpis = {
        r[0]: r[1]
        for r in rows[3:12]
        if r and isinstance(r[0], str) and isinstance(r[1], (int, float))
    }
    start = next(i for i, r in enumerate(rows) if r and r[0] == "按RFM分类")
    assert rows[start + 1][:3] == ["分群", "客户数", "客户占比"]
    table = {}
    for r in rows[start + 2 :]:
        if not r or r[0] is None:
            break
        table[r[0]] = (r[1], r[2])
    return kpis, table


def all_cells(path: Path) -> list[str]:
    """Every cell of every sheet as text (an integer as its digits: a phone number written
    as a number would show)."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    out = [
        str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        for ws in wb.worksheets
        for r in ws.iter_rows(values_only=True)
        for v in r
        if v is not None and not (isinstance(v, float) and not v.is_integer())
    ]
    wb.close()
    return out


def detail_ids(path: Path, sheet: str = "客户明细") -> list[str]:
    """The 客户编号 column of the 客户明细 sheet (or ``sheet``)."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    rows = list(wb[sheet].iter_rows(values_only=True))
    wb.close()
    j = list(rows[0]).index("客户编号")
    return [str(r[j]) for r in rows[1:] if r[j] is not None]


# --------------------------------------------------------------------------- figures agree
def test_html_xlsx_and_json_show_the_same_figures(cli_report, example_data):
    folder, data = cli_report
    assert data["formats"] == ["xlsx", "html"]
    assert Path(data["files"]["html"]) == folder / "report.html"
    fig = html_figures(folder / "report.html")
    kpis, rfm = summary_sheet(folder / "report.xlsx")
    doc = data["document"]["kpis"]
    n = len(example_data.frame("tagged"))
    # customers and revenue: the html, the 概览 sheet and --json agree (and are the table's)
    assert int(fig.kpis["customers"]) == kpis["客户数"] == doc["customers"] == n
    revenue = float(example_data.frame("tagged")["monetary"].sum())
    assert float(fig.kpis["revenue"]) == pytest.approx(kpis["消费总额"]) == doc["revenue"]
    assert doc["revenue"] == pytest.approx(revenue, abs=0.01)
    assert float(fig.kpis["nps"]) == pytest.approx(kpis["NPS"]) == doc["nps"]
    assert float(fig.kpis["nps_block"]) == doc["nps"]
    # each RFM class: count and share
    json_rows = {r["segment"]: r for r in data["document"]["segments"]["rfm_class"]}
    assert set(json_rows) == set(rfm) and "重要价值客户" in rfm
    for seg, (count, share) in rfm.items():
        h = fig.rows[("rfm_class", seg)]
        assert int(h["customers"]) == count == json_rows[seg]["customers"], seg
        assert float(h["customer_share"]) == pytest.approx(share), seg
        assert json_rows[seg]["customer_share"] == pytest.approx(share), seg
    assert sum(c for c, _s in rfm.values()) == n
    seg = example_data.frame("tagged")["rfm_class"].astype(str)
    assert rfm["重要价值客户"][0] == int((seg == "重要价值客户").sum())


def test_pipeline_html_and_pdf_match_the_run_workbook(owner_run):
    folder, manifest = owner_run
    kinds = {o["file"]: o.get("kind") for o in manifest["outputs"]}
    assert kinds["report.html"] == "html" and kinds["report.pdf"] == "pdf"
    assert kinds["report.xlsx"] == "report" and kinds["customers.csv"] == "csv"
    fig = html_figures(folder / "report.html")
    kpis, rfm = summary_sheet(folder / "report.xlsx")
    assert int(fig.kpis["customers"]) == kpis["客户数"]
    assert float(fig.kpis["revenue"]) == pytest.approx(kpis["消费总额"])
    assert float(fig.kpis["nps"]) == pytest.approx(kpis["NPS"]) == manifest["nps"]["nps"]
    for seg, (count, _share) in rfm.items():
        assert int(fig.rows[("rfm_class", seg)]["customers"]) == count


# --------------------------------------------------------------------------- PDF
def test_pdf_has_chinese_text_the_as_of_date_and_an_embedded_cjk_font(owner_run):
    from pypdf import PdfReader

    folder, manifest = owner_run
    reader = PdfReader(folder / "report.pdf")
    text = "\n".join(p.extract_text() for p in reader.pages)
    for name in ("重要价值客户", "一般挽留客户", "高价值", "客户分析报告", "净推荐值"):
        assert name in text, name
    assert manifest["as_of"] in text
    assert len(reader.pages) >= 2
    fonts, embedded = set(), False
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            fonts.add(str(font["/BaseFont"]))
            for d in font.get("/DescendantFonts", [font]):
                desc = d.get_object().get("/FontDescriptor")
                if desc is not None and any(
                    k in desc.get_object() for k in ("/FontFile", "/FontFile2", "/FontFile3")
                ):
                    embedded = True
    assert any("CJK" in f for f in fonts), fonts
    assert embedded


def test_pdf_without_weasyprint_is_exit_2_with_the_pip_hint(example_data, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import weasyprint → ImportError
    out = tmp_path / "r.xlsx"
    result = CliRunner().invoke(
        app, ["report", str(example_data.paths["tagged"]), "--format", "xlsx,pdf", "-o", str(out)]
    )
    assert result.exit_code == 2
    assert "weasyprint" in result.stderr and 'pip install "custtool[pdf]"' in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


# --------------------------------------------------------------------------- HTML in Chromium
def test_html_renders_in_headless_chromium_with_charts_and_no_network(cli_report, tmp_path):
    require_system("Chromium", shutil.which("chromium") is not None, "apt-get install chromium")
    pytest.importorskip("playwright", reason="the test extra installs playwright")
    from playwright.sync_api import sync_playwright

    folder, _data = cli_report
    page_url = (folder / "report.html").as_uri()
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 820, "height": 1200})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_url, wait_until="load")
            page.wait_for_load_state("networkidle")
            assert "客户分析报告" in page.title()
            charts = page.locator("svg.chart")
            assert charts.count() >= 6  # RFM ×2, tier ×2, lifecycle ×2, channels/cities, NPS
            assert page.locator("svg.chart rect").count() >= 20
            box = charts.first.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 100
            body = page.inner_text("body")
            assert "重要价值客户" in body and "运营策略" in body
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests and all(u == page_url or u.startswith("data:") for u in requests), requests


def test_html_has_no_script_and_no_external_reference(cli_report):
    folder, _data = cli_report
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(
        r"""(src|href)\s*=|url\(|@import|https?://(?!www\.w3\.org/2000/svg)""", html
    )


# --------------------------------------------------------------------------- hostile text
def test_hostile_customer_and_strategy_text_is_escaped(example_data, tmp_path):
    from custtool.report.document import write_html
    from custtool.report.strategies import load_strategies

    customers = example_data.frame("tagged")
    customers["city"] = customers["city"].astype(object)
    customers.loc[customers.index[:40], "city"] = "<script>alert('city')</script>"
    strat = load_strategies()
    strat.loc[0, "strategy_measures"] = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    write_html(customers, tmp_path / "r.html", strategies=strat)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#39;city&#39;)&lt;/script&gt;" in html  # table and chart label
    assert html.count("&lt;script&gt;alert(&#39;city&#39;)") >= 2
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


def test_a_role_without_amounts_gets_no_revenue_in_the_html(example_data, tmp_path):
    from custtool.report.document import write_html

    result = write_html(example_data.frame("tagged"), tmp_path / "s.html", role="service")
    html = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert "revenue" not in result.kpis and 'data-col="revenue"' not in html
    assert "消费金额" not in html and 'data-kpi="customers"' in html


# --------------------------------------------------------------------------- per-owner workbooks
def test_owner_workbooks_hold_exactly_each_owners_customers(owner_run):
    import pandas as pd

    folder, manifest = owner_run
    customers = pd.read_parquet(folder / "customers.parquet")
    owner = customers["owner"].astype("string").fillna("").str.strip()
    expected = {
        (o or "未分配"): set(customers.loc[(owner == o).to_numpy(), "customer_id"].astype(str))
        for o in owner.unique()
    }
    assert "未分配" in expected and len(expected) >= 3  # owners and customers without one
    entries = [o for o in manifest["outputs"] if o.get("kind") == "owner_report"]
    assert {e["owner"] for e in entries} == set(expected)
    tasks = pd.read_csv(folder / "followups.csv", encoding="utf-8-sig", dtype=str)
    seen_tasks = 0
    assert sum(e["customers"] for e in entries) == len(customers)
    for e in entries:
        path = folder / e["file"]
        assert e["file"] == f"owners/{e['owner']}.xlsx"
        ids = detail_ids(path)
        assert len(ids) == len(set(ids)) == e["customers"], e["owner"]
        assert set(ids) == expected[e["owner"]], e["owner"]
        assert e["unassigned"] == (e["owner"] == "未分配")
        # their follow-ups: the run's due tasks (followups.csv) of their customers, no other
        task_ids = detail_ids(path, sheet="跟进任务")
        mine = tasks[tasks["客户编号"].isin(expected[e["owner"]])]
        assert sorted(task_ids) == sorted(mine["客户编号"]), e["owner"]
        seen_tasks += len(task_ids)
    assert seen_tasks == len(tasks) > 0


def test_no_full_phone_number_in_any_owner_workbook(owner_run):
    import pandas as pd

    folder, manifest = owner_run
    customers = pd.read_parquet(folder / "customers.parquet")
    phones = customers["phone"].astype("string").dropna()
    assert phones.str.fullmatch(r"1[3-9]\d{9}").sum() > 50  # the data has full numbers
    masked_seen = 0
    csvs = [o for o in manifest["outputs"] if o.get("kind") == "owner_customers"]
    assert {o["owner"] for o in csvs} >= {"未分配"}  # capped (sheet_rows: 5): listed in full
    for o in csvs:
        full = pd.read_csv(folder / o["file"], dtype=str, encoding="utf-8-sig")
        assert len(full) == o["customers"] and o["file"].startswith("owners/")
        assert not full.astype(str).apply(lambda c: c.str.contains(PHONE)).any().any()
    for e in (o for o in manifest["outputs"] if o.get("kind") == "owner_report"):
        cells = all_cells(folder / e["file"])
        hits = [c for c in cells if PHONE.search(c)]
        assert not hits, (e["file"], hits[:3])
        masked_seen += sum(bool(re.fullmatch(r"1\d{2}\*{4}\d{4}", c)) for c in cells)
        assert "来源编号" not in cells  # the sales role's hidden column
    assert masked_seen > 50  # the phones are there, masked (138****5678)


def test_report_split_by_owner_from_the_cli_and_its_json(cli_report, example_data):
    import pandas as pd

    folder, data = cli_report
    owners = data["owners"]
    assert owners["role"] == "sales" and Path(owners["folder"]) == folder / "owners"
    tagged = example_data.frame("tagged")
    counts = tagged["owner"].astype("string").fillna("").str.strip().value_counts()
    got = {w["owner"]: w["customers"] for w in owners["workbooks"]}
    assert got == {(k or "未分配"): int(v) for k, v in counts.items()}
    assert owners["workbooks"][-1]["owner"] == "未分配"  # last
    assert owners["customers"] == len(tagged) == data["customers"]
    for w in owners["workbooks"]:
        assert Path(w["path"]) == folder / "owners" / f"{w['owner']}.xlsx"
        assert set(detail_ids(Path(w["path"]))) == set(
            tagged.loc[
                (tagged["owner"].astype("string").fillna("").str.strip() == w["owner"])
                | (
                    w["unassigned"] & tagged["owner"].astype("string").fillna("").str.strip().eq("")
                ),
                "customer_id",
            ].astype(str)
        )
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["owners", "report.html", "report.xlsx", "report_customers.csv"]
    # capped sheets: every owner's customers in full beside the workbook, masked
    for w in owners["workbooks"]:
        full = pd.read_csv(w["full_list"], dtype=str, encoding="utf-8-sig")
        assert len(full) == w["customers"]
        assert not full.astype(str).apply(lambda c: c.str.contains(PHONE)).any().any()


def test_owner_file_names_are_safe_and_distinct(tmp_path):
    import pandas as pd

    from custtool.report.owners import safe_file_name, write_owner_workbooks

    assert safe_file_name('王/五:*?"<>|\x01\t') == "王五"
    assert safe_file_name("  ..李娜.. ") == "李娜"
    # an owner "-2+3" made owners/-2+3.xlsx: read as an option by rm, ls, cp
    assert [safe_file_name(n) for n in ("-2+3", "=1+2", "+86", "@王")] == [
        "_-2+3",
        "_=1+2",
        "_+86",
        "_@王",
    ]
    assert safe_file_name("CON") == "_CON" and safe_file_name("lpt1.txt") == "_lpt1.txt"
    assert safe_file_name("///") == "_"
    customers = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4", "C5"],
            "name": ["张三", "李四", "王五", "赵六", "孙七"],
            "phone": ["13800001111", "13900002222", "13700003333", "13600004444", "13500005555"],
            "owner": ["a/b", "ab", None, " 未分配 ", "  "],
            "monetary": [10.0, 20.0, 30.0, 40.0, 50.0],
        }
    )
    result = write_owner_workbooks(customers, tmp_path / "owners")
    got = [(w.owner, w.unassigned, w.path.name, w.customers) for w in result.workbooks]
    assert got == [
        ("a/b", False, "ab.xlsx", 1),
        ("ab", False, "ab (2).xlsx", 1),
        ("未分配", False, "未分配 (2).xlsx", 1),  # an owner named 未分配: the name is reserved
        ("未分配", True, "未分配.xlsx", 2),  # C3 and C5: no owner
    ]
    assert detail_ids(tmp_path / "owners" / "未分配.xlsx") == ["C5", "C3"]  # by value
    for w in result.workbooks:
        assert not [c for c in all_cells(w.path) if PHONE.search(c)]


def test_split_needs_an_owner_column(tmp_path):
    import pandas as pd

    from custtool.errors import InputError
    from custtool.report.owners import write_owner_workbooks

    with pytest.raises(InputError, match="owner"):
        write_owner_workbooks(pd.DataFrame({"customer_id": ["C1"]}), tmp_path)


# --------------------------------------------------------------------------- settings
def test_formats_and_split_by_settings(tmp_path):
    from custtool.config import ReportStep, load_report_settings, report_formats_setting
    from custtool.errors import ConfigError

    shipped = load_report_settings()
    assert shipped.formats == ["xlsx"] and shipped.split_by is None
    assert report_formats_setting(None) == ["xlsx"]
    assert report_formats_setting("HTML, pdf,html") == ["html", "pdf"]
    assert ReportStep(formats="xlsx,pdf").formats == ["xlsx", "pdf"]
    assert ReportStep(split_by="owner").split_by == "owner"
    with pytest.raises(ConfigError, match="docx"):
        report_formats_setting("xlsx,docx")
    with pytest.raises(ValueError):
        ReportStep(formats=["docx"])
    with pytest.raises(ValueError):
        ReportStep(split_by="city")


def test_html_only_and_bad_options_from_the_cli(example_data, tmp_path):
    tagged = str(example_data.paths["tagged"])
    out = tmp_path / "r" / "report.xlsx"
    result = CliRunner().invoke(app, ["report", tagged, "--format", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no workbook
    assert "report.html" in result.stderr
    for opts, message in (
        (["--format", "xlsx,docx"], "unknown report format 'docx'"),
        (["--split-by", "city"], "cannot split the report by 'city'"),
    ):
        bad = tmp_path / "bad" / "report.xlsx"
        result = CliRunner().invoke(app, ["report", tagged, *opts, "-o", str(bad)])
        assert result.exit_code == 2 and message in result.stderr
        assert not bad.parent.exists()


def test_the_runs_real_pdf_html_and_owner_workbooks_are_mailed(owner_run, tmp_path):
    """End to end: the files `custtool run` wrote (report.pdf, report.html, owners/*.xlsx) go
    out through `custtool send` to a real SMTP server, byte for byte, each owner only theirs,
    and no full phone number is in any mailed file or body."""
    from tests.test_deliver import (
        PHONE,
        Mailbox,
        attachments,
        pipeline_yaml,
        send,
        start_server,
        text_of,
    )

    folder, manifest = owner_run
    run_dir = tmp_path / "out" / folder.name
    shutil.copytree(folder, run_dir)
    owner_files = {
        ("未分配" if o.get("unassigned") else o["owner"]): o["file"]
        for o in manifest["outputs"]
        if o.get("kind") == "owner_report"
    }
    assert "未分配" in owner_files and len(owner_files) >= 3
    owners = {name: f"owner{i}@example.cn" for i, name in enumerate(sorted(owner_files))}
    subs = (
        "    - name: 经理月报\n      to: [manager@example.cn]\n      send: [report, pdf, html]\n"
        "    - name: 销售名单\n      owners: {"
        + ", ".join(f"{k}: {v}" for k, v in owners.items())
        + "}\n      send: [owner_report]\n"
    )
    box = Mailbox()
    ctl = start_server(box)
    try:
        result = send(run_dir, "--config", pipeline_yaml(tmp_path, ctl.port, subs), "--json")
    finally:
        ctl.stop()
    assert result.exit_code == 0, result.output + result.stderr
    assert len(box.messages) == 1 + len(owners)
    by_rcpt = {rcpts[0]: msg for _, rcpts, msg in box.messages}
    manager = attachments(by_rcpt["manager@example.cn"])
    wanted = {
        (run_dir / "report.xlsx").read_bytes(),
        (run_dir / "report.pdf").read_bytes(),
        (run_dir / "report.html").read_bytes(),
    }
    assert set(manager.values()) == wanted
    assert any(name.endswith(".pdf") for name in manager)
    for name, address in owners.items():
        got = list(attachments(by_rcpt[address]).values())
        assert got == [(run_dir / owner_files[name]).read_bytes()], name
    for _, _, msg in box.messages:
        assert not PHONE.search(msg.get_body(("plain",)).get_content())
        for name, data in attachments(msg).items():
            if name.endswith(".pdf"):
                continue  # the PDF holds totals only (checked by its own test)
            # a number's decimals (4327.44241379…) are not a phone: not after a "."
            assert not re.search(r"(?<![\d.])1[3-9]\d{9}(?!\d)", text_of(name, data)), name
