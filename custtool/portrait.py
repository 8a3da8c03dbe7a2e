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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


PORTRAIT_COLUMNS = (
    "top_category",
    "top_categories",
    "preferred_channel",
    "channel_mode",
    "active_slot",
)

MODE_ONLINE, MODE_OFFLINE, MODE_BOTH = "线上", "线下", "全渠道"


def _text(orders: pd.DataFrame, *names: str) -> pd.Series | None:
    """The first of ``names`` that ``orders`` has, as stripped text ("" for missing)."""
    for name in names:
        if name in orders.columns:
            s = orders[name]
            return s.astype("string").fillna("").str.strip().astype(object)
    return None


def _customer_positions(orders: pd.DataFrame, customers: pd.DataFrame) -> np.ndarray:
    """Each order's customer row position (-1: none) from the stable ``customer_id``."""
    import numpy as np
    import pandas as pd

    if "customer_id" not in customers.columns or "customer_id" not in orders.columns:
        return np.full(len(orders), -1, dtype=np.int64)
    ids = pd.Index(customers["customer_id"].astype("string").fillna(""))
    pos = ids.get_indexer(orders["customer_id"].astype("string").fillna(""))
    return np.asarray(pos, dtype=np.int64)


def _ranked_top(pos: np.ndarray, key: pd.Series, value: np.ndarray, how: str) -> pd.DataFrame:
    """Per (customer, key): ``value`` summed (``how="sum"``) or counted; sorted per customer
    best first (ties by key), with ``rank`` 0, 1, … within the customer."""
    import pandas as pd

    t = pd.DataFrame({"c": pos, "k": key.to_numpy(dtype=object), "v": value})
    t = t[(t["c"] >= 0) & (t["k"] != "")]
    g = t.groupby(["c", "k"], sort=False)["v"]
    agg = (g.sum() if how == "sum" else g.size()).rename("v").reset_index()
    if how == "sum":
        agg["v"] = agg["v"].round(2)
        agg = agg[agg["v"] > 0]
    agg = agg.sort_values(["c", "v", "k"], ascending=[True, False, True], kind="stable")
    agg["rank"] = agg.groupby("c", sort=False).cumcount()
    return agg


def _first_orders(orders: pd.DataFrame, pos: np.ndarray, sale: np.ndarray) -> np.ndarray:
    """Sale rows, one per (customer, order id): a line item's order counts once."""
    import numpy as np
    import pandas as pd

    if "order_id" not in orders.columns:
        return sale
    oid = orders["order_id"].astype("string").fillna("").str.strip()
    blank = (oid == "").to_numpy()
    codes = pd.factorize(oid)[0]
    # a repeated (customer, id) of a sale line: only the first sale line counts
    first_sale = np.zeros(len(orders), dtype=bool)
    idx = np.flatnonzero(sale & ~blank)
    if len(idx):
        d = pd.DataFrame({"c": pos[idx], "o": codes[idx]}).duplicated().to_numpy()
        first_sale[idx[~d]] = True
    return first_sale | (sale & blank)


def channel_kinds(channels: pd.Series | np.ndarray, mapping: dict[str, str]) -> np.ndarray:
    """online/offline/"" per channel name: the kind of the first key (longest first) the
    name contains. Works on the distinct names only."""
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
) -> pd.DataFrame:
    """The portrait columns (see the module) for ``customers``, index aligned.

    ``orders``: attributed orders (``SegmentResult.orders``); ``positions``: each order's
    customer row position (default: matched on ``customer_id``); ``settings``: the
    ``portrait:`` section of segments.yaml (default: the shipped one).
    """
    import numpy as np
    import pandas as pd

    from custtool.config import segment_settings

    cfg = settings if settings is not None else segment_settings()["portrait"]
    n = len(customers)
    out = pd.DataFrame(
        {c: np.full(n, "", dtype=object) for c in PORTRAIT_COLUMNS}, index=customers.index
    )
    if orders is None or not len(orders) or not n:
        return out
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
    counted = _first_orders(orders, pos, sale)

    cat = _text(orders, "category", "product")
    if cat is not None:
        top = _ranked_top(pos, cat, amount, "sum")
        k = int(cfg["top_categories"])
        top = top[top["rank"] < k]
        wide = top.pivot(index="c", columns="rank", values="k")
        joined = wide[0].astype(str)
        for r in range(1, k):
            if r in wide.columns:
                nxt = wide[r]
                joined = joined.where(nxt.isna(), joined + "、" + nxt.astype(str))
        col = np.full(n, "", dtype=object)
        col[wide.index.to_numpy()] = wide[0].to_numpy(dtype=object)
        out["top_category"] = col
        col = np.full(n, "", dtype=object)
        col[joined.index.to_numpy()] = joined.to_numpy(dtype=object)
        out["top_categories"] = col

    chan = _text(orders, "channel", "_channel")
    if chan is not None:
        cpos = np.where(counted, pos, -1)
        ranked = _ranked_top(cpos, chan, np.ones(len(orders)), "size")
        best = ranked[ranked["rank"] == 0]
        col = np.full(n, "", dtype=object)
        col[best["c"].to_numpy()] = best["k"].to_numpy(dtype=object)
        out["preferred_channel"] = col
        kinds = channel_kinds(ranked["k"].to_numpy(dtype=object), cfg["channels"])
        c = ranked["c"].to_numpy()
        online = np.bincount(c[kinds == "online"], minlength=n) > 0
        offline = np.bincount(c[kinds == "offline"], minlength=n) > 0
        out["channel_mode"] = np.select(
            [online & offline, online, offline], [MODE_BOTH, MODE_ONLINE, MODE_OFFLINE], default=""
        ).astype(object)

    if "order_time" in orders.columns:
        t = pd.to_datetime(orders["order_time"], errors="coerce")
        if isinstance(t.dtype, pd.DatetimeTZDtype):  # attributed orders are firm-local
            t = t.dt.tz_localize(None)
        ns = t.to_numpy(dtype="datetime64[ns]")
        valid = ~np.isnat(ns)
        day = ns.astype("datetime64[D]")
        of_day = (ns - day).astype("timedelta64[m]").astype(np.int64)  # minutes since midnight
        weekend = ((day.astype(np.int64) + 3) % 7) >= 5  # 1970-01-01 was a Thursday
        hours = int(cfg["slot_hours"])
        per_day = 24 // hours
        slot = weekend.astype(np.int64) * per_day + (of_day // 60) // hours
        use = counted & valid & (of_day > 0)  # 00:00:00 exactly: a date without a time
        key = pos[use] * (2 * per_day) + slot[use]
        counts = np.bincount(key, minlength=n * 2 * per_day).reshape(n, 2 * per_day)
        best = counts.argmax(axis=1)  # ties: the first slot (工作日, earlier)
        has = counts.max(axis=1) > 0
        out["active_slot"] = np.where(has, slot_labels(hours)[best], "").astype(object)
    return out


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
    rep = customers["repurchase"].astype("boolean").fillna(False).astype(bool) & buyers
    return round(int(rep.sum()) / n, 4)
