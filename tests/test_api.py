"""The public Python API: every name in ``custtool.__all__`` resolves, ``dir`` lists them."""

from __future__ import annotations

import inspect

import pytest

import custtool


def test_every_public_name_resolves():
    for name in custtool.__all__:
        value = getattr(custtool, name)
        assert value is not None, name
        if name != "__version__":
            assert callable(value), name
            assert inspect.getdoc(value), f"{name} has no docstring"


def test_dir_lists_the_public_functions():
    listed = dir(custtool)
    assert set(custtool.__all__) <= set(listed)
    for name in (
        "import_files",
        "due_followups",
        "apply_transitions",
        "load_followup_rules",
        "individual_cards",
        "group_cards",
        "write_cards",
        "run_pipeline",
        "load_pipeline",
        "normalize_address",
    ):
        assert name in custtool.__all__ and name in listed


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_function"):
        custtool.no_such_function  # noqa: B018
