"""The one Arrow list join (custtool.xlsx.join_lists) behind flatten_lists (CSV/xlsx), the
report's tags_text and prepare_customers, and the cards' tags (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from custtool.report.workbook import prepare_customers, tags_text
from custtool.xlsx import flatten_lists, join_lists


def _tags() -> pd.Series:
    return pd.Series(
        [
            ["高价值", "复购"],
            None,
            [],
            ("c", "d"),
            np.array(["x", "y"], dtype=object),
            [None, "z"],
        ],
        dtype=object,
        index=[15, 14, 13, 12, 11, 10],  # not 0..n-1: results follow by position
    )


def test_join_lists_joins_in_arrow_and_declines_what_it_cannot_join() -> None:
    s = _tags()
    assert join_lists(s, null_items=True).to_pylist() == [
        "高价值;复购",
        None,
        "",
        "c;d",
        "x;y",
        None,
    ]
    assert join_lists(s) is None  # a missing item: flatten_lists joins value by value
    assert join_lists(s.iloc[:5], "|").to_pylist() == ["高价值|复购", None, "", "c|d", "x|y"]
    assert join_lists(pd.Series([[], None], dtype=object)).to_pylist() == ["", None]
    assert join_lists(pd.Series([[1, 2]], dtype=object)) is None  # numbers inside
    assert join_lists(pd.Series(["a;b", "c"], dtype=object)) is None  # text, not lists


def test_the_three_callers_give_the_same_text_as_before() -> None:
    """Hand-checked: tags_text and prepare_customers write a missing cell (and a list with a
    missing item) as ""; flatten_lists keeps a missing cell missing and joins a missing
    item as str(None), value by value, as it always did."""
    s = _tags()
    expected = ["高价值;复购", "", "", "c;d", "x;y", ""]
    assert tags_text(s).tolist() == expected
    assert tags_text(s).index.tolist() == s.index.tolist()
    prepared = prepare_customers(pd.DataFrame({"tags": s}))["tags"]
    assert prepared.tolist() == expected
    assert flatten_lists(pd.DataFrame({"tags": s, "n": range(6)}))["tags"].tolist() == [
        "高价值;复购",
        None,
        "",
        "c;d",
        "x;y",
        "None;z",
    ]
    # mixed text and lists, numbers inside lists: value by value, as before
    assert tags_text(pd.Series([[1, 2], "a;b", None], dtype=object)).tolist() == [
        "1;2",
        "a;b",
        "",
    ]
    assert tags_text(pd.Series(["a;b", ["c", "d"]], dtype=object)).tolist() == ["a;b", "c;d"]
