"""Pivot reports (SPEC E6): rows × columns × values over the segmented customers table.

``pivot(df, rows=["tier"], cols=["channel"], values="monetary:sum,customer_id:count")`` is
``pandas.pivot_table`` with the value spec parsed, the columns checked, segment values in
their canonical order and ``;``-joined list columns (``channels``, ``tags``) counted per value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from custtool import labels as L
from custtool.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

AGGREGATES = ("sum", "count", "mean", "median", "min", "max", "nunique")
LIST_COLUMNS = {"channels", "tags", "phones", "emails", "source_ids"}


def parse_values(spec: str | list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """``"monetary:sum,customer_id:count"`` → ``[("monetary", "sum"), ("customer_id", "count")]``.

    A bare column means ``count``; default: ``customer_id:count``.
    """
    if spec is None or spec == "":
        return [("customer_id", "count")]
    if not isinstance(spec, str):
        return [(str(c), str(a)) for c, a in spec]
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        col, _, agg = part.partition(":")
        agg = (agg or "count").strip().lower()
        if agg not in AGGREGATES:
            raise InputError(
                f"--values {part!r}: unknown aggregate {agg!r}",
                f"use one of: {', '.join(AGGREGATES)}",
            )
        out.append((col.strip(), agg))
    if not out:
        raise InputError("--values is empty", "e.g. --values monetary:sum,customer_id:count")
    return out


def _split_columns(spec: str | list[str] | None) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [c.strip() for c in spec.split(",") if c.strip()]
    return [str(c) for c in spec]


#: names people use for a column the customers table calls otherwise (first present wins)
ALIASES = {
    "channel": ("channels", "source_channel", "_channel"),
    "class": ("rfm_class",),
    "value_tier": ("tier",),
}


def _resolve(df: pd.DataFrame, column: str) -> str:
    if column in df.columns:
        return column
    return next((alt for alt in ALIASES.get(column, ()) if alt in df.columns), column)


#: names that ask for the channel dimension; with the orders, each order counts in its own channel
CHANNEL_DIMENSIONS = {"channel", "channels"}
#: values a channel pivot over the orders can show: requested (column, aggregate) → what is
#: aggregated over the order lines (the customer's spend is the sum of its orders' amounts)
ORDER_VALUES = {
    ("monetary", "sum"): ("amount", "sum"),
    ("customer_id", "count"): ("customer_id", "nunique"),
    ("customer_id", "nunique"): ("customer_id", "nunique"),
    ("frequency", "sum"): ("_order", "nunique"),
}


def _order_rows(
    df: pd.DataFrame, orders: pd.DataFrame, dims: list[str], window: Any
) -> pd.DataFrame:
    """One row per attributed order line inside the metrics window, with the customer's
    attributes ``dims`` and the order's own channel as ``channel``."""
    import numpy as np
    import pandas as pd

    from custtool.attribution import ensure_attributed
    from custtool.dates import parse_days
    from custtool.metrics import refund_flags

    o = ensure_attributed(orders, df)
    if "in_window" in o.columns:  # SegmentResult.orders: net amounts, window marked
        o = o[o["in_window"].fillna(False).astype(bool).to_numpy()]
        amount = pd.to_numeric(o["amount"], errors="coerce").fillna(0).to_numpy(dtype=float)
    else:  # attributed here: exact duplicate lines once, refunds netted, the window before the as-of date
        keys = [c for c in ("order_id", "customer_id", "order_time", "amount") if c in o.columns]
        if "order_id" in o.columns:
            o = o[
                ~(
                    o.duplicated(keys)
                    & (o["order_id"].astype("string").fillna("").str.strip() != "")
                ).to_numpy()
            ]
        amount = (
            pd.to_numeric(o["amount"], errors="coerce").fillna(0).round(2).to_numpy(dtype=float)
        )
        if "refund" in o.columns:
            amount = np.where(refund_flags(o["refund"]), -np.abs(amount), amount)
        t = (
            pd.to_datetime(o["order_time"], errors="coerce").dt.normalize()
            if "order_time" in o.columns
            else None
        )
        as_of = (
            pd.to_datetime(df["as_of"], errors="coerce").max() if "as_of" in df.columns else None
        )
        if t is not None and as_of is not None and not pd.isna(as_of):
            age = (as_of.normalize() - t).dt.days
            keep = ((age >= 0) & (age < parse_days(window, "window"))).to_numpy()
            o, amount = o[keep], amount[keep]
    own = (
        o["channel"].astype("string").fillna("").str.strip()
        if "channel" in o.columns
        else pd.Series("", index=o.index, dtype="string")
    )
    if "_channel" in o.columns:
        own = own.where(own != "", o["_channel"].astype("string").fillna("").str.strip())
    cid = o["customer_id"].astype("string").fillna("").str.strip()
    pos = pd.Series(
        np.arange(len(df)),
        index=df["customer_id"].astype("string").fillna("").str.strip().to_numpy(),
    )
    pos = pos[~pos.index.duplicated()]
    at = cid.map(pos)
    ok = at.notna().to_numpy()  # orders of customers outside the view (role, owner) are left out
    at = at[ok].astype("int64").to_numpy()
    out = pd.DataFrame({c: df[c].to_numpy()[at] for c in dims if c != "channel"})
    out["channel"] = own.to_numpy()[ok]
    out["amount"] = amount[ok]
    out["customer_id"] = cid.to_numpy()[ok]
    oid = (
        o["order_id"].astype("string").fillna("").to_numpy()[ok]
        if "order_id" in o.columns
        else np.arange(int(ok.sum())).astype(str)
    )
    sale = out["amount"].to_numpy() > 0
    out["_order"] = np.where(
        sale, out["customer_id"].to_numpy(dtype=object) + "\x1f" + oid.astype(object), None
    )
    return out


def _aggregate(
    data: pd.DataFrame, keys: list[str], specs: list[tuple[str, str, str, str]]
) -> pd.DataFrame:
    """Per value of ``keys`` (one row when none): columns (value, aggregate) of ``specs``
    = (shown column, shown aggregate, column aggregated, aggregate used)."""
    import pandas as pd

    cols = pd.MultiIndex.from_tuples([(c, a) for c, a, _, _ in specs])
    if not keys:
        return pd.DataFrame([[data[src].agg(agg) for _, _, src, agg in specs]], columns=cols)
    g = data.groupby(keys, observed=True, sort=True)
    out = pd.concat([g[src].agg(agg) for _, _, src, agg in specs], axis=1)
    out.columns = cols
    return out


def _plain_index(index: pd.Index) -> pd.Index:
    """An index with object levels (categorical keys cannot take the totals key)."""
    import pandas as pd

    if isinstance(index, pd.MultiIndex):
        return pd.MultiIndex.from_tuples([tuple(t) for t in index], names=index.names)
    return pd.Index(list(index), dtype=object, name=index.name)


def pivot(
    df: pd.DataFrame,
    rows: str | list[str],
    cols: str | list[str] | None = None,
    values: str | list[tuple[str, str]] | None = None,
    *,
    orders: pd.DataFrame | None = None,
    window: Any = "365d",
    lang: str = "zh",
) -> pd.DataFrame:
    """A pivot table of ``df``: rows × columns × aggregated values, with a totals row and
    (with ``cols``) a totals column per value that equal the true totals (SPEC E6).

    Cells equal ``pandas.pivot_table(df, index=rows, columns=cols, values=…, aggfunc=…)``.
    A dimension with several values per customer (``;``-joined: channels, tags, …) counts a
    customer once per value: such dimensions are listed in ``attrs["repeated"]`` and said in
    ``attrs["notes"]``, while the totals count each customer once. With ``orders`` (the
    attributed orders, ``SegmentResult.orders``; raw orders are attributed first) a
    ``channel`` dimension attributes each order to its own channel: values monetary:sum
    (sum of the orders' net amounts in the window), frequency:sum (orders) and
    customer_id:count (distinct customers); the cells then add up to the totals.
    ``attrs["total"]`` is the key of the totals row/column.
    """
    import numpy as np
    import pandas as pd

    from custtool.report.workbook import SEGMENT_ORDERS, tags_text

    total = L.text("total", lang)
    row_req = _split_columns(rows)
    col_req = _split_columns(cols)
    if not row_req:
        raise InputError("--rows needs at least one column", "e.g. --rows tier")
    by_order = orders is not None and any(c in CHANNEL_DIMENSIONS for c in [*row_req, *col_req])
    if by_order:
        row_cols = ["channel" if c in CHANNEL_DIMENSIONS else _resolve(df, c) for c in row_req]
        col_cols = ["channel" if c in CHANNEL_DIMENSIONS else _resolve(df, c) for c in col_req]
        requested = parse_values(values)
        bad = [
            f"{c}:{a}"
            for c, a in requested
            if (_resolve(df, c), a) not in ORDER_VALUES and (c, a) not in ORDER_VALUES
        ]
        if bad:
            raise InputError(
                f"--values {', '.join(bad)}: with the orders a channel pivot shows order values",
                "use monetary:sum, frequency:sum or customer_id:count (or pivot without --orders)",
            )
        specs = [
            (
                c,
                a,
                *ORDER_VALUES[
                    (_resolve(df, c), a) if (_resolve(df, c), a) in ORDER_VALUES else (c, a)
                ],
            )
            for c, a in requested
        ]
        dims = [*row_cols, *col_cols]
        missing = [c for c in dict.fromkeys(dims) if c != "channel" and c not in df.columns]
        if missing or "customer_id" not in df.columns:
            raise InputError(
                f"no column {', '.join(map(repr, missing or ['customer_id']))} in the table",
                f"available: {', '.join(map(str, df.columns[:40]))}",
            )
        data = _order_rows(df, orders, dims, window)
    else:
        row_cols = [_resolve(df, c) for c in row_req]
        col_cols = [_resolve(df, c) for c in col_req]
        vals = [(_resolve(df, c), a) for c, a in parse_values(values)]
        wanted = [*row_cols, *col_cols, *(c for c, _ in vals)]
        missing = [c for c in dict.fromkeys(wanted) if c not in df.columns]
        if missing:
            raise InputError(
                f"no column {', '.join(map(repr, missing))} in the table",
                f"available: {', '.join(map(str, df.columns[:40]))}",
            )
        data = df[list(dict.fromkeys(wanted))].copy()
        specs = list(dict.fromkeys((c, a, c, a) for c, a in vals))
    data["_rid"] = np.arange(len(data))  # the customer (or order line) each row stands for
    repeated: list[str] = []
    for c in dict.fromkeys([*row_cols, *col_cols]):
        s = data[c]
        if (
            c in LIST_COLUMNS
            or (
                s.dtype == object
                and s.dropna().head(20).map(lambda v: not isinstance(v, str)).any()
            )
            or (
                not pd.api.types.is_numeric_dtype(s)
                and s.astype("string").str.contains(";", regex=False).any()
            )
        ):
            before = len(data)
            data[c] = tags_text(s).astype("string").str.split(";")
            data = data.explode(c)
            data[c] = data[c].astype("string").fillna("").str.strip()
            if len(data) > before:
                repeated.append(c)
        if not pd.api.types.is_numeric_dtype(data[c]) and not pd.api.types.is_datetime64_any_dtype(
            data[c]
        ):
            data[c] = data[c].astype("string").fillna("").str.strip().astype(str)
            order = SEGMENT_ORDERS.get(c)
            if order:
                present = list(dict.fromkeys(data[c]))
                cats = [v for v in order if v in present] + sorted(
                    v for v in present if v not in order
                )
                data[c] = pd.Categorical(data[c], categories=cats, ordered=True)
    for c, _a, src, agg in specs:
        if agg not in {"count", "nunique"} and not pd.api.types.is_numeric_dtype(data[src]):
            raise InputError(
                f"--values {c}: cannot {agg} a text column", f"use {c}:count or {c}:nunique"
            )
    data = data.reset_index(drop=True)

    def once(keys: list[str]) -> pd.DataFrame:  # each customer/order once per key value
        return data.drop_duplicates([*keys, "_rid"])

    cells = _aggregate(data, [*row_cols, *col_cols], specs)
    grand = _aggregate(once([]), [], specs)
    if col_cols:
        cells = cells.unstack(col_cols)
        cells.columns = _plain_index(cells.columns)
        by_row = _aggregate(once(row_cols), row_cols, specs)
        by_row.columns = pd.MultiIndex.from_tuples(
            [(c, a, *([total] * len(col_cols))) for c, a in by_row.columns]
        )
        by_col = (
            _aggregate(once(col_cols), col_cols, specs).unstack(list(range(len(col_cols))))
            if len(col_cols)
            else None
        )
        cells = pd.concat([cells, by_row], axis=1)
        ordered = [t for c, a, *_ in specs for t in cells.columns if t[:2] == (c, a)]
        cells = cells[list(dict.fromkeys(ordered))]
        total_row = pd.Series(np.nan, index=cells.columns, dtype=object)
        for (c, a, *keys), v in by_col.items():  # type: ignore[union-attr]
            total_row[(c, a, *keys)] = v
        for c, a, *_ in specs:
            total_row[(c, a, *([total] * len(col_cols)))] = grand[(c, a)].iloc[0]
    else:
        total_row = grand.iloc[0]
    cells.index = _plain_index(cells.index)
    key = tuple([total] * len(row_cols)) if len(row_cols) > 1 else total
    out = pd.concat(
        [
            cells,
            pd.DataFrame(
                [total_row.to_numpy()],
                columns=cells.columns,
                index=_plain_index(pd.Index([key], name=cells.index.name))
                if len(row_cols) == 1
                else pd.MultiIndex.from_tuples([key], names=cells.index.names),
            ),
        ]
    )
    for col in out.columns:
        num = pd.to_numeric(out[col], errors="coerce")
        if num.notna().sum() == out[col].notna().sum():
            out[col] = num
    out.attrs["total"] = total
    out.attrs["repeated"] = [c for c in repeated if not (by_order and c == "channel")]
    out.attrs["notes"] = [
        L.text("pivot_repeated", lang).format(L.label(c, lang)) for c in out.attrs["repeated"]
    ]
    if by_order:
        out.attrs["notes"].append(L.text("pivot_by_order", lang))
    return out


def flatten_pivot(table: pd.DataFrame, lang: str = "zh") -> pd.DataFrame:
    """The pivot as a flat table for CSV/xlsx/terminal: row keys as columns, one header line."""
    import pandas as pd

    flat = table.copy()
    repeated = list(table.attrs.get("repeated", []))
    mark = L.text("pivot_repeats", lang)
    col_repeated = any(c not in (table.index.names or []) for c in repeated)
    if isinstance(flat.columns, pd.MultiIndex):
        names = []
        for tup in flat.columns:
            col, agg, *rest = (str(x) for x in tup)
            head = f"{L.label(col, lang)}·{agg}"
            if rest:
                head += " | " + " / ".join(L.value_label(r, lang) for r in rest)
                if col_repeated and any(r != table.attrs.get("total") for r in rest):
                    head += mark
            names.append(head)
        flat.columns = names
    keys = [k for k in flat.index.names if k is not None]
    flat = flat.reset_index()
    for (
        k
    ) in keys:  # a blank key reads as the report names it: （无订单） for RFM class, else （空）
        if not pd.api.types.is_numeric_dtype(flat[k]) and not pd.api.types.is_datetime64_any_dtype(
            flat[k]
        ):
            blank = L.text("no_orders" if k == "rfm_class" else "blank", lang)
            flat[k] = (
                flat[k]
                .astype(object)
                .map(lambda v, b=blank: b if isinstance(v, str) and v == "" else v)
            )
    renamed = {}
    for c in flat.columns:
        if c in L.COLUMN_LABELS:
            renamed[c] = L.label(c, lang)
            if (
                flat[c].dtype == "category"
                or flat[c].dtype == object
                or pd.api.types.is_string_dtype(flat[c])
            ):
                flat[c] = (
                    flat[c]
                    .astype(object)
                    .map(lambda v: L.value_label(str(v), lang) if isinstance(v, str) else v)
                )
    for k in keys:
        if k in repeated:
            renamed[k] = renamed.get(k, k) + mark
    out = flat.rename(columns=renamed)
    out.attrs = {"notes": list(table.attrs.get("notes", [])), "total": table.attrs.get("total")}
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"
    return str(v)


def pivot_rows(flat: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a flat pivot, numbers rounded for display."""
    header = [str(c) for c in flat.columns]
    rows: list[list[Any]] = []
    for rec in flat.astype(object).where(flat.notna(), "").to_numpy().tolist():
        rows.append([_fmt(v) for v in rec])
    return header, rows


def write_pivot(flat: pd.DataFrame, path: str | Any, lang: str = "zh") -> Any:
    """Write a flat pivot to .csv (formula text neutralised) or .xlsx (quote-prefixed), atomically."""
    from pathlib import Path

    from custtool.io import write_table
    from custtool.report.workbook import _Sheets
    from custtool.xlsx import open_workbook

    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in {".csv", ".tsv"}:
        return write_table(flat, target)
    if suffix != ".xlsx":
        raise InputError(
            f"{target.name}: a pivot is written as .xlsx or .csv", "e.g. -o pivot.xlsx"
        )
    with open_workbook(target) as wb:
        w = _Sheets(wb, lang)
        ws = wb.add_worksheet(L.text("sheet_pivot", lang))
        notes = list(flat.attrs.get("notes", []))
        for i, note in enumerate(
            notes
        ):  # what the reader must know: repeated values, order attribution
            ws.write_string(i, 0, note, w.note)
        w.data_sheet(
            ws,
            flat,
            start_row=len(notes) + (1 if notes else 0),
            conditional=False,
            freeze=not notes,
        )
    return target
