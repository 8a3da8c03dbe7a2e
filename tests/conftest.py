"""Shared fixtures: messy exports written into tmp_path as a Chinese firm would send them."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from hypothesis import settings as _settings


def require_system(what: str, present: bool, install: str) -> None:
    """Skip a test whose system part (Java, Chromium, a CJK font…) is missing, except in CI.

    ``scripts/setup-test.sh`` installs every such part; under ``CI=true`` a missing part is a
    failure, never a skip, so CI proves the install steps.
    """
    import os

    if present:
        return
    message = f"{what} is not installed ({install}; scripts/setup-test.sh does it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# --------------------------------------------------------------------------- suite order
# The modules' costs (seconds, measured 2026-12-03 on the loaded 2-core machine with the
# session runs shared by the workers (built_once): each module's CPU seconds, tests and
# fixtures; Spark's wall time, its JVM's CPU not being the worker's). pytest-xdist (pyproject
# addopts: -n 2 --dist loadfile --no-loadscope-reorder) hands whole files to the 2 workers in
# collection order, so the heaviest files go first (longest first): no worker is left alone
# with Spark at the end. The first two differ in what they build: Spark's JVM on one worker,
# the shared example run (test_pipeline) on the other. A file not listed keeps its place after
# these. The order within a file never changes.
HEAVY_FIRST = {
    "test_spark_engine.py": 110,
    "test_pipeline.py": 60,
    "test_report.py": 52,
    "test_document.py": 42,
    "test_duckdb_import.py": 25,
    "test_privacy.py": 23,
    "test_run_outputs.py": 20,
    "test_deliver.py": 20,
    "test_normalize_sql.py": 18,
    "test_clean.py": 17,
    "test_cli_every_command.py": 15,
    "test_pipeline_out_of_core.py": 14,
    "test_ooc_segment.py": 13,
    "test_masking.py": 13,
    "test_book.py": 11,
    "test_rfm.py": 11,
    "test_tags.py": 11,
}


def pytest_collection_modifyitems(config, items):
    """Heaviest files first (a stable sort: the same order on every xdist worker)."""
    items.sort(key=lambda item: -HEAVY_FIRST.get(item.path.name, 0))


def pytest_collection_finish(session):
    """The ~170 000 objects of the imports and the collection are long-lived: frozen, they are
    no longer walked by every full garbage collection (the pipeline's ``release_memory()``
    calls ``gc.collect()`` after each step of a run of RELEASE_MEMORY_ROWS input rows or more;
    the tests' small runs skip it). What the tests run is unchanged; only the collector's work
    on startup objects goes."""
    import gc

    gc.collect()
    gc.freeze()


# --------------------------------------------------------------------------- property tests
# Every property test sizes itself with examples(n): n examples under the default profile (the
# suite's budget, CI included); HYPOTHESIS_PROFILE=thorough runs 10 × n of each (a deep run
# before a release: `HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest -q -m slow`).
_settings.register_profile("thorough", max_examples=1000, deadline=None)
_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def examples(n: int) -> int:
    """A property test's ``max_examples``: ``n`` scaled by the profile (default 100 → n)."""
    return max(1, n * _settings().max_examples // 100)


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture
def make_csv(tmp_path):
    def _make(name: str, rows: list[list[str]], encoding: str = "utf-8") -> Path:
        return write_csv(tmp_path / name, rows, encoding)

    return _make


@pytest.fixture
def shop_xlsx(tmp_path) -> Path:
    """A platform export: merged title row, blank row, header on row 3, an Excel float
    phone, a datetime cell, a blank row inside, a totals row, and a notes sheet."""
    from datetime import datetime

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "会员"
    ws["A1"] = "某某旗舰店 会员导出 2026-11-01"
    ws.merge_cells("A1:F1")
    ws.append([])
    ws.append(["买家ID", "买家姓名", "手机号码", "注册时间", "所在城市", "会员积分"])
    ws.append(
        ["TB1", "张三", 13812345678.0, datetime(2024, 1, 5, 10, 30), "北京市朝阳区", 100]
    )  # row 4
    ws.append(["TB2", "李 四", "+86 139-0000-1111", "2024/2/1", "深圳", 50])  # row 5
    ws.append([None, None, None, None, None, None])  # row 6 blank
    ws.append(
        ["TB3", "王先生", "138****0000", 45296, "上海", 0]
    )  # row 7: masked, no email → rejected
    ws.append(["TB4", "赵六", "13700001111", "2023-02-29", "杭州", 10])  # row 8: bad date kept
    ws.append(["合计", None, None, None, None, 160])  # row 9 totals
    notes = wb.create_sheet("说明")
    notes["A1"] = "导出说明:仅供内部使用"
    path = tmp_path / "电商会员.xlsx"
    wb.save(path)
    return path


# --------------------------------------------------------------------------- examples/ through the library
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class ExampleData:
    """examples/ run step by step through the library (custtool.steps), as the CLI runs it.

    ``paths``: every file written (customers, orders, interactions, surveys — imported;
    clean, lineage, segmented, summary, tagged), ``results``: the StepResult of each step.
    The frames are read back lazily; fixtures hand out copies, so a test cannot change
    what another test sees.
    """

    def __init__(self, folder: Path) -> None:
        from custtool.steps import run_clean, run_import, run_segment, run_tag

        self.folder = folder
        p = self.paths = {}
        r = self.results = {}
        inputs = {
            "customers": [
                EXAMPLES / "电商平台会员.xlsx",
                EXAMPLES / "门店会员.csv",
                EXAMPLES / "公众号线索.csv",
            ],
            "orders": [EXAMPLES / "订单明细.csv"],
            "interactions": [EXAMPLES / "跟进记录.xlsx"],
            "surveys": [EXAMPLES / "满意度调查.csv"],
        }
        for kind, files in inputs.items():
            p[kind] = folder / f"{kind}.parquet"
            r[kind] = run_import(files, kind=kind, output=p[kind])
        p["clean"], p["segmented"], p["tagged"] = (
            folder / f"{n}.parquet" for n in ("clean", "segmented", "tagged")
        )
        r["clean"] = run_clean(p["customers"], output=p["clean"])
        p["lineage"] = Path(r["clean"].data["lineage"])
        p["summary"] = folder / "summary.xlsx"
        r["segment"] = run_segment(
            p["clean"],
            orders=p["orders"],
            surveys=p["surveys"],
            interactions=p["interactions"],
            output=p["segmented"],
            summary=p["summary"],
        )
        r["tag"] = run_tag(p["segmented"], output=p["tagged"])
        self._frames: dict[str, object] = {}

    def frame(self, name: str):
        import pandas as pd

        if name not in self._frames:
            self._frames[name] = pd.read_parquet(self.paths[name])
        return self._frames[name].copy()

    def __getstate__(self) -> dict[str, object]:
        # shared between the workers (built_once): the paths and each step's summary; the
        # steps' library objects (StepResult.value) and the frames read stay in their process
        from dataclasses import replace

        results = {k: replace(r, value=None) for k, r in self.results.items()}
        return {"folder": self.folder, "paths": self.paths, "results": results, "_frames": {}}


def built_once(tmp_path_factory, name: str, build):
    """``build(folder)`` once per test session, by whichever xdist worker asks first; the
    others wait for it (a lock file beside the workers' temporary folders) and get its
    result back (pickled) and its folder. Tests use it read-only: a test that changes a
    shared folder copies it into its tmp_path first. Without xdist: built in this process.

    Each worker built every session run it used (examples/ through the library and through
    ``custtool run``, the out-of-core run): once a session instead of once a worker."""
    import fcntl
    import pickle
    import shutil

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above each worker's popen-gwN
    folder, done = base / f"shared-{name}", base / f"shared-{name}.pickle"
    with open(base / f"shared-{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if done.exists():
            return pickle.loads(done.read_bytes())
        if folder.exists():  # a build that failed in another worker
            shutil.rmtree(folder)
        folder.mkdir()
        value = build(folder)
        tmp = done.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(value))
        tmp.replace(done)
        return value


@pytest.fixture(scope="session")
def example_data(tmp_path_factory) -> ExampleData:
    """The example exports imported, cleaned, segmented and tagged once per session."""
    return built_once(tmp_path_factory, "examples", ExampleData)


@pytest.fixture
def example_clean(example_data):
    """A realistic clean customers table (examples/ through import → clean)."""
    return example_data.frame("clean")


@pytest.fixture
def example_segmented(example_data):
    """A realistic segmented table (examples/ through import → clean → segment, with surveys and follow-ups)."""
    return example_data.frame("segmented")


@pytest.fixture
def example_tagged(example_data):
    """A realistic segmented and tagged table."""
    return example_data.frame("tagged")


@pytest.fixture
def example_orders(example_data):
    """The example orders as imported."""
    return example_data.frame("orders")


@pytest.fixture(scope="session")
def example_run(tmp_path_factory) -> tuple[Path, dict]:
    """`custtool run examples/pipeline.yaml --json` once per session on a copy of examples/.

    Returns the work folder (holding ``examples/`` and ``out/``) and the parsed JSON. Shared
    by the workers (built_once): read it, or copy it into tmp_path to run in it again.
    """
    return built_once(tmp_path_factory, "pipe", _example_run)


def _example_run(d: Path) -> tuple[Path, dict]:
    import json
    import shutil

    from typer.testing import CliRunner

    from custtool.cli import app

    shutil.copytree(EXAMPLES, d / "examples")
    result = CliRunner().invoke(
        app, ["run", str(d / "examples" / "pipeline.yaml"), "--out", str(d / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output + result.stderr
    return d, json.loads(result.stdout)


@pytest.fixture(scope="session")
def ooc_run(tmp_path_factory) -> dict:
    """`custtool run` of examples/ with ``segment: {engine: duckdb, memory_limit: 1GB}`` (the
    orders out of core), once per session: its ``--json`` (tests.test_pipeline_out_of_core)."""
    from tests.test_pipeline_out_of_core import build_ooc_run

    return built_once(tmp_path_factory, "ooc", build_ooc_run)


@pytest.fixture
def index_builds(monkeypatch):
    """The sizes of the customer tables a CustomerIndex is built on while the test runs (the
    one matcher's index: built once a run, see attribution.attribute(index=))."""
    import custtool.attribution as A

    built: list[int] = []
    real = A.CustomerIndex.__init__

    def counting(self, table):
        built.append(len(table))
        real(self, table)

    monkeypatch.setattr(A.CustomerIndex, "__init__", counting)
    return built
