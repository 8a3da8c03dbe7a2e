"""Random mutations of the example exports through `import` (issue 13): only custtool's own
errors, row accounting holds on success, bounded time. bench/fuzz.py runs more of them."""

from __future__ import annotations

import random
import time

import pytest
from fuzzing import MUTATIONS, SOURCES
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from custtool.errors import CusttoolError
from custtool.ingest import import_files
from tests.conftest import examples


@pytest.mark.slow
@seed(13)
@settings(
    max_examples=examples(25),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    source=st.sampled_from(SOURCES),
    name=st.sampled_from(sorted(MUTATIONS)),
    rnd=st.integers(0, 2**32 - 1),
)
def test_mutated_import(tmp_path, source, name, rnd):
    data = source.read_bytes()
    if data[:2] == b"PK" and name not in {"flip", "truncate", "nul"}:
        name = "truncate"
    mutated = MUTATIONS[name](data, random.Random(rnd))
    f = tmp_path / f"m{source.suffix}"
    f.write_bytes(mutated)
    t0 = time.perf_counter()
    try:
        res = import_files(f)
    except CusttoolError as exc:
        assert exc.message  # custtool's own error, with a message
    else:
        t = res.totals
        assert t["rows_read"] == t["accepted"] + t["rejected"] + t["skipped"]
    assert time.perf_counter() - t0 < 10, (source.name, name)
