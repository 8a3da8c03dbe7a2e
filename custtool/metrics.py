"""Orders → one row per customer: the one heavy step (SPEC D1).

Definitions (SPEC, "Definitions that public implementations disagree on"):

* order times are converted to the firm's time zone (tz-aware → converted; naive = already
  local) and then cut into calendar days; the as-of date is a day and orders on it count;
* recency = days from the last purchase day to the as-of day;
* frequency (F) = distinct order ids in the window (exact duplicate rows once; refund lines
  are not orders); monetary (M) = net spend in the window (negative amounts, or rows whose
  ``refund`` flag is True, count negative); money is rounded to cents before anything else.

Rows are attributed to customers by :mod:`custtool.attribution`; the aggregation runs on
numpy (``engine="pandas"``), or as the SQL of :mod:`custtool.engines.sql` in DuckDB or Spark
(:mod:`custtool.engines.seam`, out of core over the orders Parquet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from custtool.arrow_text import (
    TRIM_CHARS,
    arrow_text,
    edge_space,
    encode_text,
    factorize_text,
    has_text,
    index_of,
    repeated_rows,
    string_buffers,
    take_rows,
    text_column,
    text_hash,
)
from custtool.attribution import (
    CustomerIndex,
    MatchReport,
    channel_columns,
    derive_customers,
    match_positions,
)
from custtool.dates import day_numbers, local_times, parse_days, resolve_as_of
from custtool.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import os

    import numpy as np
    import pandas as pd


METRIC_COLUMNS = [
    "first_order",
    "last_order",
    "recency",
    "frequency",
    "monetary",
    "aov",
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "monetary_30d",
    "monetary_90d",
    "monetary_365d",
    "monetary_prev",
    "growth",
    "repurchase",
    "historical_value",
    "bg_x",
    "bg_t_x",
    "bg_T",
    "bg_repeat_avg",
]


INTERACTION_COLUMNS = [
    "days_since_last_interaction",
    "last_interaction",
    "interactions_30d",
    "interactions_365d",
    "complaints_365d",
    "complaints",
    "events_365d",
]


_TRUE_TEXT = {"true", "1", "yes", "y", "t", "是", "退款", "已退款", "refund", "refunded"}


def refund_flags(s: pd.Series) -> np.ndarray:
    """A refund flag column as bool: real bools, numbers ≠ 0, or text such as True/是/退款."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(s):
        return s.fillna(False).to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(s):
        return (s.fillna(0) != 0).to_numpy()
    codes, u = factorize_text(pd.DataFrame({"r": s}), "r", lower=True)
    return u.isin(_TRUE_TEXT).to_numpy()[codes]


def _cents(amount: pd.Series, refund: pd.Series | None) -> np.ndarray:
    """Amounts rounded to cents as float (refund-flagged rows negative); NaN → 0, as is an
    amount of 1e12 or more (inf included; import rejects those), as the SQL engines do."""
    import numpy as np
    import pandas as pd

    from custtool.engines.sql import MAX_AMOUNT

    if not pd.api.types.is_numeric_dtype(amount):
        amount = pd.to_numeric(amount, errors="coerce")
    a = np.nan_to_num(amount.to_numpy(dtype="float64", na_value=np.nan), nan=0.0)  # a copy
    a[~(np.abs(a) < MAX_AMOUNT)] = 0.0
    a *= 100.0
    np.round(a, out=a)
    a /= 100.0
    if refund is not None:
        a = np.where(refund_flags(refund), -np.abs(a), a)
    return a


def _order_codes(values: pd.Series, method: str = "auto") -> np.ndarray:
    """-1 for an order id found on one row only or blank; codes ≥ 0 for repeated ids (rows
    with the same trimmed id share a code).

    ``hash`` (the default): the trimmed ids are hashed to 64-bit integers, repeated hashes
    found by sorting, and only the rows whose hash repeats are compared as text, so two
    different ids are never merged. ``encode``: pyarrow dictionary-encodes every id.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(values)
    if method == "encode":
        codes, uni = encode_text(values, n)
        counts = np.bincount(codes, minlength=len(uni))
        out = np.where(counts[codes] > 1, codes, -1)
        blank_code = index_of(uni, "")
        if blank_code >= 0:
            out[codes == blank_code] = -1
        return out.astype(np.int64)
    out = np.full(n, -1, dtype=np.int64)
    if not n:
        return out
    arr = arrow_text(values, combine=False)  # chunk by chunk: no copy of the text
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    if any(edge_space(*string_buffers(c)) for c in chunks if len(c)):
        arr = pc.utf8_trim(arr, characters=TRIM_CHARS)
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    h = np.concatenate([text_hash(c) for c in chunks if len(c)])
    idx = repeated_rows(h)
    del h
    if len(
        idx
    ):  # exact codes from the text of the candidate rows; blank ids are each their own order
        text = take_rows(arr, idx)
        nonblank = pc.fill_null(pc.greater(pc.binary_length(text), 0), False).to_numpy(
            zero_copy_only=False
        )
        idx, text = idx[nonblank], text.filter(pa.array(nonblank))
    if len(idx):
        codes, uni = encode_text(text, len(idx))
        counts = np.bincount(codes, minlength=len(uni))
        out[idx] = np.where(
            counts[codes] > 1, codes, -1
        )  # a hash shared by different ids: each its own
    return out


def _order_columns(
    order_time: pd.Series, amount: pd.Series, refund: pd.Series | None, tz: str
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(local times, valid-time flags, day numbers, cents, refund flags) of the order rows."""
    times = local_times(order_time, tz)
    valid_t = times.notna().to_numpy()
    day = day_numbers(times)
    cents = _cents(amount, refund)
    is_refund = cents < 0
    if refund is not None:
        is_refund |= refund_flags(refund)
    return times, valid_t, day, cents, is_refund


def _settings(tz: str | None, window: Any, growth_window: Any) -> tuple[str, int, int]:
    """The time zone, window and growth window in days; left out: rules/segments.yaml's."""
    from custtool.config import segment_settings

    shipped = segment_settings()
    win = parse_days(shipped["metrics"]["window"] if window is None else window, "window")
    gwin = parse_days(
        shipped["metrics"]["growth_window"] if growth_window is None else growth_window,
        "growth window",
    )
    return tz or shipped["timezone"], win, gwin


def customer_metrics(
    orders: pd.DataFrame | str,
    customers: pd.DataFrame | str | None = None,
    *,
    as_of: Any = None,
    window: Any = None,
    interactions: pd.DataFrame | None = None,
    tz: str | None = None,
    engine: str = "pandas",
    growth_window: Any = None,
    memory_limit: Any = None,
    spark_master: str | None = None,
    attributed_to: Any = None,
    portrait: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, MatchReport]:
    """Per-customer order metrics at ``as_of`` (default: the latest order day).

    ``engine``: ``pandas`` (numpy, in memory), ``duckdb`` or ``spark``. Given the orders as a
    Parquet path, ``duckdb`` and ``spark`` run out of core (:mod:`custtool.engines.seam`):
    the order rows never become a DataFrame, DuckDB stays within ``memory_limit`` (bytes or
    "1GB"; spilling to a temporary folder), Spark runs on ``spark_master``; the attributed
    orders are then not in the report (``report.used_rows`` is None) but written to
    ``attributed_to`` when given. A DataFrame is handed to them as a temporary Parquet file.
    With ``portrait`` (the ``portrait:`` settings of segments.yaml) they also group what the
    portrait columns read (``report.portrait_groups``, see :mod:`custtool.portrait`).

    ``window``, ``growth_window`` and ``tz`` left out come from ``rules/segments.yaml``
    (metrics.window, metrics.growth_window, timezone).

    Returns (customers + metric columns, :class:`MatchReport`). Customers without orders stay
    (recency NaN, frequency 0). Orders after ``as_of`` are ignored; orders that match no
    customer are counted and listed in ``report.unmatched``.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pandas as pd

    from custtool.engines import ENGINES
    from custtool.io import read_table

    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", f"use {', '.join(ENGINES)}")
    if customers is not None and (isinstance(customers, str) or hasattr(customers, "__fspath__")):
        customers = read_table(cast("str | os.PathLike[str]", customers))
    is_path = isinstance(orders, str) or hasattr(orders, "__fspath__")
    if engine != "pandas":
        return _sql_metrics(
            orders,
            customers,
            as_of=as_of,
            window=window,
            growth_window=growth_window,
            interactions=interactions,
            tz=tz,
            engine=engine,
            memory_limit=memory_limit,
            spark_master=spark_master,
            attributed_to=attributed_to,
            portrait=portrait,
        )
    if is_path:
        orders = read_table(cast("str | os.PathLike[str]", orders))
    for col in ("order_time", "amount"):
        if col not in orders.columns:
            raise InputError(
                f"orders have no {col!r} column",
                "import the orders with `custtool import --kind orders` (下单时间, 实付金额)",
            )
    if not {"customer_id", "phone", "email"} & set(orders.columns):
        raise InputError(
            "orders have no customer key (customer_id, phone or email)",
            "the order export needs 客户ID, 手机号 or 邮箱",
        )
    tz, win, gwin = _settings(tz, window, growth_window)
    # the order columns are prepared in a second thread (pyarrow and numpy release the GIL)
    # while the rows are matched to customers: order ids (code -1 = an id on one row only, or
    # blank: its own order; ids on several rows, line items or duplicate exports, get codes
    # ≥ 0), the phone lookup when some rows have no id, times and amounts
    with ThreadPoolExecutor(max_workers=1) as pool:
        ocode_job = (
            pool.submit(_order_codes, orders["order_id"]) if "order_id" in orders.columns else None
        )
        channel_cols = channel_columns(orders)
        report = MatchReport(rows=len(orders))
        if customers is None:
            customers = derive_customers(orders, channel_cols[0] if channel_cols else None)
            report.customers_derived = True
        customers = customers.reset_index(drop=True)
        index = CustomerIndex(customers)
        report.customer_index = index
        if "phone" in orders.columns and (
            "customer_id" not in orders.columns or not has_text(orders["customer_id"], every=True)
        ):
            pool.submit(lambda: index.phone)  # rows without an id will be matched by phone
        columns_job = pool.submit(
            _order_columns, orders["order_time"], orders["amount"], orders.get("refund"), tz
        )
        cust, how = match_positions(orders, index)
        times, valid_t, day, amount, refund = columns_job.result()
        ocode = (
            ocode_job.result()
            if ocode_job is not None
            else np.full(len(orders), -1, dtype=np.int64)
        )
    if as_of is None and not valid_t.any():
        raise InputError(
            "no order has a valid order time", "check the 下单时间 column of the orders"
        )
    latest = (
        pd.Timestamp(np.max(day, where=valid_t, initial=np.iinfo(np.int64).min), unit="D")
        if valid_t.any()
        else None
    )
    as_of_ts = resolve_as_of(as_of, latest)
    as_of_day = int(np.datetime64(as_of_ts.date(), "D").astype(np.int64))
    report.as_of = as_of_ts
    report.rows_invalid_time = int((~valid_t).sum())
    in_time = valid_t & (day <= as_of_day)
    report.rows_after_as_of = int((valid_t & (day > as_of_day)).sum())

    matched = in_time & (cust >= 0)
    unmatched = in_time & (cust < 0)
    report.rows_unmatched = int(unmatched.sum())
    from custtool.engines.seam import UNMATCHED_COLUMNS

    keep_cols = [c for c in UNMATCHED_COLUMNS if c in orders.columns]
    report.unmatched = orders[keep_cols].iloc[np.flatnonzero(unmatched)].reset_index(drop=True)

    # exact duplicate rows (same order id, customer, time, amount) count once; only rows whose
    # order id occurs more than once can be duplicates, so only those are compared
    keep = matched
    cand = np.flatnonzero((ocode >= 0) & matched)
    if len(cand):
        t_ns = times.to_numpy()[cand].astype("datetime64[ns]").astype(np.int64)
        dup = (
            pd.DataFrame({"c": cust[cand], "o": ocode[cand], "t": t_ns, "a": amount[cand]})
            .duplicated()
            .to_numpy()
        )
        if dup.any():
            keep = matched.copy()
            keep[cand[dup]] = False
    used = int(np.count_nonzero(keep))
    # the attributed order rows (SegmentResult.orders is built from them)
    report.used_rows = np.flatnonzero(keep)
    report.used_customers = cust[report.used_rows]
    report.used_amounts = amount[report.used_rows]
    report.used_in_window = (as_of_day - day[report.used_rows]) < win
    report.used_how = how[report.used_rows]
    report.used_times = times.iloc[report.used_rows].to_numpy()
    report.customer_ids = customers["customer_id"] if "customer_id" in customers.columns else None
    report.rows_duplicate = int(np.count_nonzero(matched)) - used
    report.rows_used = used
    kept_how = how[keep]
    report.matched_by = {
        name: int(np.count_nonzero(kept_how == k))
        for k, name in ((1, "id"), (2, "phone"), (3, "email"))
    }
    del matched, unmatched, in_time, kept_how

    n = len(customers)
    # rows not used go to an extra customer n that is dropped (no copies of the columns)
    np.copyto(cust, n, where=~keep)
    agg = _aggregate(cust, day, amount, refund, ocode, n, as_of_day, win, gwin)
    del keep
    report.orders_used = int(agg.pop("_orders_used"))
    metrics = _finish(customers, agg, as_of_day, as_of_ts)
    if interactions is not None:
        metrics = metrics.join(interaction_metrics(interactions, index, as_of_ts, tz))
    metrics["as_of"] = as_of_ts
    return metrics, report


def _sql_metrics(
    orders: Any,
    customers: pd.DataFrame | None,
    *,
    as_of: Any,
    window: Any,
    growth_window: Any,
    interactions: pd.DataFrame | None,
    tz: str | None,
    engine: str,
    memory_limit: Any,
    spark_master: str | None,
    attributed_to: Any,
    portrait: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, MatchReport]:
    """:func:`customer_metrics` out of core (DuckDB or Spark over the Parquet file)."""
    import tempfile
    from pathlib import Path

    from custtool.engines import parse_memory_limit
    from custtool.engines.seam import sql_customer_metrics

    tz, win, gwin = _settings(tz, window, growth_window)
    limit = memory_limit if isinstance(memory_limit, int) else parse_memory_limit(memory_limit)
    with tempfile.TemporaryDirectory(prefix="custtool-orders-") as tmp:
        if not (isinstance(orders, str) or hasattr(orders, "__fspath__")):
            path = Path(tmp) / "orders.parquet"  # a DataFrame: handed over as Parquet
            orders.to_parquet(path, index=False)
            orders = path
        customers, agg, report, index, as_of_day = sql_customer_metrics(
            orders,
            customers,
            as_of=as_of,
            win=win,
            gwin=gwin,
            tz=tz,
            engine=engine,
            memory_limit=limit,
            spark_master=spark_master,
            attributed_to=attributed_to,
            portrait=portrait,
        )
    report.orders_used = int(agg.pop("_orders_used"))
    report.customer_index = index
    as_of_ts = report.as_of
    metrics = _finish(customers, agg, as_of_day, as_of_ts)
    if interactions is not None:
        metrics = metrics.join(interaction_metrics(interactions, index, as_of_ts, tz))
    metrics["as_of"] = as_of_ts
    return metrics, report


def _aggregate(c, day, amt, refund, ocode, n, as_of_day, win, gwin) -> dict[str, np.ndarray]:
    """Numpy aggregation of order lines into per-customer arrays.

    ``c`` is the customer position of each line, or ``n`` for a line not to use (no customer,
    after the as-of day, duplicate): those lines are summed into an extra customer ``n`` that
    is dropped, so the columns are never copied. Sums run over the lines in their order.
    Row-sized work happens in a few scratch arrays (large temporaries cost page faults); the
    purchase days and the repeat value are computed in a second thread meanwhile.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    n1 = n + 1
    sale = (c < n) & ~refund
    key = np.empty(len(c), dtype=np.int64)
    with ThreadPoolExecutor(max_workers=1) as pool:
        days_job = pool.submit(_purchase_days_and_repeat_value, c, day, amt, n, sale)

        # every window is "age < d days"; cut the ages once into disjoint buckets (a lookup
        # table of ages 0..longest), sum per (customer, bucket) with one bincount, and get
        # each window as a cumulative sum
        breaks = sorted({30, 90, 365, win, gwin, 2 * gwin})
        nb = len(breaks) + 1
        col = {d: i for i, d in enumerate(breaks)}
        np.subtract(as_of_day, day, out=key)
        np.clip(key, 0, breaks[-1], out=key)  # lines used are on or before the as-of day
        bucket = np.searchsorted(breaks, np.arange(breaks[-1] + 1), side="right").astype(np.int8)[
            key
        ]
        np.multiply(c, nb, out=key)
        key += bucket  # (customer, bucket)
        money = np.bincount(key, weights=amt, minlength=n1 * nb)[: n * nb].reshape(n, nb)
        np.cumsum(money, axis=1, out=money)
        out: dict[str, Any] = {}  # arrays, plus the scalar "_orders_used"
        out["historical_value"] = np.round(money[:, -1], 2)
        for d in (30, 90, 365):
            out[f"monetary_{d}d"] = np.round(money[:, col[d]], 2)
        out["monetary"] = np.round(money[:, col[win]], 2)
        out["monetary_prev"] = np.round(money[:, col[2 * gwin]] - money[:, col[gwin]], 2)
        out["_monetary_g"] = np.round(money[:, col[gwin]], 2)
        del money

        # orders: one per (customer, order id) among sale lines, dated by its earliest line;
        # a line whose order id is on no other line is an order by itself. Of the lines of
        # one repeated id, the earliest counts and the others go to customer n.
        order_line = sale.copy()
        mi = np.flatnonzero(sale & (ocode >= 0))
        if len(mi):
            group = c[mi] * (int(ocode[mi].max()) + 1) + ocode[mi]
            order = np.lexsort((day[mi], group))
            g = group[order]
            repeat_line = np.zeros(len(g), dtype=bool)  # not the first line of its group
            np.equal(g[1:], g[:-1], out=repeat_line[1:])
            order_line[mi[order[repeat_line]]] = False
            del group, order, g, repeat_line
        del mi
        out["_orders_used"] = np.int64(np.count_nonzero(order_line))
        key.fill(n)
        np.copyto(key, c, where=order_line)
        del order_line
        key *= nb
        key += bucket
        del bucket
        counts = np.bincount(key, minlength=n1 * nb)[: n * nb].reshape(n, nb)
        del key
        np.cumsum(counts, axis=1, out=counts)
        out["orders_total"] = counts[:, -1].copy()
        for d in (30, 90, 365):
            out[f"orders_{d}d"] = counts[:, col[d]].copy()
        out["frequency"] = counts[:, col[win]].copy()
        del counts
        first, last, n_days, repeat_value = days_job.result()

    has = out["orders_total"] > 0
    out["_first"] = np.where(has, first, 0)
    out["_last"] = np.where(has, last, 0)
    out["_has"] = has
    out["bg_x"] = np.where(has, n_days - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["bg_repeat_avg"] = np.where(
            out["bg_x"] > 0, np.round(repeat_value, 2) / np.maximum(out["bg_x"], 1), np.nan
        )
    return out


def _purchase_days_and_repeat_value(
    c, day, amt, n, sale
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First and last purchase day, number of distinct purchase days (over sale lines) and the
    money of all lines after the first purchase day, per customer 0..n-1 (``c`` = n: unused)."""
    import numpy as np

    key = np.empty(len(c), dtype=np.int64)
    tmp = np.empty(len(c), dtype=np.int64)
    first, last, n_days = _purchase_days(c, day, n, sale, key, tmp)
    # a customer without sale lines has first day 0 here, so all of their lines count
    np.take(np.append(first, 0), c, out=tmp)
    later = day > tmp
    del tmp
    key.fill(n)
    np.copyto(key, c, where=later)
    del later
    repeat_value = np.bincount(key, weights=amt, minlength=n + 1)[:n].astype(np.float64)
    return first, last, n_days, repeat_value


def _purchase_days(
    c: np.ndarray,
    d: np.ndarray,
    n: int,
    rows: np.ndarray,
    key: np.ndarray | None = None,
    tmp: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First day, last day and number of distinct days per customer 0..n-1 of the lines where
    ``rows`` is True: one sort of customer·span + day (``key``/``tmp``: int64 scratch arrays of
    the lines' length, overwritten)."""
    import numpy as np

    first = np.zeros(n, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64)
    n_days = np.zeros(n, dtype=np.int64)
    if not rows.any():
        return first, last, n_days
    key = np.empty(len(c), dtype=np.int64) if key is None else key
    tmp = np.empty(len(c), dtype=np.int64) if tmp is None else tmp
    big = np.iinfo(np.int64).max
    dmin = int(np.min(d, where=rows, initial=big))
    span = int(np.max(d, where=rows, initial=dmin)) - dmin + 1
    np.subtract(d, dmin, out=key)
    np.clip(key, 0, span - 1, out=key)  # other lines (customer n) may have any day
    tmp.fill(n)
    np.copyto(tmp, c, where=rows)
    tmp *= span
    key += tmp
    key.sort()
    new = np.empty(len(key), dtype=bool)
    new[0] = True
    np.not_equal(key[1:], key[:-1], out=new[1:])
    m = 0
    for a in range(0, len(key), 1 << 20):  # in blocks: no row-sized temporary
        part = np.compress(new[a : a + (1 << 20)], key[a : a + (1 << 20)])
        tmp[m : m + len(part)] = part
        m += len(part)
    distinct = tmp[:m]  # distinct (customer, day), sorted; customer n's last
    del new
    bounds = np.searchsorted(
        distinct, np.arange(n + 1, dtype=np.int64) * span
    )  # each customer's run
    n_days[:] = np.diff(bounds)
    has = n_days > 0
    base = np.arange(n, dtype=np.int64) * span - dmin
    first[has] = distinct[bounds[:-1][has]] - base[has]
    last[has] = distinct[bounds[1:][has] - 1] - base[has]
    return first, last, n_days


def _finish(
    customers: pd.DataFrame, agg: dict[str, np.ndarray], as_of_day: int, as_of_ts: pd.Timestamp
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    has = agg["_has"]
    first = np.where(has, agg["_first"], 0).astype("datetime64[D]").astype("datetime64[ns]")
    last = np.where(has, agg["_last"], 0).astype("datetime64[D]").astype("datetime64[ns]")
    nat = np.datetime64("NaT", "ns")
    cols: dict[str, Any] = {}
    cols["first_order"] = np.where(has, first, nat)
    cols["last_order"] = np.where(has, last, nat)
    cols["recency"] = np.where(has, (as_of_day - agg["_last"]).astype(float), np.nan)
    freq = agg["frequency"].astype(np.int64)
    cols["frequency"] = freq
    cols["monetary"] = agg["monetary"]
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["aov"] = np.where(freq > 0, np.round(agg["monetary"] / np.maximum(freq, 1), 2), np.nan)
    for d in (30, 90, 365):
        cols[f"orders_{d}d"] = agg[f"orders_{d}d"].astype(np.int64)
    for d in (30, 90, 365):
        cols[f"monetary_{d}d"] = agg[f"monetary_{d}d"]
    prev = agg["monetary_prev"]
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["monetary_prev"] = prev
        cols["growth"] = np.where(
            prev > 0, agg["_monetary_g"] / np.where(prev > 0, prev, 1) - 1.0, np.nan
        )
    cols["repurchase"] = freq >= 2
    cols["historical_value"] = agg["historical_value"]
    cols["bg_x"] = agg["bg_x"].astype(np.int64)
    cols["bg_t_x"] = np.where(has, (agg["_last"] - agg["_first"]).astype(float), np.nan)
    cols["bg_T"] = np.where(has, (as_of_day - agg["_first"]).astype(float), np.nan)
    cols["bg_repeat_avg"] = agg["bg_repeat_avg"]
    new = pd.DataFrame(cols, index=customers.index)
    base = customers.drop(columns=[c for c in new.columns if c in customers.columns])
    return pd.concat([base, new], axis=1)


def interaction_metrics(
    interactions: pd.DataFrame, index: CustomerIndex, as_of: pd.Timestamp, tz: str = "Asia/Shanghai"
) -> pd.DataFrame:
    """days_since_last_interaction, last_interaction, interactions_30d/365d, complaints_365d
    complaints (all complaints up to the as-of day) and events_365d (method 活动)."""
    import numpy as np
    import pandas as pd

    if "time" not in interactions.columns:
        raise InputError(
            "interactions have no 'time' column",
            "import the follow-up log with `custtool import --kind interactions`",
        )
    n = index.n
    cust, _ = match_positions(interactions, index)
    t = local_times(interactions["time"], tz)
    ok = t.notna().to_numpy() & (cust >= 0)
    day = day_numbers(t)
    as_of_day = int(np.datetime64(as_of.date(), "D").astype(np.int64))
    ok &= day <= as_of_day
    c, d = cust[ok], day[ok]
    age = as_of_day - d
    complaint = (
        text_column(interactions, "method").str.contains("投诉", regex=False)
        | text_column(interactions, "content").str.contains("投诉", regex=False)
    ).to_numpy()[ok]
    event = text_column(interactions, "method").str.contains("活动", regex=False).to_numpy()[ok]
    last_ns = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_ns, c, t.to_numpy(dtype="datetime64[ns]").astype(np.int64)[ok])
    last_d = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_d, c, d)
    has = np.bincount(c, minlength=n) > 0
    return pd.DataFrame(
        {
            "days_since_last_interaction": np.where(
                has, (as_of_day - last_d).astype(float), np.nan
            ),
            "last_interaction": pd.to_datetime(
                np.where(has, last_ns, np.iinfo(np.int64).min).astype("datetime64[ns]")
            ),
            "interactions_30d": np.bincount(c[age < 30], minlength=n),
            "interactions_365d": np.bincount(c[age < 365], minlength=n),
            "complaints_365d": np.bincount(c[(age < 365) & complaint], minlength=n),
            "complaints": np.bincount(c[complaint], minlength=n),  # all up to the as-of day
            "events_365d": np.bincount(c[(age < 365) & event], minlength=n),
        }
    )


#: the summary columns member exports carry (SPEC D1b): R, F and M without an order file
SUMMARY_COLUMNS = ("last_purchase_date", "order_count", "total_spend")


def has_summary_columns(customers: pd.DataFrame | None) -> bool:
    """True when ``customers`` carries the summary columns R, F and M can be computed from."""
    return customers is not None and set(SUMMARY_COLUMNS) <= set(customers.columns)


def summary_metrics(
    customers: pd.DataFrame,
    *,
    as_of: Any = None,
    tz: str | None = None,
) -> tuple[pd.DataFrame, MatchReport]:
    """Per-customer metrics from a member list's summary columns (SPEC D1b), no orders.

    The definitions are those of :func:`customer_metrics`: recency = days from the
    ``last_purchase_date`` (in the firm's time zone, cut into days) to the as-of day (default:
    the latest last-purchase day); frequency = ``order_count``; monetary = ``total_spend``
    (rounded to cents); ``aov`` = monetary / frequency; ``repurchase`` = frequency ≥ 2;
    ``historical_value`` = monetary. The columns are the export's own totals, so no window
    applies, and what needs single orders (first order, windows of 30/90/365 days, growth,
    the BG/NBD inputs) is empty. A customer without a last purchase date counts as one
    without orders; last purchases after the as-of day are ignored (counted in the report's
    ``rows_after_as_of``).
    """
    import numpy as np
    import pandas as pd

    from custtool.config import segment_settings

    missing = [c for c in SUMMARY_COLUMNS if c not in customers.columns]
    if missing:
        raise InputError(
            f"the customers have no {', '.join(missing)} column"
            + ("s" if len(missing) > 1 else ""),
            "without --orders, segment needs the member list's 最近消费时间, 累计消费次数 and "
            "累计消费金额 columns; or pass --orders orders.parquet",
        )
    tz = tz or segment_settings()["timezone"]
    customers = customers.reset_index(drop=True)
    times = local_times(customers["last_purchase_date"], tz)
    valid = times.notna().to_numpy()
    day = day_numbers(times)
    if as_of is None and not valid.any():
        raise InputError(
            "no customer has a valid last purchase date",
            "check the 最近消费时间 column of the member list",
        )
    latest = (
        pd.Timestamp(np.max(day, where=valid, initial=np.iinfo(np.int64).min), unit="D")
        if valid.any()
        else None
    )
    as_of_ts = resolve_as_of(as_of, latest)
    as_of_day = int(np.datetime64(as_of_ts.date(), "D").astype(np.int64))
    report = MatchReport(rows=0, as_of=as_of_ts)
    report.rows_after_as_of = int((valid & (day > as_of_day)).sum())
    has = valid & (day <= as_of_day)
    count = pd.to_numeric(customers["order_count"], errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )
    spend = np.round(
        pd.to_numeric(customers["total_spend"], errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        ),
        2,
    )
    freq = np.where(has, np.nan_to_num(count, nan=0.0), 0).astype(np.int64)
    money = np.where(has, np.nan_to_num(spend, nan=0.0), 0.0)
    nat = np.datetime64("NaT", "ns")
    last = np.where(has, day, 0).astype("datetime64[D]").astype("datetime64[ns]")
    cols: dict[str, Any] = {
        "first_order": np.full(len(customers), nat),
        "last_order": np.where(has, last, nat),
        "recency": np.where(has, (as_of_day - day).astype(float), np.nan),
        "frequency": freq,
        "monetary": money,
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["aov"] = np.where(freq > 0, np.round(money / np.maximum(freq, 1), 2), np.nan)
    for d in (30, 90, 365):
        cols[f"orders_{d}d"] = np.full(len(customers), np.nan)
    for d in (30, 90, 365):
        cols[f"monetary_{d}d"] = np.full(len(customers), np.nan)
    cols["monetary_prev"] = np.full(len(customers), np.nan)
    cols["growth"] = np.full(len(customers), np.nan)
    cols["repurchase"] = freq >= 2
    cols["historical_value"] = money
    cols["bg_x"] = np.zeros(len(customers), dtype=np.int64)
    for c in ("bg_t_x", "bg_T", "bg_repeat_avg"):
        cols[c] = np.full(len(customers), np.nan)
    new = pd.DataFrame(cols, index=customers.index)
    base = customers.drop(columns=[c for c in new.columns if c in customers.columns])
    metrics = pd.concat([base, new], axis=1)
    metrics["as_of"] = as_of_ts
    return metrics, report
