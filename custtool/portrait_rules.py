"""The portrait's rules that the SQL engines apply too (issue 18): the labels of category and
channel values, the time slots, and the portrait's inputs in grouped or ranked form. Kept
apart from :mod:`custtool.portrait` (which re-exports them) so that the engines can use
them without importing the pandas engine's modules; the ranking rules themselves are in
:func:`custtool.portrait.portrait_columns` and, for the engines, in
:mod:`custtool.engines.sql` (``portrait_*_sql``), checked equal by tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


def label_codes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(codes, labels) of category/channel values: labels are the distinct stripped texts,
    codes index them (-1: missing or blank). Text work on the distinct values. The SQL
    engines call this on the distinct values of the Parquet file, so both engines label
    alike."""
    import numpy as np
    import pandas as pd

    codes, uni = pd.factorize(pd.Series(values), use_na_sentinel=True)
    text = pd.Series(np.asarray(uni, dtype=object)).astype(str).str.strip()
    lcodes, labels = pd.factorize(text)  # texts equal once stripped share a code
    labels = np.asarray(labels, dtype=object)
    lcodes = np.where(labels[lcodes] == "", -1, lcodes)
    codes = np.where(codes >= 0, np.append(lcodes, -1)[codes], -1)
    return codes.astype(np.int64), labels


def ranked_label_codes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`label_codes` with the labels in code-point order, so that a smaller code is
    the label that wins a tie (what a SQL engine orders by)."""
    import numpy as np

    codes, labels = label_codes(values)
    order = np.argsort(labels.astype(str), kind="stable")
    new = np.empty(len(labels), dtype=np.int64)
    new[order] = np.arange(len(labels))
    return np.where(codes >= 0, np.append(new, -1)[codes], -1), labels[order]


#: where the portrait reads the category and the channel (the first column present)
CATEGORY_COLUMNS = ("category", "product")
CHANNEL_COLUMNS = ("channel", "_channel")


def _codes(orders: pd.DataFrame, *names: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The first of ``names`` that ``orders`` has, as :func:`label_codes`."""
    for name in names:
        if name in orders.columns:
            return label_codes(orders[name])
    return None


def slot_of(day: np.ndarray, minutes: np.ndarray, slot_hours: int) -> np.ndarray:
    """The slot (0 … 2 × 24 / slot_hours − 1: 工作日 slots, then 周末) of local times given
    as day numbers since 1970-01-01 and minutes since midnight; -1 at exactly 00:00 (a date
    without a time of day)."""
    import numpy as np

    weekend = ((day.astype(np.int64) + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    per_day = 24 // int(slot_hours)
    slot = weekend.astype(np.int64) * per_day + (minutes // 60) // int(slot_hours)
    return np.where(minutes > 0, slot, -1)


@dataclass
class PortraitGroups:
    """What the portrait reads from the attributed orders, grouped: rows of (customer
    position, label code, value). ``cat_*``: net amount (yuan) per category (rows may
    repeat a pair; they are summed); ``chan_*``: counted orders per channel; ``slot_*``:
    counted orders per time slot (:func:`slot_of`). None: no such column. The pandas engine
    gives one row per order line; the SQL engines (out of core) give them grouped."""

    cat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    cat_labels: np.ndarray | None = None
    chan: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    chan_labels: np.ndarray | None = None
    slot: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    #: already ranked by the engine (the same rules, see engines/sql.py; label codes in
    #: code-point order): (customer, code, rank 0 = best) for the top categories and for
    #: every channel bought through; (customer, slot) of each customer's best slot
    cat_ranked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    chan_ranked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    slot_best: tuple[np.ndarray, np.ndarray] | None = None
