"""Segment migration between two runs (SPEC E7): who moved from which class to which."""

from __future__ import annotations

from typing import TYPE_CHECKING

from custtool.errors import InputError
from custtool.rfm import NO_ORDERS, RFM_CLASSES, segment_order  # the one list of the 8 classes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

RFM_ORDER = list(RFM_CLASSES)
NEW = "（新增）"
GONE = "（已不在）"


def _classes(df: pd.DataFrame, by: str, which: str) -> pd.Series:
    for col in ("customer_id", by):
        if col not in df.columns:
            raise InputError(
                f"the {which} table has no {col!r} column",
                "pass segmented customers tables from `custtool segment`",
            )
    s = df[by].astype("string").fillna("").str.strip()
    s = s.where(s != "", NO_ORDERS)
    ids = df["customer_id"].astype("string").fillna("")
    s.index = ids.to_numpy()
    return s[~s.index.duplicated(keep="last")].astype(object)


def migration_matrix(
    previous: pd.DataFrame, current: pd.DataFrame, by: str = "rfm_class"
) -> pd.DataFrame:
    """Counts of customers by class before (rows) × class now (columns), joined on customer_id.

    Customers only in the current run count under row ``（新增）``; customers only in the
    previous run under column ``（已不在）``.
    """
    import pandas as pd

    before = _classes(previous, by, "previous")
    now = _classes(current, by, "current")
    both = pd.DataFrame({"before": before}).join(pd.DataFrame({"now": now}), how="outer")
    both["before"] = both["before"].fillna(NEW)
    both["now"] = both["now"].fillna(GONE)
    matrix = pd.crosstab(both["before"], both["now"])
    seen = set(matrix.index) | set(matrix.columns)
    known = [c for c in segment_order(by) if c in seen and c != NO_ORDERS]  # in their order
    others = sorted(seen - set(known) - {NEW, GONE, NO_ORDERS})
    rows = [c for c in [*known, *others, NO_ORDERS, NEW] if c in matrix.index]
    cols = [c for c in [*known, *others, NO_ORDERS, GONE] if c in matrix.columns]
    matrix = matrix.reindex(index=rows, columns=cols, fill_value=0).astype("int64")
    matrix.index.name = "before"
    matrix.columns.name = "now"
    return matrix


def fallen_customers(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    *,
    from_class: str = "重要价值客户",
    to_classes: tuple[str, ...] = ("重要挽留客户",),
    to_lifecycle: tuple[str, ...] = ("流失",),
) -> pd.DataFrame:
    """Current rows of customers who were ``from_class`` and are now in ``to_classes`` or lost.

    Adds ``before`` (previous rfm_class) and ``now`` (current rfm_class) at the front.
    """
    before = _classes(previous, "rfm_class", "previous")
    cur = current.copy()
    if "rfm_class" not in cur.columns or "customer_id" not in cur.columns:
        raise InputError(
            "the current table has no rfm_class/customer_id column",
            "compare segmented tables (custtool segment output)",
        )
    ids = cur["customer_id"].astype("string").fillna("")
    cur_before = ids.map(before).fillna("").astype(object)
    now = cur["rfm_class"].astype("string").fillna("").astype(object)
    fell = now.isin(to_classes)
    if "lifecycle" in cur.columns:
        fell |= cur["lifecycle"].astype("string").fillna("").isin(to_lifecycle)
    hit = (cur_before == from_class).to_numpy() & fell.to_numpy()
    out = cur.loc[hit].copy()
    out.insert(0, "now", now[hit].to_numpy())
    out.insert(0, "before", cur_before[hit].to_numpy())
    return out.reset_index(drop=True)
