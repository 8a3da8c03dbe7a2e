"""`custtool run`: the example pipeline end to end, idempotence, errors, crash safety."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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
    assert folder.name == m["as_of"] == str(orders["order_time"].max().date())  # default: latest order date
    imp = m["rows"]["import"]
    assert set(imp) == {"customers", "orders", "interactions", "surveys"}
    for kind, r in imp.items():
        assert r["rows_read"] == r["accepted"] + r["rejected"] + r["skipped"], kind
        for f in r["files"]:
            assert f["rows_read"] == f["accepted"] + f["rejected"] + f["skipped"]
    clean = m["rows"]["clean"]
    assert clean["rows_in"] == imp["customers"]["accepted"]
    assert clean["rows_in"] == clean["exact_duplicates"] + clean["merged_rows"] + clean["customers_out"]
    seg = m["rows"]["segment"]
    assert seg["customers"] == clean["customers_out"]
    assert seg["orders_used"] + seg["orders_unmatched"] <= imp["orders"]["accepted"]
    # every accepted order row is accounted for (orders_used counts orders, not refund lines)
    o = seg["order_rows"]
    assert o["rows"] == imp["orders"]["accepted"]
    assert o["rows"] == o["rows_used"] + o["rows_unmatched"] + o["rows_duplicate"] + o["rows_after_as_of"] + o["rows_invalid_time"]
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
    assert {"customers.parquet", "segmented.parquet", "report.xlsx", "rejects.csv", "clean_report.xlsx", "cards.html"} <= names
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
    assert json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["as_of"] == folder.name
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left
    tasks = load_workbook(folder / "followups.xlsx", read_only=True)["跟进任务"]
    assert next(tasks.iter_rows(max_row=1, values_only=True))[:4] == ("负责人", "客户编号", "姓名", "到期日")


def test_rerun_is_idempotent_and_rejects_over_the_limit_exit_1(workdir, first_run):
    folder = Path(first_run["folder"])
    before = {p.name: _sha(p) for p in folder.iterdir() if p.suffix in (".parquet", ".csv")}
    result = runner.invoke(
        app, ["run", str(workdir / "examples" / "pipeline.yaml"), "--out", str(workdir / "out"), "--fail-on-rejects", "0", "--quiet"]
    )
    assert result.exit_code == 1, result.output  # done (the folder is rewritten), but over the limit
    assert "REJECTS OVER LIMIT" in result.stdout
    after = {p.name: _sha(p) for p in folder.iterdir() if p.suffix in (".parquet", ".csv")}
    assert before == after


def test_second_month_picks_previous_run_and_keeps_ids(workdir, first_run):
    folder = Path(first_run["folder"])
    result = runner.invoke(
        app, ["run", str(workdir / "examples" / "pipeline.yaml"), "--out", str(workdir / "out"), "--as-of", "2026-11-30", "--json"]
    )
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert Path(m["previous_run"]) == folder
    old = pd.read_parquet(folder / "customers.parquet").set_index("source_ids")["customer_id"]
    new = pd.read_parquet(Path(m["folder"]) / "customers.parquet").set_index("source_ids")["customer_id"]
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
    p.write_text("out: out\ninputs:\n  customers:\n    - {path: 不存在.xlsx, channel: 电商}\n", encoding="utf-8")
    result = runner.invoke(app, ["run", str(p)])
    assert result.exit_code == 2
    assert "inputs.customers[0].path" in result.stderr and "不存在.xlsx" in result.stderr
    assert not (tmp_path / "out").exists()


def test_crash_in_report_leaves_no_partial_files(workdir, first_run, monkeypatch):
    import custtool.report

    folder = Path(first_run["folder"])
    before = {p.name: _sha(p) for p in folder.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the report")

    monkeypatch.setattr(custtool.report, "write_workbook", boom)
    result = runner.invoke(app, ["run", str(workdir / "examples" / "pipeline.yaml"), "--out", str(workdir / "out"), "--quiet"])
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
                    assert not any(p in v for p in raw_phones if len(p) == 11), ("clean_report.xlsx", ws.title)
    html = (folder / "cards.html").read_text(encoding="utf-8")
    assert not any(p in html for p in list(raw_phones)[:50])


def test_failed_first_run_leaves_no_folder(workdir, monkeypatch):
    import custtool.clean

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(custtool.clean, "dedupe", boom)  # an early step: the test stays fast
    out = workdir / "fresh_out"
    result = runner.invoke(app, ["run", str(workdir / "examples" / "pipeline.yaml"), "--out", str(out), "--quiet"])
    assert result.exit_code == 3  # an internal error, told apart from 1 (rejects over the limit)
    assert "Internal error: RuntimeError: simulated crash" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
