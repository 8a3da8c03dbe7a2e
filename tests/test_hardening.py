"""Issue 13: bad files and broken environments end in exit 2 with the file (and row) named,
in bounded time; broken quotes and stray encodings never swallow rows silently."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from custtool.cli import app
from custtool.errors import InputError, OutputError
from custtool.ingest import import_files

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LEADS = EXAMPLES / "公众号线索.csv"  # UTF-8 with BOM, 83 records, some values span lines
MEMBERS = EXAMPLES / "门店会员.csv"  # GBK


def _lines(path: Path, encoding: str) -> list[str]:
    return path.read_bytes().decode(encoding).split("\n")


def test_no_newline_megabyte_fails_fast_with_the_line(tmp_path):
    f = tmp_path / "wide.csv"
    f.write_bytes(b"a," * 500_000)
    t0 = time.perf_counter()
    with pytest.raises(InputError) as err:
        import_files(f)
    assert time.perf_counter() - t0 < 2
    assert "wide.csv, line 1: 500,001 fields" in err.value.message
    assert err.value.row == 1
    r = runner.invoke(app, ["import", str(f), "--json"])
    assert r.exit_code == 2
    out = json.loads(r.stdout)["error"]
    assert (out["code"], out["file"], out["row"]) == (2, "wide.csv", 1)


def test_huge_field_is_refused_and_the_limit_is_configurable(tmp_path, monkeypatch):
    lines = _lines(LEADS, "utf-8-sig")
    parts = lines[3].split(",")
    parts[-1] = "x" * 2_000_000
    lines[3] = ",".join(parts)
    f = tmp_path / "big.csv"
    f.write_text("\n".join(lines), "utf-8")
    with pytest.raises(InputError) as err:
        import_files(f)
    assert "big.csv, line 4: a field of 2,000,000 bytes" in err.value.message
    assert import_files(f, max_field_bytes=4_000_000).totals["rows_read"] == 83
    with pytest.raises(InputError, match="longer than the limit of 1,000"):
        import_files(f, max_field_bytes=1_000)
    monkeypatch.setenv("CUSTTOOL_MAX_FIELD_BYTES", str(4_000_000))
    assert import_files(f).totals["rows_read"] == 83


def test_stray_quote_in_utf8_does_not_swallow_rows(tmp_path):
    lines = _lines(LEADS, "utf-8-sig")
    parts = lines[10].split(",")
    parts[1] = '"' + parts[1]
    lines[10] = ",".join(parts)
    f = tmp_path / "quote.csv"
    f.write_text("\n".join(lines), "utf-8")
    res = import_files(f)
    assert res.totals["rows_read"] == 83  # as before the damage, not 68
    assert any("quote.csv, rows 11–" in w and "unbalanced quote" in w for w in res.warnings)
    note = res.rejects[res.rejects["code"] == "quote_unbalanced"]
    assert note[["file", "row", "action"]].values.tolist() == [["quote.csv", 11, "kept"]]
    assert note["value"].iloc[0].startswith("rows 11–")


def test_unbalanced_quote_in_gbk_is_read_not_exit_3(tmp_path):
    lines = _lines(MEMBERS, "gbk")
    lines[5] += ',"oops'
    f = tmp_path / "gbk.csv"
    f.write_bytes("\n".join(lines).encode("gbk"))
    res = import_files(f)
    clean = import_files(MEMBERS).totals["rows_read"]
    assert res.totals["rows_read"] == clean
    assert any("gbk.csv, rows 6–" in w for w in res.warnings)
    r = runner.invoke(app, ["import", str(f), "-q"])
    assert r.exit_code == 0, r.output


def test_one_gbk_line_in_utf8_is_named_not_the_whole_file(tmp_path):
    lines = _lines(LEADS, "utf-8-sig")
    body = [ln.encode("gbk" if i == 20 else "utf-8") for i, ln in enumerate(lines)]
    f = tmp_path / "mixed.csv"
    f.write_bytes(b"\n".join(body))
    res = import_files(f)
    assert res.totals["rows_read"] == 83
    assert res.files[0].encoding == "utf-8"
    assert any("mixed.csv, line 21: not valid UTF-8; looks like GBK" in w for w in res.warnings)
    note = res.rejects[res.rejects["code"] == "encoding_line"]
    assert note[["row", "value"]].values.tolist() == [[21, "row 21"]]
    row = lines[20].split(",")[0]
    assert row in set(res.data["name"])  # decoded as GB18030, not mojibake


def test_file_cut_mid_character_has_no_traceback(tmp_path, capfd):
    data = LEADS.read_bytes()
    cut = len(data) // 2
    while data[cut] < 0x80:
        cut += 1
    f = tmp_path / "cut.csv"
    f.write_bytes(data[: cut + 1])
    r = runner.invoke(app, ["import", str(f), "-q"])
    assert r.exit_code == 0
    assert "Traceback" not in r.output + capfd.readouterr().err
    assert any("not valid UTF-8 (damaged or cut short)" in w for w in import_files(f).warnings)


def test_unwritable_output_is_exit_2_naming_it(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out = blocker / "x.parquet"  # a folder that is a file: cannot be created
    r = runner.invoke(app, ["import", str(LEADS), "-o", str(out), "--json"])
    assert r.exit_code == 2, r.output
    err = json.loads(r.stdout)["error"]
    assert err["code"] == 2 and err["type"] == "OutputError"
    assert err["file"] == str(out) and "cannot write" in err["message"] and err["hint"]


@pytest.mark.parametrize("step", ["import", "import_batched", "segment", "followups"])
def test_a_second_output_that_cannot_be_written_leaves_no_first(example_data, tmp_path, step):
    # the table was renamed into place before its rejects / summary / statuses failed:
    # exit 2 with a half-written output folder
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out = tmp_path / "out"
    p = example_data.paths
    args = {
        "import": ["import", str(LEADS), "-o", str(out / "t.parquet")],
        "import_batched": ["import", str(LEADS), "-o", str(out / "t.parquet")]
        + ["--memory-limit", "1GB"],
        "segment": ["segment", str(p["clean"]), "--orders", str(p["orders"])]
        + ["-o", str(out / "t.parquet")],
        "followups": ["followups", str(p["tagged"]), "--log", str(p["interactions"])]
        + ["-o", str(out / "t.xlsx")],
    }[step]
    second = {"segment": "--summary", "followups": "--statuses"}.get(step, "--rejects")
    target = blocker / ("s.xlsx" if step == "segment" else "s.csv")
    r = runner.invoke(app, [*args, second, str(target)])
    assert r.exit_code == 2, r.output
    assert f"{target}: cannot write" in r.output
    assert not out.exists() or list(out.iterdir()) == []
    r = runner.invoke(app, [*args, second, str(out / target.name)])  # and when it can
    assert r.exit_code == 0, r.output
    assert (out / target.name).exists() and not [f for f in out.iterdir() if ".tmp" in f.name]


def test_a_pipe_or_a_folder_as_input_is_exit_2_not_a_hang(example_data, tmp_path):
    # a FIFO with no writer was opened and waited on for ever (import, clean, segment, …);
    # a folder given as a table was read as an empty Parquet dataset (tag: exit 0, 0 rows)
    import os
    import subprocess
    import sys

    fifo = tmp_path / "orders.csv"
    os.mkfifo(fifo)
    folder = tmp_path / "customers.parquet"
    folder.mkdir()
    out = tmp_path / "out"
    p = example_data.paths
    cases = [
        (["import", str(fifo), "-o", str(out / "x.parquet")], fifo, "is not a regular file"),
        (["import", str(fifo), "--kind", "orders", "--engine", "duckdb", "--memory-limit"]
         + ["1GB", "-o", str(out / "x.parquet")], fifo, "is not a regular file"),
        (["segment", "--orders", str(fifo), "-o", str(out / "s.parquet")], fifo, "is not a regular file"),
        (["followups", str(p["tagged"]), "--log", str(fifo)], fifo, "is not a regular file"),
        (["tag", str(folder), "-o", str(out / "t.parquet")], folder, "is a folder, not a file"),
        (["clean", str(folder), "-o", str(out / "c.parquet")], folder, "is a folder, not a file"),
    ]  # fmt: skip
    for args, bad, message in cases:
        r = subprocess.run(
            [sys.executable, "-m", "custtool", *args], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 2, (args, r.stderr)
        assert f"{bad} {message}" in r.stderr and "Traceback" not in r.stderr
        assert not out.exists() or list(out.iterdir()) == []


def test_every_error_custtool_raises_has_a_hint():
    # 18 raises had none: `import --fields <a list>`, `--sheet` on a CSV, `--owner` on a
    # table without owners, bad thresholds in segments.yaml… printed a message and no hint
    import ast

    names = {"CusttoolError", "InputError", "ConfigError", "OutputError", "RuleError"}
    bare = []
    for path in sorted((Path(__file__).resolve().parent.parent / "custtool").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                f = node.exc.func
                if getattr(f, "id", getattr(f, "attr", None)) not in names:
                    continue
                if len(node.exc.args) < 2 and "hint" not in {k.arg for k in node.exc.keywords}:
                    bare.append(f"{path.name}:{node.lineno}")
    assert bare == []


def test_a_folder_or_a_list_where_a_yaml_file_is_expected_says_so(tmp_path):
    # `tag --rules <folder>` said "rules file is not UTF-8", `run <folder>` and
    # `rules check <folder>` "not found"; `import --fields <a YAML list>` had no hint
    folder = tmp_path / "rules.yaml"
    folder.mkdir()
    listed = tmp_path / "fields.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    cases = [
        (["tag", str(LEADS), "--rules", str(folder)], "the rules file is a folder"),
        (["rules", "check", str(folder)], "is a folder, not a file"),
        (["run", str(folder)], "the pipeline file is a folder"),
        (["import", str(LEADS), "--fields", str(listed)], "expected a mapping of kinds"),
        (["import", str(LEADS), "--sheet", "x"], "--sheet applies to workbooks"),
    ]
    for args, message in cases:
        r = runner.invoke(app, [*args, "--json"])
        assert r.exit_code == 2, (args, r.output)
        err = json.loads(r.stdout)["error"]
        assert message in err["message"] and err["hint"], (args, err)


def test_an_output_that_would_replace_an_input_is_refused(example_data, tmp_path):
    # `import 门店会员.csv -o 门店会员.csv` replaced the export with custtool's table, and
    # tag / segment / followups / funnel / reveal overwrote their inputs (only clean refused)
    import shutil

    src = tmp_path / "members.csv"
    shutil.copy(MEMBERS, src)
    p = {k: tmp_path / f"{k}.parquet" for k in ("tagged", "orders", "interactions")}
    for k, f in p.items():
        shutil.copy(example_data.paths[k], f)
    before = {f: f.read_bytes() for f in [src, *p.values()]}
    cases = [
        ["import", str(src), "-o", str(src)],
        ["import", str(src), "-o", str(tmp_path / "x.parquet"), "--rejects", str(src)],
        ["tag", str(p["tagged"]), "-o", str(p["tagged"])],
        ["segment", str(p["tagged"]), "--orders", str(p["orders"]), "-o", str(p["orders"])],
        ["followups", str(p["tagged"]), "--log", str(p["interactions"])]
        + ["--statuses", str(p["interactions"])],
        ["funnel", str(p["tagged"]), "-o", str(p["tagged"])],
        ["reveal", str(p["tagged"]), "-o", str(p["tagged"])],
    ]
    for args in cases:
        r = runner.invoke(app, [*args, "--json"])
        assert r.exit_code == 2, (args, r.output)
        err = json.loads(r.stdout)["error"]
        assert "is an input: custtool never overwrites its inputs" in err["message"], err
    assert {f: f.read_bytes() for f in before} == before
    assert not (tmp_path / "x.parquet").exists()


def test_atomic_path_raises_output_error(tmp_path):
    from custtool.atomic import atomic_path

    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        with atomic_path(tmp_path / "f" / "out.csv"):
            pass


def test_unreadable_input_is_exit_2(tmp_path, monkeypatch):
    f = tmp_path / "in.csv"
    f.write_bytes(LEADS.read_bytes())

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied", str(f))

    monkeypatch.setattr("custtool.io._read_csv_raw", refuse)
    r = runner.invoke(app, ["import", str(f), "--json"])
    assert r.exit_code == 2
    err = json.loads(r.stdout)["error"]
    assert err["message"] == f"{f}: cannot read (Permission denied)" and err["file"] == str(f)


def test_other_os_errors_are_exit_2_at_the_edge(monkeypatch, tmp_path):
    def full(*_a, **_k):
        raise OSError(28, "No space left on device", "/data/out.parquet")

    monkeypatch.setattr("custtool.steps.run_import", full)
    r = runner.invoke(app, ["import", str(LEADS)])
    assert r.exit_code == 2
    assert "/data/out.parquet: cannot use (No space left on device)" in r.stderr
    assert "free some disk space" in r.stderr


def test_an_internal_error_masks_the_personal_data_its_text_quotes(monkeypatch):
    # exit 3 printed the exception's text as it was: a library error quoting a cell showed
    # the phone and e-mail, and a "[/…]" in it broke rich's markup (a traceback at the edge)
    def bug(*_a, **_k):
        raise ValueError("could not convert '13812345678 zhang@qq.com' to float [/b]")

    monkeypatch.setattr("custtool.steps.run_import", bug)
    for extra in ([], ["--json"]):
        r = runner.invoke(app, ["import", str(LEADS), *extra])
        assert r.exit_code == 3, r.output
        text = r.stdout + r.stderr
        assert "13812345678" not in text and "zhang@qq.com" not in text
        assert "138****5678" in text and "Traceback" not in text
    assert json.loads(r.stdout)["error"]["type"] == "InternalError"


def test_usage_error_is_one_line_and_a_hint():
    r = runner.invoke(app, ["import", "x.csv", "--bogus"])
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["Error: No such option: --bogus", "Hint: see `custtool import --help`"]


def test_deep_condition_is_a_rules_check_error(tmp_path):
    rules = tmp_path / "deep.yaml"
    cond = "-" * 1000 + "orders_30d > 0"
    rules.write_text(
        f'tags:\n  - name: deep\n    path: [价值评估, 客户价值]\n    condition: "{cond}"\n',
        "utf-8",
    )
    r = runner.invoke(app, ["rules", "check", str(rules)])
    assert r.exit_code == 2
    assert "nested 1004 levels deep (at most 40)" in r.stderr


def test_shipped_rules_are_within_the_depth_limit():
    from custtool.tags import DEFAULT_RULES

    r = runner.invoke(app, ["rules", "check", str(DEFAULT_RULES)])
    assert r.exit_code == 0, r.stderr


def test_header_only_customers_with_surveys(example_data):
    import pandas as pd

    from custtool.nps import attach_responses

    surveys = example_data.frame("surveys")
    customers = example_data.frame("clean").iloc[0:0]
    resp, score = attach_responses(surveys, customers)
    assert len(resp) == len(surveys) and (resp["_customer"] == -1).all()
    assert len(score) == 0 and isinstance(score, pd.Series)


def test_segment_with_no_customers_and_surveys_is_not_exit_3(example_data, tmp_path):
    empty = tmp_path / "none.parquet"
    example_data.frame("clean").iloc[0:0].to_parquet(empty)
    p = example_data.paths
    args = ["segment", str(empty), "--orders", str(p["orders"]), "--surveys", str(p["surveys"])]
    r = runner.invoke(app, [*args, "-o", str(tmp_path / "seg.parquet"), "--json"])
    assert r.exit_code in (0, 2), r.output
    assert "InternalError" not in r.stdout


def _pipeline(tmp_path: Path, out: str, customers: Path) -> Path:
    yaml = tmp_path / "pipeline.yaml"
    yaml.write_text(
        f"name: t\nout: {out}\ninputs:\n  customers:\n    - {customers}\n"
        f"  orders:\n    - {EXAMPLES / '订单明细.csv'}\n",
        "utf-8",
    )
    return yaml


def test_run_with_unwritable_out_is_exit_2(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    yaml = _pipeline(tmp_path, str(blocker / "out"), LEADS)
    r = runner.invoke(app, ["run", str(yaml), "--json"])
    assert r.exit_code == 2, r.output
    err = json.loads(r.stdout)["error"]
    assert err["type"] == "OutputError" and err["file"] == str(blocker / "out")
    assert "cannot write the run folder" in err["message"]


def test_run_with_unreadable_input_is_exit_2(tmp_path, monkeypatch):
    yaml = _pipeline(tmp_path, str(tmp_path / "out"), LEADS)

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied", str(LEADS))

    monkeypatch.setattr("custtool.io._read_csv_raw", refuse)
    r = runner.invoke(app, ["run", str(yaml), "--json"])
    assert r.exit_code == 2, r.output
    err = json.loads(r.stdout)["error"]
    assert err["message"] == f"{LEADS}: cannot read (Permission denied)"


def test_a_killed_commands_temporary_files_are_swept_by_the_next_one(tmp_path):
    # import -o x.parquet killed by SIGKILL (the OOM killer) left .x.parquet.*.tmp.parquet
    # and a .custtool-spill-* folder beside the output for ever; the next write of the same
    # output removes those of a dead process, never a live one's
    import os
    import signal
    import subprocess
    import sys

    from custtool.atomic import sweep_leftovers, temp_prefix

    out = tmp_path / "x.parquet"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from custtool.atomic import temp_prefix; d = Path(sys.argv[1]); "
            "(d / (temp_prefix('.x.parquet.') + 'abc.tmp.parquet')).write_bytes(b'half'); "
            "(d / (temp_prefix('.custtool-spill-') + 'q')).mkdir(); "
            "print('ready', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    mine = tmp_path / (temp_prefix(".x.parquet.") + "live.tmp")  # this (live) process's
    mine.write_bytes(b"")
    left = sorted(p.name for p in tmp_path.iterdir() if p != mine)
    assert len(left) == 2
    assert sweep_leftovers(tmp_path, ".x.parquet.") == []  # the writer still runs
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    r = runner.invoke(
        app,
        ["import", str(LEADS), "--kind", "customers", "-o", str(out), "--memory-limit", "1GB"],
    )
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([out.name, "x_rejects.csv", mine.name]), names
