"""The tiered Excel report (SPEC E1, E3–E5, E7), written with xlsxwriter in constant-memory mode.

Sheets, in order: 概览 (KPIs, segment tables, charts), one sheet per value tier and per RFM
class, 客户明细, 策略, 数据质量, 迁移 (with ``previous``). Every text cell is written with
``write_string``; a text that starts like a formula (= + - @ tab CR LF) gets Excel's own
quote prefix, so it shows as typed and stays text when edited. The workbook has no formulas.

Rows are streamed sheet by sheet, in order, in chunks: memory does not grow with the number
of customers beyond the input frame itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool import labels as L
from custtool.arrow_text import take_rows
from custtool.errors import InputError
from custtool.report.masking import (
    Role,
    check_unmask,
    column_maskers,
    get_role,
    mask_frame,
    role_view,
)
from custtool.report.migration import RFM_ORDER, fallen_customers, migration_matrix
from custtool.report.strategies import load_strategies
from custtool.xlsx import append_row_chunks, formula_like, open_workbook, safe_sheet_name

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

TIER_ORDER = ["高价值", "中价值", "低价值"]
LIFECYCLE_ORDER = ["潜在", "新客户", "成长", "成熟", "沉睡", "流失"]
SEGMENT_ORDERS = {"rfm_class": RFM_ORDER, "tier": TIER_ORDER, "lifecycle": LIFECYCLE_ORDER}

MONEY_COLUMNS = {
    "monetary",
    "monetary_30d",
    "monetary_90d",
    "monetary_365d",
    "monetary_prev",
    "aov",
    "ltv",
    "historical_value",
    "predicted_value",
    "predicted_aov",
    "amount",
    "revenue",
    "typical_aov",
}
PERCENT_COLUMNS = {
    "growth",
    "p_alive",
    "customer_share",
    "revenue_share",
    "share",
    "share_in_segment",
    "share_overall",
}
INTEGER_COLUMNS = {
    "frequency",
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "interactions_30d",
    "interactions_365d",
    "complaints_365d",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
    "age",
    "customers",
    "orders",
    "count",
    "_row",
    "row",
    "nps_score",
    "recency",
    "days_since_last_interaction",
}
SCORE_COLUMNS = ("r_score", "f_score", "m_score")
#: columns of the per-tier / per-class sheets, in this order, when present
SEGMENT_SHEET_COLUMNS = [
    "customer_id",
    "name",
    "phone",
    "city",
    "owner",
    "rfm_class",
    "tier",
    "lifecycle",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
    "recency",
    "frequency",
    "monetary",
    "aov",
    "ltv",
    "churn_risk",
    "last_order",
    "tags",
]
VALUE_COLUMNS = ("ltv", "monetary", "rfm_score", "frequency")
#: rows per chunk of a data sheet; two chunks are in flight (one masked and converted while
#: the previous one's XML is built), so 10k keeps the memory of the former 20k serial chunks
CHUNK_ROWS = 10_000
EXCEL_MAX_ROWS = 1_048_576  # rows in one worksheet, header included
_EXCEL_EPOCH = "1899-12-30"


@dataclass
class ReportResult:
    """What :func:`write_workbook` wrote."""

    path: Path
    sheets: dict[str, int] = field(default_factory=dict)  # sheet name -> data rows
    customers: int = 0
    role: str = "admin"
    masked: bool = True
    charts: int = 0
    lang: str = "zh"
    warnings: list[str] = field(default_factory=list)
    sheet_rows: int = 0  # the cap on the tier / class sheets
    capped: dict[str, dict[str, Any]] = field(default_factory=dict)  # sheet -> counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "warnings": self.warnings,
            "sheet_rows": self.sheet_rows,
            "capped": self.capped,
            "path": str(self.path),
            "sheets": self.sheets,
            "customers": self.customers,
            "role": self.role,
            "masked": self.masked,
            "charts": self.charts,
            "lang": self.lang,
        }


# --------------------------------------------------------------------------- column helpers
def tags_text(s: pd.Series, sep: str = ";") -> pd.Series:
    """Tags as one ``;``-joined string per row, whether they come as lists (Parquet) or text."""
    import pandas as pd

    if pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
        return s.fillna("").astype(object)
    nonnull = s.dropna()
    if nonnull.empty:
        return pd.Series("", index=s.index, dtype=object)
    is_text = nonnull.map(type).eq(str)  # type: ignore[arg-type]  # pandas-stubs: eq() rejects a type object
    if is_text.all():
        return s.fillna("").astype(object)
    from custtool.xlsx import join_lists

    values = s.where(s.notna(), None)
    if is_text.any():  # mixed: split the text ones into lists first
        values = values.where(~values.map(type).eq(str), values.astype("string").str.split(sep))  # type: ignore[arg-type]  # pandas-stubs: eq() rejects a type object
    joined = join_lists(values.to_numpy(dtype=object), sep, null_items=True)
    if joined is not None:
        # by position: ``s`` may have any index (a filtered or sorted frame)
        return pd.Series(joined.to_pandas().to_numpy(), index=s.index).fillna("").astype(object)
    # items that are not text (numbers): str() of each, joined value by value
    exploded = s.explode().dropna().astype(str)
    return exploded.groupby(level=0).agg(sep.join).reindex(s.index).fillna("").astype(object)


BOOL_COLUMNS = (
    "repurchase",
    "churn_risk",
    "potential",
    "follow_up_flag",
    "refund",
    "exact_duplicate",
)


def prepare_customers(df: pd.DataFrame) -> pd.DataFrame:
    """Tags (and any other list column) as text, flags read back from CSV/xlsx text as
    booleans; a copy, canonical columns unchanged."""
    import numpy as np
    import pandas as pd

    def as_text(s: pd.Series) -> pd.Series:
        # a column of lists (the run's tags: 1M Python lists) joined in Arrow
        # (custtool.xlsx.join_lists) and kept as Arrow-backed text: the same text as
        # tags_text, without a Python string per row (memory: 1M customers' joined tags
        # were ~0.2 GB of Python strings and copies)
        if s.dtype == object and len(s):
            import pyarrow.compute as pc

            from custtool.xlsx import join_lists

            listlike = s.map(type).isin([list, tuple, np.ndarray]).to_numpy()
            if listlike.any() and (listlike | s.isna().to_numpy()).all():
                joined = join_lists(s.to_numpy(), ";", null_items=True)
                if joined is not None:
                    return pd.Series(pc.fill_null(joined, "").to_pandas().array, index=s.index)
        return tags_text(s)

    out = df.copy(deep=False)
    out.attrs = {}  # pandas deep-copies .attrs at every operation; the report never reads them
    for c in out.columns:
        if (
            c == "tags"
            or str(c).startswith("tag_")
            or out[c].dtype == object
            and _looks_like_lists(out[c])
        ):
            out[c] = as_text(out[c])
        elif c in BOOL_COLUMNS and not pd.api.types.is_bool_dtype(out[c]):
            txt = out[c].astype("string").fillna("").str.strip().str.lower()
            known = {
                "true": True,
                "false": False,
                "1": True,
                "0": False,
                "1.0": True,
                "0.0": False,
                "是": True,
                "否": False,
                "": None,
            }
            if txt.isin(list(known)).all():
                mapped = txt.map(known)
                out[c] = mapped.astype("boolean") if mapped.isna().any() else mapped.astype(bool)
    return out


def _looks_like_lists(s: pd.Series) -> bool:
    head = s.dropna().head(20)
    return bool(len(head)) and bool(
        head.map(lambda v: not isinstance(v, str) and hasattr(v, "__len__")).any()
    )


def _value_column(df: pd.DataFrame) -> str | None:
    return next((c for c in VALUE_COLUMNS if c in df.columns), None)


def _sort_by_value(df: pd.DataFrame) -> pd.DataFrame:
    col = _value_column(df)
    if col is None:
        return df
    return df.sort_values(col, ascending=False, na_position="last", kind="stable")


def _value_order(df: pd.DataFrame) -> Any:
    """Row positions sorted by value (LTV, else monetary, …) descending, stable; NaN last."""
    import numpy as np

    col = _value_column(df)
    if col is None:
        return np.arange(len(df))
    import pandas as pd

    key = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.lexsort((np.arange(len(df)), -np.nan_to_num(key, nan=0.0), np.isnan(key)))


def _text_series(s: pd.Series) -> pd.Series:
    return s.astype("string").fillna("").str.strip()


#: the characters Python's ``str.strip()`` removes (``str.isspace``)
_PY_SPACES = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


def list_items(s: pd.Series, sep: str = ";") -> pd.Series:
    """The items of a ``sep``-joined list column, stripped, blanks dropped, in row order:
    ``_text_series(s).str.split(sep).explode().str.strip()`` without blanks, split with
    Arrow (no Python call per row; 1M rows of tags: seconds → a fraction)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(_text_series(s).array, type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    items = pc.list_flatten(pc.split_pattern(pc.fill_null(arr, ""), sep))
    items = pc.utf8_trim(items, characters=_PY_SPACES)
    items = items.filter(pc.not_equal(items, ""))
    return pd.Series(items, dtype=pd.ArrowDtype(pa.large_string())).astype("string")


def _counts(s: pd.Series) -> pd.Series:
    """``s.value_counts()`` as plain int64 counts over an object index (as on object text)."""
    import pandas as pd

    vc = s.value_counts()
    return pd.Series(
        vc.to_numpy(dtype="int64"), index=pd.Index(vc.index.to_numpy(dtype=object)), name=vc.name
    )


# --------------------------------------------------------------------------- summary tables
def kpis(
    df: pd.DataFrame, *, amounts: bool = True, nps: Any = None
) -> dict[str, float | int | None]:
    """Customers, active customers, revenue, average order value, repurchase rate, NPS.

    active: lifecycle 新客户/成长/成熟 when the column exists, else recency ≤ 90 days.
    average order value: revenue / orders. repurchase rate: repurchasing customers /
    customers with at least one order. NPS: the run's one NPS (SPEC D6, computed by the
    segment step over every valid response up to the as-of date): ``nps`` is the segment's
    NPS dict (``SegmentResult.nps``) or the number; it is never recomputed here from the
    customers' latest scores. Without it there is no NPS figure.
    """
    import pandas as pd

    out: dict[str, float | int | None] = {"customers": int(len(df))}
    if "lifecycle" in df.columns:
        out["active"] = int(_text_series(df["lifecycle"]).isin(["新客户", "成长", "成熟"]).sum())
    elif "recency" in df.columns:
        out["active"] = int((pd.to_numeric(df["recency"], errors="coerce") <= 90).sum())
    if amounts and "monetary" in df.columns:
        revenue = float(pd.to_numeric(df["monetary"], errors="coerce").fillna(0).sum())
        out["revenue"] = round(revenue, 2)
        if "frequency" in df.columns:
            n_orders = float(pd.to_numeric(df["frequency"], errors="coerce").fillna(0).sum())
            out["aov"] = round(revenue / n_orders, 2) if n_orders else None
    if "repurchase" in df.columns:
        from custtool.portrait import repurchase_rate  # the one 复购率 (segment --json too)

        out["repurchase"] = repurchase_rate(df)
    value = nps.get("nps") if isinstance(nps, dict) else nps
    if value is not None or (isinstance(nps, dict) and nps.get("surveys")):
        out["nps"] = (
            None
            if value is None or (isinstance(value, float) and math.isnan(value))
            else float(value)
        )
    return out


def segment_table(
    df: pd.DataFrame, by: str, *, amounts: bool = True, lang: str = "zh"
) -> pd.DataFrame:
    """Customers, share of customers, revenue, share of revenue per value of ``by``.

    Segments in their canonical order; customers with a blank value (no orders) last.
    """
    import pandas as pd

    key = _text_series(df[by])
    total = len(df)
    g = pd.DataFrame({"k": key})
    if amounts and "monetary" in df.columns:
        g["m"] = pd.to_numeric(df["monetary"], errors="coerce").fillna(0).to_numpy()
    agg = g.groupby("k", sort=False).agg(
        customers=("k", "size"), **({"revenue": ("m", "sum")} if "m" in g else {})
    )
    order = [v for v in SEGMENT_ORDERS.get(by, []) if v in agg.index]
    rest = sorted(v for v in agg.index if v not in order and v != "")
    if "" in agg.index:
        rest.append("")
    agg = agg.reindex(order + rest)
    out = pd.DataFrame({"segment": agg.index.astype(object)})
    out["customers"] = agg["customers"].to_numpy().astype("int64")
    out["customer_share"] = out["customers"] / total if total else 0.0
    if "revenue" in agg:
        rev = agg["revenue"].to_numpy().astype(float)
        out["revenue"] = rev.round(2)
        tot = rev.sum()
        out["revenue_share"] = rev / tot if tot else 0.0
    blank = L.text("no_orders" if by == "rfm_class" else "blank", lang)
    out["segment"] = out["segment"].map(lambda v: L.value_label(v, lang) if v else blank)
    return out


def distribution(df: pd.DataFrame, column: str, *, top: int = 10, lang: str = "zh") -> pd.DataFrame:
    """Customers per value of ``column`` (``;``-joined lists counted per value), top N."""
    import pandas as pd

    s = _text_series(df[column])
    if column in {"channels", "tags"} or s.str.contains(";", regex=False).any():
        s = list_items(s)
    s = s[s != ""]
    counts = _counts(s)
    if len(counts) > top:
        other = int(counts.iloc[top:].sum())
        counts = pd.concat(
            [counts.iloc[:top], pd.Series({("其他" if lang == "zh" else "Other"): other})]
        )
    out = pd.DataFrame(
        {"segment": counts.index.astype(object), "customers": counts.to_numpy().astype("int64")}
    )
    out["customer_share"] = out["customers"] / len(df) if len(df) else 0.0
    return out


def monthly_revenue(orders: pd.DataFrame) -> pd.DataFrame:
    """Revenue and order count per calendar month (``order_time``, ``amount``)."""
    import pandas as pd

    for col in ("order_time", "amount"):
        if col not in orders.columns:
            raise InputError(
                f"the orders table has no {col!r} column",
                "pass the orders table from `custtool import`",
            )
    t = pd.to_datetime(orders["order_time"], errors="coerce")
    amt = pd.to_numeric(orders["amount"], errors="coerce").fillna(0)
    ok = t.notna()
    tt = t[ok]
    key = (tt.dt.year * 100 + tt.dt.month).to_numpy()  # yyyymm: no text per order
    g = pd.DataFrame({"key": key, "revenue": amt[ok].to_numpy()}).groupby("key", sort=True)
    out = g.agg(revenue=("revenue", "sum"), orders=("revenue", "size")).reset_index()
    k = out.pop("key")
    month = (k // 100).astype(str).str.zfill(4) + "-" + (k % 100).astype(str).str.zfill(2)
    out.insert(0, "month", month.astype(object))
    out["revenue"] = out["revenue"].round(2)
    out["orders"] = out["orders"].astype("int64")
    return out


def _own_orders(orders: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """The attributed orders of the given customers only (``customer_id`` = stable id)."""
    if "customer_id" not in orders.columns or "customer_id" not in customers.columns:
        return orders.iloc[0:0]
    ids = set(_text_series(customers["customer_id"])) - {""}
    return orders.loc[_text_series(orders["customer_id"]).isin(ids).to_numpy()]


# --------------------------------------------------------------------------- the writer
class _Sheets:
    """Formats and the row-streaming sheet writer over one xlsxwriter workbook."""

    def __init__(self, wb: Any, lang: str, mask: bool | None = None) -> None:
        self.wb = wb
        self.lang = lang
        # the masking policy for every data sheet, applied chunk by chunk (None: the frames
        # given are masked already); ID numbers and bank cards are masked even when False
        self.mask = mask
        self.charts = 0
        self.cache: dict[Any, Any] = {}  # figures shared by the tier / class sheets
        self.truncated: list[tuple[str, int, int]] = []  # (sheet, rows in table, rows written)
        border = {"border": 1, "border_color": "#BFBFBF"}
        self.head = wb.add_format(
            {
                "bold": True,
                "bg_color": "#DDEBF7",
                "border": 1,
                "text_wrap": True,
                "valign": "vcenter",
            }
        )
        self.title = wb.add_format({"bold": True, "font_size": 16})
        self.section = wb.add_format({"bold": True, "font_size": 12, "font_color": "#1F4E78"})
        self.note = wb.add_format({"italic": True, "font_color": "#7F7F7F"})
        self.warn = wb.add_format({"bold": True, "font_color": "#C00000"})
        self.text = None
        self.quote = wb.add_format({"quote_prefix": True})
        self.money = wb.add_format({"num_format": "#,##0.00"})
        self.int = wb.add_format({"num_format": "#,##0"})
        self.float = wb.add_format({"num_format": "#,##0.00"})
        self.pct = wb.add_format({"num_format": "0.0%"})
        self.date = wb.add_format({"num_format": "yyyy-mm-dd"})
        self.datetime = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        self.kpi_label = wb.add_format({"bold": True, **border})
        self.kpi_money = wb.add_format({"num_format": "#,##0.00", **border})
        self.kpi_int = wb.add_format({"num_format": "#,##0", **border})
        self.kpi_pct = wb.add_format({"num_format": "0.0%", **border})
        self.kpi_num = wb.add_format({"num_format": "0.0", **border})
        self.yes, self.no = L.text("yes", lang), L.text("no", lang)

    # ------------------------------------------------------------------ column preparation
    def _number_format(self, name: str, s: pd.Series) -> Any:
        import pandas as pd

        if name in MONEY_COLUMNS:
            return self.money
        if name in PERCENT_COLUMNS:
            return self.pct
        if name in INTEGER_COLUMNS or pd.api.types.is_integer_dtype(s):
            return self.int
        return self.float

    def prepare(self, df: pd.DataFrame) -> list[tuple[str, Any, Any]]:
        """Per column: (kind, the column as it is, format). Kinds: bool, date, num, text.

        Nothing is converted here: conversion happens chunk by chunk in :meth:`_chunk_lists`,
        so writing adds memory for one chunk, not for a copy of the table.
        """
        import pandas as pd

        maskers = column_maskers(df, mask=self.mask) if self.mask is not None else {}
        cols = []
        for c in df.columns:
            s = df[c]
            name = str(c)
            if pd.api.types.is_bool_dtype(s) or (
                s.dtype == object
                and s.notna().any()
                and s.dropna().head(50).map(type).eq(bool).all()
                and s.dropna().isin([True, False]).all()  # type: ignore[arg-type]  # pandas-stubs: eq() rejects a type object
            ):
                cols.append(("bool", s, None))
            elif pd.api.types.is_datetime64_any_dtype(s):
                nonnull = s.dropna()
                has_time = bool(len(nonnull)) and bool((nonnull != nonnull.dt.normalize()).any())
                cols.append(("date", s, self.datetime if has_time else self.date))
            elif pd.api.types.is_numeric_dtype(s):
                cols.append(("num", s, self._number_format(name, s)))
            else:
                cols.append(("text", s, maskers.get(c)))
        return cols

    def _chunk_lists(
        self, prepared: list[tuple[str, Any, Any]], rows: Any
    ) -> list[tuple[int, list, Any, Any, str]]:
        """Python lists for the rows at positions ``rows`` (a slice or an int array): None = blank cell."""
        import numpy as np
        import pandas as pd

        out = []
        for j, (kind, s, fmt) in enumerate(prepared):
            part = s.iloc[rows]
            if kind in {"num", "date"}:
                arr = _excel_numbers(part, kind)
                vals = arr.astype(object)
                vals[~np.isfinite(arr)] = None
                out.append((j, vals.tolist(), fmt, None, "num"))
                continue
            if kind == "text" and fmt is not None:  # a personal column: mask this chunk
                part = fmt(part)
            if kind == "bool":
                flags = part.astype("boolean")
                txt = pd.Series(
                    np.where(flags.fillna(False).to_numpy(dtype=bool), self.yes, self.no),
                    dtype="string",
                )
                txt = txt.where(flags.notna().to_numpy(), "")
            else:
                txt = part.astype("string").fillna("")
            vals = txt.to_numpy(dtype=object, na_value="")
            hit = formula_like(txt).to_numpy(dtype=bool)
            vals[vals == ""] = None
            # numpy stubs match the one-argument (tuple) overload of where() here
            fmts = np.where(hit, self.quote, None).tolist() if hit.any() else None  # type: ignore[attr-defined]
            out.append((j, vals.tolist(), None, fmts, "text"))
        return out

    @staticmethod
    def _arrow_texts(prepared: list[tuple[str, Any, Any]]) -> dict[int, Any]:
        """The unmasked Arrow-backed text columns as the Arrow string arrays they hold
        (zero-copy; nulls filled with "" chunk by chunk in :meth:`_chunk_columns`): chunks
        are then taken from them without pandas. Other text columns (object) are converted
        chunk by chunk too — memory: no whole-table copy of the text is held while a sheet
        is written (1M customers: ~1 GB)."""
        import pandas as pd
        import pyarrow as pa

        out = {}
        for j, (kind, s, fmt) in enumerate(prepared):
            # personal columns stay with pandas' take (then masked): taken here too, the
            # 1M/10M report's peak was +48 MB (2749 → 2797 MB), for no measurable time
            if kind != "text" or fmt is not None or not isinstance(s.dtype, pd.StringDtype):
                continue
            arr = pa.array(s.array, from_pandas=True)  # large_string kept: no cast copy
            if isinstance(arr, pa.ChunkedArray) and arr.num_chunks == 1:
                arr = arr.chunk(0)
            out[j] = arr
        return out

    def _chunk_columns(
        self, prepared: list[tuple[str, Any, Any]], rows: Any, texts: dict[int, Any]
    ) -> list[tuple[str, Any, Any]]:
        """The rows at positions ``rows`` (a slice or an int array) per column for
        :func:`custtool.xlsx.append_rows`: numbers and dates as floats (NaN = blank cell),
        flags as 是/否, personal columns masked, other text as Arrow strings (taken from
        ``texts``, :meth:`_arrow_texts`)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        out: list[tuple[str, Any, Any]] = []
        for j, (kind, s, fmt) in enumerate(prepared):
            if j in texts:
                taken = take_rows(texts[j], rows)
                if isinstance(taken, pa.ChunkedArray):
                    taken = taken.combine_chunks()
                out.append(("text", pc.fill_null(taken, "").cast(pa.string()), None))
                continue
            part = s.iloc[rows]
            if kind in {"num", "date"}:
                arr = _excel_numbers(part, kind)
                out.append(("num", arr, fmt))
                continue
            if kind == "text" and fmt is not None:  # a personal column: mask this chunk
                part = fmt(part)
            if kind == "bool":  # 是 / 否, blank where missing (Arrow: no Python strings)
                flags = pa.array(part.astype("boolean").array, type=pa.bool_())
                txt = pc.fill_null(pc.if_else(flags, self.yes, self.no), "")
                out.append(("text", txt.cast(pa.string()), None))
                continue
            # the text as Arrow strings straight from pandas' Arrow-backed string array
            txt = pa.array(part.astype("string").array, type=pa.string(), from_pandas=True)
            if isinstance(txt, pa.ChunkedArray):
                txt = txt.combine_chunks()
            out.append(("text", pc.fill_null(txt, ""), None))
        return out

    # ------------------------------------------------------------------ data sheets
    def data_sheet(
        self,
        ws: Any,
        df: pd.DataFrame,
        *,
        positions: Any = None,
        start_row: int = 0,
        conditional: bool = True,
        freeze: bool = True,
    ) -> int:
        """Header + the rows of ``df`` (at ``positions``, in that order; all rows by default)
        from ``start_row``: frozen header, filter, widths. Returns the next free row."""
        cols = [str(c) for c in df.columns]
        headers = L.labels(cols, self.lang)
        prepared = self.prepare(df)
        for j, h in enumerate(headers):
            ws.write_string(start_row, j, h, self.head)
        n = len(df) if positions is None else len(positions)
        room = EXCEL_MAX_ROWS - 1 - start_row
        if (
            n > room
        ):  # Excel's row limit: write what fits and say so (xlsxwriter would drop rows silently)
            self.truncated.append((ws.get_name(), n, room))
            n = room
        self._widths(ws, headers, prepared, positions)
        if freeze:
            ws.freeze_panes(start_row + 1, 1 if cols and cols[0] == "customer_id" else 0)
            ws.repeat_rows(start_row)  # header on every printed page
            ws.set_landscape()
        if cols:
            ws.autofilter(start_row, 0, start_row + max(n, 1), len(cols) - 1)
        base = start_row + 1
        texts = self._arrow_texts(prepared)

        def chunks() -> Iterator[list[tuple[str, Any, Any]]]:
            for start in range(0, n, CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, n)
                rows = slice(start, stop) if positions is None else positions[start:stop]
                yield self._chunk_columns(prepared, rows, texts)

        # each chunk is masked and converted here while the previous one's XML is built in
        # a second thread (and deflated in a third, custtool.xlsx)
        append_row_chunks(ws, base, chunks(), self.quote)
        if conditional and n:
            last = start_row + n
            for name in SCORE_COLUMNS:
                if name in cols:
                    j = cols.index(name)
                    ws.conditional_format(
                        base,
                        j,
                        last,
                        j,
                        {
                            "type": "3_color_scale",
                            "min_color": "#F8696B",
                            "mid_color": "#FFEB84",
                            "max_color": "#63BE7B",
                        },
                    )
            if "rfm_score" in cols:
                j = cols.index("rfm_score")
                ws.conditional_format(
                    base,
                    j,
                    last,
                    j,
                    {"type": "data_bar", "bar_color": "#5B9BD5", "bar_solid": True},
                )
            if "churn_risk" in cols:
                j = cols.index("churn_risk")
                ws.conditional_format(
                    base,
                    j,
                    last,
                    j,
                    {
                        "type": "cell",
                        "criteria": "==",
                        "value": f'"{self.yes}"',
                        "format": self.wb.add_format({"font_color": "#C00000", "bold": True}),
                    },
                )
        return base + n

    def _widths(
        self, ws: Any, headers: list[str], prepared: list[tuple[str, Any, Any]], positions: Any
    ) -> None:
        for j, (h, (kind, s, fmt)) in enumerate(zip(headers, prepared, strict=True)):
            head_w = _display_width(h) + 2
            w: float
            if kind in {"num", "date"}:
                w = 16 if fmt is self.datetime else 12
            elif kind == "bool":
                w = 6
            else:
                sample = (
                    (s.iloc[:500] if positions is None else s.iloc[positions[:500]])
                    .astype("string")
                    .fillna("")
                )
                lens = sample.str.len()
                wide = sample.str.count(r"[^\x00-\xff]")
                w = float((lens + wide).quantile(0.9)) + 2 if len(sample) else 8
            ws.set_column(
                j, j, max(8.0, min(max(head_w, w), 60.0)), fmt if kind in {"num", "date"} else None
            )

    # ------------------------------------------------------------------ small tables (summary)
    def small_table(
        self, ws: Any, row: int, col: int, df: pd.DataFrame, *, header: bool = True
    ) -> int:
        """A small table at (row, col), row by row (fine in constant-memory mode). Returns next row."""
        cols = [str(c) for c in df.columns]
        if header:
            for j, h in enumerate(L.labels(cols, self.lang)):
                ws.write_string(row, col + j, h, self.head)
            row += 1
        prepared = self.prepare(df)
        lists = self._chunk_lists(prepared, slice(0, len(df)))
        for i in range(len(df)):
            for j, vals, fmt, fmts, kind in lists:
                v = vals[i]
                if v is None:
                    continue
                if kind == "num":
                    ws.write_number(row, col + j, v, fmt)
                else:
                    ws.write_string(row, col + j, v, fmts[i] if fmts else None)
            row += 1
        return row

    def chart(
        self,
        ws: Any,
        sheet: str,
        kind: str,
        title: str,
        cats: tuple[int, int, int],
        vals: tuple[int, int, int],
        at: tuple[int, int],
        *,
        subtype: str | None = None,
        reverse: bool = False,
        percent: bool = False,
        name: str | None = None,
    ) -> None:
        """A chart over cells (first_row, last_row, column) of ``sheet``, placed at ``at``."""
        spec = {"type": kind}
        if subtype:
            spec["subtype"] = subtype
        ch = self.wb.add_chart(spec)
        r1, r2, c = cats
        v1, v2, vc = vals
        series: dict[str, Any] = {
            "name": name or title,
            "categories": [sheet, r1, c, r2, c],
            "values": [sheet, v1, vc, v2, vc],
        }
        if kind == "pie":
            series["data_labels"] = {"percentage": True, "category": True, "leader_lines": True}
        elif kind != "line":
            series["data_labels"] = {"value": True, **({"num_format": "0.0%"} if percent else {})}
        if kind == "line":
            series["marker"] = {"type": "circle"}
        ch.add_series(series)
        ch.set_title({"name": title})
        ch.set_legend({"position": "right"} if kind == "pie" else {"none": True})
        if kind == "bar" and reverse:
            ch.set_y_axis({"reverse": True})
        ch.set_size({"width": 560, "height": 300})
        ws.insert_chart(at[0], at[1], ch)
        self.charts += 1


def _display_width(text: str) -> int:
    return sum(2 if ord(ch) > 0xFF else 1 for ch in text)


# --------------------------------------------------------------------------- public entry
def write_workbook(
    customers: pd.DataFrame,
    path: str | Path,
    *,
    orders: pd.DataFrame | str | Path | None = None,
    rejects: pd.DataFrame | None = None,
    clean_report: dict[str, Any] | pd.DataFrame | None = None,
    strategies: pd.DataFrame | str | Path | None = None,
    previous: pd.DataFrame | None = None,
    role: str | Role | None = None,
    owner: str | None = None,
    mask: bool = True,
    lang: str = "zh",
    roles_path: str | Path | None = None,
    segment_sheets: bool = True,
    nps: Any = None,
    interactions: pd.DataFrame | None = None,
    as_of: Any = None,
    trend: list[dict[str, Any]] | None = None,
    sheet_rows: int | None = None,
    full_list: str = "customers.csv",
    tasks: pd.DataFrame | None = None,
) -> ReportResult:
    """Write the tiered report workbook for segmented (+ tagged) customers to ``path``, atomically.

    Works on whatever columns of the segmented/tagged table are present. ``role`` (name from
    ``rules/roles.yaml`` or a :class:`Role`) decides the rows and columns shown; personal data
    is masked unless ``mask=False`` (only for roles that allow it). ``orders``: the
    attributed orders (``SegmentResult.orders``; raw orders are attributed to ``customers``
    first), or the path of an attributed-orders Parquet file (the run's
    ``orders_attributed.parquet``): then only the columns 概览 needs are read, while it is
    written, and let go before the other sheets (memory). ``nps``: the segment step's NPS (``SegmentResult.nps``), shown on 概览 with its
    definition. A 销售漏斗 sheet (:func:`custtool.funnel.sales_funnel` of the customers
    shown, with the follow-up log ``interactions`` up to ``as_of``) is added when the
    customers have a status or a follow-up log is given. ``trend``: KPIs per run from the customer book (``custtool.book.Trend.runs``);
    with two or more runs a 趋势 sheet shows them with line charts. ``tasks``: due follow-up
    tasks (:func:`custtool.followups.due_followups`): a 跟进任务 sheet, the role's rows and
    columns, masked like every sheet (the per-owner workbooks pass each owner's tasks).

    Each customer's row is written once, in 客户明细. The tier and RFM-class sheets show the
    segment's summary (the same figures as 概览), its traits against all customers and its
    top ``sheet_rows`` customers by value (default: ``sheet_rows`` of rules/report.yaml); a
    note on a capped sheet says how many more there are and where: 客户明细 filtered, and
    ``full_list`` (the customers CSV beside the workbook, which the caller writes).
    """
    import pandas as pd

    from custtool.attribution import ensure_attributed
    from custtool.config import sheet_rows_setting

    cap = sheet_rows_setting(sheet_rows)

    if lang not in {"zh", "en"}:
        raise InputError(f"unknown language {lang!r}", "use --lang zh or --lang en")
    role_obj = role if isinstance(role, Role) else get_role(role, roles_path)
    if isinstance(strategies, pd.DataFrame):
        strat = strategies
    else:
        strat = load_strategies(strategies)
    check_unmask(role_obj, mask)
    orders_file = None
    if isinstance(orders, (str, os.PathLike)):
        orders_file, orders = Path(orders), None
    elif orders is not None:
        orders = ensure_attributed(orders, customers)
    # masked chunk by chunk while writing (memory), never unmasked in any cell when mask=True
    view = role_view(prepare_customers(customers), role_obj, owner=owner)
    amounts = role_obj.amounts and "monetary" in view.columns
    target = Path(path)
    result = ReportResult(
        path=target,
        customers=len(view),
        role=role_obj.name,
        masked=mask,
        lang=lang,
        sheet_rows=cap,
    )
    used_names: set[str] = set()

    def sheet_name(name: str) -> str:
        base = safe_sheet_name(name)
        candidate, k = base, 2
        while candidate.lower() in used_names:
            suffix = f" ({k})"
            candidate = base[: 31 - len(suffix)] + suffix
            k += 1
        used_names.add(candidate.lower())
        return candidate

    # plan the sheets first (constant-memory: each sheet is written completely, in order)
    plan: list[tuple[str, str, Any]] = [
        ("summary", sheet_name(L.text("sheet_summary", lang)), None)
    ]
    if segment_sheets:
        for dim in ("tier", "rfm_class"):
            if dim not in view.columns:
                continue
            key = _text_series(view[dim])
            present = set(key.unique()) - {""}
            ordered = [v for v in SEGMENT_ORDERS[dim] if v in present] + sorted(
                present - set(SEGMENT_ORDERS[dim])
            )
            for value in ordered:
                plan.append(("segment", sheet_name(L.value_label(value, lang)), (dim, value)))
    plan.append(("detail", sheet_name(L.text("sheet_detail", lang)), None))
    if "status" in view.columns or interactions is not None:
        plan.append(("funnel", sheet_name(L.text("sheet_funnel", lang)), None))
    if tasks is not None:
        plan.append(("tasks", sheet_name(L.text("sheet_tasks", lang)), None))
    plan.append(("strategy", sheet_name(L.text("sheet_strategy", lang)), None))
    plan.append(("quality", sheet_name(L.text("sheet_quality", lang)), None))
    if previous is not None:
        plan.append(("migration", sheet_name(L.text("sheet_migration", lang)), None))
    if trend is not None and len(trend) >= 2:
        plan.append(("trend", sheet_name(L.text("sheet_trend", lang)), None))

    display = _display_values(view, lang)
    by_value = _value_order(view)  # row positions, most valuable first
    segment_keys = {
        d: _text_series(view[d]).to_numpy(dtype=object)
        for d in ("tier", "rfm_class")
        if d in view.columns
    }
    with open_workbook(target, constant_memory=True) as wb:
        w = _Sheets(wb, lang, mask)
        sheets = {name: wb.add_worksheet(name) for _kind, name, _arg in plan}
        for kind, name, arg in plan:
            ws = sheets[name]
            if kind == "summary":
                result.sheets[name] = _write_summary(
                    w,
                    ws,
                    name,
                    view,
                    # a file: read here (the argument is let go when the sheet is written)
                    orders
                    if orders_file is None
                    else _summary_orders(orders_file, view, customers, amounts),
                    customers,
                    role_obj,
                    mask,
                    amounts,
                    lang,
                    nps,
                    notes=_excel_limit_notes(len(view), full_list, lang),
                )
            elif kind == "segment":
                dim, value = arg
                positions = by_value[segment_keys[dim][by_value] == value]
                listed = _write_segment_sheet(
                    w, ws, view, display, dim, value, positions, cap, amounts, lang, full_list
                )
                result.sheets[name] = listed
                if listed < len(positions):
                    result.capped[name] = {
                        "customers": int(len(positions)),
                        "listed": int(listed),
                        "full_list": full_list,
                    }
            elif kind == "detail":
                w.data_sheet(ws, display, positions=by_value)
                result.sheets[name] = len(display)
            elif kind == "tasks" and tasks is not None:  # planned only with tasks
                from custtool.followups import task_table

                shown_tasks = role_view(tasks, role_obj, owner=owner)
                w.data_sheet(ws, task_table(shown_tasks, lang), conditional=False)
                result.sheets[name] = len(shown_tasks)
            elif kind == "funnel":
                result.sheets[name] = _write_funnel(w, ws, view, interactions, as_of, lang)
            elif kind == "strategy":
                result.sheets[name] = _write_strategies(w, ws, strat, view, lang)
            elif kind == "quality":
                result.sheets[name] = _write_quality(w, ws, view, rejects, clean_report, mask, lang)
            elif kind == "migration" and previous is not None:  # planned only with previous
                result.sheets[name] = _write_migration(
                    w, ws, previous, view, role_obj, owner, mask, lang
                )
            elif kind == "trend" and trend is not None:
                result.sheets[name] = _write_trend(w, ws, name, trend, amounts, lang)
        result.charts = w.charts
        for sheet, rows, written in w.truncated:
            result.sheets[sheet] = written
            result.warnings.append(
                f"sheet {sheet!r} holds the first {written:,} of {rows:,} rows (Excel's limit is "
                f"{EXCEL_MAX_ROWS:,} rows a sheet); the full table is in {full_list}"
            )
    return result


def _display_values(view: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Segment values translated for English reports; everything else unchanged."""
    if lang == "zh":
        return view
    out = view.copy(deep=False)
    mapping = {k: v[1] for k, v in L.VALUE_LABELS.items()}
    for dim in SEGMENT_ORDERS:
        if dim in out.columns:
            s = _text_series(out[dim])
            out[dim] = s.map(mapping).fillna(s).astype(object)
    return out


def as_of_text(view: pd.DataFrame) -> str:
    """The as-of date the segmented table records (``as_of`` column), as YYYY-MM-DD; "" if none."""
    import pandas as pd

    if "as_of" not in view.columns or not len(view):
        return ""
    first = pd.to_datetime(view["as_of"], errors="coerce").dropna()
    return first.iloc[0].strftime("%Y-%m-%d") if len(first) else ""


# --------------------------------------------------------------------------- sheet writers
def _summary_orders(
    path: Path, view: pd.DataFrame, customers: pd.DataFrame, amounts: bool
) -> pd.DataFrame | None:
    """The columns of the attributed-orders Parquet ``path`` that 概览's monthly revenue
    reads: order time and amount, and the customer id when the view is a subset of the
    customers (a role's or owner's rows). None when the role shows no amounts."""
    import pandas as pd
    import pyarrow.parquet as pq

    if not amounts:
        return None
    cols = ["order_time", "amount"] + ([] if len(view) == len(customers) else ["customer_id"])
    names = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in cols if c in names])


def _write_summary(
    w: _Sheets,
    ws: Any,
    name: str,
    view: pd.DataFrame,
    orders: pd.DataFrame | None,
    customers: pd.DataFrame,
    role: Role,
    mask: bool,
    amounts: bool,
    lang: str,
    nps: Any = None,
    notes: list[str] | None = None,
) -> int:

    ws.set_column(0, 0, 22)
    ws.set_column(1, 5, 14)
    ws.set_landscape()
    ws.set_paper(9)  # A4
    ws.fit_to_pages(1, 0)  # one page wide: tables and charts side by side when printed
    ws.hide_gridlines(2)
    ws.write_string(0, 0, L.text("report_title", lang), w.title)
    as_of = as_of_text(view)
    note = (
        f"{L.text('as_of', lang)}: {as_of or '-'}    {L.text('role', lang)}: {role.name}    "
        + L.text("masked" if mask else "unmasked", lang)
    )
    ws.write_string(1, 0, note, w.note)
    row = 3
    for extra in notes or []:  # e.g. Excel's row limit: where the rest of the customers are
        ws.write_string(row - 1, 0, extra, w.warn)
        row += 1
    figures = kpis(view, amounts=amounts, nps=nps)
    ws.write_string(row, 0, L.label("kpi", lang), w.head)
    ws.write_string(row, 1, L.label("value", lang) if lang == "en" else "数值", w.head)
    row += 1
    fmts = {
        "customers": w.kpi_int,
        "active": w.kpi_int,
        "revenue": w.kpi_money,
        "aov": w.kpi_money,
        "repurchase": w.kpi_pct,
        "nps": w.kpi_num,
    }
    for key, val in figures.items():
        ws.write_string(row, 0, L.text(f"kpi_{key}", lang), w.kpi_label)
        if val is None or (isinstance(val, float) and math.isnan(val)):
            ws.write_string(row, 1, "-", w.kpi_label)
        else:
            ws.write_number(row, 1, float(val), fmts[key])
        row += 1
    if "nps" in figures:  # the definition, stated (SPEC D6)
        ws.write_string(row, 0, L.text("nps_definition", lang), w.note)
        row += 1
    row += 1
    chart_col = 6

    def section(
        title_key: str, table: pd.DataFrame, charts: list[tuple[str, str, str, dict[str, Any]]]
    ) -> None:
        nonlocal row
        top = row
        ws.write_string(row, 0, L.text(title_key, lang), w.section)
        row += 1
        head_row = row
        row = w.small_table(ws, row, 0, table)
        if len(table):
            first, last = head_row + 1, head_row + len(table)
            for k, (kind, value_col, title, opts) in enumerate(charts):
                if value_col not in table.columns:
                    continue
                vc = list(table.columns).index(value_col)
                w.chart(
                    ws,
                    name,
                    kind,
                    title,
                    (first, last, 0),
                    (first, last, vc),
                    (top, chart_col + 9 * k),
                    **opts,
                )
        height = 16 if charts and len(table) else 0
        row = max(row, top + height) + 1

    if "rfm_class" in view.columns:
        t = segment_table(view, "rfm_class", amounts=amounts, lang=lang)
        charts: list[tuple[str, str, str, dict[str, Any]]] = [
            ("column", "customers", L.text("by_rfm", lang) + " · " + L.label("customers", lang), {})
        ]
        if amounts:
            charts.append(("pie", "revenue", L.label("revenue_share", lang), {}))
        section("by_rfm", t, charts)
    if "tier" in view.columns:
        t = segment_table(view, "tier", amounts=amounts, lang=lang)
        charts = [("column", "customers", L.text("by_tier", lang), {})]
        if amounts:
            charts.append(
                (
                    "pie",
                    "revenue",
                    L.label("revenue_share", lang) + " · " + L.text("by_tier", lang),
                    {},
                )
            )
        section("by_tier", t, charts)
    if "lifecycle" in view.columns:
        t = segment_table(view, "lifecycle", amounts=amounts, lang=lang)
        section(
            "by_lifecycle",
            t,
            [("bar", "customers", L.text("by_lifecycle", lang), {"reverse": True})],
        )
    channel_col = next(
        (c for c in ("channels", "source_channel", "_channel") if c in view.columns), None
    )
    if channel_col:
        dist = distribution(view, channel_col, lang=lang)
        # customers in several channels count in each: shares then add up to more than 100%, so no pie
        kind = "pie" if dist["customers"].sum() <= len(view) else "bar"
        section(
            "by_channel",
            dist,
            [
                (
                    kind,
                    "customers",
                    L.text("by_channel", lang),
                    {"reverse": True} if kind == "bar" else {},
                )
            ],
        )
    if "industry" in view.columns:
        section(
            "by_industry",
            distribution(view, "industry", lang=lang),
            [("bar", "customers", L.text("by_industry", lang), {"reverse": True})],
        )
    elif "city" in view.columns:
        section(
            "by_city",
            distribution(view, "city", lang=lang),
            [("bar", "customers", L.text("by_city", lang), {"reverse": True})],
        )
    if orders is not None and amounts:
        own = orders if len(view) == len(customers) else _own_orders(orders, view)
        t = monthly_revenue(own)
        section("monthly_revenue", t, [("line", "revenue", L.text("monthly_revenue", lang), {})])
    return len(view)


def _write_funnel(
    w: _Sheets, ws: Any, view: pd.DataFrame, interactions: Any, as_of: Any, lang: str
) -> int:
    """The 销售漏斗 sheet: the funnel table of :func:`custtool.funnel.sales_funnel` (the same
    figures as `custtool funnel`), conversion rates as percentages."""
    from custtool.funnel import sales_funnel

    table = sales_funnel(view, interactions, as_of=as_of).table
    shown = table.assign(
        dimension=table["dimension"].map(lambda d: L.label(d, lang)),
    ).rename(columns={c: L.label(c, lang) for c in table.columns})
    w.data_sheet(ws, shown)
    return len(shown)


#: per-customer figures compared on a tier / class sheet (segment mean vs all customers)
TRAIT_COLUMNS = (
    "recency",
    "frequency",
    "monetary",
    "aov",
    "ltv",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
    "repurchase",
    "churn_risk",
)


def trait_values(view: pd.DataFrame) -> dict[str, Any]:
    """Each trait column of ``view`` as floats (flags as 0/1), for :func:`segment_traits`."""
    import numpy as np
    import pandas as pd

    out = {}
    for col in TRAIT_COLUMNS:
        if col not in view.columns:
            continue
        s = view[col]
        if col in BOOL_COLUMNS:
            out[col] = s.astype("boolean").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        else:
            out[col] = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return out


def segment_traits(
    view: pd.DataFrame, by: str, value: str, values: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Mean of each trait (recency, frequency, monetary, …; flags as shares) among the
    customers whose ``by`` is ``value``, beside the mean over all customers. ``values``:
    :func:`trait_values` of ``view`` when the caller has them already (one per sheet)."""
    import numpy as np
    import pandas as pd

    inside = _text_series(view[by]).eq(value).to_numpy()
    rows = []
    for col, x in (trait_values(view) if values is None else values).items():
        seg = x[inside]
        rows.append(
            (
                col,
                float(np.nanmean(seg)) if np.isfinite(seg).any() else np.nan,
                float(np.nanmean(x)) if np.isfinite(x).any() else np.nan,
            )
        )
    return pd.DataFrame(rows, columns=["trait", "segment_mean", "overall_mean"])


def _cap_note(dim: str, value: str, n: int, listed: int, full_list: str, lang: str) -> str:
    dim_label, shown = L.label(dim, lang), L.value_label(value, lang)
    detail = L.text("sheet_detail", lang)
    if listed >= n:
        return L.text("segment_all", lang).format(n=n)
    return L.text("segment_capped", lang).format(
        listed=listed, more=n - listed, detail=detail, dim=dim_label, value=shown, file=full_list
    )


def _write_segment_sheet(
    w: _Sheets,
    ws: Any,
    view: pd.DataFrame,
    display: pd.DataFrame,
    dim: str,
    value: str,
    positions: Any,
    cap: int,
    amounts: bool,
    lang: str,
    full_list: str,
) -> int:
    """One tier / class sheet: a note, the segment's row of the 概览 table, its traits, and
    its top ``cap`` customers by value. Returns the number of customers listed."""
    n = len(positions)
    listed = min(n, cap)
    ws.set_column(0, 0, 16)
    ws.write_string(0, 0, L.value_label(value, lang), w.title)
    ws.write_string(1, 0, _cap_note(dim, value, n, listed, full_list, lang), w.note)
    row = 3
    # the same figures as 概览's segment table: one function computes both (once per dim)
    key = ("segment_table", dim)
    if key not in w.cache:
        w.cache[key] = segment_table(view, dim, amounts=amounts, lang=lang)
    table = w.cache[key]
    mine = table[table["segment"] == L.value_label(value, lang)].reset_index(drop=True)
    ws.write_string(row, 0, L.text("segment_summary", lang), w.section)
    row = w.small_table(ws, row + 1, 0, mine) + 1
    if "traits" not in w.cache:
        w.cache["traits"] = trait_values(view)
    traits = segment_traits(view, dim, value, w.cache["traits"])
    if len(traits):
        traits["trait"] = traits["trait"].map(lambda c: L.label(c, lang))
        ws.write_string(row, 0, L.text("segment_traits", lang), w.section)
        row = w.small_table(ws, row + 1, 0, traits) + 1
    ws.write_string(row, 0, L.text("segment_top", lang).format(n=listed), w.section)
    cols = [c for c in SEGMENT_SHEET_COLUMNS if c in display.columns]
    # only the listed rows are prepared and masked (a masker found by scanning a column
    # changes only the rows where it finds something: the same cells as on the full column)
    listed_rows = display[cols].iloc[positions[:listed]]
    w.data_sheet(ws, listed_rows, start_row=row + 1, freeze=False)
    return listed


def _excel_limit_notes(n: int, full_list: str, lang: str) -> list[str]:
    """The note on 概览 when 客户明细 cannot hold every customer (Excel's row limit)."""
    room = EXCEL_MAX_ROWS - 1
    if n <= room:
        return []
    return [L.text("detail_over_limit", lang).format(n=n, room=room, file=full_list)]


def strategy_table(strat: pd.DataFrame, view: pd.DataFrame, lang: str) -> pd.DataFrame:
    """The 策略 table: each strategy row with the number of customers of ``view`` in its
    segment, dimension and segment as display labels (the sheet and report.html show it)."""
    import pandas as pd

    table = strat.copy()
    counts = pd.Series(0, index=table.index, dtype="int64")
    for dim in table["dimension"].unique():
        if dim in view.columns:
            vc = _text_series(view[dim]).value_counts()
            sel = table["dimension"] == dim
            counts[sel] = table.loc[sel, "segment"].map(vc).fillna(0).astype("int64")
    table.insert(2, "customers", counts)
    table["dimension"] = table["dimension"].map(lambda d: L.label(d, lang))
    table["segment"] = table["segment"].map(lambda v: L.value_label(v, lang))
    return table


def _write_strategies(
    w: _Sheets, ws: Any, strat: pd.DataFrame, view: pd.DataFrame, lang: str
) -> int:
    table = strategy_table(strat, view, lang)
    w.data_sheet(ws, table, conditional=False)
    ws.set_column(3, 3, 28)
    ws.set_column(4, 4, 60)
    return len(table)


def _write_quality(
    w: _Sheets,
    ws: Any,
    view: pd.DataFrame,
    rejects: pd.DataFrame | None,
    clean_report: dict[str, Any] | pd.DataFrame | None,
    mask: bool,
    lang: str,
) -> int:
    import pandas as pd

    ws.set_column(0, 0, 24)
    ws.set_column(1, 8, 14)
    row = 0
    written = 0

    def title(key: str) -> None:
        nonlocal row
        ws.write_string(row, 0, L.text(key, lang), w.section)
        row += 1

    if clean_report is not None:
        title("clean_report")
        if isinstance(clean_report, pd.DataFrame):
            table = clean_report
        else:
            flat = {
                k: v
                for k, v in _flatten(clean_report).items()
                if isinstance(v, (int, float, str, bool))
            }
            table = pd.DataFrame(
                {"kpi": list(flat), "kpi_value": list(flat.values())}, dtype=object
            )
            table["kpi_value"] = table["kpi_value"].map(
                lambda v: v if isinstance(v, str) else str(v) if isinstance(v, bool) else v
            )
            nums = pd.to_numeric(table["kpi_value"], errors="coerce")
            if nums.notna().all():
                table["kpi_value"] = nums
            table["note"] = [_clean_metric_note(k, lang) for k in flat]
        row = w.small_table(ws, row, 0, table) + 1

    def item_counts(col: str) -> pd.Series:
        """How often each item of a ``;``-list column occurs."""
        return _counts(list_items(view[col]))

    if "_flags" in view.columns:
        vc = item_counts("_flags")
        if len(vc):
            title("flag_counts")
            row = w.small_table(ws, row, 0, _code_table(vc, lang)) + 1
    if "missing_fields" in view.columns:
        vc = item_counts("missing_fields")
        if len(vc):
            title("missing_counts")
            cols = pd.Series(vc.index.astype(object)).map(lambda c: L.label(c, lang))
            row = (
                w.small_table(
                    ws, row, 0, pd.DataFrame({"column": cols.to_numpy(), "count": vc.to_numpy()})
                )
                + 1
            )
    if rejects is not None:
        rej = mask_frame(rejects, mask=mask)  # the raw value masked by its field
        if "code" in rej.columns and len(rej):
            title("reject_codes")
            vc = _text_series(rej["code"]).value_counts()
            row = w.small_table(ws, row, 0, _code_table(vc, lang)) + 1
        title("rejects")
        row = w.data_sheet(ws, rej, start_row=row, conditional=False, freeze=False)
        written = len(rej)
    if row == 0:
        ws.write_string(0, 0, L.text("none", lang), w.note)
    return written


def _clean_metric_note(key: str, lang: str) -> str:
    """What a clean report count means: rows_in → 输入行数, merges_by_key.phone → 按键合并(phone)."""
    from custtool.clean import CLEAN_METRICS

    k = 0 if lang == "zh" else 1
    if key in CLEAN_METRICS:
        return CLEAN_METRICS[key][k]
    head, _, tail = key.partition(".")
    if head == "merges_by_key" and tail:
        return f"按键合并({tail})" if lang == "zh" else f"Rows merged on {tail}"
    return ""


def _code_table(counts: pd.Series, lang: str) -> pd.DataFrame:
    """Problem codes with their count and meaning (date_invalid:birth_date → 日期无效或无法识别(出生日期))."""
    import pandas as pd

    from custtool.normalize import PROBLEMS

    k = 0 if lang == "zh" else 1
    notes = []
    for code in counts.index.astype(str):
        base, _, col = code.partition(":")
        text = PROBLEMS[base][k] if base in PROBLEMS else ""
        notes.append(f"{text}({L.label(col, lang)})" if text and col else text)
    return pd.DataFrame(
        {"code": counts.index.astype(object), "count": counts.to_numpy(), "note": notes}
    )


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _write_migration(
    w: _Sheets,
    ws: Any,
    previous: pd.DataFrame,
    view: pd.DataFrame,
    role: Role,
    owner: str | None,
    mask: bool,
    lang: str,
) -> int:

    prev = role_view(prepare_customers(previous), role, owner=owner)
    matrix = migration_matrix(prev, view)
    ws.set_column(0, 0, 22)
    ws.set_column(1, 12, 13)
    ws.write_string(0, 0, L.text("migration_matrix", lang), w.section)
    table = matrix.reset_index()
    table.columns = ["before", *[str(c) for c in matrix.columns]]
    table["before"] = table["before"].map(lambda v: L.value_label(v, lang))
    head = [
        L.label("before", lang) + " \\ " + L.label("now", lang),
        *[L.value_label(c, lang) for c in matrix.columns],
    ]
    for j, h in enumerate(head):
        ws.write_string(1, j, h, w.head)
    row = w.small_table(ws, 2, 0, table, header=False)
    if len(matrix.columns):
        ws.conditional_format(
            2,
            1,
            row - 1,
            len(matrix.columns),
            {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#F4B183"},
        )
    row += 1
    for dim in ("tier", "lifecycle"):  # the same matrices as `custtool compare`
        if dim not in prev.columns or dim not in view.columns:
            continue
        m = migration_matrix(prev, view, by=dim)
        ws.write_string(row, 0, L.text(f"migration_{dim}", lang), w.section)
        row += 1
        head = [
            L.label("before", lang) + " \\ " + L.label("now", lang),
            *[L.value_label(c, lang) for c in m.columns],
        ]
        for j, h in enumerate(head):
            ws.write_string(row, j, h, w.head)
        t = m.reset_index()
        t.columns = ["before", *[str(c) for c in m.columns]]
        t["before"] = t["before"].map(lambda v: L.value_label(v, lang))
        row = w.small_table(ws, row + 1, 0, t, header=False) + 1
    ws.write_string(row, 0, L.text("fallen", lang), w.section)
    row += 1
    fallen = fallen_customers(prev, view)
    cols = [
        c
        for c in [
            "before",
            "now",
            "customer_id",
            "name",
            "phone",
            "owner",
            "lifecycle",
            "recency",
            "frequency",
            "monetary",
            "ltv",
            "last_order",
            "tags",
        ]
        if c in fallen.columns
    ]
    fallen = _display_values(fallen[cols], lang)
    for c in ("before", "now"):
        fallen[c] = fallen[c].map(lambda v: L.value_label(v, lang))
    w.data_sheet(ws, fallen, start_row=row, conditional=False, freeze=False)
    return int(matrix.to_numpy().sum())


def _write_trend(
    w: _Sheets, ws: Any, name: str, runs: list[dict[str, Any]], amounts: bool, lang: str
) -> int:
    """趋势: one row per run of the book (KPIs, tier shares) and a line chart per KPI."""
    import pandas as pd

    keys = ["customers", "active", "revenue", "aov", "repurchase", "nps", "satisfaction"]
    if not amounts:
        keys = [k for k in keys if k not in ("revenue", "aov")]
    table = pd.DataFrame({"as_of": [r["as_of"] for r in runs]})
    for k in keys:
        table[k] = pd.array([r.get(k) for r in runs], dtype="Float64")
    tiers = [
        t
        for t in ("高价值", "中价值", "低价值")
        if any(t in (r.get("tier_share") or {}) for r in runs)
    ]
    for t in tiers:
        table[t] = pd.array([(r.get("tier_share") or {}).get(t) for r in runs], dtype="Float64")
    ws.set_column(0, 0, 14)
    ws.set_column(1, len(table.columns), 13)
    ws.write_string(0, 0, L.text("trend_title", lang), w.section)
    head = [L.text("as_of", lang), *[L.text(f"kpi_{k}", lang) for k in keys]]
    head += [f"{L.value_label(t, lang)} %" for t in tiers]
    for j, h in enumerate(head):
        ws.write_string(1, j, h, w.head)
    end = w.small_table(ws, 2, 0, table, header=False)
    first, last = 2, end - 1
    at_row = end + 1
    for i, k in enumerate(keys):
        if table[k].notna().sum() == 0:
            continue
        title = L.text(f"kpi_{k}", lang)
        w.chart(
            ws,
            name,
            "line",
            title,
            (first, last, 0),
            (first, last, 1 + i),
            (at_row, 0 if i % 2 == 0 else 6),
        )
        if i % 2 == 1:
            at_row += 16
    return len(table)


__all__ = [
    "ReportResult",
    "write_workbook",
    "kpis",
    "segment_table",
    "distribution",
    "monthly_revenue",
    "tags_text",
    "prepare_customers",
    "mask_frame",
]


def _excel_numbers(part: pd.Series, kind: str) -> np.ndarray:
    """A number or date column as Excel's float values (dates: days since Excel's epoch,
    local wall time); NaN where blank."""
    import numpy as np
    import pandas as pd

    if kind == "date":
        t = part.dt.tz_localize(None) if getattr(part.dt, "tz", None) is not None else part
        part = (t - pd.Timestamp(_EXCEL_EPOCH)) / pd.Timedelta(days=1)
    return pd.to_numeric(part, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
