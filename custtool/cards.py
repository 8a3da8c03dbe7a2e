"""Profile cards (客户画像卡, SPEC E2): one card per customer and one per segment.

:func:`individual_cards` builds, per customer, the fields of the example card in the source
documents — 编号, 基础信息, 行为特征, 需求偏好, 价值评估, 标签, 备注 — plus the suggested
action from the strategy table. :func:`group_cards` summarises a segment: size, shares, top
cities, age bands, channels, categories, typical order value and the tags most
over-represented against all customers (lift). Both return DataFrames; the renderers turn
them into Markdown, one self-contained printable HTML file, or an Excel workbook.

Personal data is masked by default here too (names, phones, emails, ID numbers, phones
inside notes).
"""

from __future__ import annotations

import html
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool import labels as L
from custtool.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

INDIVIDUAL_FIELDS = [
    "customer_id",
    "basic_info",
    "behaviour",
    "preferences",
    "value_assessment",
    "tags",
    "notes",
    "suggested_action",
]
GROUP_FIELDS = [
    "dimension",
    "segment",
    "customers",
    "customer_share",
    "revenue",
    "revenue_share",
    "gender_split",
    "top_cities",
    "age_bands",
    "top_channels",
    "channel_modes",
    "active_slots",
    "top_categories",
    "common_needs",
    "levels",
    "typical_aov",
    "top_tags",
]
AGE_BINS = [0, 25, 35, 45, 55, 200]
AGE_LABELS = ["25岁以下", "25-34岁", "35-44岁", "45-54岁", "55岁及以上"]
AGE_LABELS_EN = ["under 25", "25-34", "35-44", "45-54", "55+"]

_T = {
    "zh": {
        "age": "{}岁",
        "orders_90d": "近90天消费{}次",
        "frequency": "统计期内消费{}次",
        "aov": "客单价{}元",
        "last_order": "最近消费{}",
        "recency": "（{}天前）",
        "channels": "渠道：{}",
        "categories": "常购品类：{}",
        "channel_mode": "偏好{}消费",
        "preferred_channel": "常用渠道{}",
        "active_slot": "活跃时段{}",
        "days_since_interaction": "距上次互动{}天",
        "level": "客户等级：{}",
        "interactions": "近一年互动{}次",
        "interactions_30d": "近30天互动{}次",
        "complaints": "投诉{}次",
        "needs": "需求：{}",
        "ltv": "LTV {}元",
        "monetary": "统计期内消费{}元",
        "repurchase": "复购：{}",
        "nps": "推荐评分(NPS) {}",
        "lifecycle": "生命周期：{}",
        "churn": "流失风险",
        "potential": "潜力客户",
        "sep": "，",
        "list": "、",
        "yes": "是",
        "no": "否",
    },
    "en": {
        "age": "{} years",
        "orders_90d": "{} orders in 90 days",
        "frequency": "{} orders in the window",
        "aov": "AOV {}",
        "last_order": "last order {}",
        "recency": " ({} days ago)",
        "channels": "channels: {}",
        "categories": "categories: {}",
        "channel_mode": "buys {}",
        "preferred_channel": "mostly via {}",
        "active_slot": "active {}",
        "days_since_interaction": "{} days since last contact",
        "level": "level: {}",
        "interactions": "{} interactions this year",
        "interactions_30d": "{} interactions in 30 days",
        "complaints": "{} complaints",
        "needs": "needs: {}",
        "ltv": "LTV {}",
        "monetary": "spent {} in the window",
        "repurchase": "repurchase: {}",
        "nps": "NPS score {}",
        "lifecycle": "lifecycle: {}",
        "churn": "churn risk",
        "potential": "potential",
        "sep": ", ",
        "list": ", ",
        "yes": "yes",
        "no": "no",
    },
}


# --------------------------------------------------------------------------- vector helpers
def _s(df: pd.DataFrame, col: str) -> pd.Series:
    """Column as string dtype with "" for missing (all "" when the column is absent)."""
    import pandas as pd

    if col not in df.columns:
        return pd.Series("", index=df.index, dtype="string")
    return df[col].astype("string").fillna("").str.strip()


def _strip(values: pd.Series) -> pd.Series:
    """:func:`_s` of a Series (the DuckDB counts' categories, stripped as the cards' text)."""
    return _s(values.to_frame("v"), "v")


def _text_codes(x: pd.Series) -> tuple[Any, pd.Series]:
    """``_s`` of a column as (codes, values): ``values`` = ``_s`` of each distinct cell (a
    missing cell's as ""; values may repeat after stripping), ``codes`` (an Arrow int32 array,
    no nulls) = each row's position in ``values``. For Arrow-backed text the rows are never
    copied as text; other columns go through ``_s`` row by row."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(x.dtype, pd.CategoricalDtype):  # codes already (read_attributed(codes=True))
        n = len(x.cat.categories)
        raw = x.cat.codes.to_numpy()
        cat_codes = np.where(raw < 0, n, raw).astype(np.int32)  # missing: the extra last value
        values = pd.Series(x.cat.categories.to_numpy(dtype=object).tolist() + [None], dtype=object)
        return pa.array(cat_codes), _s(values.to_frame("v"), "v").reset_index(drop=True)
    if not isinstance(x.dtype, pd.StringDtype):
        enc = pc.dictionary_encode(pa.array(_s(x.to_frame("v"), "v").array, type=pa.string()))
        if isinstance(enc, pa.ChunkedArray):
            enc = enc.combine_chunks()
        return enc.indices, pd.Series(enc.dictionary.to_pylist(), dtype="string")
    arr = pa.array(x.array, from_pandas=True)  # large_string kept: no cast copy
    if not isinstance(arr, pa.ChunkedArray):
        arr = pa.chunked_array([arr], arr.type)
    enc = pc.dictionary_encode(arr).unify_dictionaries()  # one dictionary for every chunk
    distinct = enc.chunk(0).dictionary if enc.num_chunks else pa.array([], pa.string())
    codes = (
        pa.concat_arrays([c.indices for c in enc.chunks])
        if enc.num_chunks
        else pa.array([], pa.int32())
    )
    # a missing cell: the extra last value (None → "" by _s)
    codes = pc.fill_null(codes, len(distinct))
    values = pd.Series(distinct.to_pylist() + [None], dtype=x.dtype)
    return codes, _s(values.to_frame("v"), "v").reset_index(drop=True)


def _num(df: pd.DataFrame, col: str, decimals: int = 0) -> pd.Series:
    """Numbers rounded to text ("" when missing or absent)."""
    import pandas as pd

    if col not in df.columns:
        return pd.Series("", index=df.index, dtype="string")
    x = pd.to_numeric(df[col], errors="coerce")
    if decimals == 0:
        txt = x.round(0).astype("Int64").astype("string")
    else:
        txt = x.round(decimals).astype("string")
    return txt.fillna("")


def _fill(template: str, part: pd.Series) -> pd.Series:
    """``template`` with ``{}`` replaced by ``part`` where part is non-empty, else ""."""
    before, _, after = template.partition("{}")
    return (before + part + after).where(part != "", "")


def _join(parts: list[pd.Series], sep: str) -> pd.Series:
    """Join non-empty parts with ``sep``, column-wise."""
    import numpy as np

    out = parts[0].astype("string").fillna("")
    for p in parts[1:]:
        p = p.astype("string").fillna("")
        glue = np.where((out != "") & (p != ""), sep, "")
        out = out + glue + p
    return out


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    import pandas as pd

    if col not in df.columns:
        return pd.Series(False, index=df.index)
    return df[col].fillna(False).astype(bool)


# --------------------------------------------------------------------------- individual
def individual_cards(
    customers: pd.DataFrame,
    customer_ids: list[str] | None = None,
    *,
    top: int | None = None,
    strategies: pd.DataFrame | str | Path | None = None,
    orders: pd.DataFrame | str | Path | None = None,
    role: str | None = None,
    owner: str | None = None,
    mask: bool = True,
    lang: str = "zh",
    attributed: bool = False,
    memory_limit: int | None = None,
) -> pd.DataFrame:
    """One card per selected customer (``customer_ids``, or the ``top`` N by value).

    Columns: customer_id, basic_info, behaviour, preferences, value_assessment, tags, notes,
    suggested_action. Unknown ids raise InputError naming them. ``attributed``: ``orders``
    are attributed orders already (the run's ``orders_attributed.parquet``: ``customer_id``
    is the matched customer), so only their ``customer_id`` and ``category`` are needed.
    ``orders`` may be that Parquet file's path: with ``attributed``, DuckDB (bounded by
    ``memory_limit`` bytes) counts the cards' customers' categories in it and only those
    counts come back (the same cards as from the file read into a DataFrame).
    """
    import pandas as pd

    from custtool.attribution import ensure_attributed
    from custtool.report.masking import get_role, mask_for_output
    from custtool.report.strategies import load_strategies, suggested_actions
    from custtool.report.workbook import (
        _sort_by_value,
        _value_column,
        _value_order,
        prepare_customers,
    )

    t = _T["en" if lang == "en" else "zh"]
    orders, orders_file = _orders_source(orders, attributed)
    if orders is not None and not attributed:
        orders = ensure_attributed(orders, customers)
    if top is not None and top < 0:
        raise InputError(f"top must be 0 or more, not {top}", "e.g. --top 20")
    role_obj = get_role(role)
    df = customers
    if customer_ids:
        if "customer_id" not in df.columns:
            raise InputError(
                "the table has no customer_id column",
                "make cards from a segmented or tagged table (custtool segment / tag)",
            )
        ids = df["customer_id"].astype("string").fillna("")
        missing = sorted(set(customer_ids) - set(ids))
        if missing:
            raise InputError(
                f"no customer {', '.join(missing[:5])} in the table",
                "check the ids (e.g. C00000001)",
            )
        df = df.loc[ids.isin(customer_ids).to_numpy()]
        order = {cid: k for k, cid in enumerate(customer_ids)}
        df = df.iloc[df["customer_id"].astype(str).map(order).argsort().to_numpy()]
    elif top:
        # the top rows' positions, then only those rows (sorting the whole table copied
        # every column of a million customers for 20 cards); same order as _sort_by_value
        col = _value_column(df)
        if col is None or pd.api.types.is_numeric_dtype(df[col]):
            df = df.iloc[_value_order(df)[:top]]
        else:  # a text column (a CSV read as text) sorts as text, as before
            df = _sort_by_value(df).head(top)
    else:
        df = df.iloc[0:0]
    view = mask_for_output(prepare_customers(df), role=role_obj, owner=owner, mask=mask)
    strat = strategies if isinstance(strategies, pd.DataFrame) else load_strategies(strategies)

    seg_gender = _s(view, "gender").replace({"未知": ""})
    if lang == "en":
        seg_gender = seg_gender.replace({"男": "male", "女": "female"})
    basic = _join(
        [
            _s(view, "name"),
            seg_gender,
            _fill(t["age"], _num(view, "age")),
            _s(view, "city"),
            _join([_s(view, "industry"), _s(view, "position")], " "),
            _s(view, "company"),
            _s(view, "customer_type"),
            _s(view, "member_level"),
        ],
        t["sep"],
    )
    last = (
        pd.to_datetime(view["last_order"], errors="coerce").dt.strftime("%Y-%m-%d")
        if "last_order" in view.columns
        else None
    )
    last_txt = last.astype("string").fillna("") if last is not None else _s(view, "last_order")
    if orders_file is not None:
        cats = _categories_per_customer_sql(view, orders_file, t["list"], memory_limit)
    else:
        cats = _categories_per_customer(view, orders, t["list"])
    if "top_categories" in view.columns:  # the segment's portrait column (by net spend) wins
        portrait_cats = _s(view, "top_categories")
        cats = portrait_cats.where(portrait_cats != "", cats.astype("string"))
    behaviour = _join(
        [
            _fill(t["orders_90d"], _num(view, "orders_90d")),
            _fill(t["frequency"], _num(view, "frequency")),
            _fill(t["aov"], _num(view, "aov")),
            _fill(t["last_order"], last_txt)
            + _fill(t["recency"], _num(view, "recency")).where(last_txt != "", ""),
            _fill(t["channels"], _s(view, "channels").str.replace(";", t["list"], regex=False)),
            _fill(t["channel_mode"], _s(view, "channel_mode")),
            _fill(t["preferred_channel"], _s(view, "preferred_channel")),
            _fill(t["categories"], cats),
            _fill(t["active_slot"], _s(view, "active_slot")),
            _fill(t["days_since_interaction"], _num(view, "days_since_interaction")),
            _fill(t["interactions"], _num(view, "interactions_365d")),
            _fill(t["interactions_30d"], _num(view, "interactions_30d").replace({"0": ""})).where(
                ~pd.Series("interactions_365d" in view.columns, index=view.index), ""
            ),
            _fill(t["complaints"], _num(view, "complaints_365d").replace({"0": ""})),
        ],
        t["sep"],
    )
    pref_cols = [
        c
        for c in view.columns
        if str(c).startswith("tag_") and any(k in str(c) for k in ("需求", "偏好", "兴趣"))
    ]
    preferences = _join(
        [_fill(t["needs"], _s(view, "needs").str.replace(";", t["list"], regex=False))]
        + [_s(view, c).str.replace(";", t["list"], regex=False) for c in pref_cols],
        t["sep"],
    )
    yes_no = pd.Series(t["no"], index=view.index, dtype="string").mask(
        _flag(view, "repurchase"), t["yes"]
    )
    if "repurchase" not in view.columns:
        yes_no = pd.Series("", index=view.index, dtype="string")
    value = _join(
        [
            _fill(
                t["level"], _s(view, "level").map(lambda v: L.value_label(v, lang)).astype("string")
            ),
            _s(view, "tier").map(lambda v: L.value_label(v, lang)).astype("string"),
            _s(view, "rfm_class").map(lambda v: L.value_label(v, lang)).astype("string"),
            _fill(t["ltv"], _num(view, "ltv")),
            _fill(t["monetary"], _num(view, "monetary")).where(
                ~pd.Series("ltv" in view.columns, index=view.index), ""
            ),
            _fill(t["repurchase"], yes_no),
            _fill(t["nps"], _num(view, "nps_score")),
            _fill(
                t["lifecycle"],
                _s(view, "lifecycle").map(lambda v: L.value_label(v, lang)).astype("string"),
            ),
            pd.Series(t["potential"], index=view.index, dtype="string").where(
                _flag(view, "potential"), ""
            ),
            pd.Series(t["churn"], index=view.index, dtype="string").where(
                _flag(view, "churn_risk"), ""
            ),
        ],
        t["sep"],
    )
    out = pd.DataFrame(
        {
            "customer_id": _s(view, "customer_id"),
            "basic_info": basic,
            "behaviour": behaviour,
            "preferences": preferences,
            "value_assessment": value,
            "tags": _s(view, "tags").str.replace(";", t["list"], regex=False),
            "notes": _s(view, "notes"),
            "suggested_action": suggested_actions(view, strat).astype("string"),
        }
    )
    return out.astype(object).reset_index(drop=True)


def _categories_per_customer(
    view: pd.DataFrame, orders: pd.DataFrame | None, sep: str, k: int = 3
) -> pd.Series:
    """Top ``k`` categories a customer bought (from the attributed orders: ``customer_id``
    is the customer's stable id), else ""."""
    import pandas as pd

    empty = pd.Series("", index=view.index, dtype="string")
    if (
        orders is None
        or "category" not in orders.columns
        or "customer_id" not in orders.columns
        or "customer_id" not in view.columns
    ):
        return (
            _s(view, "categories").str.replace(";", sep, regex=False)
            if "categories" in view.columns
            else empty
        )
    import numpy as np

    ids = _s(view, "customer_id")
    # the listed customers' order rows found on the ids' codes, then only those rows as text
    # (memory: no text copy of every order's id and category for 20 cards)
    id_codes, id_values = _text_codes(orders["customer_id"])
    codes = np.asarray(id_codes)
    rows = np.flatnonzero(id_values.isin(set(ids)).to_numpy(dtype=bool)[codes])
    o = pd.DataFrame(
        {
            "customer_id": id_values.iloc[codes[rows]].reset_index(drop=True),
            "category": _s(orders["category"].iloc[rows].to_frame("v"), "v").reset_index(drop=True),
        }
    )
    o = o[o["category"] != ""]
    if o.empty:
        return empty
    counts = o.value_counts(["customer_id", "category"]).reset_index(name="n")
    return _top_categories_text(ids, counts, sep, k)


def _top_categories_text(ids: pd.Series, counts: pd.DataFrame, sep: str, k: int) -> pd.Series:
    """Per id of ``ids``, its ``k`` categories with the most orders (``counts``: customer_id,
    category, n; ties by category) joined by ``sep``, else ""."""
    counts = (
        counts.sort_values(["customer_id", "n", "category"], ascending=[True, False, True])
        .groupby("customer_id")
        .head(k)
    )
    joined = counts.groupby("customer_id")["category"].agg(sep.join)
    return ids.map(joined).fillna("").astype("string")


def _categories_per_customer_sql(
    view: pd.DataFrame, path: Path, sep: str, memory_limit: int | None, k: int = 3
) -> pd.Series:
    """:func:`_categories_per_customer` from the attributed orders' Parquet: DuckDB counts
    the orders per (customer, category) of the listed customers only. Customers whose
    portrait column ``top_categories`` is filled are not asked for (that column wins)."""
    import pandas as pd

    empty = pd.Series("", index=view.index, dtype="string")
    if "customer_id" not in view.columns:
        return _categories_per_customer(view, None, sep, k)
    ids = _s(view, "customer_id")
    need = ids
    if "top_categories" in view.columns:
        need = ids[(_s(view, "top_categories") == "").to_numpy()]
    if need.empty:
        return empty
    from custtool.engines.attributed import category_counts

    got, cats = category_counts(path, need.unique().tolist(), memory_limit, _strip)
    counts = pd.DataFrame(
        {
            "customer_id": pd.Series(got["k"].to_pylist(), dtype="string"),
            "category": cats.take(got["c"].to_numpy()).reset_index(drop=True),
            "n": got["n"].to_numpy().astype("int64"),
        }
    )
    counts = counts[counts["category"] != ""]
    if counts.empty:
        return empty
    return _top_categories_text(ids, counts, sep, k)


# --------------------------------------------------------------------------- orders file
def _orders_source(orders: Any, attributed: bool) -> tuple[Any, Path | None]:
    """The cards' orders as (a DataFrame, None) or, for attributed orders given as a Parquet
    path whose customer_id and category are text, (None, the path) for DuckDB to read. Any
    other file is read here and the DataFrame path taken (same cards)."""
    import pandas as pd

    if orders is None or isinstance(orders, pd.DataFrame):
        return orders, None
    path = Path(orders)
    if not attributed:
        from custtool.io import read_table

        return read_table(path), None
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    cols = [c for c in ("customer_id", "category") if c in schema.names]
    if len(cols) == 2 and all(
        pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)
        for c in cols
    ):
        return None, path
    return pd.read_parquet(path, columns=cols), None


# --------------------------------------------------------------------------- groups
def tag_lift(df: pd.DataFrame, by: str = "rfm_class", *, min_count: int = 3) -> pd.DataFrame:
    """Per segment and tag: customers with the tag, share in segment, share overall, lift.

    lift = share in segment / share among all customers; rows with fewer than ``min_count``
    customers are left out. Sorted by segment, lift descending.
    """
    import pandas as pd

    from custtool.report.workbook import tags_text

    cols = ["segment", "tag", "n", "share_in_segment", "share_overall", "lift"]
    if "tags" not in df.columns or by not in df.columns or df.empty:
        return pd.DataFrame(columns=cols)
    seg = _s(df, by)
    tags = df["tags"]
    # text already (prepare_customers' Arrow-backed tags): split as it is, no Python copy
    text = pd.api.types.is_string_dtype(tags) and not pd.api.types.is_object_dtype(tags)
    rows, items = _split_items(tags if text else tags_text(tags))
    return _lift_of_items(seg, rows, items, min_count)


def _lift_of_items(seg: pd.Series, rows: Any, items: pd.Series, min_count: int) -> pd.DataFrame:
    """:func:`tag_lift` from the tags cut into items (``rows``: each item's row in ``seg``;
    empty items are not tags)."""
    import numpy as np
    import pandas as pd

    cols = ["segment", "tag", "n", "share_in_segment", "share_overall", "lift"]
    # on codes (memory: no text per (customer, tag) item; 1M customers: ~5M items): each
    # customer's tag once, then customers per (segment, tag) and per tag counted
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(items.array)  # the items' Arrow text, no copy
    enc = pc.dictionary_encode(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
    del arr, items
    tag_codes = enc.indices.to_numpy().astype(np.int64)
    tag_names = pd.arrays.ArrowStringArray(enc.dictionary.cast(pa.large_string()))
    keep = np.asarray(tag_names != "")[tag_codes]
    n_tags = max(len(tag_names), 1)
    key = _unique_keys(rows[keep] * n_tags + tag_codes[keep], len(seg) * n_tags)
    del keep, tag_codes
    if not len(key):
        return pd.DataFrame(columns=cols)
    row, tag = np.divmod(key, n_tags)
    del key
    n_total = len(seg)
    seg_codes, seg_names = pd.factorize(seg)  # Arrow text: no object array of a million names
    overall = pd.Series(np.bincount(tag, minlength=n_tags) / n_total)
    n = np.bincount(seg_codes[row] * n_tags + tag, minlength=len(seg_names) * n_tags)
    del row, tag
    nz = np.flatnonzero(n)
    sizes = seg.value_counts()
    counts = pd.DataFrame(
        {
            "segment": np.asarray(seg_names, dtype=object)[nz // n_tags],
            "tag": tag_names.take(nz % n_tags),
            "n": n[nz],
        }
    )
    tag_pos = nz % n_tags
    counts["share_in_segment"] = counts["n"] / counts["segment"].map(sizes).astype(float)
    counts["share_overall"] = overall.to_numpy()[tag_pos].astype(float)
    counts["lift"] = counts["share_in_segment"] / counts["share_overall"]
    counts = counts[counts["n"] >= min_count]
    return counts.sort_values(
        ["segment", "lift", "n", "tag"], ascending=[True, False, False, True]
    ).reset_index(drop=True)[cols]


def _unique_keys(key: Any, space: int) -> Any:
    """The distinct values of ``key`` (non-negative integers below ``space``), sorted: a
    bitmap of ``space`` booleans when that is no bigger than the keys (no sort), else one
    sort (numpy's ``unique`` hashes first: 4 s and a hash table for 2M tag rows)."""
    import numpy as np

    if space <= 8 * len(key):
        seen = np.zeros(space, dtype=bool)
        seen[key] = True
        return np.flatnonzero(seen)
    key = np.sort(key)
    return key[np.concatenate(([True], key[1:] != key[:-1]))] if len(key) else key


def _split_items(values: pd.Series) -> tuple[Any, Any]:
    """``;``-joined lists cut into items with Arrow: (the row position of each item, the
    items stripped, as pandas strings). Missing values give no item; "" gives one ""."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values.astype("string").array, type=pa.string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lists = pc.split_pattern(arr, ";")
    rows = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    items = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    return rows, pd.Series(pd.arrays.ArrowStringArray(items), dtype="string")


def _list_items(tags: pd.Series) -> tuple[Any, pd.Series] | None:
    """The items :func:`_split_items` cuts from the tags as ``prepare_customers`` joins them
    (``;``, in Arrow), straight from the column of lists: no joined text cut up again (1M
    customers: ~0.8 s less). Each item's row and its stripped text; an item holding ``;`` is
    cut as its joined text would be; a list holding a missing item has none (its joined text
    is missing); empty items may be left out (they are no tag). None when
    ``prepare_customers`` would not join the column in Arrow (the caller joins it)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if tags.dtype != object or not len(tags):
        return None
    # the same test as prepare_customers' (a list in every cell that is not missing)
    listlike = tags.map(type).isin([list, tuple, np.ndarray]).to_numpy()
    if not listlike.any() or not (listlike | tags.isna().to_numpy()).all():
        return None
    from custtool.arrow_text import text_lists

    arr = text_lists(tags.to_numpy())
    if arr is None:
        return None
    flat = pc.list_flatten(arr)
    rows = pc.list_parent_indices(arr).to_numpy().astype(np.int64)
    if flat.null_count:  # join_lists(null_items=True): the cell's text is missing
        bad = np.zeros(len(arr), dtype=bool)
        bad[rows[flat.is_null().to_numpy(zero_copy_only=False)]] = True
        keep = ~bad[rows]
        flat, rows = flat.filter(pa.array(keep)), rows[keep]
    if pc.any(pc.match_substring(flat, ";")).as_py():
        pieces = pc.split_pattern(flat, ";")
        rows = rows[pc.list_parent_indices(pieces).to_numpy()]
        flat = pc.list_flatten(pieces)
    items = pc.utf8_trim_whitespace(flat)
    return rows, pd.Series(pd.arrays.ArrowStringArray(items), dtype="string")


def _segment_codes(seg: pd.Series) -> tuple[Any, Any, pd.Series]:
    """``seg`` factorized once for every trait of a group card: (codes as int64, the
    segment names as an object array, customers per segment)."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(seg)
    return codes.astype(np.int64), np.asarray(uniques.astype(object)), seg.value_counts()


def _top_values(
    seg: pd.Series,
    values: pd.Series,
    k: int,
    sep: str,
    *,
    explode: bool = False,
    codes: tuple[Any, Any, pd.Series] | None = None,
) -> pd.Series:
    """Per segment: the ``k`` most common non-empty values with their share of the segment.

    Counted on codes (segments and values factorized once, the (segment, value) pairs
    counted with numpy), not on a frame of a million strings; a value counts once per row.
    ``codes``: :func:`_segment_codes` of ``seg``, when the caller has them already."""
    import numpy as np
    import pandas as pd

    s_codes, s_uniques, sizes = codes if codes is not None else _segment_codes(seg)
    if explode:
        rows, items = _split_items(values)
    else:
        rows = np.arange(len(seg), dtype=np.int64)
        items = values.astype("string").fillna("").str.strip()
    v_codes, v_uniques = pd.factorize(items)
    nv = len(v_uniques)
    ok = v_codes >= 0
    if nv:
        ok &= (np.asarray(v_uniques.astype(object)) != "")[np.where(ok, v_codes, 0)]
    rows, v_codes = rows[ok], v_codes[ok].astype(np.int64)
    if not len(rows):
        return pd.Series(dtype=object)
    if explode:  # an item twice in one row counts once
        pairs = _unique_keys(rows * nv + v_codes, len(seg) * nv)
        rows, v_codes = pairs // nv, pairs % nv
    key = s_codes[rows] * nv + v_codes
    space = len(s_uniques) * nv
    if space <= 8 * len(key):  # a count per possible pair (np.unique sorted 1M keys: ~0.2 s)
        n = np.bincount(key, minlength=space)
        keys = np.flatnonzero(n)
        n = n[keys]
    else:
        keys, n = np.unique(key, return_counts=True)
    counts = pd.DataFrame(
        {
            "segment": s_uniques[keys // nv],
            "v": pd.array(np.asarray(v_uniques.astype(object))[keys % nv], dtype="string"),
            "n": n.astype(np.int64),
        }
    )
    return _shares_of_counts(counts, sizes, k, sep)


def _shares_text(pairs: pd.DataFrame, sizes: pd.Series, k: int, sep: str) -> pd.Series:
    """Per segment, the ``k`` values with the most (segment, value) ``pairs`` as
    ``"value 40%"`` (share of the segment's ``sizes``), joined by ``sep``."""
    counts = pairs.groupby(["segment", "v"], observed=True).size().rename("n").reset_index()
    return _shares_of_counts(counts, sizes, k, sep)


def _shares_of_counts(counts: pd.DataFrame, sizes: pd.Series, k: int, sep: str) -> pd.Series:
    """:func:`_shares_text` from the pairs counted already (``segment``, ``v``, ``n``)."""
    counts = (
        counts.sort_values(["segment", "n", "v"], ascending=[True, False, True])
        .groupby("segment")
        .head(k)
    )
    pct = (
        (counts["n"] / counts["segment"].map(sizes).astype(float) * 100)
        .round(0)
        .astype("int64")
        .astype(str)
    )
    counts["txt"] = counts["v"].astype(str) + " " + pct + "%"
    return counts.groupby("segment")["txt"].agg(sep.join)


#: the customer columns :func:`group_cards` reads (and ``by``, and ``owner`` for sales roles)
GROUP_INPUT_COLUMNS = frozenset(
    {
        "customer_id",
        "owner",
        "rfm_class",
        "tier",
        "lifecycle",
        "level",
        "monetary",
        "city",
        "age",
        "gender",
        "channel_mode",
        "active_slot",
        "needs",
        "channels",
        "source_channel",
        "aov",
        "tags",
    }
)


def group_cards(
    customers: pd.DataFrame,
    by: str | None = None,
    segments: list[str] | None = None,
    *,
    orders: pd.DataFrame | str | Path | None = None,
    role: str | None = None,
    owner: str | None = None,
    top: int = 3,
    top_tags: int = 5,
    min_count: int = 3,
    lang: str = "zh",
    attributed: bool = False,
    memory_limit: int | None = None,
) -> pd.DataFrame:
    """One card per segment of ``by`` (rfm_class, tier, lifecycle; default rfm_class).

    With ``segments``, only those; each name is looked up in rfm_class, tier and lifecycle
    when ``by`` is not given. Columns: see :data:`GROUP_FIELDS`. ``attributed``,
    ``memory_limit`` and ``orders`` as a Parquet path: as in :func:`individual_cards` (DuckDB
    counts the customers per segment and category; the orders never become a DataFrame).
    """
    import pandas as pd

    from custtool.attribution import ensure_attributed
    from custtool.report.masking import get_role
    from custtool.report.workbook import SEGMENT_ORDERS, prepare_customers

    orders, orders_file = _orders_source(orders, attributed)
    if orders is not None and not attributed:
        orders = ensure_attributed(orders, customers)
    role_obj = get_role(role)
    # only the columns a group card reads are prepared and masked (masking every personal
    # column of a million customers took most of this function's time)
    used = [c for c in customers.columns if c in GROUP_INPUT_COLUMNS or c == by]
    # tags as lists (the run's): cut into items straight from the lists, not joined to text
    # by prepare_customers and cut up again by tag_lift — when every row is shown (no owner
    # filter), the role sees tags, and no item could be a ciphertext the masker hides
    tag_items = None
    if "tags" in used and not (role_obj.own_customers_only or owner or role_obj.hidden(["tags"])):
        from custtool.crypto import PREFIX

        tag_items = _list_items(customers["tags"])
        if tag_items is not None and bool(tag_items[1].str.contains(PREFIX, regex=False).any()):
            tag_items = None
        if tag_items is not None:
            used.remove("tags")
    view = _masked_by_values(prepare_customers(customers[used]), role_obj, owner)
    dims = [d for d in ("rfm_class", "tier", "lifecycle", "level") if d in view.columns]
    if by is not None and by not in view.columns:
        raise InputError(
            f"no column {by!r} to group by", f"use one of: {', '.join(dims) or '(none present)'}"
        )
    wanted: dict[str, list[str]] = {}
    if segments:
        for name in segments:
            found = [d for d in ([by] if by else dims) if (_s(view, d) == name).any()]
            if not found:
                raise InputError(
                    f"no segment {name!r} in {by or '/'.join(dims)}",
                    "segment names are values such as 重要价值客户, 高价值 or 沉睡",
                )
            wanted.setdefault(found[0], []).append(name)
    else:
        dim = by or (dims[0] if dims else None)
        if dim is None:
            raise InputError(
                "the table has no rfm_class, tier or lifecycle column",
                "run `custtool segment` first",
            )
        wanted[dim] = []
    sep = _T["en" if lang == "en" else "zh"]["list"]
    frames = []
    for dim, names in wanted.items():
        seg = _s(view, dim)
        codes = _segment_codes(seg)  # once for every trait below
        n_all = len(view)
        card = (
            pd.DataFrame({"segment": seg}).groupby("segment").size().rename("customers").to_frame()
        )
        card["customer_share"] = card["customers"] / n_all if n_all else 0.0
        if role_obj.amounts and "monetary" in view.columns:
            m = pd.to_numeric(view["monetary"], errors="coerce").fillna(0)
            rev = m.groupby(codes[0]).sum()  # on codes: no hashing of a million names
            rev.index = codes[1][rev.index.to_numpy()]
            card["revenue"] = rev.round(2)
            card["revenue_share"] = card["revenue"] / m.sum() if m.sum() else 0.0
        if "city" in view.columns:
            card["top_cities"] = _top_values(seg, _s(view, "city"), top, sep, codes=codes)
        if "age" in view.columns:
            labels = AGE_LABELS_EN if lang == "en" else AGE_LABELS
            bands = pd.cut(
                pd.to_numeric(view["age"], errors="coerce"), AGE_BINS, right=False, labels=labels
            )
            card["age_bands"] = _top_values(seg, bands.astype("string"), top, sep, codes=codes)
        if "gender" in view.columns:
            card["gender_split"] = _top_values(
                seg, _s(view, "gender").replace({"未知": ""}), 2, sep, codes=codes
            )
        if "channel_mode" in view.columns:
            card["channel_modes"] = _top_values(seg, _s(view, "channel_mode"), 3, sep, codes=codes)
        if "active_slot" in view.columns:
            card["active_slots"] = _top_values(seg, _s(view, "active_slot"), top, sep, codes=codes)
        if "needs" in view.columns:
            card["common_needs"] = _top_values(
                seg, _s(view, "needs"), top, sep, explode=True, codes=codes
            )
        if "level" in view.columns and dim != "level":
            card["levels"] = _top_values(seg, _s(view, "level"), 4, sep, codes=codes)
        channel_col = next((c for c in ("channels", "source_channel") if c in view.columns), None)
        if channel_col:
            card["top_channels"] = _top_values(
                seg, _s(view, channel_col), top, sep, explode=True, codes=codes
            )
        cats = _segment_categories(
            view, seg, orders_file or orders, top, sep, memory_limit=memory_limit, codes=codes
        )
        if cats is not None:
            card["top_categories"] = cats
        if role_obj.amounts and "aov" in view.columns:
            aov = pd.to_numeric(view["aov"], errors="coerce").groupby(codes[0]).median()
            aov.index = codes[1][aov.index.to_numpy()]
            card["typical_aov"] = aov.round(2)
        if tag_items is None:
            lift = tag_lift(view.assign(_seg=seg), "_seg", min_count=min_count)
        elif len(view):
            lift = _lift_of_items(seg, *tag_items, min_count)
        else:
            lift = pd.DataFrame()
        if len(lift):
            top_lift = lift[lift["lift"] > 1].groupby("segment").head(top_tags)
            pct = (top_lift["share_in_segment"] * 100).round(0).astype("int64").astype(str)
            top_lift = top_lift.assign(
                txt=top_lift["tag"].astype(str)
                + " ×"
                + top_lift["lift"].round(1).astype(str)
                + "（"
                + pct
                + "%）"
            )
            card["top_tags"] = top_lift.groupby("segment")["txt"].agg(sep.join)
        card = card.reset_index()
        card = card[card["segment"] != ""] if not names else card[card["segment"].isin(names)]
        order = [v for v in SEGMENT_ORDERS.get(dim, []) if v in set(card["segment"])]
        rest = sorted(set(card["segment"]) - set(order))
        card = card.set_index("segment").reindex(order + rest).reset_index()
        card.insert(0, "dimension", dim)
        frames.append(card)
    out = pd.concat(frames, ignore_index=True)
    for c in GROUP_FIELDS:
        if c not in out.columns:
            continue
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            out[c] = out[c].astype(object).where(out[c].notna(), "")
    return out[[c for c in GROUP_FIELDS if c in out.columns]]


def _masked_by_values(df: pd.DataFrame, role: Any, owner: str | None) -> pd.DataFrame:
    """``mask_for_output(df, role=role, owner=owner, mask=True)``, a text column of few
    distinct values masked value by value: the one masker (``mask_frame``) is given the
    column's distinct values and each row takes its own. Masking and the ciphertext check
    work value by value and whether a column of unknown meaning is masked depends on which
    values it holds, so the cells are the same (scanning 1M customers' cities, genders,
    levels, … row by row took ~0.6 s of the group cards)."""
    import pandas as pd

    from custtool.report.masking import check_unmask, mask_frame, role_view

    check_unmask(role, True)
    rows = role_view(df, role, owner=owner)
    few: dict[Any, Any] = {}
    for c in rows.columns:
        s = rows[c]
        if c == "customer_id" or not isinstance(s.dtype, pd.StringDtype):
            continue  # ids are distinct; other dtypes as a column
        codes, uniques = pd.factorize(s, use_na_sentinel=False)
        if 4 * len(uniques) <= len(s):
            few[c] = (codes, pd.Series(uniques, dtype=s.dtype, name=c))
    out = mask_frame(rows.drop(columns=list(few)), mask=True)
    for c, (codes, values) in few.items():
        masked = mask_frame(values.to_frame(), mask=True)[c]
        if masked.dtype == values.dtype and masked.equals(values):
            out[c] = rows[c]  # not masked: the column as it is, as mask_frame leaves it
        else:
            out[c] = pd.Series(masked.take(codes).array, index=rows.index, name=c)
    return out[list(rows.columns)]


def _segment_categories(
    view: pd.DataFrame,
    seg: pd.Series,
    orders: pd.DataFrame | Path | None,
    k: int,
    sep: str,
    memory_limit: int | None = None,
    codes: tuple[Any, Any, pd.Series] | None = None,
) -> pd.Series | None:
    """Top categories per segment, by share of the segment's customers who bought them
    (from the attributed orders: a DataFrame, or the path of their Parquet file, read by
    DuckDB bounded by ``memory_limit`` bytes). ``codes``: as for :func:`_top_values`."""
    import pandas as pd

    path = orders if isinstance(orders, Path) else None
    if "customer_id" in view.columns and (
        path is not None
        or orders is not None
        and {"customer_id", "category"} <= set(orders.columns)
    ):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        def arrow(x: pd.Series) -> Any:
            arr = pa.array(x.array, type=pa.string(), from_pandas=True)
            return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr

        # each customer id once (its first row's segment: one hash of the ids gives the
        # distinct ones in order of first appearance and each one's first row); each
        # order's position among them (null: not a listed customer) — Arrow lookups, no
        # Python per order
        enc = pc.dictionary_encode(arrow(_s(view, "customer_id")))
        unique_ids = enc.dictionary
        id_rows = enc.indices.to_numpy().astype(np.int64)
        # codes are given in order of first appearance: a row holds a new id where its code
        # is above every code before it
        seen = np.maximum.accumulate(np.concatenate(([-1], id_rows[:-1])))
        first = np.flatnonzero(id_rows > seen)
        s_codes, seg_names, sizes = codes if codes is not None else _segment_codes(seg)
        seg_codes = s_codes[first]
        del enc, id_rows, seen, first
        if path is not None:
            from custtool.engines.attributed import order_pair_keys

            pairs = order_pair_keys(path, unique_ids, memory_limit, _strip)
            if pairs is None:
                return None
            key, categories = pairs
            n_cats = len(categories)
        else:
            # the orders' ids and categories as codes into their distinct values, _s
            # applied to those (memory: no text copies of every order row; 10M orders: ~1 GB)
            assert isinstance(orders, pd.DataFrame)
            id_codes, id_values = _text_codes(orders["customer_id"])
            pos = pc.index_in(arrow(id_values), value_set=unique_ids).take(id_codes)
            cat_codes, cat_values = _text_codes(orders["category"])
            cat_dict = pc.dictionary_encode(arrow(cat_values))
            valid = pos.is_valid()
            if not pc.sum(valid.cast(pa.int64())).as_py():
                return None
            categories = cat_dict.dictionary
            n_cats = len(categories)
            key = pc.filter(pos, valid).to_numpy().astype(np.int64) * n_cats
            key += pc.filter(cat_dict.indices.take(cat_codes), valid).to_numpy().astype(np.int64)
        # each (customer, category) pair once; their order does not matter (_shares_text
        # counts and sorts them), so one sorted unique key (memory: no index arrays)
        key = _unique_keys(key, len(unique_ids) * n_cats)
        p, c = np.divmod(key, n_cats)
        del key
        # the pairs counted per (segment, category) on codes (memory: no text per pair;
        # 10M orders: millions of pairs), the same counts _shares_text's groupby gives
        n = np.bincount(seg_codes[p] * n_cats + c, minlength=len(seg_names) * n_cats)
        del p, c
        nz = np.flatnonzero(n)
        # Arrow-backed text for the categories
        v = pd.Series(categories.take(pa.array(nz % n_cats)).cast(pa.large_string()), dtype="str")
        counts = pd.DataFrame({"segment": seg_names[nz // n_cats], "v": v, "n": n[nz]})
        return _shares_of_counts(counts[counts["v"] != ""], sizes, k, sep)
    if "categories" in view.columns:
        return _top_values(seg, _s(view, "categories"), k, sep, explode=True)
    return None


# --------------------------------------------------------------------------- renderers
def _title(key: str, lang: str) -> str:
    return {
        ("individual", "zh"): "客户画像卡（个体）",
        ("individual", "en"): "Customer profile card",
        ("group", "zh"): "客户画像卡（群体）",
        ("group", "en"): "Segment profile card",
        ("doc", "zh"): "客户画像卡",
        ("doc", "en"): "Customer profile cards",
    }[(key, "en" if lang == "en" else "zh")]


def _group_rows(card: Mapping[Hashable, Any], lang: str) -> list[tuple[str, str]]:
    rows = []
    for c in GROUP_FIELDS[2:]:
        if c not in card:
            continue
        v = card[c]
        if c in {"customer_share", "revenue_share"}:
            v = f"{float(v) * 100:.1f}%"
        elif c in {"revenue", "typical_aov"}:
            v = "" if v != v or v == "" else f"{float(v):,.2f}"
        elif c == "customers":
            v = f"{int(v):,}"
        rows.append((L.label(c, lang), str(v)))
    return rows


def render_markdown(
    individual: pd.DataFrame, group: pd.DataFrame | None = None, lang: str = "zh"
) -> str:
    """Cards as Markdown: one section per card, fields as a bullet list."""

    def md(v: Any) -> str:
        # a value is text: no inline HTML (<script>, <img onerror>) and no [link](…) from data
        text = html.escape(str(v), quote=False).replace("[", "\\[").replace("]", "\\]")
        return text.replace("|", "\\|").replace("\n", " ").strip() or "—"

    out = [f"# {_title('doc', lang)}", ""]
    if group is not None:
        for card in group.to_dict("records"):
            out += [
                f"## {_title('group', lang)}：{L.label(card['dimension'], lang)} · {L.value_label(card['segment'], lang)}",
                "",
            ]
            out += [f"- **{k}**：{md(v)}" for k, v in _group_rows(card, lang)] + [""]
    for card in individual.to_dict("records"):
        out += [f"## {_title('individual', lang)}：{md(card['customer_id'])}", ""]
        out += [f"- **{L.label(c, lang)}**：{md(card[c])}" for c in INDIVIDUAL_FIELDS[1:]] + [""]
    return "\n".join(out)


_CSS = """
body { font-family: "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; margin: 24px; color: #222; background: #f5f7fa; }
h1 { font-size: 20px; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 16px; }
.card { background: #fff; border: 1px solid #d0d7e2; border-radius: 8px; padding: 14px 18px; width: 440px; box-shadow: 0 1px 3px rgba(0,0,0,.08); page-break-inside: avoid; break-inside: avoid; }
.card h2 { font-size: 15px; margin: 0 0 10px; color: #1f4e78; border-bottom: 2px solid #ddebf7; padding-bottom: 6px; }
.card.group h2 { color: #7b3f00; border-bottom-color: #fbe5d6; }
.card dl { display: grid; grid-template-columns: 88px 1fr; gap: 4px 10px; margin: 0; font-size: 13px; }
.card dt { color: #666; font-weight: 600; }
.card dd { margin: 0; white-space: pre-wrap; word-break: break-word; }
.card dd.action { color: #0b6b3a; }
.muted { color: #999; }
@media print { body { background: #fff; margin: 0; } .card { box-shadow: none; border-color: #999; } }
"""


def render_html(
    individual: pd.DataFrame,
    group: pd.DataFrame | None = None,
    lang: str = "zh",
    title: str | None = None,
) -> str:
    """One self-contained printable HTML page (inline CSS, every value escaped)."""
    e = html.escape
    doc_title = title or _title("doc", lang)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"en" if lang == "en" else "zh-CN"}"><head><meta charset="utf-8">',
        f"<title>{e(doc_title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(doc_title)}</h1>",
        '<div class="cards">',
    ]
    if group is not None:
        for card in group.to_dict("records"):
            head = f"{_title('group', lang)}：{L.label(card['dimension'], lang)} · {L.value_label(card['segment'], lang)}"
            rows = "".join(
                f"<dt>{e(k)}</dt><dd>{e(v) or '<span class=muted>—</span>'}</dd>"
                for k, v in _group_rows(card, lang)
            )
            parts.append(f'<section class="card group"><h2>{e(head)}</h2><dl>{rows}</dl></section>')
    for card in individual.to_dict("records"):
        head = f"{_title('individual', lang)}：{card['customer_id']}"
        rows = "".join(
            f"<dt>{e(L.label(c, lang))}</dt><dd{' class=action' if c == 'suggested_action' else ''}>"
            f"{e(str(card[c])) or '<span class=muted>—</span>'}</dd>"
            for c in INDIVIDUAL_FIELDS[1:]
        )
        parts.append(f'<section class="card"><h2>{e(head)}</h2><dl>{rows}</dl></section>')
    parts += ["</div>", "</body></html>", ""]
    return "\n".join(parts)


def write_cards(
    individual: pd.DataFrame,
    group: pd.DataFrame | None,
    out: str | Path,
    fmt: str | None = None,
    lang: str = "zh",
) -> Path:
    """Write the cards as md / html / xlsx to ``out`` (a folder gets ``cards.<fmt>``), atomically."""
    from custtool.io import atomic_path

    target = Path(out)
    if fmt is None:
        fmt = target.suffix.lower().lstrip(".") or "html"
    fmt = {"markdown": "md"}.get(fmt, fmt)
    if fmt not in {"md", "html", "xlsx"}:
        raise InputError(f"unknown card format {fmt!r}", "use --format md, html or xlsx")
    if target.is_dir() or not target.suffix:
        target = target / f"cards.{fmt}"
    elif target.suffix.lower() not in {
        f".{fmt}",
        *{"md": [".markdown"], "html": [".htm"]}.get(fmt, []),
    }:
        # cards.html holding a workbook opens as nothing anywhere
        raise InputError(
            f"{target.name}: --format {fmt} writes a .{fmt} file",
            f"name it e.g. cards.{fmt}, or name a folder",
        )
    with atomic_path(target) as tmp:
        if fmt == "md":
            tmp.write_text(render_markdown(individual, group, lang), encoding="utf-8")
        elif fmt == "html":
            tmp.write_text(render_html(individual, group, lang), encoding="utf-8")
        else:
            _write_cards_xlsx(individual, group, tmp, lang)
    return target


def _write_cards_xlsx(
    individual: pd.DataFrame, group: pd.DataFrame | None, path: Path, lang: str
) -> None:
    from custtool.report.workbook import _display_values, _Sheets
    from custtool.xlsx import open_workbook

    with open_workbook(path) as wb:
        w = _Sheets(wb, lang)
        if group is not None:
            ws = wb.add_worksheet(L.text("sheet_group_cards", lang))
            g = group.copy()
            g["dimension"] = g["dimension"].map(lambda d: L.label(d, lang))
            g["segment"] = g["segment"].map(lambda v: L.value_label(v, lang))
            w.data_sheet(ws, _display_values(g, lang), conditional=False)
        ws = wb.add_worksheet(L.text("sheet_cards", lang))
        w.data_sheet(ws, individual, conditional=False)
        wrap = wb.add_format({"text_wrap": True, "valign": "top"})
        ws.set_column(1, len(INDIVIDUAL_FIELDS) - 1, 40, wrap)
