"""The metrics seam as SQL, written once for DuckDB and Spark SQL (SPEC J1, J2).

The queries reproduce :func:`custtool.metrics.customer_metrics` exactly (see its module for
the definitions): order times in the firm's time zone cut into calendar days; amounts
rounded to cents (half to even, as numpy) and summed as integer cents, so every engine gets
the same money to the cent; refund lines (negative, or flagged) are not orders; exact
duplicate rows (same customer, order id, time and amount) count once, the first in file
order; an order is one (customer, order id), dated by its earliest sale line; a row without
an order id is an order by itself.

Only what differs between the engines is a :class:`Dialect` (a day number, half-to-even
rounding, trimming, the string type, NULL-safe equality, "the value at the smallest
row"). Conditional sums are ``sum(CASE WHEN … THEN … ELSE 0 END)`` (``FILTER`` is not
Spark). The queries work on names the caller gives: ``src`` (the order rows with a
row number ``rn``) and ``keymap`` (distinct key tuples → customer position, built in pandas
by the one matcher, :mod:`custtool.attribution`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the key columns of order rows the matcher reads (customer id, channel columns, phone,
#: email), in the order :meth:`custtool.attribution.CustomerIndex.match` uses them
KEY_COLUMNS = ("customer_id", "_channel", "channel", "phone", "email")
#: what encode_text trims around ids and text flags
TRIM = " \t\r\n\u3000"
#: refund flag texts (custtool.metrics._TRUE_TEXT)
TRUE_TEXT = ("true", "1", "yes", "y", "t", "是", "退款", "已退款", "refund", "refunded")


@dataclass(frozen=True)
class Dialect:
    name: str
    string: str  # the string type name for CAST
    day: str  # "{t}" → int day number since 1970-01-01 of a local timestamp
    round_even: str  # "{x}" → x rounded half to even to an integer (as a double)
    trim: str  # "{x}" → x with the TRIM characters removed at both ends
    nulleq: str  # "{a}", "{b}" → NULL-safe equality
    min_by: str  # "{v}", "{k}" → v at the smallest k
    is_nan: str  # "{x}" → x is NaN
    ident: str  # "{n}" → the quoted identifier n
    hash: str  # "{x}" → a 64-bit hash of one or more comma-separated values
    idiv: str  # "{a}", "{b}" → integer division of non-negative integers

    def q(self, name: str) -> str:
        return self.ident.format(n=name.replace(self.ident[0], self.ident[0] * 2))

    def f(self, template: str, **kw: str) -> str:
        return template.format(**kw)


def quote(text: str) -> str:
    """``text`` (a value, a path) as a SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


DUCKDB = Dialect(
    name="duckdb",
    string="VARCHAR",
    day="date_diff('day', DATE '1970-01-01', CAST({t} AS DATE))",
    round_even="round_even({x}, 0)",
    trim="trim({x}, " + quote(TRIM) + ")",
    nulleq="{a} IS NOT DISTINCT FROM {b}",
    min_by="min_by({v}, {k})",
    is_nan="isnan({x})",
    ident='"{n}"',
    hash="hash({x})",
    idiv="({a}) // ({b})",
)

SPARK = Dialect(
    name="spark",
    string="STRING",
    day="datediff(CAST({t} AS DATE), DATE '1970-01-01')",
    round_even="bround({x}, 0)",
    trim="trim(BOTH " + quote(TRIM) + " FROM {x})",
    nulleq="{a} <=> {b}",
    min_by="min_by({v}, {k})",
    is_nan="isnan({x})",
    ident="`{n}`",
    hash="xxhash64({x})",
    idiv="({a}) div ({b})",
)


def key_columns(columns: list[str]) -> list[str]:
    """The matcher's key columns present among ``columns``."""
    return [c for c in KEY_COLUMNS if c in columns]


def distinct_keys_sql(dialect: Dialect, src: str, keys: list[str], text: bool = False) -> str:
    """The distinct key tuples of the order rows: each key as it is (for the matcher) and
    the tuple's 64-bit hash ``kh`` (the join key when no two tuples share it); with
    ``text``, also as text (``k_<name>``, the join key when two tuples share a hash; NULL
    stays NULL)."""
    q = dialect.q
    raw = ", ".join(q(k) for k in keys)
    txt = "".join(f", CAST({q(k)} AS {dialect.string}) AS {q('k_' + k)}" for k in keys)
    kh = dialect.f(dialect.hash, x=raw)
    return (
        f"SELECT {raw}{txt if text else ''}, {kh} AS kh FROM (SELECT DISTINCT {raw} FROM {src}) k"
    )


#: amounts of this size or more are not money (``"9" * 400`` reads as inf): import rejects
#: them (normalize.normalize_amount) and the engines count them as 0, as a missing amount —
#: cents are summed as 64-bit integers (DuckDB refused 1e15 yuan with a conversion error)
MAX_AMOUNT = 1e12


def amount_expr(dialect: Dialect, col: str, kind: str) -> str:
    """Amount → integer cents before the refund sign (NULL/NaN/not a number → 0, as is an
    amount of 1e12 or more, inf included: import rejects those, and they overflow BIGINT)."""

    if kind == "string":
        x = f"TRY_CAST({dialect.f(dialect.trim, x=col)} AS DOUBLE)"
        if dialect.name == "spark":
            x = f"CAST({dialect.f(dialect.trim, x=col)} AS DOUBLE)"
    else:
        x = f"CAST({col} AS DOUBLE)"
    cents = dialect.f(dialect.round_even, x=f"{x} * 100.0")
    nan = dialect.f(dialect.is_nan, x=x)
    huge = f"abs({x}) >= {MAX_AMOUNT:.0f}"
    return f"CAST(CASE WHEN {x} IS NULL OR {nan} OR {huge} THEN 0 ELSE {cents} END AS BIGINT)"


def refund_expr(dialect: Dialect, col: str | None, kind: str) -> str:
    """The refund flag column → boolean (real booleans, numbers ≠ 0, or 是/退款/true/…)."""
    if col is None:
        return "FALSE"
    if kind == "bool":
        return f"coalesce({col}, FALSE)"
    if kind == "number":
        return f"coalesce(CAST({col} AS DOUBLE) <> 0, FALSE)"
    words = ", ".join(quote(w) for w in TRUE_TEXT)
    trimmed = dialect.f(dialect.trim, x=f"CAST({col} AS {dialect.string})")
    return f"coalesce(lower({trimmed}) IN ({words}), FALSE)"


def order_id_expr(dialect: Dialect, col: str | None) -> str:
    """The trimmed order id as text, NULL when blank (a row that is an order by itself)."""
    if col is None:
        return f"CAST(NULL AS {dialect.string})"
    x = f"CAST({col} AS {dialect.string})"
    t = dialect.f(dialect.trim, x=x)
    trimmed = f"CASE WHEN {t} = '' THEN NULL ELSE {t} END"
    if dialect.name != "duckdb":
        return trimmed
    # DuckDB's trim of a character set costs ~4× a hash per row: an id whose first and last
    # characters are not among them is its own trim (measured 2.2 s less CPU at 10M rows)
    chars = quote(TRIM)
    return (
        f"CASE WHEN NOT contains({chars}, left({x}, 1)) AND NOT contains({chars}, right({x}, 1))"
        f" THEN {x} ELSE {trimmed} END"
    )


def line_code(n_ch: int, n_cat: int) -> tuple[str, int]:
    """A line's match code ``how`` (0–3) and the portrait's channel and category label codes
    (-1 none) as one number in mixed radix [HOW_CODES, n_ch + 1, n_cat + 1], and its range."""
    sizes = [HOW_CODES, n_ch + 1, n_cat + 1]
    return f"(how * {sizes[1]} + ch + 1) * {sizes[2]} + cat + 1", sizes[0] * sizes[1] * sizes[2]


def lines_sql(
    dialect: Dialect,
    src: str,
    keymap: str,
    keys: list[str],
    *,
    time_expr: str,
    amount: str,
    refund: str,
    order_id: str,
    by_hash: bool = True,
    channel: bool = False,
    category: tuple[str, str] | None = None,
    n_ch: int = 0,
    n_cat: int = 0,
) -> str:
    """One narrow row per order row: rn, customer position ``c`` (-1 unmatched), match code
    ``how``, local time ``t`` (NULL: not a valid time), day ``d``, the order id's 64-bit hash
    ``oh`` (NULL: no order id, the row is an order by itself), net cents ``a`` (refund-flagged
    rows negative) and ``r`` (a refund line). ``by_hash``: join the key map on the key
    tuple's hash (exact when the caller checked no two tuples share one), else on the keys
    as text. For the portrait: ``ch``, the channel's label
    code (``channel``: the key map carries it; -1 none) and ``cat``, the category's
    (``category``: (the label map's name, the column): joined on the value; -1 none), packed
    with ``how`` into one ``code`` (:func:`line_code`: ``n_ch``/``n_cat`` labels) so the
    table held is narrower."""
    q = dialect.q
    ch = "coalesce(km.ch, -1)" if channel else "-1"
    cat, cat_join = "-1", ""
    if category is not None:
        cat = "coalesce(cm.k, -1)"
        cat_join = f" LEFT JOIN {category[0]} cm ON s.{q(category[1])} = cm.v"
    if by_hash:
        on = "km.kh = " + dialect.f(dialect.hash, x=", ".join(f"s.{q(k)}" for k in keys))
    else:
        on = " AND ".join(
            dialect.f(
                dialect.nulleq, a=f"CAST(s.{q(k)} AS {dialect.string})", b=f"km.{q('k_' + k)}"
            )
            for k in keys
        )
    oh = f"CASE WHEN o IS NULL THEN NULL ELSE {dialect.f(dialect.hash, x='o')} END"
    code, m = line_code(n_ch, n_cat)
    code_type = "INTEGER" if m < (1 << 31) else "BIGINT"
    return f"""
    SELECT rn, CAST(c AS INTEGER) AS c, t,
      CAST({dialect.f(dialect.day, t="t")} AS INTEGER) AS d, {oh} AS oh,
      CASE WHEN rf THEN -abs(a0) ELSE a0 END AS a, (rf OR a0 < 0) AS r,
      CAST({code} AS {code_type}) AS code
    FROM (
      SELECT s.rn AS rn, coalesce(km.c, -1) AS c, coalesce(km.how, 0) AS how,
        {time_expr} AS t, {order_id} AS o, {amount} AS a0, {refund} AS rf, {ch} AS ch,
        {cat} AS cat
      FROM {src} s LEFT JOIN {keymap} km ON {on}{cat_join}
    ) x"""


def days_sql(ded: str) -> str:
    """Order rows (``n``) and rows left after dropping exact duplicates (``g``) per order day
    (NULL: no valid time) and customer found or not, of :func:`dedupe_sql`'s table: a small
    table (days × 2) from which the row accounting and the latest day are read."""
    return f"""
    SELECT d, (c >= 0) AS matched, CAST(sum(n) AS BIGINT) AS n, count(*) AS g FROM {ded}
    GROUP BY d, (c >= 0)"""


#: the match code (0 none, 1 id, 2 phone, 3 email) and the portrait's label codes are packed
#: below the row number (``rn * M + code``), so "the first row's codes" is one ``min``
#: (cheaper than ``min_by`` over a group per row) when ``rn × M`` fits in 62 bits
HOW_CODES = 4
PACK_LIMIT = 1 << 62


def _unpack(dialect: Dialect, x: str, sizes: list[int]) -> list[str]:
    """The codes packed in ``x`` as mixed radix ``sizes`` (the first the most significant,
    unbounded)."""
    outs, div = [], 1
    for size in reversed(sizes[1:]):
        outs.append(
            f"({dialect.f(dialect.idiv, a=x, b=str(div))}) % {size}" if div > 1 else f"{x} % {size}"
        )
        div *= size
    outs.append(dialect.f(dialect.idiv, a=x, b=str(div)))
    return outs[::-1]


def dedupe_sql(
    dialect: Dialect,
    lines: str,
    *,
    n_ch: int = 0,
    n_cat: int = 0,
    rn_max: int = 0,
) -> str:
    """The order rows of :func:`lines_sql` (a query, not held) with exact duplicates (same
    customer, order id, time, amount) once, in one pass from the file: the first in file
    order keeps its row number, match code and the portrait's channel and category codes
    (``n_ch``/``n_cat`` labels, as given to :func:`lines_sql`; -1 none); ``n`` counts the
    rows it stands for. A row without an order id, or matching no customer, is never a
    duplicate (its row number is in its key: the unmatched rows are listed one by one).
    Grouping before the as-of cut is the same as after it: duplicates share their time, so
    their day (:func:`used_sql` cuts). The time is held as its day ``d`` (NULL: no valid
    time) and minutes since midnight ``mi`` (the portrait's slot) — narrower than a
    timestamp; the attributed orders read the time from the file again. ``rn_max``: the largest row number (whether the codes
    fit below it)."""
    sizes = [HOW_CODES, n_ch + 1, n_cat + 1]
    m = sizes[0] * sizes[1] * sizes[2]
    code = "CAST(code AS BIGINT)"  # packed by lines_sql (line_code) with the same sizes
    if (int(rn_max) + 1) * m < PACK_LIMIT:
        first = f"min(rn * {m} + {code}) AS rh"
        rn, rest = _unpack(dialect, "rh", [0, m])
    else:  # too many labels to pack: the value at the smallest row number
        first = f"min(rn) AS rn0, {dialect.f(dialect.min_by, v=code, k='rn')} AS rest"
        rn, rest = "rn0", "rest"
    how, ch1, cat1 = _unpack(dialect, f"({rest})", sizes)
    # the table is held: the row count as narrow as it can be (it spills less)
    count = "INTEGER" if int(rn_max) < (1 << 31) - 1 else "BIGINT"
    return f"""
    SELECT c, oh, a, r, d, CAST(hour(t) * 60 + minute(t) AS SMALLINT) AS mi, {rn} AS rn,
      CAST({how} AS TINYINT) AS how,
      CAST({ch1} - 1 AS INTEGER) AS ch, CAST({cat1} - 1 AS INTEGER) AS cat,
      CAST(n AS {count}) AS n FROM (
      SELECT c, oh, a, r, t, min(d) AS d, {first}, count(*) AS n FROM ({lines}) l
      GROUP BY c, oh, t, a, r, CASE WHEN oh IS NULL OR c < 0 THEN rn END) g"""


def used_sql(ded: str, as_of_day: int) -> str:
    """The rows used, from :func:`dedupe_sql`'s table: matched, a valid time on or before the
    as-of day, exact duplicates once."""
    return f"""
    SELECT c, oh, a, r, d, mi, rn, how, ch, cat FROM {ded}
    WHERE d IS NOT NULL AND d <= {int(as_of_day)} AND c >= 0"""


def portrait_categories_sql(used: str, as_of_day: int, win: int, top: int) -> str:
    """Each customer's top ``top`` categories (:func:`custtool.portrait.portrait_columns`'
    rule): net cents per (customer, category label) of the rows used in the metrics window,
    positive sums only, most first, ties by the label (codes in code-point order); rows of
    (customer, code, rank 0 = top)."""
    A, W = int(as_of_day), int(win)
    return f"""
    SELECT CAST(c AS INTEGER) AS c, CAST(k AS INTEGER) AS k, CAST(rank AS INTEGER) AS rank
    FROM (
      SELECT c, k, row_number() OVER (PARTITION BY c ORDER BY v DESC, k) - 1 AS rank FROM (
        SELECT c, cat AS k, sum(a) AS v FROM {used}
        WHERE {A} - d < {W} AND cat >= 0 GROUP BY c, cat HAVING sum(a) > 0) g) r
    WHERE rank < {max(int(top), 1)}"""


def _portrait_code(dialect: Dialect, n_ch: int, slot_hours: int) -> tuple[str, list[int]]:
    """The portrait's code of a line (its channel label and time slot,
    :func:`~custtool.portrait.slot_of`) and the mixed radix it is packed in."""
    hours = int(slot_hours)
    per_day = 24 // hours
    n_slot = 2 * per_day + 1
    mins = "mi"  # minutes since midnight (dedupe_sql)
    weekend = "CASE WHEN ((d % 7) + 10) % 7 >= 5 THEN 1 ELSE 0 END"
    hour_slot = dialect.f(dialect.idiv, a="mi", b=str(60 * hours))
    slot = f"CASE WHEN {mins} > 0 THEN {weekend} * {per_day} + {hour_slot} ELSE -1 END"
    return f"(ch + 1) * {n_slot} + ({slot}) + 1", [n_ch + 1, n_slot]


def orders_fit(n_ch: int, slot_hours: int, rn_max: int) -> bool:
    """Whether :func:`orders_sql` can pack the portrait's code below the row number."""
    m = (n_ch + 1) * (2 * (24 // int(slot_hours)) + 1)
    return (int(rn_max) + 1) * m < PACK_LIMIT


def orders_sql(
    dialect: Dialect,
    used: str,
    as_of_day: int,
    win: int,
    *,
    n_ch: int = 0,
    slot_hours: int = 0,
    portrait: bool = False,
) -> str:
    """One row per order of the rows used — (customer, order id), a row without an order id
    an order by itself — that has a sale line (not a refund): ``d``, the day of its
    earliest sale line (what the order counts are dated by), and with ``portrait`` ``f``:
    the portrait's code (channel, time slot) of its first line in file order among its sale
    lines (amount > 0) in the metrics window, NULL when it has none (then the portrait does
    not count it). One pass for the aggregates' order counts and the portrait's (the caller
    checks :func:`orders_fit`)."""
    A, W = int(as_of_day), int(win)
    if portrait:
        code, sizes = _portrait_code(dialect, n_ch, slot_hours)
        m = sizes[0] * sizes[1]
        f = f"min(CASE WHEN {A} - d < {W} AND a > 0 THEN rn * {m} + {code} END) % {m}"
    else:
        f = "CAST(NULL AS BIGINT)"
    return f"""
    SELECT c, od AS d, f FROM (
      SELECT c, min(d) AS od, {f} AS f FROM {used} WHERE NOT r
      GROUP BY c, oh, CASE WHEN oh IS NULL THEN rn END) g"""


def portrait_orders_sql(
    dialect: Dialect,
    used: str,
    as_of_day: int,
    win: int,
    *,
    n_ch: int,
    slot_hours: int,
    rn_max: int,
    orders: str | None = None,
) -> str:
    """Counted orders (:func:`custtool.portrait.order_groups`: in the metrics window, sale
    lines (amount > 0), one per (customer, order id) — its first line in file order, whose
    channel and time slot count, :func:`~custtool.portrait.slot_of`), ranked per customer:
    rows ``by_ch`` 1 — every channel bought through (``k``, rank 0 = the most orders, ties by
    the label: codes in code-point order); ``by_ch`` 0 — the slot with the most orders
    (ties: the smaller slot, 工作日 before 周末, then the earlier). ``orders``: the table of
    :func:`orders_sql` (with ``portrait``), whose ``f`` already holds each order's code;
    else the orders are grouped here from ``used``."""
    A, W = int(as_of_day), int(win)
    code, sizes = _portrait_code(dialect, n_ch, slot_hours)
    m = sizes[0] * sizes[1]
    if (int(rn_max) + 1) * m < PACK_LIMIT:
        first = f"min(rn * {m} + {code}) % {m}"
    else:
        first = dialect.f(dialect.min_by, v=code, k="rn")
    ch1, slot1 = _unpack(dialect, "f", sizes)
    if orders is not None:
        grouped = f"SELECT c, f FROM {orders} WHERE f IS NOT NULL"
    else:
        grouped = f"""SELECT c, {first} AS f FROM {used}
        WHERE {A} - d < {W} AND a > 0
        GROUP BY c, oh, CASE WHEN oh IS NULL THEN rn END"""

    # the best slot without a window (a sort per customer): (customer, slot) as one key,
    # then per customer the largest count × n_slot + (n_slot − 1 − slot) — most orders, ties
    # the smaller slot (the slots lie in [0, n_slot − 1), the radix of their code)
    n_slot = sizes[1]
    best = f"max(n * {n_slot} + ({n_slot} - 1 - slot))"
    k = f"CAST(c AS BIGINT) * {n_slot} + slot"
    slot_best = f"""
      SELECT c, 0 AS by_ch, {n_slot} - 1 - ({best}) % {n_slot} AS k, 0 AS rank FROM (
        SELECT {dialect.f(dialect.idiv, a="k", b=str(n_slot))} AS c, k % {n_slot} AS slot,
          count(*) AS n
        FROM (SELECT {k} AS k FROM o WHERE slot >= 0) s
        GROUP BY k) g
      GROUP BY c"""
    return f"""
    WITH o AS (
      SELECT c, CAST({ch1} - 1 AS INTEGER) AS ch, CAST({slot1} - 1 AS INTEGER) AS slot FROM (
        {grouped}) g)
    SELECT CAST(c AS INTEGER) AS c, by_ch, CAST(k AS INTEGER) AS k,
      CAST(rank AS INTEGER) AS rank
    FROM (
      SELECT c, 1 AS by_ch, ch AS k,
        row_number() OVER (PARTITION BY c ORDER BY count(*) DESC, ch) - 1 AS rank
      FROM o WHERE ch >= 0 GROUP BY c, ch
      UNION ALL{slot_best}) r"""


def customer_sums_sql(used: str, as_of_day: int, win: int, gwin: int) -> str:
    """Per customer position ``c`` straight from the rows used (one GROUP BY to ~customers
    rows, no per-day table): money (integer cents) by window and the first and last
    purchase day (the days with a sale line, not a refund)."""
    A, W, G = int(as_of_day), int(win), int(gwin)

    def money(cond: str) -> str:
        return f"CAST(sum(CASE WHEN {cond} THEN a ELSE 0 END) AS BIGINT)"

    return f"""
    SELECT c, CAST(sum(a) AS BIGINT) AS historical_value,
      {money(f"{A} - d < 30")} AS monetary_30d, {money(f"{A} - d < 90")} AS monetary_90d,
      {money(f"{A} - d < 365")} AS monetary_365d, {money(f"{A} - d < {W}")} AS monetary,
      {money(f"{A} - d < {G}")} AS monetary_g,
      {money(f"{A} - d >= {G} AND {A} - d < {2 * G}")} AS monetary_prev,
      min(CASE WHEN NOT r THEN d END) AS first_d, max(CASE WHEN NOT r THEN d END) AS last_d
    FROM {used} GROUP BY c"""


def sale_days_sql(dialect: Dialect, used: str, first_day: int, as_of_day: int) -> str:
    """Per customer position ``c``: ``n_days``, the distinct days with a sale line. The
    (customer, day) pairs are one integer (``c × span + day − first_day``, days of the rows
    used lie in [first_day, as_of_day]): one key hashes faster than two."""
    span = max(int(as_of_day) - int(first_day) + 1, 1)
    key = f"CAST(c AS BIGINT) * {span} + (d - {int(first_day)})"
    return f"""
    SELECT CAST({dialect.f(dialect.idiv, a="k", b=str(span))} AS INTEGER) AS c,
      CAST(count(*) AS BIGINT) AS n_days
    FROM (SELECT DISTINCT {key} AS k FROM {used} WHERE NOT r) s
    GROUP BY {dialect.f(dialect.idiv, a="k", b=str(span))}"""


def early_money_sql(used: str, sums: str) -> str:
    """Per customer position ``c``: ``m``, the money up to and including the first purchase
    day (that day's, sale and refund lines, and the refund-only days before it; without a
    purchase day, days ≤ 0) — ``repeat_value`` is all money less this. ``sums``: the table
    of :func:`customer_sums_sql`."""
    return f"""
    SELECT u.c AS c, CAST(sum(u.a) AS BIGINT) AS m FROM {used} u JOIN {sums} s ON u.c = s.c
    WHERE u.d <= coalesce(s.first_d, 0) GROUP BY u.c"""


def order_counts_sql(orders: str, as_of_day: int, win: int) -> str:
    """Per customer position ``c``: orders in all and by window, from the table of
    :func:`orders_sql` (one row per order, dated by its earliest sale line)."""
    A, W = int(as_of_day), int(win)

    def count(cond: str) -> str:
        return f"CAST(sum(CASE WHEN {cond} THEN 1 ELSE 0 END) AS BIGINT)"

    return f"""
    SELECT c, CAST(count(*) AS BIGINT) AS orders_total, {count(f"{A} - d < 30")} AS orders_30d,
      {count(f"{A} - d < 90")} AS orders_90d, {count(f"{A} - d < 365")} AS orders_365d,
      {count(f"{A} - d < {W}")} AS frequency
    FROM {orders} GROUP BY c"""


def matched_by_sql(used: str) -> str:
    return f"SELECT how, count(*) AS n FROM {used} GROUP BY how"
