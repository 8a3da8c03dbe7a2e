"""One config, one as-of rule: `custtool run`, the CLI steps one by one and the Python API
give the same customers for the same inputs (issue 11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import custtool
from custtool.cli import app

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CUSTOMER_FILES = [
    ("电商平台会员.xlsx", "电商"),
    ("门店会员.csv", "门店"),
    ("公众号线索.csv", "公众号"),
]
runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (
        f"custtool {' '.join(map(str, args))}\n{result.output}{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def three_ways(tmp_path_factory, example_run) -> dict[str, dict[str, pd.DataFrame]]:
    """The example job run as (a) `custtool run`, (b) the CLI steps, (c) the Python API."""
    work = tmp_path_factory.mktemp("flow")
    ex = work / "examples"
    shutil.copytree(EXAMPLES, ex)
    out: dict[str, dict[str, pd.DataFrame]] = {}

    # (a) custtool run examples/pipeline.yaml --json: the session's run (conftest.example_run)
    manifest = example_run[1]
    folder = example_run[0] / "out" / manifest["as_of"]
    assert Path(manifest["folder"]) == folder
    out["run"] = {
        "segmented": pd.read_parquet(folder / "segmented.parquet"),
        "final": pd.read_parquet(folder / "customers.parquet"),
    }
    out["run_tasks"] = next(r["rows"] for r in manifest["steps"] if r["step"] == "followups")  # type: ignore[assignment]

    # (b) the CLI, step by step, with the pipeline file's inputs and options
    cli = work / "cli"
    cli.mkdir()
    channels = [a for _, ch in CUSTOMER_FILES for a in ("--channel", ch)]
    _cli(
        "import",
        *(ex / f for f, _ in CUSTOMER_FILES),
        "--kind",
        "customers",
        *channels,
        "-o",
        cli / "customers.parquet",
    )
    _cli(
        "import",
        ex / "订单明细.csv",
        "--kind",
        "orders",
        "--channel",
        "订单",
        "-o",
        cli / "orders.parquet",
    )
    _cli(
        "import", ex / "跟进记录.xlsx", "--kind", "interactions", "-o", cli / "interactions.parquet"
    )
    _cli("import", ex / "满意度调查.csv", "--kind", "surveys", "-o", cli / "surveys.parquet")
    _cli(
        "clean",
        cli / "customers.parquet",
        "-o",
        cli / "clean.parquet",
        "--keys",
        "phone,email,customer_id",
        "--survivorship",
        "newest",
        "--channel-priority",
        "门店,电商,公众号",
    )
    _cli(
        "segment",
        cli / "clean.parquet",
        "--orders",
        cli / "orders.parquet",
        "--surveys",
        cli / "surveys.parquet",
        "--interactions",
        cli / "interactions.parquet",
        "--window",
        "365d",
        "-o",
        cli / "segmented.parquet",
    )
    _cli("tag", cli / "segmented.parquet", "--max-tags", "10", "-o", cli / "tagged.parquet")
    tasks = json.loads(
        _cli(
            "followups",
            cli / "tagged.parquet",
            "--log",
            cli / "interactions.parquet",
            "--statuses",
            cli / "final.parquet",
            "-o",
            cli / "tasks.parquet",
            "--json",
        )
    )
    out["cli"] = {
        "segmented": pd.read_parquet(cli / "segmented.parquet"),
        "final": pd.read_parquet(cli / "final.parquet"),
        "tasks": pd.read_parquet(cli / "tasks.parquet"),
    }
    assert tasks["tasks"] == len(out["cli"]["tasks"])

    # (c) the Python API
    from custtool.followups import apply_transitions, due_followups

    imported = custtool.import_files(
        [ex / f for f, _ in CUSTOMER_FILES],
        kind="customers",
        channel=[c for _, c in CUSTOMER_FILES],
    ).data
    orders = custtool.import_files(ex / "订单明细.csv", kind="orders", channel="订单").data
    interactions = custtool.import_files(ex / "跟进记录.xlsx", kind="interactions").data
    surveys = custtool.import_files(ex / "满意度调查.csv", kind="surveys").data
    customers, _, _ = custtool.dedupe(
        imported,
        keys="phone,email,customer_id",
        survivorship="newest",
        channel_priority="门店,电商,公众号",
    )
    seg = custtool.segment_customers(
        orders, customers, surveys=surveys, interactions=interactions, window="365d"
    )
    tagged = custtool.apply_tags(seg.customers, max_tags=10)
    out["api"] = {
        "segmented": seg.customers,
        "final": apply_transitions(tagged, interactions),
        "tasks": due_followups(tagged, interactions),
    }
    out["as_of"] = {"run": manifest["as_of"], "api": str(seg.report.as_of.date())}  # type: ignore[dict-item]
    return out


def _same(a: pd.DataFrame, b: pd.DataFrame, columns: list[str]) -> None:
    """The frames agree on ``columns`` (customers sorted by id; tags as lists of str)."""
    a = a.sort_values("customer_id").reset_index(drop=True)
    b = b.sort_values("customer_id").reset_index(drop=True)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    for col in columns:
        x, y = a[col], b[col]
        if col == "tags":
            x, y = x.map(list), y.map(list)
            assert x.tolist() == y.tolist(), col
            continue
        pd.testing.assert_series_equal(x, y, check_dtype=False, check_names=False, obj=col)


KEY_COLUMNS = [
    "recency",
    "frequency",
    "monetary",
    "growth",
    "r_score",
    "f_score",
    "m_score",
    "rfm_class",
    "tier",
    "lifecycle",
    "potential",
    "nps_score",
]


@pytest.mark.parametrize("way", ["cli", "api"])
def test_segmented_customers_equal_across_run_cli_and_api(three_ways, way):
    run, other = three_ways["run"]["segmented"], three_ways[way]["segmented"]
    for col in KEY_COLUMNS:
        assert col in run.columns, col
    # growth is the spend growth over rules/segments.yaml's growth_window (365d) everywhere
    assert run["growth"].notna().any()
    shared = [c for c in run.columns if c in other.columns and c != "tags"]
    assert set(KEY_COLUMNS) <= set(shared)
    _same(run, other, shared)


@pytest.mark.parametrize("way", ["cli", "api"])
def test_tags_and_statuses_equal_across_run_cli_and_api(three_ways, way):
    run, other = three_ways["run"]["final"], three_ways[way]["final"]
    assert run["tags"].map(len).sum() > 0
    _same(run, other, ["tags", "status", "status_reason", "as_of"])


def test_followup_tasks_equal_across_run_cli_and_api(three_ways):
    cli, api = three_ways["cli"]["tasks"], three_ways["api"]["tasks"]
    key = ["customer_id", "rule"]
    cli = cli.sort_values(key).reset_index(drop=True)
    api = api.sort_values(key).reset_index(drop=True)
    assert len(api) > 0
    # custtool run lists the same tasks (same as-of date: the latest order day)
    assert three_ways["run_tasks"]["tasks"] == len(api)
    assert three_ways["run_tasks"]["overdue"] == int((api["state"] == "逾期").sum())
    pd.testing.assert_frame_equal(
        cli[key + ["due_date", "state", "days_overdue"]],
        api[key + ["due_date", "state", "days_overdue"]],
        check_dtype=False,
    )


def test_as_of_is_the_latest_order_day_everywhere(three_ways):
    assert three_ways["as_of"]["run"] == three_ways["as_of"]["api"]
    for way in ("run", "cli", "api"):
        seg = three_ways[way]["segmented"]
        assert str(pd.Timestamp(seg["as_of"].max()).date()) == three_ways["as_of"]["run"]


# --------------------------------------------------------------------------- issue 12: progress
def test_import_and_segment_report_their_stages(example_data, tmp_path):
    from custtool.steps import run_import, run_segment

    seen: list[str] = []
    res = run_import(
        [EXAMPLES / "订单明细.csv"],
        kind="orders",
        output=tmp_path / "o.parquet",
        progress=seen.append,
    )
    assert seen == ["reading", "writing", "rejects"] and res.exit_code == 0
    seen.clear()
    run_import([EXAMPLES / "订单明细.csv"], kind="orders", progress=seen.append)
    assert seen == ["reading"]  # a check writes nothing
    seen.clear()
    run_segment(
        example_data.paths["clean"],
        orders=example_data.paths["orders"],
        output=tmp_path / "s.parquet",
        summary=tmp_path / "s.xlsx",
        progress=seen.append,
    )
    assert seen == ["reading", "segmenting", "writing", "summary"]


def test_progress_bars_on_a_terminal_only_without_quiet_or_json(
    example_data, tmp_path, monkeypatch
):
    import io

    from rich.console import Console

    import custtool.commands.render as render

    args = [
        "segment",
        str(example_data.paths["clean"]),
        "--orders",
        str(example_data.paths["orders"]),
    ]
    args += ["-o", str(tmp_path / "s.parquet")]
    for extra, shown in (([], True), (["--quiet"], False), (["--json"], False)):
        buf = io.StringIO()
        # a terminal on stderr (force_terminal): the bar draws unless --quiet / --json
        # (the console the commands draw on lives in custtool/commands/render.py)
        monkeypatch.setattr(render, "console", Console(file=buf, force_terminal=True, width=100))
        res = CliRunner().invoke(app, [*args, *extra])
        assert res.exit_code == 0, res.output
        assert ("segment: " in buf.getvalue()) is shown, (extra, buf.getvalue()[:200])
    # not a terminal (CliRunner's own stderr): no bar either
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "segment: " not in res.stderr
