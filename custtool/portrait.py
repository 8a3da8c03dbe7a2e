"""Portrait columns (SPEC D8, seed 000 画像): behaviour features from the attributed orders.

All from the attributed orders of the segment step (:attr:`SegmentResult.orders`: matched,
on or before the as-of day, exact duplicates once, times in the firm's time zone), and only
the rows inside the metrics window (``in_window``, the rows F and M count):

* ``top_category`` — the category with the most net spend (refunds netted; a category whose
  net spend is not positive is left out); ``top_categories`` — the top N (config
  ``portrait.top_categories``) joined by "、". Ties: the category name in code-point order.
* ``preferred_channel`` — the channel with the most orders (an order id on several lines
  counts once; refund lines are not orders). Ties: the channel name in code-point order.
* ``channel_mode`` — 线上 / 线下 / 全渠道 from the channels the customer bought through and
  the map ``portrait.channels`` (a channel containing a key is that kind); "" when none of
  them is in the map.
* ``active_slot`` — 工作日/周末 and the ``portrait.slot_hours``-hour slot with the most orders,
  e.g. ``工作日 20:00-22:00``. Orders at exactly 00:00:00 are left out: an export that gives
  only a date has no time of day. Ties: 工作日 before 周末, then the earlier slot.

Customers without such orders get "" in each. The category comes from ``category`` (else
``product``); the channel from ``channel`` (else the import's ``_channel``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

from custtool.portrait_rules import (  # the rules the SQL engines share
    CATEGORY_COLUMNS,
    CHANNEL_COLUMNS,
    PortraitGroups,
    _codes,
    label_codes,
    ranked_label_codes,
    slot_of,
)

PORTRAIT_COLUMNS = (
    "top_category",
    "top_categories",
    "preferred_channel",
    "channel_mode",
    "active_slot",
)

MODE_ONLINE, MODE_OFFLINE, MODE_BOTH = "线上", "线下", "全渠道"


__all__ = [
    "CATEGORY_COLUMNS",
    "CHANNEL_COLUMNS",
    "MODE_BOTH",
    "MODE_OFFLINE",
    "MODE_ONLINE",
    "PORTRAIT_COLUMNS",
    "PortraitGroups",
    "channel_kinds",
    "kinds_by_keys",
    "label_codes",
    "order_groups",
    "portrait_columns",
    "ranked_label_codes",
    "repurchase_rate",
    "slot_labels",
    "slot_of",
]


def _customer_positions(orders: pd.DataFrame, customers: pd.DataFrame) -> np.ndarray:
    """Each order's customer row position (-1: none) from the stable ``customer_id``."""
    import numpy as np
    import pandas as pd

    if "customer_id" not in customers.columns or "customer_id" not in orders.columns:
        return np.full(len(orders), -1, dtype=np.int64)
    ids = pd.Index(customers["customer_id"].astype("string").fillna(""))
    pos = ids.get_indexer(orders["customer_id"].astype("string").fillna(""))
    return np.asarray(pos, dtype=np.int64)


def _ranked_top(
    pos: np.ndarray,
    codes: np.ndarray,
    labels: np.ndarray,
    value: np.ndarray | None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (customer, label): ``value`` summed (net, rounded to cents, only positive kept) or,
    when ``value`` is None, rows counted (each row ``weights`` times); sorted per customer best first, ties by the label
    in code-point order. Returns (customer, label code, rank 0, 1, … within the customer)."""
    import numpy as np

    ok = (pos >= 0) & (codes >= 0)
    k_n = max(len(labels), 1)
    uk, inv = np.unique(
        pos[ok].astype(np.int64) * k_n + codes[ok].astype(np.int64), return_inverse=True
    )
    if value is None:
        w = None if weights is None else np.asarray(weights, dtype=float)[ok]
        v = np.bincount(inv, weights=w, minlength=len(uk)).astype(float)
    else:
        v = np.round(np.bincount(inv, weights=value[ok], minlength=len(uk)), 2)
    c, k = uk // k_n, uk % k_n
    if value is not None:
        c, k, v = c[v > 0], k[v > 0], v[v > 0]
    name_rank = np.empty(len(labels), dtype=np.int64)
    name_rank[np.argsort(labels.astype(str), kind="stable")] = np.arange(len(labels))
    order = np.lexsort((name_rank[k] if len(k) else k, -v, c))
    c, k = c[order], k[order]
    idx = np.arange(len(c))
    new = np.ones(len(c), dtype=bool)
    new[1:] = c[1:] != c[:-1]
    start = np.maximum.accumulate(np.where(new, idx, 0)) if len(c) else idx
    return c, k, idx - start


def _joined_top(
    n: int, c: np.ndarray, k: np.ndarray, rank: np.ndarray, labels: np.ndarray, top: int
) -> np.ndarray:
    """Each customer's labels of rank 0 … top−1 joined by "、" ("" for none). The texts are
    built once per distinct combination (few) and shared, not once per customer."""
    import numpy as np

    top = max(top, 1)
    codes = np.full((n, top), -1, dtype=np.int64)
    for r in range(top):  # a handful of ranks
        at = rank == r
        codes[c[at], r] = k[at]
    base = len(labels) + 1  # codes + 1 in [0, base): packed into one int64 key when it fits
    if top * math.log2(base) < 62:
        import pandas as pd

        key = np.zeros(n, dtype=np.int64)
        for r in range(top):
            key = key * base + (codes[:, r] + 1)
        inv, uniq = pd.factorize(key)  # hashing: no sort of n rows
        combos = np.empty((len(uniq), top), dtype=np.int64)
        rest = np.asarray(uniq, dtype=np.int64)
        for r in range(top - 1, -1, -1):
            combos[:, r] = rest % base - 1
            rest = rest // base
    else:  # very many labels: rows compared whole
        combos, inv = np.unique(codes, axis=0, return_inverse=True)
    texts = np.append(labels.astype(object), "")
    joined = texts[combos[:, 0]]
    for r in range(1, top):
        more = combos[:, r] >= 0
        joined[more] = joined[more] + "、" + texts[combos[more, r]]
    return joined[np.asarray(inv).reshape(-1)]


def _most_common(
    pos: np.ndarray, codes: np.ndarray, weights: np.ndarray, n_codes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(customer, code) of each customer's code with the most weight; ties: the smallest
    code. Sorts the (customer, code) pairs present rather than a dense customers × codes
    table."""
    import numpy as np

    use = (pos >= 0) & (codes >= 0)
    key = pos[use].astype(np.int64) * n_codes + codes[use]
    uk, inv = np.unique(key, return_inverse=True)
    w = np.bincount(inv, weights=np.asarray(weights, dtype=float)[use], minlength=len(uk))
    del key, inv
    c, k = uk // n_codes, uk % n_codes
    keep = w > 0
    c, k, w = c[keep], k[keep], w[keep]
    order = np.lexsort((k, -w, c))  # per customer: most weight first, then smallest code
    c, k = c[order], k[order]
    first = np.ones(len(c), dtype=bool)
    first[1:] = c[1:] != c[:-1]
    return c[first], k[first]


def _counted_orders(orders: pd.DataFrame, pos: np.ndarray, sale: np.ndarray) -> np.ndarray:
    """Sale rows, one per (customer, order id): a line item's order counts once (its first
    sale line). Order ids on one row only need no comparison (hashed, as in metrics)."""
    import numpy as np
    import pandas as pd

    from custtool.metrics import _order_codes

    if "order_id" not in orders.columns:
        return sale
    ocode = _order_codes(orders["order_id"])  # -1: an id on one row only (or blank)
    out = sale & (ocode < 0)
    idx = np.flatnonzero(sale & (ocode >= 0))
    if len(idx):
        d = pd.DataFrame({"c": pos[idx], "o": ocode[idx]}).duplicated().to_numpy()
        out[idx[~d]] = True
    return out


def channel_kinds(channels: pd.Series | np.ndarray, mapping: dict[str, str]) -> np.ndarray:
    """online/offline/"" per channel name (see :func:`kinds_by_keys`)."""
    return kinds_by_keys(channels, mapping)


def kinds_by_keys(channels: pd.Series | np.ndarray, mapping: dict[str, str]) -> np.ndarray:
    """The value of the first key of ``mapping`` (longest first) each text contains; "" for
    none. Works on the distinct texts only."""
    import numpy as np
    import pandas as pd

    codes, uni = pd.factorize(pd.Series(channels, dtype=object).fillna("").astype(str))
    kinds = np.full(len(uni), "", dtype=object)
    u = pd.Series(uni, dtype=object)
    for key in sorted(mapping, key=len, reverse=True):  # a handful of keys, not rows
        hit = (kinds == "") & u.str.contains(key, regex=False).to_numpy()
        kinds[hit] = mapping[key]
    return kinds[codes] if len(codes) else np.array([], dtype=object)


def slot_labels(slot_hours: int = 2) -> np.ndarray:
    """The labels of the slots: 工作日 00:00-02:00 … 周末 22:00-24:00."""
    import numpy as np

    per_day = 24 // slot_hours
    return np.array(
        [
            f"{part} {h * slot_hours:02d}:00-{(h + 1) * slot_hours:02d}:00"
            for part in ("工作日", "周末")
            for h in range(per_day)
        ],
        dtype=object,
    )


def portrait_columns(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    positions: np.ndarray | None = None,
    settings: dict[str, Any] | None = None,
    groups: PortraitGroups | None = None,
) -> pd.DataFrame:
    """The portrait columns (see the module) for ``customers``, index aligned.

    ``orders``: attributed orders (``SegmentResult.orders``); ``positions``: each order's
    customer row position (default: matched on ``customer_id``); ``settings``: the
    ``portrait:`` section of segments.yaml (default: the shipped one). ``groups``: the same
    inputs already grouped by a SQL engine (``orders`` is then not read).
    """
    import numpy as np
    import pandas as pd

    from custtool.config import segment_settings

    cfg = settings if settings is not None else segment_settings()["portrait"]
    n = len(customers)
    out = pd.DataFrame(
        {c: np.full(n, "", dtype=object) for c in PORTRAIT_COLUMNS}, index=customers.index
    )
    if groups is None:
        if orders is None or not len(orders) or not n:
            return out
        groups = order_groups(orders, customers, positions=positions, settings=cfg)
    if not n:
        return out

    if groups.cat is not None or groups.cat_ranked is not None:
        labels = groups.cat_labels
        c, k, rank = (
            groups.cat_ranked
            if groups.cat_ranked is not None
            else _ranked_top(*groups.cat[:2], labels, groups.cat[2])
        )
        col = np.full(n, "", dtype=object)
        col[c[rank == 0]] = labels[k[rank == 0]]
        out["top_category"] = col
        out["top_categories"] = _joined_top(n, c, k, rank, labels, int(cfg["top_categories"]))

    if groups.chan is not None or groups.chan_ranked is not None:
        labels = groups.chan_labels
        if groups.chan_ranked is not None:
            c, k, rank = groups.chan_ranked
        else:
            pos, codes, weights = groups.chan
            c, k, rank = _ranked_top(pos, codes, labels, None, weights)
        col = np.full(n, "", dtype=object)
        col[c[rank == 0]] = labels[k[rank == 0]]
        out["preferred_channel"] = col
        kinds = channel_kinds(labels, cfg["channels"])[k]
        online = np.bincount(c[kinds == "online"], minlength=n) > 0
        offline = np.bincount(c[kinds == "offline"], minlength=n) > 0
        out["channel_mode"] = np.select(
            [online & offline, online, offline], [MODE_BOTH, MODE_ONLINE, MODE_OFFLINE], default=""
        ).astype(object)

    if groups.slot is not None or groups.slot_best is not None:
        hours = int(cfg["slot_hours"])
        c, best = (
            groups.slot_best
            if groups.slot_best is not None
            else _most_common(*groups.slot, 2 * (24 // hours))
        )
        col = np.full(n, "", dtype=object)
        col[c] = slot_labels(hours)[best]
        out["active_slot"] = col
    return out


def order_groups(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    positions: np.ndarray | None = None,
    settings: dict[str, Any] | None = None,
) -> PortraitGroups:
    """The portrait's inputs from attributed orders in memory: one row per order line
    (category, net amount) and per counted order (channel, time slot), customer positions
    -1 outside the metrics window."""
    import numpy as np
    import pandas as pd

    from custtool.config import segment_settings

    cfg = settings if settings is not None else segment_settings()["portrait"]
    pos = (
        np.asarray(positions, dtype=np.int64)
        if positions is not None
        else _customer_positions(orders, customers)
    )
    amount = pd.to_numeric(orders["amount"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    in_win = (
        orders["in_window"].to_numpy(dtype=bool)
        if "in_window" in orders.columns
        else np.ones(len(orders), dtype=bool)
    )
    pos = np.where(in_win, pos, -1)
    sale = (amount > 0) & (pos >= 0)
    counted = _counted_orders(orders, pos, sale)
    ones = np.ones(len(orders), dtype=np.int64)
    groups = PortraitGroups()
    cat = _codes(orders, *CATEGORY_COLUMNS)
    if cat is not None:
        groups.cat, groups.cat_labels = (pos, cat[0], amount), cat[1]
    chan = _codes(orders, *CHANNEL_COLUMNS)
    if chan is not None:
        groups.chan, groups.chan_labels = (np.where(counted, pos, -1), chan[0], ones), chan[1]
    if "order_time" in orders.columns:
        t = pd.to_datetime(orders["order_time"], errors="coerce")
        if isinstance(t.dtype, pd.DatetimeTZDtype):  # attributed orders are firm-local
            t = t.dt.tz_localize(None)
        ns = t.to_numpy(dtype="datetime64[ns]")
        valid = ~np.isnat(ns)
        day = ns.astype("datetime64[D]")
        of_day = (ns - day).astype("timedelta64[m]").astype(np.int64)  # minutes since midnight
        slot = slot_of(day.astype(np.int64), of_day, int(cfg["slot_hours"]))
        groups.slot = (np.where(counted & valid, pos, -1), slot, ones)
    return groups


def repurchase_rate(customers: pd.DataFrame) -> float | None:
    """复购率 (seed 000: 再次消费客户数 / 总消费客户数) as a fraction (4 decimals): customers
    with ``repurchase`` over customers with an order in the window (``frequency`` > 0);
    None without buyers. The segment summary, ``--json`` and the report's KPI all use this."""
    import pandas as pd

    if "repurchase" not in customers.columns:
        return None
    buyers = (
        pd.to_numeric(customers["frequency"], errors="coerce").fillna(0) > 0
        if "frequency" in customers.columns
        else pd.Series(True, index=customers.index)
    )
    n = int(buyers.sum())
    if not n:
        return None
    flag = customers["repurchase"]
    if pd.api.types.is_bool_dtype(flag) or pd.api.types.is_numeric_dtype(flag):
        rep = flag.fillna(False).astype(bool) & buyers
    else:  # a table read back from CSV: "True"/"False" text
        text = flag.astype("string").fillna("").str.strip().str.lower()
        rep = text.isin(["true", "1", "yes", "是"]) & buyers
    return round(int(rep.sum()) / n, 4)
