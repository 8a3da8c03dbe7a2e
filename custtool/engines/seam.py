"""The metrics seam out of core: order rows → one row per customer in a SQL engine.

:func:`sql_customer_metrics` runs the queries of :mod:`custtool.engines.sql` directly over
the orders Parquet file in DuckDB (bounded by ``--memory-limit``, spilling to a temporary
folder removed afterwards) or Spark (:mod:`custtool.engines.spark`). The customers table is
small: the distinct key tuples of the orders (customer id, channel, phone, email) come back
to pandas, the one matcher (:class:`custtool.attribution.CustomerIndex`) gives each its
customer position and match code, and that map goes back to the engine, which joins the
order rows to it. Only the per-customer aggregates become a DataFrame; the order rows never
do. ``_finish`` (and RFM, LTV, NPS, tags after it) run in-process unchanged.

The attributed orders (``SegmentResult.orders`` in the pandas engine) are not held in
memory here: the engine writes them to a Parquet file when asked (``attributed_to``), the
file ``segment -o`` writes beside its output for report/cards/pivot.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool.engines import MIN_MEMORY, duckdb_connect, is_out_of_memory, memory_error
from custtool.engines import sql as S
from custtool.errors import ConfigError, CusttoolError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: the columns of the unmatched rows the report lists (as the pandas engine)
UNMATCHED_COLUMNS = (
    "order_id",
    "customer_id",
    "phone",
    "email",
    "channel",
    "_channel",
    "order_time",
    "amount",
    "_source_file",
    "_sheet",
    "_row",
)


class DuckRunner:
    """The seam's SQL in DuckDB, bounded by ``memory_limit`` bytes."""

    dialect = S.DUCKDB
    #: the attributed orders are streamed in file order (:func:`_stream_attributed`)
    streams_in_order = True

    def __init__(self, memory_limit: int | None, tz: str) -> None:
        self.memory_limit = memory_limit
        from custtool.atomic import sweep_leftovers, temp_prefix

        sweep_leftovers(tempfile.gettempdir(), "custtool-spill-")
        self._tmp = tempfile.TemporaryDirectory(prefix=temp_prefix("custtool-spill-"))
        self.con = duckdb_connect(memory_limit, Path(self._tmp.name) / "spill")
        self.con.execute(f"SET TimeZone = {S.quote(tz)}")
        self.con.execute("SET enable_progress_bar = false")
        self.tz = tz

    def source(self, path: str) -> str:
        p = S.quote(str(path))
        return f"(SELECT *, file_row_number AS rn FROM read_parquet({p}, file_row_number = true))"

    def schema(self, path: str) -> dict[str, str]:
        rows = self.con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({S.quote(str(path))})"
        ).fetchall()
        return {r[0]: _duck_kind(r[1]) for r in rows}

    def time_expr(self, col: str, kind: str) -> str:
        tz = S.quote(self.tz)
        if kind == "naive":
            return col
        if kind == "aware":
            return f"timezone({tz}, {col})"
        if kind == "date":
            return f"CAST({col} AS TIMESTAMP)"
        if kind == "string":  # naive text = local time, text with an offset converted
            return f"timezone({tz}, TRY_CAST({S.DUCKDB.trim.format(x=col)} AS TIMESTAMPTZ))"
        return "CAST(NULL AS TIMESTAMP)"

    def frame(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()

    def arrow(self, sql: str) -> Any:
        rel = self.con.sql(sql)
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()

    def register(self, name: str, df: pd.DataFrame) -> str:
        self.con.register(f"{name}_df", df)
        self.con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {name}_df")
        self.con.unregister(f"{name}_df")
        return name

    def table(self, name: str, sql: str) -> str:
        self.con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        return name

    def view(self, name: str, sql: str) -> str:
        self.con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
        return name

    def fit_limit(self) -> None:
        """--memory-limit bounds the process where it can: DuckDB gets what the customers,
        the matcher and Python do not already hold, but at least half the limit."""
        if self.memory_limit is None:
            return
        held = _resident_bytes()
        room = max(MIN_MEMORY, self.memory_limit // 2, self.memory_limit - held - 32 * 1000**2)
        self.con.execute(f"SET memory_limit = '{int(room)}B'")

    def copy(self, sql: str, path: Path) -> None:
        self.con.execute(f"COPY ({sql}) TO {S.quote(str(path))} (FORMAT parquet)")

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            self._tmp.cleanup()


def _resident_bytes() -> int:
    """This process's resident memory now (0 where /proc is missing)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _duck_kind(t: str) -> str:
    t = t.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return "aware"
    if t.startswith("TIMESTAMP"):
        return "naive"
    if t == "DATE":
        return "date"
    if t == "BOOLEAN":
        return "bool"
    if t in {"VARCHAR", "BLOB"} or t.startswith("VARCHAR"):
        return "string"
    if any(k in t for k in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL")):
        return "number"
    return "other"


def sql_customer_metrics(
    orders: Any,
    customers: pd.DataFrame | None,
    *,
    as_of: Any,
    win: int,
    gwin: int,
    tz: str,
    engine: str = "duckdb",
    memory_limit: int | None = None,
    spark_master: str | None = None,
    attributed_to: Any = None,
    customer_ids: Any = None,
    portrait: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], Any, Any, int]:
    """(customers, per-customer aggregates as in ``_aggregate``, MatchReport, CustomerIndex,
    as-of day) of the orders Parquet file ``orders``, computed in ``engine``. ``portrait``
    (the ``portrait:`` settings): also group the portrait's inputs
    (``MatchReport.portrait_groups``)."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(tz)
    except Exception:
        raise ConfigError(
            f"unknown time zone {tz!r}", "use an IANA name such as Asia/Shanghai"
        ) from None
    path = Path(orders)
    if not path.exists():
        raise InputError(f"{path.name}: file not found", "check the --orders path")
    if path.suffix.lower() != ".parquet":
        raise InputError(
            f"{path.name}: --engine {engine} reads the orders as Parquet",
            "import the orders first: custtool import orders.csv --kind orders -o orders.parquet",
        )
    if engine == "spark":
        from custtool.engines.spark import SparkRunner

        runner: Any = SparkRunner(spark_master or "local[*]", tz)
    else:
        runner = DuckRunner(memory_limit, tz)
    try:
        return _run(
            runner, path, customers, as_of, win, gwin, attributed_to, customer_ids, portrait
        )
    except CusttoolError:
        raise
    except Exception as exc:
        if engine == "duckdb" and is_out_of_memory(exc):
            raise memory_error(exc, memory_limit, "segment --engine duckdb") from None
        if engine == "spark":
            from custtool.engines.spark import spark_error

            raise spark_error(exc, spark_master) from None
        raise
    finally:
        runner.close()


def _run(
    runner: Any,
    path: Path,
    customers: pd.DataFrame | None,
    as_of: Any,
    win: int,
    gwin: int,
    attributed_to: Any,
    customer_ids: Any,
    portrait: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], Any, Any, int]:
    import numpy as np
    import pandas as pd

    from custtool.attribution import CustomerIndex, MatchReport, channel_columns, derive_customers
    from custtool.dates import resolve_as_of
    from custtool.portrait_rules import CATEGORY_COLUMNS, CHANNEL_COLUMNS, ranked_label_codes

    d = runner.dialect
    q = d.q
    schema = runner.schema(str(path))
    for col in ("order_time", "amount"):
        if col not in schema:
            raise InputError(
                f"{path.name}: orders have no {col!r} column",
                "import the orders with `custtool import --kind orders` (下单时间, 实付金额)",
            )
    keys = S.key_columns(list(schema))
    if not {"customer_id", "phone", "email"} & set(keys):
        raise InputError(
            f"{path.name}: orders have no customer key (customer_id, phone or email)",
            "the order export needs 客户ID, 手机号 or 邮箱",
        )
    src = runner.source(str(path))
    # the key tuples → customer positions by the one matcher, in pandas
    key_rows = runner.arrow(S.distinct_keys_sql(d, src, keys)).to_pandas()
    report = MatchReport()
    raw = key_rows[keys]
    if customers is None:
        chans = channel_columns(raw)
        customers = derive_customers(raw, chans[0] if chans else None)
        report.customers_derived = True
    customers = customers.reset_index(drop=True)
    index = CustomerIndex(customers)
    from custtool.attribution import match_positions

    pos, how = match_positions(raw, index)
    # every row's key tuple is among these: when no two share a hash, the hash joins exactly
    by_hash = not key_rows["kh"].duplicated().any()
    join_cols = ["kh"] if by_hash else [f"k_{k}" for k in keys]
    if not by_hash:  # two tuples share a hash (rare): fetched again, with the keys as text
        again = runner.arrow(S.distinct_keys_sql(d, src, keys, text=True)).to_pandas()
        pos, how = match_positions(again[keys], index)
        key_rows = again
    keymap = key_rows[join_cols].assign(c=pos.astype("int64"), how=how.astype("int64"))
    # the portrait: label codes of the channels (a key column) and the categories, by the
    # portrait's own labelling of their distinct values
    chan_col = next((c for c in CHANNEL_COLUMNS if c in keys), None) if portrait else None
    cat_col = next((c for c in CATEGORY_COLUMNS if c in schema), None) if portrait else None
    chan_labels = cat_labels = None
    if chan_col is not None:
        codes, chan_labels = ranked_label_codes(key_rows[chan_col])
        keymap["ch"] = codes
    keymap = keymap[keymap["c"] >= 0].drop_duplicates(join_cols)
    del key_rows, raw, pos, how
    km = runner.register("keymap", keymap)
    del keymap
    category = None
    if cat_col is not None:
        values = runner.arrow(f"SELECT DISTINCT {q(cat_col)} AS v FROM {src}").to_pandas()
        codes, cat_labels = ranked_label_codes(values["v"])
        if len(cat_labels):  # else every category is blank: nothing to join
            cm = runner.register("catmap", values.assign(k=codes)[codes >= 0])
            category = (cm, cat_col)
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()  # what the matcher freed goes back
    runner.fit_limit()

    def col(name: str) -> str:
        return "s." + q(name)

    line_args: dict[str, Any] = dict(
        time_expr=runner.time_expr(col("order_time"), schema["order_time"]),
        amount=S.amount_expr(d, col("amount"), schema["amount"]),
        refund=S.refund_expr(
            d, col("refund") if "refund" in schema else None, schema.get("refund", "")
        ),
        order_id=S.order_id_expr(d, col("order_id") if "order_id" in schema else None),
        by_hash=by_hash,
    )
    n_ch = 0 if chan_labels is None else len(chan_labels)
    n_cat = 0 if cat_labels is None else len(cat_labels)
    portrait_args = dict(channel=chan_col is not None, category=category, n_ch=n_ch, n_cat=n_cat)
    # the rows with duplicates dropped, in one pass from the file (the narrow per-row query
    # is not held: holding it and grouping it again measured slower); the as-of cut after
    rn_max = max(int(runner.frame(f"SELECT count(*) AS n FROM {src}")["n"].iloc[0]) - 1, 0)
    lines = S.lines_sql(d, src, km, keys, **line_args, **portrait_args)
    ded = runner.table("ded", S.dedupe_sql(d, lines, n_ch=n_ch, n_cat=n_cat, rn_max=rn_max))
    days = runner.frame(S.days_sql(ded))
    valid = days["d"].notna().to_numpy()
    day = days["d"].fillna(0).to_numpy(np.int64)
    n = days["n"].to_numpy(np.int64)
    g = days["g"].to_numpy(np.int64)
    hit = days["matched"].fillna(False).to_numpy(bool)
    report.rows = int(n.sum())
    n_valid = int(n[valid].sum())
    if as_of is None and not n_valid:
        raise InputError(
            "no order has a valid order time", "check the 下单时间 column of the orders"
        )
    latest = pd.Timestamp(int(day[valid].max()), unit="D") if n_valid else None
    as_of_ts = resolve_as_of(as_of, latest)
    as_of_day = int(np.datetime64(as_of_ts.date(), "D").astype(np.int64))
    report.as_of = as_of_ts
    report.rows_invalid_time = report.rows - n_valid
    before = valid & (day <= as_of_day)
    report.rows_after_as_of = int(n[valid & (day > as_of_day)].sum())
    report.rows_unmatched = int(n[before & ~hit].sum())
    matched = int(n[before & hit].sum())
    first_day = int(day[before & hit].min()) if (before & hit).any() else as_of_day
    present = [c for c in UNMATCHED_COLUMNS if c in schema]
    if report.rows_unmatched:
        sel = ", ".join("s." + q(c) for c in present)
        report.unmatched = runner.frame(
            f"SELECT {sel} FROM {src} s JOIN (SELECT rn FROM {ded} WHERE d IS NOT NULL "
            f"AND d <= {as_of_day} AND c < 0) u ON s.rn = u.rn ORDER BY s.rn"
        ).reset_index(drop=True)
    else:
        report.unmatched = pd.DataFrame(columns=present)
    used = runner.view("used", S.used_sql(ded, as_of_day))
    by = runner.frame(S.matched_by_sql(used))
    counts = dict(zip(by["how"].astype(int), by["n"].astype(int), strict=True))
    report.rows_used = int(g[before & hit].sum())
    report.rows_duplicate = matched - report.rows_used
    report.matched_by = {
        name: counts.get(k, 0) for k, name in ((1, "id"), (2, "phone"), (3, "email"))
    }
    report.customer_ids = customers["customer_id"] if "customer_id" in customers.columns else None
    # one pass to per-order rows for the order counts and, with the portrait, its counted
    # orders (their first line's channel and time slot), rather than two
    slot_hours = int(portrait["slot_hours"]) if portrait else 0
    with_codes = bool(portrait) and S.orders_fit(n_ch, slot_hours, rn_max)
    orders_t = runner.table(
        "orders",
        S.orders_sql(
            d, used, as_of_day, win, n_ch=n_ch, slot_hours=slot_hours, portrait=with_codes
        ),
    )
    # per customer: money and purchase days, distinct sale days, the money up to the first
    # purchase day, orders — each its own GROUP BY (one CTE feeding the others measured
    # twice as slow: a per-day table of ~rows held and grouped again)
    sums = runner.table("sums", S.customer_sums_sql(used, as_of_day, win, gwin))
    parts = [
        runner.arrow(f"SELECT * FROM {sums}"),
        runner.arrow(S.sale_days_sql(d, used, first_day, as_of_day)),
        runner.arrow(S.early_money_sql(used, sums)),
        runner.arrow(S.order_counts_sql(orders_t, as_of_day, win)),
    ]
    agg = _arrays(parts, len(customers))
    del parts
    if portrait:
        report.portrait_groups = _portrait_groups(
            runner,
            used,
            as_of_day,
            win,
            portrait,
            chan_labels,
            cat_labels,
            rn_max,
            orders_t if with_codes else None,
        )
    if attributed_to is not None:
        _write_attributed(runner, src, used, schema, customers, as_of_day, win, attributed_to)
    return customers, agg, report, index, as_of_day


def _portrait_groups(
    runner: Any,
    used: str,
    as_of_day: int,
    win: int,
    settings: dict[str, Any],
    chan_labels: Any,
    cat_labels: Any,
    rn_max: int,
    orders: str | None = None,
) -> Any:
    """The portrait's inputs (:class:`custtool.portrait.PortraitGroups`) ranked by the
    engine: each customer's top categories, channels and best time slot; only these small
    tables (a few rows per customer) become arrays. ``orders``: the per-order table of
    :func:`custtool.engines.sql.orders_sql` (with the portrait's codes), when there is one."""

    from custtool.portrait_rules import PortraitGroups

    d = runner.dialect
    groups = PortraitGroups()

    def arrays(sql: str, *cols: str) -> list[Any]:
        res = runner.arrow(sql)
        return [res[c].to_numpy() for c in cols]

    if cat_labels is not None:
        sql = S.portrait_categories_sql(used, as_of_day, win, int(settings["top_categories"]))
        groups.cat_ranked, groups.cat_labels = tuple(arrays(sql, "c", "k", "rank")), cat_labels
    c, by_ch, k, rank = arrays(
        S.portrait_orders_sql(
            d,
            used,
            as_of_day,
            win,
            n_ch=0 if chan_labels is None else len(chan_labels),
            slot_hours=int(settings["slot_hours"]),
            rn_max=rn_max,
            orders=orders,
        ),
        "c",
        "by_ch",
        "k",
        "rank",
    )
    chan = by_ch == 1
    if chan_labels is not None:
        groups.chan_ranked, groups.chan_labels = (c[chan], k[chan], rank[chan]), chan_labels
    groups.slot_best = (c[~chan], k[~chan])
    return groups


def _arrays(parts: list[Any], n: int) -> dict[str, Any]:
    """The engine's per-customer rows (Arrow tables with the customer position ``c``:
    :func:`~custtool.engines.sql.customer_sums_sql`, ``sale_days_sql``, ``early_money_sql``,
    ``order_counts_sql``) → the arrays ``_finish`` takes (as ``_aggregate``); a customer
    missing from a table has 0 there."""
    import numpy as np
    import pyarrow.compute as pc

    where = {name: res for res in parts for name in res.column_names if name != "c"}

    def full(col: str) -> np.ndarray:  # built when read, not all held at once
        res = where[col]
        arr = np.zeros(n, dtype=np.int64)
        arr[res["c"].to_numpy().astype(np.int64)] = (
            pc.fill_null(res[col], 0).to_numpy().astype(np.int64)
        )
        return arr

    out: dict[str, Any] = {}
    for col in ("historical_value", "monetary_30d", "monetary_90d", "monetary_365d", "monetary"):
        out[col] = full(col) / 100.0
    out["monetary_prev"] = full("monetary_prev") / 100.0
    out["_monetary_g"] = full("monetary_g") / 100.0
    for col in ("orders_total", "orders_30d", "orders_90d", "orders_365d", "frequency"):
        out[col] = full(col)
    out["_orders_used"] = np.int64(out["orders_total"].sum())
    has = out["orders_total"] > 0
    out["_first"] = np.where(has, full("first_d"), 0)
    out["_last"] = np.where(has, full("last_d"), 0)
    out["_has"] = has
    out["bg_x"] = np.where(has, full("n_days") - 1, 0)
    rv = (full("historical_value") - full("m")) / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out["bg_repeat_avg"] = np.where(out["bg_x"] > 0, rv / np.maximum(out["bg_x"], 1), np.nan)
    return out


def _write_attributed(
    runner: Any,
    src: str,
    used: str,
    schema: dict[str, str],
    customers: pd.DataFrame,
    as_of_day: int,
    win: int,
    path: Any,
) -> None:
    """The attributed orders (the columns of ``segment.attributed_orders``) as Parquet,
    written by the engine from the rows used, in file order.

    DuckDB streams (:func:`_stream_attributed`): the joined query with ``ORDER BY`` below
    sorted and hashed every column of every order (10M orders: ~60 s, most of the segment
    step). Spark runs the query."""
    import pandas as pd

    from custtool.atomic import atomic_path

    ids = (
        customers["customer_id"].astype("string").fillna("")
        if "customer_id" in customers.columns
        else pd.Series("", index=customers.index, dtype="string")
    )
    if getattr(runner, "streams_in_order", False):
        with atomic_path(path) as tmp:
            _stream_attributed(runner, src, used, schema, ids, as_of_day, win, tmp)
        return
    d = runner.dialect
    q = d.q
    cid = runner.register(
        "customer_ids",
        pd.DataFrame({"c": range(len(customers)), "stable_id": ids.to_numpy(dtype=object)}),
    )
    special = {
        "customer_id": "ci.stable_id",
        "order_time": runner.time_expr("s." + q("order_time"), schema["order_time"]),
        "amount": "CAST(u.a AS DOUBLE) / 100.0",
    }
    cols = [f"{special.get(c, 's.' + q(c))} AS {q(c)}" for c in schema if c != "rn"]
    if "customer_id" not in schema:
        cols.append(f"ci.stable_id AS {q('customer_id')}")
    cols += [
        f"{_own_id(d, schema)} AS source_customer_id",
        "CASE u.how WHEN 1 THEN 'id' WHEN 2 THEN 'phone' WHEN 3 THEN 'email' ELSE '' END"
        " AS match_key",
        f"({int(as_of_day)} - u.d < {int(win)}) AS in_window",
    ]
    sql = f"""
      SELECT {", ".join(cols)}
      FROM {used} u JOIN {src} s ON u.rn = s.rn
        JOIN {cid} ci ON u.c = ci.c
      ORDER BY u.rn"""
    with atomic_path(path) as tmp:
        runner.copy(sql, tmp)


def _own_id(d: Any, schema: dict[str, str]) -> str:
    """The order's own customer id as text, trimmed ('' without one): source_customer_id."""
    if "customer_id" not in schema:
        return "''"
    return d.trim.format(x=f"coalesce(CAST(s.{d.q('customer_id')} AS {d.string}), '')")


#: rows per batch of the streamed attributed orders (memory: one batch of every column)
STREAM_ROWS = 262_144

#: match codes → match_key (0: none)
MATCH_KEY_NAMES = ("", "id", "phone", "email")


def _stream_attributed(
    runner: DuckRunner,
    src: str,
    used: str,
    schema: dict[str, str],
    ids: Any,
    as_of_day: int,
    win: int,
    path: Path,
) -> None:
    """:func:`_write_attributed` in DuckDB without sorting or hashing the order columns.

    The rows used (row number, customer, cents, match code, day: five integers) are sorted
    by row number into a scratch file; the order file is read once, in file order (a
    single-table query keeps its order), each batch takes its used rows by row number, the
    customer ids and the rest come from the narrow rows, and each batch is written by
    pyarrow in a second thread as it comes (high-cardinality text without a dictionary, as
    DuckDB writes it)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = runner.dialect
    q = d.q
    con = runner.con
    narrow = Path(runner._tmp.name) / "used_in_order.parquet"
    # the file's order, and the sorted rows' (the connection drops order elsewhere: it costs
    # memory; a database-wide setting, and these are the connection's last queries)
    con.execute("SET preserve_insertion_order = true")
    con.execute(
        f"COPY (SELECT rn, c, a, how, d FROM {used} ORDER BY rn) TO {S.quote(str(narrow))} "
        "(FORMAT parquet)"
    )
    # the order columns in file order
    own = [c for c in schema if c not in ("rn", "customer_id", "amount")]
    exprs = [
        (runner.time_expr("s." + q(c), schema[c]) if c == "order_time" else "s." + q(c))
        + f" AS {q(c)}"
        for c in own
    ]
    exprs += [f"{_own_id(d, schema)} AS source_customer_id", "s.rn AS rn"]
    rel = con.sql(f"SELECT {', '.join(exprs)} FROM {src} s")
    orders = (
        rel.to_arrow_reader(STREAM_ROWS)
        if hasattr(rel, "to_arrow_reader")
        else rel.fetch_record_batch(STREAM_ROWS)
    )
    id_text = pa.array(ids.to_numpy(dtype=object), pa.string())
    keys = pa.array(MATCH_KEY_NAMES, pa.string())
    names = [c for c in schema if c != "rn"]
    if "customer_id" not in schema:
        names.append("customer_id")
    names += ["source_customer_id", "match_key", "in_window"]

    def joined(batch: Any, u: Any) -> Any:
        """The used rows ``u`` (a table of the narrow file's columns) of ``batch``."""
        rn = batch.column("rn").to_numpy()
        urn = u.column("rn").to_numpy()
        keep = np.zeros(len(rn), dtype=bool)
        keep[np.searchsorted(rn, urn)] = True
        # a filter copies runs of rows (most rows are used): cheaper than a take
        taken = batch if keep.all() else batch.filter(pa.array(keep))
        c = u.column("c").to_numpy()
        made = {
            "customer_id": id_text.take(pa.array(c, pa.int64())),
            "amount": pa.array(u.column("a").to_numpy().astype(np.float64) / 100.0),
            "match_key": keys.take(pa.array(u.column("how").to_numpy(), pa.int64())),
            "in_window": pa.array(
                (int(as_of_day) - u.column("d").to_numpy().astype(np.int64)) < int(win)
            ),
        }
        return pa.record_batch(
            [made[c] if c in made else taken.column(c) for c in names], names=names
        )

    def batches() -> Any:
        narrow_file = pq.ParquetFile(narrow)
        pending = narrow_file.schema_arrow.empty_table()
        rest = narrow_file.iter_batches(batch_size=STREAM_ROWS)
        expect = 0
        for batch in orders:
            if not batch.num_rows:
                continue
            first, last = batch.column("rn")[0].as_py(), batch.column("rn")[-1].as_py()
            if first != expect or last != expect + batch.num_rows - 1:  # a bug, not bad input
                raise RuntimeError(f"order rows streamed out of order at row {expect}")
            expect = last + 1
            parts = [pending]
            while not parts[-1].num_rows or parts[-1].column("rn")[-1].as_py() <= last:
                nxt = next(rest, None)
                if nxt is None:
                    break
                parts.append(pa.Table.from_batches([nxt]))
            u = pa.concat_tables(parts)
            urn = u.column("rn").to_numpy()
            if len(urn) > 1 and not (urn[1:] > urn[:-1]).all():  # a bug, not bad input
                raise RuntimeError(f"used rows out of order after row {expect}")
            cut = int(np.searchsorted(urn, last, side="right"))
            pending = u.slice(cut)
            if cut:
                yield joined(batch, u.slice(0, cut).combine_chunks())

    # the output's columns and types: those of an empty batch
    out_schema = joined(
        pa.RecordBatch.from_pylist([], schema=orders.schema),
        pq.ParquetFile(narrow).schema_arrow.empty_table(),
    ).schema
    from concurrent.futures import ThreadPoolExecutor

    writer = None
    # each batch is encoded and written in a second thread while the next one is read and
    # joined (one batch in flight: memory stays two batches)
    pool = ThreadPoolExecutor(1, thread_name_prefix="custtool-attributed")
    pending_write = None
    try:
        for batch in batches():
            if writer is None:
                writer = pq.ParquetWriter(
                    path, out_schema, use_dictionary=_repeated_text(batch), compression="snappy"
                )
            if pending_write is not None:
                pending_write.result()
            pending_write = pool.submit(writer.write_batch, batch)
        if pending_write is not None:
            pending_write.result()
        if writer is None:  # no row used: an empty file with the columns
            pq.write_table(out_schema.empty_table(), path)
    finally:
        pool.shutdown(wait=True)
        if writer is not None:
            writer.close()
        narrow.unlink(missing_ok=True)


def _repeated_text(batch: Any) -> list[str]:
    """The text columns of ``batch`` worth a Parquet dictionary (as DuckDB's writer would:
    channels, categories, file names — not ids or phones, which
    :func:`custtool.pipeline.read_attributed` encodes faster from plain pages)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return [
        f.name
        for f, col in zip(batch.schema, batch.columns, strict=True)
        if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
        and pc.count_distinct(col).as_py() * 4 <= max(len(col), 1)
    ]
