"""`custtool run`: the example pipeline end to end, idempotence, errors, crash safety."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from custtool.cli import app
from custtool.errors import ConfigError
from custtool.pipeline import load_pipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
runner = CliRunner()


@pytest.fixture(scope="module")
def workdir(example_run) -> Path:
    """The session's copy of examples/ with its first run in out/ (conftest.example_run)."""
    return example_run[0]


@pytest.fixture(scope="module")
def first_run(example_run):
    return example_run[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_counts_add_up(first_run):
    m = first_run
    folder = Path(m["folder"])
    orders = pd.read_parquet(folder / "imported_orders.parquet")
    assert (
        folder.name == m["as_of"] == str(orders["order_time"].max().date())
    )  # default: latest order date
    imp = m["rows"]["import"]
    assert set(imp) == {"customers", "orders", "interactions", "surveys"}
    for kind, r in imp.items():
        assert r["rows_read"] == r["accepted"] + r["rejected"] + r["skipped"], kind
        for f in r["files"]:
            assert f["rows_read"] == f["accepted"] + f["rejected"] + f["skipped"]
    clean = m["rows"]["clean"]
    assert clean["rows_in"] == imp["customers"]["accepted"]
    assert (
        clean["rows_in"]
        == clean["exact_duplicates"] + clean["merged_rows"] + clean["customers_out"]
    )
    seg = m["rows"]["segment"]
    assert seg["customers"] == clean["customers_out"]
    assert seg["orders_used"] + seg["orders_unmatched"] <= imp["orders"]["accepted"]
    # every accepted order row is accounted for (orders_used counts orders, not refund lines)
    o = seg["order_rows"]
    assert o["rows"] == imp["orders"]["accepted"]
    assert (
        o["rows"]
        == o["rows_used"]
        + o["rows_unmatched"]
        + o["rows_duplicate"]
        + o["rows_after_as_of"]
        + o["rows_invalid_time"]
    )
    assert o["rows_unmatched"] == seg["orders_unmatched"] and o["orders_used"] == seg["orders_used"]
    assert seg["orders_unmatched"] >= 1  # the example has an order of an unknown member
    assert m["rows"]["tag"]["customers"] == seg["customers"]
    assert m["rejected_rows"] == sum(r["rejected"] for r in imp.values())
    assert len(m["inputs"]) == 6 and all(len(i["sha256"]) == 64 for i in m["inputs"])
    assert m["config_sha256"] and m["version"]
    assert [s["step"] for s in m["steps"]][:4] == ["import", "clean", "segment", "tag"]


def test_every_output_exists_and_opens(first_run):
    from openpyxl import load_workbook

    folder = Path(first_run["folder"])
    names = {o["file"] for o in first_run["outputs"]}
    assert {
        "customers.parquet",
        "segmented.parquet",
        "report.xlsx",
        "rejects.csv",
        "clean_report.xlsx",
        "cards.html",
    } <= names
    for name in names:
        path = folder / name
        assert path.exists(), name
        if name.endswith(".parquet"):
            assert len(pd.read_parquet(path)) > 0 or name.startswith("imported_")
        elif name.endswith(".xlsx"):
            assert load_workbook(path, read_only=True).sheetnames
        elif name.endswith(".csv"):
            pd.read_csv(path, encoding="utf-8-sig")
        elif name.endswith(".html"):
            assert "<html" in path.read_text(encoding="utf-8").lower()
    final = pd.read_parquet(folder / "customers.parquet")
    assert final["customer_id"].is_unique
    assert final["customer_id"].str.fullmatch(r"C\d{8}").all()
    assert {"rfm_class", "tier", "lifecycle", "tags", "status"} <= set(final.columns)
    assert (
        json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["as_of"] == folder.name
    )
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left
    tasks = load_workbook(folder / "followups.xlsx", read_only=True)["跟进任务"]
    assert next(tasks.iter_rows(max_row=1, values_only=True))[:4] == (
        "负责人",
        "客户编号",
        "姓名",
        "到期日",
    )


def _private_copy(workdir: Path, first_run: dict, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the session's work folder (examples/ and out/) and its run folder: the shared
    one stays as the other tests (in both workers) read it."""
    import shutil

    shutil.copytree(workdir, tmp_path / "work")
    return tmp_path / "work", tmp_path / "work" / Path(first_run["folder"]).relative_to(workdir)


def _without(text: str, *parts: str) -> str:
    """A pipeline.yaml of the examples without outputs a test does not read: "html" (report
    formats: [xlsx]), "cards", "segment_sheets" (report.xlsx's tier/class sheets), "book"."""
    edits = {
        "html": ("formats: [xlsx, html]", "formats: [xlsx]"),
        "cards": ("cards:\n  format: html", "cards:\n  enabled: false\n  format: html"),
        "segment_sheets": ("segment_sheets: true", "segment_sheets: false"),
    }
    for part in parts:
        if part == "book":
            text += "\nbook: false\n"
            continue
        old, new = edits[part]
        assert old in text, old
        text = text.replace(old, new)
    return text


def test_rerun_is_idempotent_and_rejects_over_the_limit_exit_1(
    workdir, first_run, tmp_path, monkeypatch
):
    """The same run again: exit 1 over the reject limit, every Parquet and CSV byte for byte
    the first run's. The rerun also writes its side outputs in line (SideWriter.submit calling
    at once) and hands memory back after each step as a large run does: neither changes a
    byte of what the session's run wrote in the second thread, skipping the release (a
    small run)."""
    import gc

    from custtool import memory, pipeline

    workdir, folder = _private_copy(workdir, first_run, tmp_path)
    before = {p.name: _sha(p) for p in folder.iterdir() if p.suffix in (".parquet", ".csv")}
    assert {"customers.parquet", "customers.csv", "segmented.parquet", "rejects.csv"} <= set(before)

    def at_once(self, fn, *args, **kw):
        fn(*args, **kw)

    collected = []
    real_collect = gc.collect
    monkeypatch.setattr(pipeline.SideWriter, "submit", at_once)
    monkeypatch.setattr(memory, "RELEASE_MEMORY_ROWS", 1)
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(a) or real_collect(*a))
    result = runner.invoke(
        app,
        [
            "run",
            str(workdir / "examples" / "pipeline.yaml"),
            "--out",
            str(workdir / "out"),
            "--fail-on-rejects",
            "0",
            "--quiet",
        ],
    )
    assert result.exit_code == 1, (
        result.output
    )  # done (the folder is rewritten), but over the limit
    assert "REJECTS OVER LIMIT" in result.stdout
    after = {p.name: _sha(p) for p in folder.iterdir() if p.suffix in (".parquet", ".csv")}
    assert before == after
    assert len(collected) >= 4  # release_memory after segment, report, the cards, the end
    # the manifest lists the outputs in the order the run names them, whoever writes them
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert [o["file"] for o in manifest["outputs"]] == [o["file"] for o in first_run["outputs"]]


def test_second_month_picks_previous_run_and_keeps_ids(workdir, first_run, tmp_path):
    # a private copy: the session's run folder and book stay as other tests expect them
    workdir, folder = _private_copy(workdir, first_run, tmp_path)
    yaml = workdir / "examples" / "pipeline.yaml"  # read here: the ids, 迁移 of report.xlsx
    text = yaml.read_text(encoding="utf-8")
    yaml.write_text(_without(text, "html", "cards", "segment_sheets", "book"), encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "run",
            str(workdir / "examples" / "pipeline.yaml"),
            "--out",
            str(workdir / "out"),
            "--as-of",
            "2026-11-30",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert Path(m["previous_run"]) == folder
    old = pd.read_parquet(folder / "customers.parquet").set_index("source_ids")["customer_id"]
    new = pd.read_parquet(Path(m["folder"]) / "customers.parquet").set_index("source_ids")[
        "customer_id"
    ]
    common = old.index.intersection(new.index)
    assert len(common) > 100
    assert (old[common] == new[common]).all()
    from openpyxl import load_workbook

    assert "迁移" in load_workbook(Path(m["folder"]) / "report.xlsx", read_only=True).sheetnames


def test_config_error_names_key_and_line(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("name: x\ninputs:\n  orders: [o.csv]\nreprot:\n  lang: zh\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_pipeline(p)
    assert "reprot" in err.value.message and ":4:" in err.value.message
    p.write_text("inputs:\n  orders: [o.csv]\nreport:\n  colour: red\n", encoding="utf-8")
    (tmp_path / "o.csv").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"report\.colour"):
        load_pipeline(p)


def test_missing_input_exit_2_and_no_folder(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(
        "out: out\ninputs:\n  customers:\n    - {path: 不存在.xlsx, channel: 电商}\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["run", str(p)])
    assert result.exit_code == 2
    assert "inputs.customers[0].path" in result.stderr and "不存在.xlsx" in result.stderr
    assert not (tmp_path / "out").exists()


def test_crash_in_report_leaves_no_partial_files(workdir, first_run, monkeypatch, tmp_path):
    import custtool.report

    workdir, folder = _private_copy(workdir, first_run, tmp_path)
    before = {p.name: _sha(p) for p in folder.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the report")

    monkeypatch.setattr(custtool.report, "write_workbook", boom)
    result = runner.invoke(
        app,
        [
            "run",
            str(workdir / "examples" / "pipeline.yaml"),
            "--out",
            str(workdir / "out"),
            "--quiet",
        ],
    )
    assert result.exit_code == 3
    assert {p.name: _sha(p) for p in folder.iterdir()} == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_exports_mask_personal_data(first_run):
    from openpyxl import load_workbook

    folder = Path(first_run["folder"])
    raw = pd.read_parquet(folder / "customers.parquet")
    raw_phones = set(raw["phone"][raw["phone"] != ""])
    raw_names = set(raw["name"][raw["name"].str.len() >= 2])
    for name in ("followups.xlsx", "report.xlsx"):
        wb = load_workbook(folder / name, read_only=True)
        for ws in wb.worksheets:
            for row in ws.iter_rows(values_only=True):
                for v in row:
                    if isinstance(v, str):
                        assert v not in raw_phones, (name, ws.title)
                        assert v not in raw_names, (name, ws.title, v)
    wb = load_workbook(folder / "clean_report.xlsx", read_only=True)
    for ws in wb.worksheets:
        for row in ws.iter_rows(values_only=True):
            for v in row:
                if isinstance(v, str):
                    assert not any(p in v for p in raw_phones if len(p) == 11), (
                        "clean_report.xlsx",
                        ws.title,
                    )
    html = (folder / "cards.html").read_text(encoding="utf-8")
    assert not any(p in html for p in list(raw_phones)[:50])


def test_failed_first_run_leaves_no_folder(workdir, monkeypatch, tmp_path):
    import custtool.clean

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(custtool.clean, "dedupe", boom)  # an early step: the test stays fast
    out = tmp_path / "fresh_out"
    result = runner.invoke(
        app, ["run", str(workdir / "examples" / "pipeline.yaml"), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 3  # an internal error, told apart from 1 (rejects over the limit)
    assert "Internal error: RuntimeError: simulated crash" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- one number, one place (issue 11)
def _overview_nps(path: Path) -> Any:
    from openpyxl import load_workbook

    ws = load_workbook(path, read_only=True)["概览"]
    values = {r[0]: r[1] for r in ws.iter_rows(max_col=2, values_only=True) if r[0]}
    assert any(
        str(k).startswith("NPS = 推荐者(9–10分)占比 − 贬损者(0–6分)占比") for k in values
    )  # the definition, stated
    return values["NPS"]


def test_one_nps_in_report_summary_json_and_manifest(first_run, tmp_path):
    """SPEC D6: every valid response up to the as-of date; the same number in the report's
    概览, the summary workbook, `segment --json`, `report --surveys` and the manifest."""
    from openpyxl import load_workbook

    folder = Path(first_run["folder"])
    as_of = first_run["as_of"]
    surveys = pd.read_parquet(folder / "imported_surveys.parquet")
    score = pd.to_numeric(surveys["score"], errors="coerce")
    ok = score.between(0, 10) & (
        pd.to_datetime(surveys["time"]).dt.normalize() <= pd.Timestamp(as_of)
    )
    expected = round(((score[ok] >= 9).mean() - (score[ok] <= 6).mean()) * 100, 2)
    assert ok.sum() == 150 and expected == -2.0  # 40 promoters, 43 detractors of 150 valid answers

    assert first_run["nps"]["nps"] == expected  # the manifest (run --json prints it)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["nps"]["nps"] == expected and manifest["nps"]["valid"] == 150
    assert _overview_nps(folder / "report.xlsx") == pytest.approx(expected)
    notes = {
        r[0]: r[1]
        for r in load_workbook(folder / "segment_summary.xlsx", read_only=True)[
            "模型与说明"
        ].iter_rows(values_only=True)
    }
    assert float(notes["nps.nps"]) == expected
    # per segment: the summary workbook's RFM sheet and the manifest, both from the responses
    ws = load_workbook(folder / "segment_summary.xlsx", read_only=True)["RFM分类"]
    rows = list(ws.iter_rows(values_only=True))
    col = rows[0].index("NPS")
    assert {r[0]: r[col] for r in rows[1:]} == pytest.approx(manifest["nps"]["by_class"])
    res = runner.invoke(
        app,
        [
            "segment",
            str(folder / "customers_clean.parquet"),
            "--orders",
            str(folder / "imported_orders.parquet"),
            "--surveys",
            str(folder / "imported_surveys.parquet"),
            "--as-of",
            as_of,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["nps"]["nps"] == expected
    res = runner.invoke(
        app,
        [
            "report",
            str(folder / "customers.parquet"),
            "--surveys",
            str(folder / "imported_surveys.parquet"),
            "-o",
            str(tmp_path / "r.xlsx"),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert _overview_nps(tmp_path / "r.xlsx") == pytest.approx(expected)
    # the old report figure (each customer's latest score) is another number on these data
    latest = pd.read_parquet(folder / "segmented.parquet")["nps_score"].dropna()
    assert round(((latest >= 9).mean() - (latest <= 6).mean()) * 100, 1) != pytest.approx(
        expected, abs=0.05
    )


def test_cards_show_top_categories_of_orders_with_channel_ids(first_run):
    """Orders carry the platform's ids (TB…), customers the stable C… ids: the cards get the
    categories from the attributed orders (and attribute raw orders themselves)."""
    from custtool.cards import individual_cards

    folder = Path(first_run["folder"])
    assert "常购品类" in (folder / "cards.html").read_text(encoding="utf-8")
    final = pd.read_parquet(folder / "customers.parquet")
    raw = pd.read_parquet(folder / "imported_orders.parquet")
    attributed = pd.read_parquet(folder / "orders_attributed.parquet")
    assert (
        not raw["customer_id"].str.startswith("C").any()
        and attributed["customer_id"].str.fullmatch(r"C\d{8}").all()
    )
    picked = None
    for row in (
        final[final["source_ids"].str.contains("电商:TB")].sort_values("customer_id").itertuples()
    ):
        tb = [x.split(":", 1)[1] for x in row.source_ids.split(";") if x.startswith("电商:")]
        mine = raw[raw["customer_id"].isin(tb)]
        if len(mine) >= 3 and len(attributed[attributed["customer_id"] == row.customer_id]) == len(
            mine
        ):
            picked = (row.customer_id, mine)
            break
    assert picked is not None
    cid, mine = picked
    counts = mine.loc[mine["category"] != "", "category"].value_counts()
    top3 = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
    for orders in (attributed, raw):
        card = individual_cards(final, [cid], orders=orders).iloc[0]
        assert "常购品类：" + "、".join(top3) in card["behaviour"]


def test_segment_orders_add_up_to_monetary(first_run):
    """SegmentResult.orders: stable ids, net amounts; the window's amounts per customer are M."""
    from custtool.segment import segment_customers

    folder = Path(first_run["folder"])
    result = segment_customers(
        pd.read_parquet(folder / "imported_orders.parquet"),
        pd.read_parquet(folder / "customers_clean.parquet"),
        as_of=first_run["as_of"],
    )
    o = result.orders
    assert (
        len(o) == result.report.rows_used == first_run["rows"]["segment"]["order_rows"]["rows_used"]
    )
    assert {
        "customer_id",
        "source_customer_id",
        "match_key",
        "order_time",
        "amount",
        "channel",
        "category",
        "in_window",
    } <= set(o.columns)
    assert set(o["match_key"]) <= {"id", "phone", "email"}
    per = o[o["in_window"]].groupby("customer_id")["amount"].sum().round(2)
    m = result.customers.set_index("customer_id")["monetary"]
    assert per.to_dict() == pytest.approx(m[m != 0].to_dict())


def test_pivot_channel_totals_equal_true_revenue(first_run):
    """SPEC E6: with the orders each order counts in its own channel, cells add up to the
    totals, which equal the true revenue; without them the repeated values are said and the
    totals still count each customer once."""
    from custtool.report.pivot import pivot

    folder = Path(first_run["folder"])
    final = pd.read_parquet(folder / "customers.parquet")
    true = round(float(final["monetary"].sum()), 2)
    t = pivot(
        final,
        "tier",
        "channels",
        "monetary:sum",
        orders=pd.read_parquet(folder / "orders_attributed.parquet"),
    )
    total_col = ("monetary", "sum", "合计")
    channels = [c for c in t.columns if c != total_col]
    assert t.loc["合计", total_col] == pytest.approx(true)
    assert t.loc["合计", channels].sum() == pytest.approx(true)
    assert t.drop(index="合计")[channels].to_numpy().sum() == pytest.approx(true)
    for tier, v in final.groupby("tier")["monetary"].sum().items():
        assert t.loc[tier, total_col] == pytest.approx(v)
        assert t.loc[tier, channels].sum() == pytest.approx(v)

    args = [
        "pivot",
        str(folder / "customers.parquet"),
        "--rows",
        "tier",
        "--cols",
        "channels",
        "--values",
        "monetary:sum",
        "--json",
    ]
    res = runner.invoke(app, [*args, "--orders", str(folder / "orders_attributed.parquet")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["rows"][-1]["价值等级"] == "合计" and out["rows"][-1][
        "消费金额·sum | 合计"
    ] == pytest.approx(true)
    res = runner.invoke(app, args)  # customers' channels: a customer counts once per channel
    out = json.loads(res.stdout)
    total = out["rows"][-1]
    cells = [v for k, v in total.items() if k.startswith("消费金额") and not k.endswith("合计")]
    assert total["消费金额·sum | 合计"] == pytest.approx(true) and sum(cells) > 1.2 * true
    assert all("重复" in k for k in total if k.startswith("消费金额") and not k.endswith("合计"))
    assert out["notes"] and "重复计入" in out["notes"][0]


# --------------------------------------------------------------------------- issue 12: at scale
def test_full_lists_beside_the_workbooks_masked(first_run):
    folder = Path(first_run["folder"])
    final = pd.read_parquet(folder / "customers.parquet")
    full = pd.read_csv(folder / "customers.csv", encoding="utf-8-sig", dtype=str)
    # every customer once, in the CSV the capped report sheets point to, masked
    assert len(full) == len(final) and full["customer_id"].is_unique
    raw_phones = set(final["phone"][final["phone"] != ""])
    assert not set(full["phone"].dropna()) & raw_phones
    assert full["phone"].dropna().str.contains(r"\*", regex=True).all()
    assert pd.read_csv(folder / "followups.csv", encoding="utf-8-sig").columns[:2].tolist() == [
        "负责人",
        "客户编号",
    ]
    assert (folder / "clean_followup.csv").exists()
    names = {o["file"] for o in first_run["outputs"]}
    assert {"customers.csv", "followups.csv", "clean_followup.csv"} <= names


def test_sheet_rows_caps_every_workbook_with_notes(workdir, tmp_path):
    import shutil

    from openpyxl import load_workbook

    shutil.copytree(workdir / "examples", tmp_path / "examples")  # the shared one: read only
    text = (tmp_path / "examples" / "pipeline.yaml").read_text(encoding="utf-8")
    pl = tmp_path / "examples" / "pipeline_cap.yaml"
    text = _without(text, "html", "cards", "book")  # the capped workbooks are read here
    pl.write_text(text.replace("  lang: zh\n", "  lang: zh\n  sheet_rows: 2\n"), encoding="utf-8")
    res = runner.invoke(app, ["run", str(pl), "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    folder = Path(json.loads(res.stdout)["folder"])
    final = pd.read_parquet(folder / "customers.parquet")
    # report: tier sheets list 2 customers and name the rest
    wb = load_workbook(folder / "report.xlsx", read_only=True)
    high = int((final["tier"] == "高价值").sum())
    assert high > 2
    note = next(wb["高价值"].iter_rows(min_row=2, max_row=2, values_only=True))[0]
    assert note.startswith(f"按价值列出前 2 位客户，另有 {high - 2:,} 位未列出")
    assert note.endswith("customers.csv")
    # clean_report: 待跟进 capped at 2 rows with a note; the CSV holds all of them
    flagged = pd.read_csv(folder / "clean_followup.csv", encoding="utf-8-sig")
    assert len(flagged) > 2
    ws = load_workbook(folder / "clean_report.xlsx", read_only=True)["待跟进"]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][0] == (
        f"本表列出前 2 行，另有 {len(flagged) - 2:,} 行未列出：完整数据见 clean_followup.csv"
    )
    assert len(rows) == 1 + 1 + 2  # note, header, 2 rows
    # followups.xlsx: more than 2 tasks → one sheet per owner, each at most 2 tasks
    tasks = pd.read_csv(folder / "followups.csv", encoding="utf-8-sig", dtype=str)
    assert len(tasks) > 2
    fu = load_workbook(folder / "followups.xlsx", read_only=True)
    owners = sorted(tasks["负责人"].fillna("（空）").unique())
    assert fu.sheetnames == owners
    for owner in owners:
        n = int((tasks["负责人"].fillna("（空）") == owner).sum())
        got = list(fu[owner].iter_rows(values_only=True))
        if n > 2:
            assert got[0][0].startswith(f"本表列出前 2 行，另有 {n - 2:,} 行未列出")
            assert len(got) == 4
        else:
            assert got[0][0] == "负责人" and len(got) == 1 + n


def test_attributed_orders_read_as_codes_hold_the_same_values(first_run, tmp_path):
    """read_attributed(codes=True) (what the report and the cards get): text columns as
    categoricals with the same values row for row (missing stays missing), other columns
    exactly as pd.read_parquet gives them — for the run's Parquet and for one read in
    batches of 2 rows whose batches have different distinct values and nulls."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from custtool.pipeline import ATTRIBUTED_ORDER_COLUMNS, CARD_ORDER_COLUMNS, read_attributed

    small = tmp_path / "attributed.parquet"
    pq.write_table(
        pa.table(
            {
                "customer_id": ["C2", "C1", None, "C3", "C1"],
                "source_customer_id": ["s", None, "t", "s", "u"],
                "match_key": ["id", "phone", "id", "email", "id"],
                "order_time": pd.to_datetime([f"2026-01-0{d}" for d in range(1, 6)]),
                "amount": [1.5, -2.0, 3.25, 0.0, 10.0],
                "category": ["家居", None, "数码", "家居", ""],
            }
        ),
        small,
    )
    run_parquet = Path(first_run["folder"]) / "orders_attributed.parquet"
    for path, batch in ((run_parquet, 1_000_000), (small, 2)):
        for cols in (ATTRIBUTED_ORDER_COLUMNS, CARD_ORDER_COLUMNS):
            plain = read_attributed(path, cols)
            coded = read_attributed(path, cols, codes=True, batch_rows=batch)
            assert list(coded.columns) == list(plain.columns) == list(cols)
            for c in cols:
                if pd.api.types.is_numeric_dtype(plain[c]) or c == "order_time":
                    pd.testing.assert_series_equal(coded[c], plain[c])
                    continue
                assert isinstance(coded[c].dtype, pd.CategoricalDtype), c
                want = plain[c].astype(object).where(plain[c].notna(), None).tolist()
                got = coded[c].astype(object).where(coded[c].notna(), None).tolist()
                assert got == want, c
    coded = read_attributed(small, CARD_ORDER_COLUMNS, codes=True, batch_rows=2)
    assert coded["customer_id"].astype(object).tolist()[:3] == ["C2", "C1", coded.iloc[2, 0]]
    assert pd.isna(coded.iloc[2, 0]) and coded["category"].tolist()[4] == ""


def test_a_run_matches_every_record_with_one_customer_index(workdir, tmp_path, index_builds):
    """The one matcher's index of the customers is built once a run: the orders' metrics
    build it; the segment's surveys, the follow-up log and the report's (and owners')
    funnels reuse it or the linked log (1M customers: ~2 s an index)."""
    import shutil

    shutil.copytree(workdir / "examples", tmp_path / "examples")
    text = (tmp_path / "examples" / "pipeline.yaml").read_text(encoding="utf-8")
    assert "interactions" in text and "surveys" in text  # every matched kind is in the run
    pl = tmp_path / "examples" / "pipeline_index.yaml"
    pl.write_text(_without(text, "html", "cards", "book"), encoding="utf-8")
    built = index_builds
    res = runner.invoke(app, ["run", str(pl), "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert built == [m["rows"]["segment"]["customers"]]
    from openpyxl import load_workbook

    names = load_workbook(Path(m["folder"]) / "report.xlsx", read_only=True).sheetnames
    assert "销售漏斗" in names  # the funnel sheet was written
