"""The DuckDB aggregation of order lines into per-customer arrays (``engine="duckdb"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def aggregate_orders(c, day, amt, refund, ocode, n, as_of_day, win, gwin) -> dict[str, np.ndarray]:
    """The same aggregation as :func:`_aggregate`, as SQL in DuckDB."""
    try:
        import duckdb
    except ImportError:
        from custtool.errors import ConfigError

        raise ConfigError(
            "--engine duckdb needs the duckdb package",
            "pip install 'custtool[duckdb]' (or pip install duckdb)",
        ) from None
    import numpy as np
    import pandas as pd

    o = np.where(ocode >= 0, ocode, int(ocode.max(initial=0)) + 1 + np.arange(len(ocode)))
    lines = pd.DataFrame({"c": c, "d": day, "a": amt, "r": refund, "o": o})
    con = duckdb.connect()
    try:
        con.register("lines", lines)
        sql = f"""
        WITH sale AS (SELECT c, o, min(d) AS d FROM lines WHERE NOT r GROUP BY c, o),
        ord AS (
          SELECT c, count(*) AS orders_total,
            count(*) FILTER (WHERE {as_of_day} - d < 30) AS orders_30d,
            count(*) FILTER (WHERE {as_of_day} - d < 90) AS orders_90d,
            count(*) FILTER (WHERE {as_of_day} - d < 365) AS orders_365d,
            count(*) FILTER (WHERE {as_of_day} - d < {win}) AS frequency
          FROM sale GROUP BY c),
        span AS (SELECT c, min(d) AS first_d, max(d) AS last_d, count(DISTINCT d) AS n_days
                 FROM lines WHERE NOT r GROUP BY c),
        money AS (
          SELECT l.c, sum(a) AS historical_value,
            coalesce(sum(a) FILTER (WHERE {as_of_day} - l.d < 30), 0) AS monetary_30d,
            coalesce(sum(a) FILTER (WHERE {as_of_day} - l.d < 90), 0) AS monetary_90d,
            coalesce(sum(a) FILTER (WHERE {as_of_day} - l.d < 365), 0) AS monetary_365d,
            coalesce(sum(a) FILTER (WHERE {as_of_day} - l.d < {win}), 0) AS monetary,
            coalesce(sum(a) FILTER (WHERE {as_of_day} - l.d < {gwin}), 0) AS monetary_g,
            coalesce(sum(a) FILTER (WHERE {as_of_day} - l.d >= {gwin} AND {as_of_day} - l.d < {2 * gwin}), 0) AS monetary_prev,
            coalesce(sum(a) FILTER (WHERE l.d > s.first_d), 0) AS repeat_value
          FROM lines l LEFT JOIN span s USING (c) GROUP BY l.c)
        SELECT m.*, o.orders_total, o.orders_30d, o.orders_90d, o.orders_365d, o.frequency,
               s.first_d, s.last_d, s.n_days
        FROM money m LEFT JOIN ord o USING (c) LEFT JOIN span s USING (c)
        """
        res = con.execute(sql).df()
    finally:
        con.close()
    idx = res["c"].to_numpy(np.int64)

    def full(col: str, dtype: str = "float64", fill: float = 0) -> np.ndarray:
        arr = np.full(n, fill, dtype=dtype)
        arr[idx] = res[col].fillna(fill).to_numpy(dtype)
        return arr

    out: dict[str, Any] = {}  # arrays, plus the scalar "_orders_used"
    for col in (
        "historical_value",
        "monetary_30d",
        "monetary_90d",
        "monetary_365d",
        "monetary",
        "monetary_prev",
    ):
        out[col] = np.round(full(col), 2)
    out["_monetary_g"] = np.round(full("monetary_g"), 2)
    for col in ("orders_total", "orders_30d", "orders_90d", "orders_365d", "frequency"):
        out[col] = full(col, "int64")
    out["_orders_used"] = np.int64(out["orders_total"].sum())
    has = out["orders_total"] > 0
    out["_first"] = np.where(has, full("first_d", "int64"), 0)
    out["_last"] = np.where(has, full("last_d", "int64"), 0)
    out["_has"] = has
    out["bg_x"] = np.where(has, full("n_days", "int64") - 1, 0)
    rv = np.round(full("repeat_value"), 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["bg_repeat_avg"] = np.where(out["bg_x"] > 0, rv / np.maximum(out["bg_x"], 1), np.nan)
    return out
