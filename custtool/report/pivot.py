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
            raise InputError(f"--values {part!r}: unknown aggregate {agg!r}", f"use one of: {', '.join(AGGREGATES)}")
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
ALIASES = {"channel": ("channels", "source_channel", "_channel"), "class": ("rfm_class",), "value_tier": ("tier",)}


def _resolve(df: pd.DataFrame, column: str) -> str:
    if column in df.columns:
        return column
    return next((alt for alt in ALIASES.get(column, ()) if alt in df.columns), column)


def pivot(
    df: pd.DataFrame,
    rows: str | list[str],
    cols: str | list[str] | None = None,
    values: str | list[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """A pivot table of ``df``: equal to ``pandas.pivot_table(df, index=rows, columns=cols,
    values=…, aggfunc={col: [aggs]})`` on the same data (list columns exploded first).

    Raises InputError naming the unknown column and the available ones.
    """
    import pandas as pd

    from custtool.report.workbook import SEGMENT_ORDERS, tags_text

    row_cols = [_resolve(df, c) for c in _split_columns(rows)]
    col_cols = [_resolve(df, c) for c in _split_columns(cols)]
    vals = [(_resolve(df, c), a) for c, a in parse_values(values)]
    if not row_cols:
        raise InputError("--rows needs at least one column", "e.g. --rows tier")
    wanted = [*row_cols, *col_cols, *(c for c, _ in vals)]
    missing = [c for c in dict.fromkeys(wanted) if c not in df.columns]
    if missing:
        raise InputError(
            f"no column {', '.join(map(repr, missing))} in the table",
            f"available: {', '.join(map(str, df.columns[:40]))}",
        )
    data = df[list(dict.fromkeys(wanted))].copy()
    for c in [*row_cols, *col_cols]:
        s = data[c]
        if c in LIST_COLUMNS or (s.dtype == object and s.dropna().head(20).map(lambda v: not isinstance(v, str)).any()):
            data[c] = tags_text(s).astype("string").str.split(";")
            data = data.explode(c)
        if not pd.api.types.is_numeric_dtype(data[c]) and not pd.api.types.is_datetime64_any_dtype(data[c]):
            data[c] = data[c].astype("string").fillna("").str.strip().astype(str)
            order = SEGMENT_ORDERS.get(c)
            if order:
                present = list(dict.fromkeys(data[c]))
                cats = [v for v in order if v in present] + sorted(v for v in present if v not in order)
                data[c] = pd.Categorical(data[c], categories=cats, ordered=True)
    aggfunc: dict[str, list[str]] = {}
    for c, a in vals:
        aggfunc.setdefault(c, [])
        if a not in aggfunc[c]:
            aggfunc[c].append(a)
    for c, aggs in aggfunc.items():
        if any(a not in {"count", "nunique"} for a in aggs) and not pd.api.types.is_numeric_dtype(data[c]):
            raise InputError(f"--values {c}: cannot {'/'.join(aggs)} a text column", f"use {c}:count or {c}:nunique")
    return pd.pivot_table(
        data,
        index=row_cols,
        columns=col_cols or None,
        values=list(aggfunc),
        aggfunc=aggfunc,  # type: ignore[arg-type]  # pandas-stubs: no lists of functions per column
        observed=True,
    )


def flatten_pivot(table: pd.DataFrame, lang: str = "zh") -> pd.DataFrame:
    """The pivot as a flat table for CSV/xlsx/terminal: row keys as columns, one header line."""
    import pandas as pd

    flat = table.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        names = []
        for tup in flat.columns:
            col, agg, *rest = (str(x) for x in tup)
            head = f"{L.label(col, lang)}·{agg}"
            if rest:
                head += " | " + " / ".join(L.value_label(r, lang) for r in rest)
            names.append(head)
        flat.columns = names
    keys = [k for k in flat.index.names if k is not None]
    flat = flat.reset_index()
    for k in keys:  # a blank key reads as the report names it: （无订单） for RFM class, else （空）
        if not pd.api.types.is_numeric_dtype(flat[k]) and not pd.api.types.is_datetime64_any_dtype(flat[k]):
            blank = L.text("no_orders" if k == "rfm_class" else "blank", lang)
            flat[k] = flat[k].astype(object).map(lambda v, b=blank: b if isinstance(v, str) and v == "" else v)
    renamed = {}
    for c in flat.columns:
        if c in L.COLUMN_LABELS:
            renamed[c] = L.label(c, lang)
            if flat[c].dtype == "category" or flat[c].dtype == object or pd.api.types.is_string_dtype(flat[c]):
                flat[c] = flat[c].astype(object).map(lambda v: L.value_label(str(v), lang) if isinstance(v, str) else v)
    return flat.rename(columns=renamed)


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
        raise InputError(f"{target.name}: a pivot is written as .xlsx or .csv", "e.g. -o pivot.xlsx")
    with open_workbook(target) as wb:
        w = _Sheets(wb, lang)
        w.data_sheet(wb.add_worksheet(L.text("sheet_pivot", lang)), flat, conditional=False)
    return target
