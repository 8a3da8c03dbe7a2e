"""The seam's SQL pieces (custtool.engines.sql) one by one in DuckDB, on rows small enough
to check by hand: the duplicates dropped in one pass (dedupe_sql), the row accounting
(days_sql), the as-of cut (used_sql) and the per-customer pieces (customer_sums_sql,
sale_days_sql, early_money_sql, order_counts_sql) the engine's aggregates come from."""

from __future__ import annotations

import duckdb
import pytest

from custtool.engines import sql as S

# (rn, customer position c (-1 unmatched), order id hash oh (None: no order id), day d
# (None: no valid time), hour, net cents a, refund r)
ROWS = [
    (0, 0, 11, 10, 9, 1000, False),  # order 11, first line
    (1, 0, 11, 10, 9, 1000, False),  # exact duplicate of row 0: dropped
    (2, 0, 11, 12, 9, 500, False),  # order 11's second line, two days later
    (3, 0, None, 12, 8, 200, False),  # no order id: an order by itself
    (4, 0, None, 12, 8, 200, False),  # the same again: never a duplicate without an id
    (5, 0, 12, 5, 9, -300, True),  # a refund before the first purchase day
    (6, 1, 13, 101, 9, 400, False),  # after the as-of day (100)
    (7, -1, 14, 50, 9, 900, False),  # matches nobody
    (8, -1, 14, 50, 9, 900, False),  # matches nobody, the same again: listed twice
    (9, 1, 15, None, 0, 300, False),  # no valid time
    (10, 1, 16, 90, 9, 700, False),  # order 16 in the window
    (11, 1, 16, 90, 9, -700, True),  # order 16 refunded the same day
    (12, 2, 17, 40, 9, -100, True),  # a customer with only a refund
]
AS_OF = 100


@pytest.fixture()
def con():
    con = duckdb.connect()

    def ts(d: int | None, h: int) -> str:
        if d is None:
            return "NULL"
        return f"TIMESTAMP '1970-01-01' + INTERVAL {d} DAY + INTERVAL {h} HOUR"

    values = ", ".join(
        f"({rn}, {c}, {'NULL' if oh is None else oh}, {ts(d, h)}, {a}, {str(r).upper()})"
        for rn, c, oh, d, h, a, r in ROWS
    )
    con.execute(
        "CREATE TABLE raw AS SELECT rn, CAST(c AS INTEGER) AS c, CAST(oh AS UBIGINT) AS oh, t, "
        "CAST(date_diff('day', DATE '1970-01-01', CAST(t AS DATE)) AS INTEGER) AS d, "
        "CAST(a AS BIGINT) AS a, r, CAST(rn % 4 AS INTEGER) AS code "
        f"FROM (VALUES {values}) v(rn, c, oh, t, a, r)"
    )
    yield con
    con.close()


def rows(con, sql: str) -> list[tuple]:
    return con.sql(sql).fetchall()


def test_dedupe_days_and_the_as_of_cut(con):
    ded = S.dedupe_sql(S.DUCKDB, "SELECT * FROM raw", rn_max=12)
    con.execute(f"CREATE TABLE ded AS {ded}")
    # 13 rows, 12 groups: row 1 folded into row 0 (which keeps its row number and code);
    # rows 3/4 (no id) and 7/8 (unmatched) stay apart
    got = rows(con, "SELECT rn, n, how FROM ded ORDER BY rn")
    assert [r[0] for r in got] == [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert dict((r[0], r[1]) for r in got)[0] == 2 and sum(r[1] for r in got) == 13
    assert dict((r[0], r[2]) for r in got)[0] == 0  # row 0's code (0 % 4), not row 1's
    # the accounting: rows and rows left per (day, matched)
    acc = rows(con, f"SELECT d, matched, n, g FROM ({S.days_sql('ded')}) ORDER BY d, matched")
    assert (None, True, 1, 1) in acc  # the row without a valid time
    assert (50, False, 2, 2) in acc  # the unmatched rows, both kept
    assert (10, True, 2, 1) in acc  # a duplicate: 2 rows, 1 left
    assert (101, True, 1, 1) in acc  # after the as-of day
    used = S.used_sql("ded", AS_OF)
    assert rows(con, f"SELECT count(*) FROM ({used})") == [(8,)]
    assert sorted(r[0] for r in rows(con, f"SELECT rn FROM ({used})")) == [
        0,
        2,
        3,
        4,
        5,
        10,
        11,
        12,
    ]


def test_the_per_customer_pieces_by_hand(con):
    con.execute(f"CREATE TABLE ded AS {S.dedupe_sql(S.DUCKDB, 'SELECT * FROM raw', rn_max=12)}")
    con.execute(f"CREATE VIEW used AS {S.used_sql('ded', AS_OF)}")
    con.execute(f"CREATE TABLE sums AS {S.customer_sums_sql('used', AS_OF, 30, 30)}")
    sums = {
        r[0]: r[1:]
        for r in rows(con, "SELECT c, historical_value, monetary, first_d, last_d FROM sums")
    }
    # customer 0: 1000 + 500 + 200 + 200 − 300; first purchase day 10 (the refund on day 5
    # is no purchase), last 12; nothing in the 30 days before day 100
    assert sums[0] == (1600, 0, 10, 12)
    assert sums[1] == (0, 0, 90, 90)  # 700 − 700 on day 90, in the window
    assert sums[2] == (-100, 0, None, None)  # only a refund: no purchase day
    days = dict(rows(con, S.sale_days_sql(S.DUCKDB, "used", 5, AS_OF)))
    assert days == {0: 2, 1: 1}  # days 10 and 12; day 90; customer 2 has none
    early = dict(rows(con, S.early_money_sql("used", "sums")))
    # money up to the first purchase day: 1000 (day 10) − 300 (day 5) → repeat value 900;
    # customer 1: 0 → 0; customer 2 has no purchase day: nothing on or before day 0
    assert early == {0: 700, 1: 0}
    con.execute(
        f"CREATE TABLE orders AS {S.orders_sql(S.DUCKDB, 'used', AS_OF, 30, portrait=False)}"
    )
    counts = {
        r[0]: r[1:]
        for r in rows(
            con,
            f"SELECT c, orders_total, frequency FROM ({S.order_counts_sql('orders', AS_OF, 30)})",
        )
    }
    # customer 0: order 11 (day 10) and the two rows without an id; the refund is no order;
    # customer 1: order 16 (day 90, in the window); customer 2: none
    assert counts == {0: (3, 0), 1: (1, 1)}


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("O1", "O1"),
        (" O1", "O1"),
        ("O1\u3000", "O1"),
        ("\tO2\t", "O2"),
        ("O 1", "O 1"),
        ("", None),
        ("  ", None),
        ("\u3000", None),
        (None, None),
    ],
)
def test_order_ids_trimmed_only_when_an_end_needs_it(raw, want):
    """DuckDB's guard (no trim when neither end is a trim character) gives what the full
    trim gives: blank → NULL, the ends' spaces, tabs and 　 dropped, inner spaces kept."""
    con = duckdb.connect()
    lit = "NULL" if raw is None else S.quote(raw)
    expr = S.order_id_expr(S.DUCKDB, "x")
    got = con.sql(f"SELECT {expr} FROM (SELECT CAST({lit} AS VARCHAR) AS x)").fetchall()[0][0]
    assert got == want
    assert "contains(" in expr and "contains(" not in S.order_id_expr(S.SPARK, "x")


def test_portrait_channels_ranked_and_the_best_slot_without_a_window():
    """Counted orders (customer, channel code, slot code) → every channel ranked (most
    orders first, ties by code) and the one best slot (most orders, ties the smaller;
    slot −1, a time at 00:00, never counts)."""
    con = duckdb.connect()
    # (c, ch, slot) per order; 2-hour slots: codes packed as (ch + 1) × 25 + slot + 1
    orders = [(0, 1, 3), (0, 1, 3), (0, 0, 5), (0, 1, 5), (0, 0, 1)]
    orders += [(1, -1, 7), (1, -1, -1), (1, -1, -1)]
    orders += [(2, 0, 20), (2, 0, 20), (2, 0, 2)]
    values = ", ".join(f"({c}, {(ch + 1) * 25 + slot + 1})" for c, ch, slot in orders)
    con.execute(f"CREATE TABLE o AS SELECT * FROM (VALUES {values}) v(c, f)")
    sql = S.portrait_orders_sql(
        S.DUCKDB, "unused", 100, 365, n_ch=2, slot_hours=2, rn_max=10, orders="o"
    )
    got = sorted(con.sql(sql).fetchall())
    assert [r for r in got if r[1] == 1] == [(0, 1, 0, 1), (0, 1, 1, 0), (2, 1, 0, 0)]
    # customer 0: slots 3 and 5 twice each → 3; customer 1: 7 (−1 left out); customer 2: 20
    assert [(r[0], r[2]) for r in got if r[1] == 0] == [(0, 3), (1, 7), (2, 20)]
    assert all(r[3] == 0 for r in got if r[1] == 0)


def test_amounts_too_large_for_cents_count_as_zero_in_every_engine(tmp_path):
    # a Parquet of orders with inf or 1e18 amounts (not from today's import, which rejects
    # them): the DuckDB engine failed casting the cents to BIGINT (exit 3), pandas warned
    # "overflow encountered in multiply" and kept inf; both now count them as 0, as NaN
    import warnings

    import pandas as pd
    from typer.testing import CliRunner

    from custtool.cli import app

    orders = tmp_path / "orders.parquet"
    pd.DataFrame(
        {
            "order_id": ["O1", "O2", "O3", "O4"],
            "customer_id": ["C1", "C2", "C2", "C3"],
            "order_time": pd.to_datetime(["2024-01-05", "2024-01-06", "2024-01-07", "2024-01-08"]),
            "amount": [float("inf"), 1e18, 100.0, -float("inf")],
        }
    ).to_parquet(orders)
    con = duckdb.connect()
    expr = S.amount_expr(S.DUCKDB, "amount", "double")
    assert con.sql(f"SELECT {expr} FROM '{orders}'").fetchall() == [(0,), (0,), (10000,), (0,)]
    monetary = {}
    for engine in ("pandas", "duckdb"):
        out = tmp_path / f"{engine}.parquet"
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            r = CliRunner().invoke(
                app, ["segment", "--orders", str(orders), "--engine", engine, "-o", str(out)]
            )
        assert r.exit_code == 0, (engine, r.output)
        monetary[engine] = pd.read_parquet(out).set_index("customer_id")["monetary"].to_dict()
    assert monetary["pandas"] == monetary["duckdb"] == {"C1": 0.0, "C2": 100.0, "C3": 0.0}
