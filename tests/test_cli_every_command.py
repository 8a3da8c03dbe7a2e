"""Every command, one test each: help with a summary and an example, `--json` parses (on
examples/ data, and as ``{"error": ...}`` on failure), a missing input is exit 2 with one
line and no traceback, and `--json` equals the library result's ``to_dict()``.

A new command fails these tests until it is added to ``ARGS`` and ``MISSING`` below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from custtool.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
RULES, EXAMPLES = ROOT / "rules", ROOT / "examples"


def all_commands() -> dict[str, object]:
    """'rules check' -> click command, for every command and sub-command of the app."""
    import typer.main

    out: dict[str, object] = {}

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            out[" ".join(path)] = cmd

    walk(typer.main.get_command(app), [])
    return out


COMMANDS = all_commands()


def ARGS(d, p: dict[str, Path], tmp: Path) -> dict[str, list[str] | None]:
    """A working invocation of every command on the examples/ data (None: run by a fixture)."""
    return {
        "import": [str(d / "门店会员.csv"), "-o", str(tmp / "imported.parquet")],
        "template": ["orders", "-o", str(tmp / "订单导入模板.xlsx")],
        "clean": [str(p["customers"]), "-o", str(tmp / "clean.parquet")],
        "segment": [str(p["clean"]), "--orders", str(p["orders"]), "--surveys", str(p["surveys"])],
        "tag": [str(p["segmented"]), "-o", str(tmp / "tagged.parquet")],
        "rules check": [str(RULES / "tags.yaml")],
        "report": [str(p["tagged"]), "--orders", str(p["orders"]), "-o", str(tmp / "report.xlsx")],
        "pivot": [str(p["tagged"]), "--rows", "tier", "--cols", "lifecycle"],
        "cards": [str(p["tagged"]), "--top", "2", "-o", str(tmp / "cards.html")],
        "followups": [
            str(p["tagged"]),
            "--log",
            str(p["interactions"]),
            "-o",
            str(tmp / "followups.xlsx"),
        ],
        "funnel": [str(p["tagged"]), "--followups", str(p["interactions"])],
        "run": None,  # conftest.example_run runs `custtool run examples/pipeline.yaml --json` once
        "key new": [],
        "key rotate": [str(tmp), "--old-env", "CUSTTOOL_T_OLD", "--new-env", "CUSTTOOL_T_NEW"],
        "reveal": [str(p["clean"]), "-o", str(tmp / "clear.csv")],
        "book import": [str(p["out"]), "--book", str(tmp / "book.duckdb")],
        "trend": ["--book", str(tmp / "book.duckdb")],
        "compare": [p["as_of"], p["as_of"], "--book", str(tmp / "book.duckdb")],
        "query": ["SELECT count(*) AS n FROM runs", "--book", str(tmp / "book.duckdb")],
        "send": [
            str(Path(p["out"]) / p["as_of"]),
            "--config",
            str(mail_pipeline(tmp)),
            "--dry-run",
        ],
    }


def mail_pipeline(tmp: Path) -> Path:
    """A pipeline file with a deliver: section (`send` reads only that part)."""
    path = tmp / "mail.yaml"
    path.write_text(
        "inputs: {orders: 订单.csv}\n"
        "deliver:\n"
        "  smtp: {host: 127.0.0.1, port: 2525, tls: none, from: 客户分析 <r@example.cn>}\n"
        "  subscriptions:\n"
        "    - {name: 经理月报, to: [m@example.cn], send: [report, csv]}\n",
        encoding="utf-8",
    )
    return path


def MISSING(tmp: Path, p: dict[str, Path]) -> dict[str, list[str] | None]:
    """Every command with a missing input file (None: the command reads no file)."""
    gone = str(tmp / "不存在.parquet")
    return {
        "import": [str(tmp / "不存在.csv")],
        "template": None,
        "clean": [gone],
        "segment": [str(p["clean"]), "--orders", gone],
        "tag": [gone],
        "rules check": [str(tmp / "不存在.yaml")],
        "report": [gone, "-o", str(tmp / "r.xlsx")],
        "pivot": [gone, "--rows", "tier"],
        "cards": [gone],
        "followups": [gone, "--log", str(p["interactions"])],
        "run": [str(tmp / "不存在.yaml")],
        "key new": None,
        "key rotate": [str(tmp / "不存在")],
        "reveal": [gone, "-o", str(tmp / "clear.csv")],
        "funnel": [gone],
        "book import": [str(tmp / "不存在")],
        "trend": ["--book", str(tmp / "不存在.duckdb")],
        "compare": ["2026-01-01", "2026-02-01", "--book", str(tmp / "不存在.duckdb")],
        "query": ["SELECT 1", "--book", str(tmp / "不存在.duckdb")],
        "send": [str(tmp / "不存在")],
    }


def test_the_lists_name_every_command(tmp_path):
    paths = {
        k: tmp_path
        for k in ("customers", "clean", "orders", "surveys", "segmented", "tagged", "interactions")
    }
    paths["out"], paths["as_of"] = tmp_path, "2026-01-01"
    assert set(ARGS(tmp_path, paths, tmp_path)) == set(COMMANDS)
    assert set(MISSING(tmp_path, paths)) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_has_a_one_line_summary_and_examples(name):
    cmd = COMMANDS[name]
    summary = cmd.help.strip().split("\n\n")[0]
    assert summary and "\n" not in summary and len(summary) <= 120, (
        f"`custtool {name}`: summary {summary!r}"
    )
    result = runner.invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    examples = result.output.count("$ custtool " + name)
    assert examples >= 2, (
        f"`custtool {name} --help` shows {examples} example(s); STYLE asks for two to four"
    )
    assert any(o.opts == ["--json"] for o in cmd.params), f"`custtool {name}` has no --json"


@pytest.mark.parametrize("group", sorted({n.split()[0] for n in COMMANDS if " " in n}))
def test_group_help_shows_examples(group):
    # `custtool rules/key/book --help` listed their commands without an example
    result = runner.invoke(app, [group, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.count(f"$ custtool {group} ") >= 2, result.output


@pytest.fixture(scope="module")
def invoked(example_data, example_run, tmp_path_factory) -> dict[str, tuple[int, str, str]]:
    """Each command run once with --json on the examples/ data: exit code, stdout, stderr."""
    tmp = tmp_path_factory.mktemp("every")
    out = {}
    paths = {**example_data.paths, "out": example_run[0] / "out", "as_of": example_run[1]["as_of"]}
    for name, args in ARGS(EXAMPLES, paths, tmp).items():
        if args is None:
            continue
        r = runner.invoke(app, [*name.split(), *args, "--json"])
        out[name] = (r.exit_code, r.stdout, r.stderr)
    return out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_json_is_one_object_on_example_data(name, invoked, example_run):
    if name == "run":
        payload = example_run[1]
    else:
        code, out, err = invoked[name]
        assert code == 0, (name, out, err)
        assert out.count("\n") == 1, "--json prints exactly one line"
        payload = json.loads(out)
    assert isinstance(payload, dict) and payload and "error" not in payload


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if n not in ("template", "key new")))
def test_missing_input_is_exit_2_one_line_no_traceback(name, example_data, tmp_path):
    args = MISSING(tmp_path, example_data.paths)[name]
    r = runner.invoke(app, [*name.split(), *args])
    assert r.exit_code == 2, (name, r.output)
    assert "Traceback" not in r.output + r.stderr
    assert "不存在" in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert 1 <= len(errors) <= 2 and "不存在" in errors[0], (
        errors
    )  # the message, then at most a hint
    assert r.stdout == ""
    # with --json stdout still carries one JSON object: the error
    r = runner.invoke(app, [*name.split(), *args, "--json"])
    assert r.exit_code == 2
    err = json.loads(r.stdout)["error"]
    assert "不存在" in err["message"] and err["exit_code"] == 2
    # the missing file in "file" (it was null for most commands) and a hint (reveal had none)
    assert "不存在" in (err["file"] or "") and err["hint"], err


def test_usage_error_with_json_is_json_too():
    r = runner.invoke(app, ["pivot", "x.parquet", "--json"])  # --rows is required
    assert r.exit_code == 2
    err = json.loads(r.stdout)["error"]
    assert err["type"] == "UsageError" and "--rows" in err["message"]


def test_template_bad_kind_json_error(tmp_path):
    r = runner.invoke(app, ["template", "widgets", "-o", str(tmp_path / "t.xlsx"), "--json"])
    assert r.exit_code == 2
    assert json.loads(r.stdout) == {
        "error": {
            "code": 2,
            "type": "InputError",
            "message": "unknown kind 'widgets'",
            "hint": "use one of: customers, orders, interactions, surveys",
            "file": None,
            "row": None,
            "exit_code": 2,
        }
    }
    assert not (tmp_path / "t.xlsx").exists()


def _as_json(obj):
    """What the CLI's JSON encoder makes of a library result."""
    return json.loads(json.dumps(obj, ensure_ascii=False, default=str))


def test_json_equals_library_to_dict(example_data, invoked, tmp_path_factory):
    from custtool.steps import run_followups, run_pivot, run_segment

    p = example_data.paths
    args = ARGS(EXAMPLES, {**p, "out": Path("out"), "as_of": ""}, tmp_path_factory.mktemp("lib"))
    pivot = run_pivot(p["tagged"], rows="tier", cols="lifecycle")
    assert json.loads(invoked["pivot"][1]) == _as_json(pivot.to_dict())
    seg = run_segment(p["clean"], orders=p["orders"], surveys=p["surveys"]).to_dict()
    cli_seg = json.loads(invoked["segment"][1])
    assert cli_seg.pop("seconds") >= 0 and seg.pop("seconds") >= 0
    assert cli_seg == _as_json(seg)
    fu = run_followups(p["tagged"], p["interactions"], output=args["followups"][-1])
    cli_fu = json.loads(invoked["followups"][1])
    assert (
        Path(cli_fu.pop("output")).name == Path(fu.to_dict().pop("output")).name == "followups.xlsx"
    )
    assert cli_fu == {k: v for k, v in _as_json(fu.to_dict()).items() if k != "output"}
    # the session fixture's library run and the CLI agree on the tag step too
    cli_tag = json.loads(invoked["tag"][1])
    lib_tag = _as_json(example_data.results["tag"].to_dict())
    assert {k: v for k, v in cli_tag.items() if k != "output"} == {
        k: v for k, v in lib_tag.items() if k != "output"
    }


def test_exit_code_comes_from_the_result(tmp_path):
    """import: 1 when rejects exceed --max-rejects, the same code the library result carries."""
    from custtool.steps import run_import

    src = EXAMPLES / "电商平台会员.xlsx"  # 4 rows rejected
    lib = run_import(src, max_rejects=0)
    assert lib.data["totals"]["rejected"] == 4 and lib.exit_code == 1
    assert lib.problem == "4 rows rejected, more than --max-rejects 0"
    assert run_import(src, max_rejects=4).exit_code == 0
    r = runner.invoke(app, ["import", str(src), "--max-rejects", "0", "--json"])
    assert r.exit_code == lib.exit_code == 1
    assert json.loads(r.stdout) == _as_json(lib.to_dict())
