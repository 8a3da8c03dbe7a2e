"""Customer metrics from orders, RFM scores and the 8 classes, value tiers, lifecycle.

The one heavy step is :func:`customer_metrics` (orders → one row per customer); everything
after it works on the small per-customer frame. Definitions (SPEC, "Definitions that public
implementations disagree on"):

* order times are converted to the firm's time zone (tz-aware → converted; naive = already
  local) and then cut into calendar days; the as-of date is a day and orders on it count;
* recency = days from the last purchase day to the as-of day;
* frequency (F) = distinct order ids in the window (exact duplicate rows once; refund lines
  are not orders); monetary (M) = net spend in the window (negative amounts, or rows whose
  ``refund`` flag is True, count negative); money is rounded to cents before anything else;
* 8 classes: R is high when the recency is *smaller* than the reference, F and M when
  strictly above it; the reference is the mean unless configured.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from custtool.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import os

    import numpy as np
    import pandas as pd

RFM_CLASSES = (
    "重要价值客户",
    "重要发展客户",
    "重要保持客户",
    "重要挽留客户",
    "一般价值客户",
    "一般发展客户",
    "一般保持客户",
    "一般挽留客户",
)
# (R high, F high, M high) -> class; R high = bought more recently than the reference
_CLASS_OF = {
    (True, True, True): "重要价值客户",
    (True, False, True): "重要发展客户",
    (False, True, True): "重要保持客户",
    (False, False, True): "重要挽留客户",
    (True, True, False): "一般价值客户",
    (True, False, False): "一般发展客户",
    (False, True, False): "一般保持客户",
    (False, False, False): "一般挽留客户",
}
TIERS = ("高价值", "中价值", "低价值")
LIFECYCLE_STAGES = ("潜在", "新客户", "成长", "成熟", "沉睡", "流失")
NO_ORDERS = "（无订单）"  # segment label of customers without orders (as the report names them)

METRIC_COLUMNS = [
    "first_order", "last_order", "recency", "frequency", "monetary", "aov",
    "orders_30d", "orders_90d", "orders_365d", "monetary_30d", "monetary_90d", "monetary_365d",
    "monetary_prev", "growth", "repurchase", "historical_value",
    "bg_x", "bg_t_x", "bg_T", "bg_repeat_avg",
]
INTERACTION_COLUMNS = [
    "days_since_last_interaction", "last_interaction", "interactions_30d", "interactions_365d", "complaints_365d",
]


# --------------------------------------------------------------------------- small parsers
def parse_days(value: Any, what: str = "window") -> int:
    """'365d', '52w', '12m' (months of 365.25/12 days, rounded), '1y', or a number of days."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: {value!r} is not a duration", "write e.g. 365d, 26w, 12m or 1y")
    if isinstance(value, int | float):
        days = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dwmy]?)\s*", str(value).lower())
        if not m:
            raise ConfigError(f"{what}: {value!r} is not a duration", "write e.g. 365d, 26w, 12m or 1y")
        n, unit = float(m.group(1)), m.group(2) or "d"
        days = n * {"d": 1.0, "w": 7.0, "m": 365.25 / 12, "y": 365.0}[unit]
    out = int(round(days))
    if out <= 0:
        raise ConfigError(f"{what}: {value!r} must be at least one day", "write e.g. 365d")
    return out


def parse_as_of(value: Any) -> pd.Timestamp | None:
    """An as-of day (midnight, naive) from a str/date/Timestamp; None stays None."""
    import pandas as pd

    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InputError(f"--as-of {value!r} is not a date", "write it as YYYY-MM-DD, e.g. 2024-06-30") from None
    if ts is pd.NaT:
        raise InputError(f"--as-of {value!r} is not a date", "write it as YYYY-MM-DD")
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return ts.normalize()


def age_at(birth_date: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Age in full years at ``as_of`` (Int64); empty for a missing or impossible birth date."""
    import pandas as pd

    b = pd.to_datetime(birth_date, errors="coerce")
    before_birthday = (b.dt.month > as_of.month) | ((b.dt.month == as_of.month) & (b.dt.day > as_of.day))
    years = as_of.year - b.dt.year - before_birthday.astype(int)
    return years.where(b.notna() & (b <= as_of) & (years <= 120)).astype("Int64")


def local_times(s: pd.Series, tz: str) -> pd.Series:
    """Order times as naive firm-local datetimes: tz-aware → converted to ``tz``; naive kept."""
    import pandas as pd

    if not isinstance(s.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(s):
        s = pd.to_datetime(s, errors="coerce", format="mixed")
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        try:
            s = s.dt.tz_convert(tz).dt.tz_localize(None)
        except Exception as exc:  # unknown time zone name
            raise ConfigError(f"unknown time zone {tz!r} ({exc})", "use an IANA name such as Asia/Shanghai") from None
    return s


def _days(s: pd.Series) -> np.ndarray:
    """Naive datetimes → int64 day numbers since 1970-01-01 (NaT → INT64 min)."""
    import numpy as np

    arr = s.to_numpy()
    if arr.dtype.kind != "M":
        arr = arr.astype("datetime64[ns]")
    return arr.astype("datetime64[D]").view(np.int64)


_TRUE_TEXT = {"true", "1", "yes", "y", "t", "是", "退款", "已退款", "refund", "refunded"}


def refund_flags(s: pd.Series) -> np.ndarray:
    """A refund flag column as bool: real bools, numbers ≠ 0, or text such as True/是/退款."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(s):
        return s.fillna(False).to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(s):
        return (s.fillna(0) != 0).to_numpy()
    codes, u = _factorize_text(pd.DataFrame({"r": s}), "r", lower=True)
    return u.isin(_TRUE_TEXT).to_numpy()[codes]


def _cents(amount: pd.Series, refund: pd.Series | None) -> np.ndarray:
    """Amounts rounded to cents as float (refund-flagged rows negative); NaN → 0."""
    import numpy as np
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(amount):
        amount = pd.to_numeric(amount, errors="coerce")
    a = np.nan_to_num(amount.to_numpy(dtype="float64", na_value=np.nan), nan=0.0)  # a copy
    a *= 100.0
    np.round(a, out=a)
    a /= 100.0
    if refund is not None:
        a = np.where(refund_flags(refund), -np.abs(a), a)
    return a


def _text(df: pd.DataFrame, col: str) -> pd.Series:
    import pandas as pd

    if col not in df.columns:
        return pd.Series("", index=df.index, dtype=object)
    s = df[col]
    return s.astype(object).where(s.notna(), "").astype(str).str.strip()


def _arrow_text(values: Any, combine: bool = True) -> Any:
    """A pyarrow string Array of a Series/array (zero-copy for Arrow-backed strings); with
    ``combine=False`` the chunks of a ChunkedArray are left as they are (no copy)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pa.array(values, from_pandas=True) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = pa.array(pd.Series(values).astype(object).where(pd.Series(values).notna(), None).map(lambda v: v if v is None else str(v)), type=pa.string())
    if combine and isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        if pa.types.is_floating(arr.type):  # ids read as numbers: 1001.0 → "1001"
            as_int = pc.cast(arr, pa.int64(), safe=False)
            integral = pc.equal(pc.cast(as_int, arr.type), arr)
            arr = pc.if_else(integral, pc.cast(as_int, pa.string()), pc.cast(arr, pa.string()))
        else:
            arr = pc.cast(arr, pa.string())
    return arr


def _factorize_text(df: pd.DataFrame, col: str | None, lower: bool = False) -> tuple[np.ndarray, pd.Series]:
    """Codes per row and the stripped text of each code (missing → ""), computed with
    pyarrow on the distinct values only (fast on millions of rows)."""
    import pandas as pd

    codes, uni = _encode_text(df[col] if col is not None and col in df.columns else None, len(df), lower)
    return codes, pd.Series(uni.to_numpy(zero_copy_only=False), dtype=object)


def _encode_text(values: Any, n: int, lower: bool = False) -> tuple[np.ndarray, Any]:
    """(int64 codes per row, pyarrow Array of the distinct trimmed values; missing → "")."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if values is None:
        return np.zeros(n, dtype=np.int64), pa.array([""], pa.string())
    arr = _arrow_text(values)
    enc = pc.dictionary_encode(arr)
    d = enc.dictionary
    idx = enc.indices
    nd = len(d)
    codes = pc.fill_null(idx, nd).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    d2 = pc.utf8_trim(d, characters=" \t\r\n\u3000")
    if lower:
        d2 = pc.utf8_lower(d2)
    has_blank = pc.index(d2, "").as_py() >= 0
    changed = lower or has_blank or not pc.all(pc.equal(d2, d)).as_py() if nd else True
    d2 = pa.concat_arrays([d2.cast(pa.string()), pa.array([""], pa.string())])
    if changed:
        enc2 = pc.dictionary_encode(d2)
        remap = enc2.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        return remap[codes], enc2.dictionary
    return codes, d2


def _norm_phone_pa(arr: Any) -> Any:
    """Phone matching keys (pyarrow): NFKC, digits only, +86/0086/86 prefix and '.0' dropped."""
    import pyarrow.compute as pc

    if pc.all(pc.match_substring_regex(arr, pattern=r"^[0-9]{0,12}$")).as_py() is not False:
        return arr  # plain digits (the usual case) are their own key
    t = pc.utf8_normalize(arr, form="NFKC")
    t = pc.replace_substring_regex(t, pattern=r"\.0$", replacement="")
    t = pc.replace_substring_regex(t, pattern=r"[^0-9+]", replacement="")
    t = pc.replace_substring_regex(t, pattern=r"^(\+86|0086)", replacement="")
    is86 = pc.and_(pc.equal(pc.utf8_length(t), 13), pc.starts_with(t, pattern="86"))
    t = pc.if_else(is86, pc.utf8_slice_codeunits(t, 2), t)
    return pc.replace_substring(t, pattern="+", replacement="")


def _norm_email_pa(arr: Any) -> Any:
    import pyarrow.compute as pc

    return pc.utf8_lower(pc.utf8_trim(arr, characters=" \t\r\n\u3000"))


def _norm_phone(s: pd.Series) -> pd.Series:
    """A matching key for phones (pandas in, pandas out)."""
    import pandas as pd

    return pd.Series(_norm_phone_pa(_arrow_text(s)).to_numpy(zero_copy_only=False), index=s.index, dtype=object)


def _norm_email(s: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.Series(_norm_email_pa(_arrow_text(s)).to_numpy(zero_copy_only=False), index=s.index, dtype=object)


# --------------------------------------------------------------------------- matching
@dataclass
class MatchReport:
    """What happened to the order (or interaction/survey) rows on their way to customers."""

    rows: int = 0
    rows_invalid_time: int = 0
    rows_after_as_of: int = 0
    rows_duplicate: int = 0
    rows_used: int = 0
    orders_used: int = 0  # distinct orders among the rows used
    rows_unmatched: int = 0
    matched_by: dict[str, int] = field(default_factory=dict)
    customers_derived: bool = False
    as_of: Any = None
    unmatched: Any = None  # DataFrame of the unmatched rows (key columns + provenance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_invalid_time": self.rows_invalid_time,
            "rows_after_as_of": self.rows_after_as_of,
            "rows_duplicate": self.rows_duplicate,
            "rows_used": self.rows_used,
            "orders_used": self.orders_used,
            "rows_unmatched": self.rows_unmatched,
            "matched_by": dict(self.matched_by),
            "customers_derived": self.customers_derived,
            "as_of": None if self.as_of is None else str(self.as_of.date()),
        }


class CustomerIndex:
    """Lookup of source keys → row positions of a customers table.

    Works with the ``clean`` output (``source_ids`` = ``channel:id;…``, ``phones``,
    ``emails``) and with a plain import output (``customer_id`` = the source id, ``phone``,
    ``email``, channel from ``_channel``/``source_channel``). Keys that point at more than
    one customer are ambiguous and not used.
    """

    def __init__(self, customers: pd.DataFrame) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(customers)
        pos = pa.array(np.arange(n, dtype=np.int64))
        chans: list[Any] = []  # arrays, or a function that reads the channel column
        ids, owners = [], []
        blank = pa.array([""] * n, pa.string()) if n else pa.array([], pa.string())

        def text(col: str) -> Any:
            return pc.utf8_trim_whitespace(pc.fill_null(_arrow_text(customers[col]), ""))

        if "source_ids" in customers.columns:
            flat, parent = _split_list(text("source_ids"))
            parts = pc.extract_regex(flat, pattern=r"^(?:(?P<ch>[^:]*):)?(?P<id>.*)$")
            chans.append(pc.utf8_trim_whitespace(parts.field("ch")))
            ids.append(pc.utf8_trim_whitespace(parts.field("id")))
            owners.append(parent)
            chans.append(blank)  # the stable custtool id itself, without a channel
        else:  # the channel column is read when channel-qualified ids are first needed
            chan_col = "_channel" if "_channel" in customers.columns else "source_channel"
            chans.append(lambda: text(chan_col) if chan_col in customers.columns else blank)
        ids.append(text("customer_id") if "customer_id" in customers.columns else blank)
        owners.append(pos)
        idv = pa.concat_arrays([c.cast(pa.string()) for c in ids])
        own = pa.concat_arrays([o.cast(pa.int64()) for o in owners])
        keep = pc.not_equal(idv, "")
        idv, own = idv.filter(keep), own.filter(keep)
        self.plain, self.ambiguous = _unique_map(idv, own, with_ambiguous=True)

        def qualified() -> _Lut:
            ch = pa.concat_arrays([(c() if callable(c) else c).cast(pa.string()) for c in chans])
            return _unique_map(pc.binary_join_element_wise(pc.utf8_lower(ch).filter(keep), idv, "\x1f"), own)

        # the other lookups are built when first needed (most order rows match by plain id),
        # once, also when another thread asks for them at the same time
        self._build = {
            "qualified": qualified,
            "phone": lambda: _unique_map(*_contact_keys(customers, "phones", "phone", pos, _norm_phone_pa)),
            "email": lambda: _unique_map(*_contact_keys(customers, "emails", "email", pos, _norm_email_pa)),
        }
        self._built: dict[str, _Lut] = {}
        self._lock = threading.Lock()
        self.n = n

    def _lookup_table(self, name: str) -> _Lut:
        with self._lock:
            if name not in self._built:
                self._built[name] = self._build[name]()
            return self._built[name]

    @property
    def qualified(self) -> _Lut:
        return self._lookup_table("qualified")

    @property
    def phone(self) -> _Lut:
        return self._lookup_table("phone")

    @property
    def email(self) -> _Lut:
        return self._lookup_table("email")

    def match(self, records: pd.DataFrame, channel_col: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Customer position per record (-1 = none) and how it matched (0 none, 1 id, 2 phone, 3 email).

        An id matches when it belongs to one customer across all channels; an id used by
        several customers on different channels matches only with the record's channel.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(records)
        how = np.zeros(n, dtype=np.int8)
        if "customer_id" not in records.columns:
            out = np.full(n, -1, dtype=np.int64)
        else:
            # ids as they are (keys are trimmed, so an exact hit needs no trimming), then
            # the rest, trimmed: ids with spaces around, ambiguous ids, unknown ids
            arr = _arrow_text(records["customer_id"], combine=False)
            out = self.plain.lookup(arr)
            nonblank = pc.fill_null(pc.not_equal(arr, ""), False).to_numpy(zero_copy_only=False)
            rest = np.flatnonzero((out < 0) & nonblank)
            del nonblank
            if len(rest):
                id_codes, u_ids = _encode_text(_take(arr, rest), len(rest))
                out[rest] = self.plain.lookup(u_ids)[id_codes]
                if channel_col and len(self.ambiguous):
                    amb = pc.is_in(u_ids, value_set=self.ambiguous).to_numpy(zero_copy_only=False)
                    rows = np.flatnonzero(amb[id_codes])
                    if len(rows):
                        ch_codes, u_ch = _encode_text(records[channel_col].iloc[rest[rows]], len(rows), lower=True)
                        key = pc.binary_join_element_wise(u_ch.take(pa.array(ch_codes)), u_ids.take(pa.array(id_codes[rows])), "\x1f")
                        out[rest[rows]] = self.qualified.lookup(key)
            how[out >= 0] = 1
        for col, code in (("phone", 2), ("email", 3)):
            if col not in records.columns:
                continue
            todo = np.flatnonzero(out < 0)
            if not len(todo):
                break
            lut = self.phone if col == "phone" else self.email
            codes, u = _encode_text(_rows_of(records[col], todo), len(todo))
            norm = _norm_phone_pa(u) if col == "phone" else _norm_email_pa(u)
            hit = lut.lookup(norm)[codes]
            out[todo] = hit
            how[todo[hit >= 0]] = code
        return out, how


def _rows_of(s: pd.Series, rows: np.ndarray) -> Any:
    """Some rows of a column: taken from the Arrow data when the column holds Arrow strings
    (no conversion of the whole column), else with ``iloc``."""
    import pandas as pd

    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow" or isinstance(s.dtype, pd.ArrowDtype):
        return _take(_arrow_text(s, combine=False), rows)
    return s.iloc[rows]


def _take(arr: Any, rows: np.ndarray) -> Any:
    """``arr.take(rows)`` for an Array or ChunkedArray, chunk by chunk for sorted ``rows``
    (pyarrow's ChunkedArray.take may first join all the chunks)."""
    import numpy as np
    import pyarrow as pa

    if not isinstance(arr, pa.ChunkedArray) or len(rows) and (np.diff(rows) < 0).any():
        return arr.take(pa.array(rows))
    bounds = np.cumsum([0] + [len(c) for c in arr.chunks])
    cut = np.searchsorted(rows, bounds)
    parts = [arr.chunk(k).take(pa.array(rows[cut[k] : cut[k + 1]] - bounds[k])) for k in range(arr.num_chunks) if cut[k + 1] > cut[k]]
    return pa.chunked_array(parts, type=arr.type)


class _Lut:
    """key → customer position (unique keys only), looked up with pyarrow's hash index."""

    def __init__(self, keys: Any, positions: np.ndarray) -> None:
        self.keys = keys
        self.positions = positions

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, values: Any) -> np.ndarray:
        """Positions for a pyarrow string Array (or Series) of keys; -1 when absent, null or
        blank (keys are never blank)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values.to_numpy(dtype=object), type=pa.string())
        if not len(self.keys) or not len(arr):
            return np.full(len(arr), -1, dtype=np.int64)
        keys = self.keys if self.keys.type == arr.type else self.keys.cast(arr.type)
        i = pc.fill_null(pc.index_in(arr, value_set=keys), -1).to_numpy(zero_copy_only=False)
        return np.append(self.positions, -1).astype(np.int64)[i]  # i = -1: the appended -1


def _split_list(arr: Any) -> tuple[Any, Any]:
    """';'-joined text → (trimmed non-blank items, the row position each came from)."""
    import pyarrow.compute as pc

    lists = pc.split_pattern(arr, pattern=";")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    parent = pc.list_parent_indices(lists)
    nonblank = pc.not_equal(flat, "")
    return flat.filter(nonblank), parent.filter(nonblank)


def _unique_map(keys: Any, owners: Any, with_ambiguous: bool = False) -> Any:
    """Keys owned by exactly one customer (keys with several owners are ambiguous, unused)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    nonblank = pc.fill_null(pc.not_equal(keys, ""), False)
    keys, owners = keys.filter(nonblank), owners.filter(nonblank)
    if isinstance(keys, pa.Array) and not len(_repeated(_text_hash(keys))):  # all keys differ
        lut = _Lut(keys, np.asarray(owners.to_numpy(zero_copy_only=False), dtype=np.int64))
        return (lut, keys.slice(0, 0)) if with_ambiguous else lut
    enc = pc.dictionary_encode(keys)
    codes = enc.indices.to_numpy(zero_copy_only=False)
    own = np.asarray(owners.to_numpy(zero_copy_only=False), dtype=np.int64)
    lo = np.full(len(enc.dictionary), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(len(enc.dictionary), np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(lo, codes, own)
    np.maximum.at(hi, codes, own)
    single = lo == hi
    lut = _Lut(enc.dictionary.filter(pa.array(single)), lo[single])
    if with_ambiguous:
        return lut, enc.dictionary.filter(pa.array(~single))
    return lut


def _contact_keys(customers: pd.DataFrame, many: str, one: str, pos: Any, norm) -> tuple[Any, Any]:
    """(normalised phone/email keys, owner positions) from the ';'-joined and single columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys, owners = [], []
    for col in (many, one):
        if col not in customers.columns:
            continue
        arr = pc.fill_null(_arrow_text(customers[col]), "")
        if col == many:
            flat, parent = _split_list(arr)
        else:
            flat, parent = pc.utf8_trim_whitespace(arr), pos
        keys.append(norm(flat).cast(pa.string()))  # phones and emails are mostly distinct
        owners.append(parent.cast(pa.int64()))
    if not keys:
        return pa.array([], pa.string()), pa.array([], pa.int64())
    return pa.concat_arrays(keys), pa.concat_arrays(owners)


def derive_customers(orders: pd.DataFrame, channel_col: str | None = None) -> pd.DataFrame:
    """Customers from an orders export alone: one per source id (channel-qualified when the
    same id appears under several channels), else per normalised phone, else email."""
    import numpy as np
    import pandas as pd

    ids = _text(orders, "customer_id")
    chan = _text(orders, channel_col) if channel_col else pd.Series("", index=orders.index)
    phone = _text(orders, "phone")
    email = _text(orders, "email")
    keys = pd.DataFrame({"id": ids, "ch": chan, "phone": phone, "email": email}).drop_duplicates()
    multi = keys[keys["id"] != ""].groupby("id")["ch"].nunique()
    multi_ids = set(multi[multi > 1].index)
    qualified = keys["id"].isin(multi_ids)
    pnorm = _norm_phone(keys["phone"])
    enorm = _norm_email(keys["email"])
    has_id = (keys["id"] != "").to_numpy()
    id_key = pd.Series(np.where(qualified, keys["ch"] + ":" + keys["id"], keys["id"]), index=keys.index)
    # rows without an id join the id-keyed customer with the same phone (else email), if unique
    fallback = pd.Series(np.where(pnorm != "", pnorm, enorm), index=keys.index)
    for norm in (pnorm, enorm):
        pairs = pd.DataFrame({"k": norm[has_id], "c": id_key[has_id]}).drop_duplicates()
        unique_pairs = pairs[pairs["k"] != ""].drop_duplicates("k", keep=False).set_index("k")["c"]
        hit = norm.map(unique_pairs)
        fallback = fallback.where(~((~has_id) & hit.notna() & (fallback == norm)), hit)
    key = np.where(has_id, id_key, fallback)
    keys = keys.assign(customer_id=key)
    keys = keys[keys["customer_id"] != ""]
    keys["source_ids"] = np.where(keys["id"] != "", np.where(keys["ch"] != "", keys["ch"] + ":" + keys["id"], keys["id"]), "")
    first = keys[["customer_id", "phone", "email", "ch", "source_ids"]].replace("", np.nan).groupby("customer_id", sort=True).first()
    out = first.fillna("").rename(columns={"ch": "channel"}).reset_index()
    return out


# --------------------------------------------------------------------------- metrics
_TRIM = " \t\r\n\u3000"  # what _encode_text trims around ids
_WS_BYTES = (0x20, 0x09, 0x0D, 0x0A)


def _string_buffers(arr: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start offset, byte length, UTF-8 bytes) of a pyarrow string Array; null → length 0."""
    import numpy as np
    import pyarrow as pa

    n = len(arr)
    _, off_buf, data_buf = arr.buffers()
    wide = pa.types.is_large_string(arr.type)
    off_type = np.int64 if wide else np.int32
    offsets = np.frombuffer(off_buf, dtype=off_type, count=n + 1, offset=arr.offset * (8 if wide else 4)).astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None and data_buf.size else np.zeros(0, np.uint8)
    lens = np.diff(offsets)
    if arr.null_count:
        lens[arr.is_null().to_numpy(zero_copy_only=False)] = 0
    return offsets[:-1], lens, data


def _edge_space(starts: np.ndarray, lens: np.ndarray, data: np.ndarray) -> bool:
    """Whether any text may start or end with a character that _encode_text trims."""
    import numpy as np

    rows = slice(None) if int(lens.min(initial=1)) > 0 else np.flatnonzero(lens > 0)
    first, last = np.zeros(256, dtype=bool), np.zeros(256, dtype=bool)
    first[[*_WS_BYTES, 0xE3]] = True  # U+3000 is E3 80 80: a first byte E3 or a last byte 80
    last[[*_WS_BYTES, 0x80]] = True  # is a candidate, settled by trimming
    s = starts[rows]
    if first[data[s]].any():
        return True
    s += lens[rows]
    s -= 1
    return bool(last[data[s]].any())


def _mix64(h: np.ndarray, tmp: np.ndarray) -> None:
    """MurmurHash3's 64-bit finaliser, in place on a uint64 array (``tmp``: scratch space)."""
    import numpy as np

    s = np.uint64(33)
    np.right_shift(h, s, out=tmp)
    h ^= tmp
    h *= np.uint64(0xFF51AFD7ED558CCD)
    np.right_shift(h, s, out=tmp)
    h ^= tmp
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    np.right_shift(h, s, out=tmp)
    h ^= tmp


def _text_hash(arr: Any) -> np.ndarray:
    """A 64-bit hash of each row's UTF-8 bytes (pyarrow string Array in; nulls hash as "").

    Equal texts always get equal hashes; different texts rarely do, so callers compare the
    text of rows whose hashes repeat. The bytes are read 8 at a time as integers straight
    from the Arrow data buffer: strided views when all texts have one length (typical of
    order numbers), else one gather per 8 bytes of the longest text.
    """
    import numpy as np

    starts, lens, data = _string_buffers(arr)
    n = len(lens)
    h = lens.astype(np.uint64)
    h *= np.uint64(0x9E3779B97F4A7C15)
    if not n:
        return h
    tmp = np.empty_like(h)
    padded = np.zeros(len(data) + 8, dtype=np.uint8)  # reads of 8 bytes may run past the end
    padded[: len(data)] = data
    keep_low = np.array([(1 << (8 * r)) - 1 for r in range(8)] + [2**64 - 1], dtype=np.uint64)
    lo, hi = int(lens.min()), int(lens.max())
    if lo == hi:
        for k in range(0, hi, 8):
            w = np.ndarray(shape=(n,), dtype="<u8", buffer=padded, offset=int(starts[0]) + k, strides=(hi,))
            h ^= w if hi - k >= 8 else w & keep_low[hi - k]
            _mix64(h, tmp)
    else:
        words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
        for k in range(0, hi, 8):
            if k < lo:  # every row has bytes here
                w = words[starts + k]
                if k + 8 > lo:
                    w &= keep_low[np.minimum(lens - k, 8)]
                h ^= w
                _mix64(h, tmp)
            else:
                rows = np.flatnonzero(lens > k)
                hr = h[rows]
                hr ^= words[starts[rows] + k] & keep_low[np.minimum(lens[rows] - k, 8)]
                _mix64(hr, np.empty_like(hr))
                h[rows] = hr
    _mix64(h, tmp)
    return h


def _repeated(h: np.ndarray) -> np.ndarray:
    """Positions of the rows whose value occurs more than once (a sort of the integers; the
    rows are then picked out with a bit table on the top bits and a binary search)."""
    import numpy as np

    if len(h) < 2:
        return np.zeros(0, dtype=np.int64)
    s = np.sort(h)
    same = s[1:] == s[:-1]
    if not same.any():
        return np.zeros(0, dtype=np.int64)
    dup = np.unique(s[1:][same])
    del same
    bits = int(min(max(np.ceil(np.log2(len(dup) * 64)), 16), 26))
    shift = np.uint64(64 - bits)
    table = np.zeros(1 << bits, dtype=bool)
    table[(dup >> shift).view(np.int64)] = True
    top = np.right_shift(h, shift, out=s)  # the sorted copy is no longer needed
    cand = np.flatnonzero(table[top.view(np.int64)])
    del top, s
    hc = h[cand]
    at = np.minimum(np.searchsorted(dup, hc), len(dup) - 1)
    return cand[dup[at] == hc]


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
        codes, uni = _encode_text(values, n)
        counts = np.bincount(codes, minlength=len(uni))
        out = np.where(counts[codes] > 1, codes, -1)
        blank_code = pc_index(uni, "")
        if blank_code >= 0:
            out[codes == blank_code] = -1
        return out.astype(np.int64)
    out = np.full(n, -1, dtype=np.int64)
    if not n:
        return out
    arr = _arrow_text(values, combine=False)  # chunk by chunk: no copy of the text
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    if any(_edge_space(*_string_buffers(c)) for c in chunks if len(c)):
        arr = pc.utf8_trim(arr, characters=_TRIM)
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    h = np.concatenate([_text_hash(c) for c in chunks if len(c)])
    idx = _repeated(h)
    del h
    if len(idx):  # exact codes from the text of the candidate rows; blank ids are each their own order
        text = _take(arr, idx)
        nonblank = pc.fill_null(pc.greater(pc.binary_length(text), 0), False).to_numpy(zero_copy_only=False)
        idx, text = idx[nonblank], text.filter(pa.array(nonblank))
    if len(idx):
        codes, uni = _encode_text(text, len(idx))
        counts = np.bincount(codes, minlength=len(uni))
        out[idx] = np.where(counts[codes] > 1, codes, -1)  # a hash shared by different ids: each its own
    return out


def pc_index(arr: Any, value: str) -> int:
    import pyarrow.compute as pc

    return int(pc.index(arr, value).as_py())


def _has_text(s: pd.Series, every: bool = False) -> bool:
    """Whether any cell holds non-blank text (the first 1,000 cells, then all of them); with
    ``every``, whether every cell holds some text (blank = null or empty)."""
    import pyarrow.compute as pc

    if every:
        if s.dtype == object:
            return not (s.isna().any() or s.eq("").any())
        arr = _arrow_text(s, combine=False)
        return not arr.null_count and not pc.any(pc.equal(arr, "")).as_py()
    for part in (s.iloc[:1000], s.iloc[1000:]):
        arr = pc.utf8_trim_whitespace(pc.fill_null(_arrow_text(part, combine=False), ""))
        if len(arr) and (pc.max(pc.utf8_length(arr)).as_py() or 0) > 0:
            return True
    return False


def _order_columns(order_time: pd.Series, amount: pd.Series, refund: pd.Series | None, tz: str) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(local times, valid-time flags, day numbers, cents, refund flags) of the order rows."""
    times = local_times(order_time, tz)
    valid_t = times.notna().to_numpy()
    day = _days(times)
    cents = _cents(amount, refund)
    is_refund = cents < 0
    if refund is not None:
        is_refund |= refund_flags(refund)
    return times, valid_t, day, cents, is_refund


def _order_channel_col(orders: pd.DataFrame) -> str | None:
    for col in ("_channel", "channel"):
        if col in orders.columns and _has_text(orders[col]):
            return col
    return None


def customer_metrics(
    orders: pd.DataFrame | str,
    customers: pd.DataFrame | str | None = None,
    *,
    as_of: Any = None,
    window: Any = "365d",
    interactions: pd.DataFrame | None = None,
    tz: str = "Asia/Shanghai",
    engine: str = "pandas",
    growth_window: Any = None,
) -> tuple[pd.DataFrame, MatchReport]:
    """Per-customer order metrics at ``as_of`` (default: the latest order day).

    Returns (customers + metric columns, :class:`MatchReport`). Customers without orders stay
    (recency NaN, frequency 0). Orders after ``as_of`` are ignored; orders that match no
    customer are counted and listed in ``report.unmatched``.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pandas as pd

    from custtool.io import read_table

    if isinstance(orders, str) or hasattr(orders, "__fspath__"):
        orders = read_table(cast("str | os.PathLike[str]", orders))
    if customers is not None and (isinstance(customers, str) or hasattr(customers, "__fspath__")):
        customers = read_table(cast("str | os.PathLike[str]", customers))
    if engine not in {"pandas", "duckdb"}:
        raise ConfigError(f"unknown engine {engine!r}", "use pandas or duckdb")
    for col in ("order_time", "amount"):
        if col not in orders.columns:
            raise InputError(f"orders have no {col!r} column", "import the orders with `custtool import --kind orders` (下单时间, 实付金额)")
    if not {"customer_id", "phone", "email"} & set(orders.columns):
        raise InputError("orders have no customer key (customer_id, phone or email)", "the order export needs 客户ID, 手机号 or 邮箱")
    win = parse_days(window, "window")
    gwin = parse_days(growth_window, "growth window") if growth_window is not None else win
    # the order columns are prepared in a second thread (pyarrow and numpy release the GIL)
    # while the rows are matched to customers: order ids (code -1 = an id on one row only, or
    # blank: its own order; ids on several rows, line items or duplicate exports, get codes
    # ≥ 0), the phone lookup when some rows have no id, times and amounts
    with ThreadPoolExecutor(max_workers=1) as pool:
        ocode_job = pool.submit(_order_codes, orders["order_id"]) if "order_id" in orders.columns else None
        channel_col = _order_channel_col(orders)
        report = MatchReport(rows=len(orders))
        if customers is None:
            customers = derive_customers(orders, channel_col)
            report.customers_derived = True
        customers = customers.reset_index(drop=True)
        index = CustomerIndex(customers)
        if "phone" in orders.columns and (
            "customer_id" not in orders.columns or not _has_text(orders["customer_id"], every=True)
        ):
            pool.submit(lambda: index.phone)  # rows without an id will be matched by phone
        columns_job = pool.submit(_order_columns, orders["order_time"], orders["amount"], orders.get("refund"), tz)
        cust, how = index.match(orders, channel_col)
        times, valid_t, day, amount, refund = columns_job.result()
        ocode = ocode_job.result() if ocode_job is not None else np.full(len(orders), -1, dtype=np.int64)
    as_of_ts = parse_as_of(as_of)
    if as_of_ts is None:
        if not valid_t.any():
            raise InputError("no order has a valid order time", "check the 下单时间 column of the orders")
        as_of_ts = pd.Timestamp(np.max(day, where=valid_t, initial=np.iinfo(np.int64).min), unit="D")
    as_of_day = int(np.datetime64(as_of_ts.date(), "D").astype(np.int64))
    report.as_of = as_of_ts
    report.rows_invalid_time = int((~valid_t).sum())
    in_time = valid_t & (day <= as_of_day)
    report.rows_after_as_of = int((valid_t & (day > as_of_day)).sum())

    matched = in_time & (cust >= 0)
    unmatched = in_time & (cust < 0)
    report.rows_unmatched = int(unmatched.sum())
    keep_cols = [c for c in ("order_id", "customer_id", "phone", "email", "channel", "_channel", "order_time", "amount", "_source_file", "_sheet", "_row") if c in orders.columns]
    report.unmatched = orders[keep_cols].iloc[np.flatnonzero(unmatched)].reset_index(drop=True)

    # exact duplicate rows (same order id, customer, time, amount) count once; only rows whose
    # order id occurs more than once can be duplicates, so only those are compared
    keep = matched
    cand = np.flatnonzero((ocode >= 0) & matched)
    if len(cand):
        t_ns = times.to_numpy()[cand].astype("datetime64[ns]").astype(np.int64)
        dup = pd.DataFrame({"c": cust[cand], "o": ocode[cand], "t": t_ns, "a": amount[cand]}).duplicated().to_numpy()
        if dup.any():
            keep = matched.copy()
            keep[cand[dup]] = False
    used = int(np.count_nonzero(keep))
    report.rows_duplicate = int(np.count_nonzero(matched)) - used
    report.rows_used = used
    kept_how = how[keep]
    report.matched_by = {name: int(np.count_nonzero(kept_how == k)) for k, name in ((1, "id"), (2, "phone"), (3, "email"))}
    del matched, unmatched, in_time, kept_how

    n = len(customers)
    if engine == "duckdb":
        sel = np.flatnonzero(keep)
        agg = _aggregate_duckdb(cust[sel], day[sel], amount[sel], refund[sel], ocode[sel], n, as_of_day, win, gwin)
        del sel
    else:  # rows not used go to an extra customer n that is dropped (no copies of the columns)
        np.copyto(cust, n, where=~keep)
        agg = _aggregate(cust, day, amount, refund, ocode, n, as_of_day, win, gwin)
    del keep
    report.orders_used = int(agg.pop("_orders_used"))
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
        bucket = np.searchsorted(breaks, np.arange(breaks[-1] + 1), side="right").astype(np.int8)[key]
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
        out["bg_repeat_avg"] = np.where(out["bg_x"] > 0, np.round(repeat_value, 2) / np.maximum(out["bg_x"], 1), np.nan)
    return out


def _purchase_days_and_repeat_value(c, day, amt, n, sale) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def _purchase_days(c: np.ndarray, d: np.ndarray, n: int, rows: np.ndarray, key: np.ndarray | None = None,
                   tmp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    bounds = np.searchsorted(distinct, np.arange(n + 1, dtype=np.int64) * span)  # each customer's run
    n_days[:] = np.diff(bounds)
    has = n_days > 0
    base = np.arange(n, dtype=np.int64) * span - dmin
    first[has] = distinct[bounds[:-1][has]] - base[has]
    last[has] = distinct[bounds[1:][has] - 1] - base[has]
    return first, last, n_days


def _aggregate_duckdb(c, day, amt, refund, ocode, n, as_of_day, win, gwin) -> dict[str, np.ndarray]:
    """The same aggregation as :func:`_aggregate`, as SQL in DuckDB."""
    try:
        import duckdb
    except ImportError:
        from custtool.errors import ConfigError

        raise ConfigError("--engine duckdb needs the duckdb package", "pip install 'custtool[duckdb]' (or pip install duckdb)") from None
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
    for col in ("historical_value", "monetary_30d", "monetary_90d", "monetary_365d", "monetary", "monetary_prev"):
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


def _finish(customers: pd.DataFrame, agg: dict[str, np.ndarray], as_of_day: int, as_of_ts: pd.Timestamp) -> pd.DataFrame:
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
        cols["growth"] = np.where(prev > 0, agg["_monetary_g"] / np.where(prev > 0, prev, 1) - 1.0, np.nan)
    cols["repurchase"] = freq >= 2
    cols["historical_value"] = agg["historical_value"]
    cols["bg_x"] = agg["bg_x"].astype(np.int64)
    cols["bg_t_x"] = np.where(has, (agg["_last"] - agg["_first"]).astype(float), np.nan)
    cols["bg_T"] = np.where(has, (as_of_day - agg["_first"]).astype(float), np.nan)
    cols["bg_repeat_avg"] = agg["bg_repeat_avg"]
    new = pd.DataFrame(cols, index=customers.index)
    base = customers.drop(columns=[c for c in new.columns if c in customers.columns])
    return pd.concat([base, new], axis=1)


def interaction_metrics(interactions: pd.DataFrame, index: CustomerIndex, as_of: pd.Timestamp, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """days_since_last_interaction, last_interaction, interactions_30d/365d, complaints_365d."""
    import numpy as np
    import pandas as pd

    if "time" not in interactions.columns:
        raise InputError("interactions have no 'time' column", "import the follow-up log with `custtool import --kind interactions`")
    n = index.n
    cust, _ = index.match(interactions, "_channel" if "_channel" in interactions.columns else None)
    t = local_times(interactions["time"], tz)
    ok = t.notna().to_numpy() & (cust >= 0)
    day = _days(t)
    as_of_day = int(np.datetime64(as_of.date(), "D").astype(np.int64))
    ok &= day <= as_of_day
    c, d = cust[ok], day[ok]
    age = as_of_day - d
    complaint = (_text(interactions, "method").str.contains("投诉", regex=False) | _text(interactions, "content").str.contains("投诉", regex=False)).to_numpy()[ok]
    last_ns = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_ns, c, t.to_numpy(dtype="datetime64[ns]").astype(np.int64)[ok])
    last_d = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_d, c, d)
    has = np.bincount(c, minlength=n) > 0
    return pd.DataFrame(
        {
            "days_since_last_interaction": np.where(has, (as_of_day - last_d).astype(float), np.nan),
            "last_interaction": pd.to_datetime(np.where(has, last_ns, np.iinfo(np.int64).min).astype("datetime64[ns]")),
            "interactions_30d": np.bincount(c[age < 30], minlength=n),
            "interactions_365d": np.bincount(c[age < 365], minlength=n),
            "complaints_365d": np.bincount(c[(age < 365) & complaint], minlength=n),
        }
    )


# --------------------------------------------------------------------------- scores
def _quantile_score(values: pd.Series, higher_is_better: bool = True, bins: int = 5) -> pd.Series:
    """Score 1..bins by rank: score = 1 + floor(bins · share of customers with a strictly
    worse value) (``rank(method="min")``).

    Equal values share a rank, hence a score; the worst value(s) always score 1; one
    customer or all-equal values score 1; n distinct values spread evenly over 1..bins.
    """
    import numpy as np
    import pandas as pd

    v = values if higher_is_better else -values
    n = int(v.notna().sum())
    below = v.rank(method="min") - 1
    score = np.floor(bins * below / max(n, 1)) + 1
    return pd.Series(np.clip(score, 1, bins), index=values.index).astype("Int64")


def _threshold_score(values: pd.Series, cuts: list[float], higher_is_better: bool) -> pd.Series:
    """Higher is better: score = 1 + number of cuts the value reaches (value ≥ cut).
    Recency: score = 5 − number of cuts the recency exceeds (recency > cut)."""
    import numpy as np
    import pandas as pd

    v = values.to_numpy(dtype="float64", na_value=np.nan)
    cuts_a = np.asarray(cuts, dtype=float)
    if higher_is_better:
        score = 1 + (v[:, None] >= cuts_a[None, :]).sum(axis=1)
    else:
        score = len(cuts_a) + 1 - (v[:, None] > cuts_a[None, :]).sum(axis=1)
    out = pd.Series(score, index=values.index).astype("Int64")
    return out.where(values.notna())


def _check_cuts(name: str, cuts: Any) -> list[float]:
    try:
        vals = [float(x) for x in cuts]
    except (TypeError, ValueError):
        raise ConfigError(f"rfm thresholds for {name}: {cuts!r} are not numbers", "write four ascending numbers, e.g. [30, 60, 90, 180]") from None
    if len(vals) != 4 or any(b <= a for a, b in zip(vals, vals[1:], strict=False)):
        raise ConfigError(f"rfm thresholds for {name}: need four strictly ascending numbers, got {cuts!r}", "e.g. recency: [30, 60, 90, 180]")
    return vals


def rfm_scores(
    metrics: pd.DataFrame,
    *,
    method: str = "quantile",
    thresholds: dict[str, list[float]] | None = None,
    weights: dict[str, float] | None = None,
) -> pd.DataFrame:
    """R, F, M scores 1..5 (R: most recent = 5) and ``rfm_score`` (weighted sum).

    ``quantile``: 1 + floor(5 × share of customers with orders that have a strictly worse
    value) — ties share a score, the worst always scores 1.
    ``thresholds``: ``{"recency": [4 upper bounds in days for scores 5..2], "frequency": [4
    lower bounds for scores 2..5], "monetary": [...]}``. Customers without orders get NA.
    """
    import pandas as pd

    has = metrics["first_order"].notna() if "first_order" in metrics.columns else metrics["recency"].notna()
    sub = metrics.loc[has]
    if method == "quantile":
        r = _quantile_score(sub["recency"], higher_is_better=False)
        f = _quantile_score(sub["frequency"].astype(float))
        m = _quantile_score(sub["monetary"].astype(float).round(2))
    elif method == "thresholds":
        th = thresholds or {}
        missing = [k for k in ("recency", "frequency", "monetary") if k not in th]
        if missing:
            raise ConfigError(f"rfm method 'thresholds' needs thresholds for {', '.join(missing)}", "add them under rfm.thresholds in segments.yaml")
        r = _threshold_score(sub["recency"], _check_cuts("recency", th["recency"]), higher_is_better=False)
        f = _threshold_score(sub["frequency"].astype(float), _check_cuts("frequency", th["frequency"]), True)
        m = _threshold_score(sub["monetary"].astype(float).round(2), _check_cuts("monetary", th["monetary"]), True)
    else:
        raise ConfigError(f"unknown rfm method {method!r}", "use quantile or thresholds")
    w = {"r": 1.0, "f": 1.0, "m": 1.0, **(weights or {})}
    out = pd.DataFrame(index=metrics.index)
    out["r_score"] = r.reindex(metrics.index).astype("Int64")
    out["f_score"] = f.reindex(metrics.index).astype("Int64")
    out["m_score"] = m.reindex(metrics.index).astype("Int64")
    total = out["r_score"].astype("Float64") * w["r"] + out["f_score"].astype("Float64") * w["f"] + out["m_score"].astype("Float64") * w["m"]
    out["rfm_score"] = total
    return out


def rfm_classes(
    metrics: pd.DataFrame,
    *,
    reference: str = "mean",
    thresholds: dict[str, float] | None = None,
) -> pd.DataFrame:
    """The 8 RFM classes from recency, frequency and monetary against a reference.

    R is high when recency < reference (bought more recently); F and M high when strictly
    above. ``reference``: ``mean`` | ``median`` (over customers with orders) | ``thresholds``
    (``{"recency": days, "frequency": n, "monetary": amount}``). Customers without orders: "".
    Returns ``rfm_class`` plus ``r_high``, ``f_high``, ``m_high`` and the references used in
    ``.attrs["reference"]``.
    """
    import numpy as np
    import pandas as pd

    has = metrics["first_order"].notna() if "first_order" in metrics.columns else metrics["recency"].notna()
    sub = metrics.loc[has, ["recency", "frequency", "monetary"]].astype(float)
    sub["monetary"] = sub["monetary"].round(2)
    if reference in {"mean", "median"}:
        ref = sub.agg(reference) if len(sub) else pd.Series({"recency": np.nan, "frequency": np.nan, "monetary": np.nan})
    elif reference == "thresholds":
        th = thresholds or {}
        missing = [k for k in ("recency", "frequency", "monetary") if k not in th]
        if missing:
            raise ConfigError(f"class reference 'thresholds' needs {', '.join(missing)}", "add them under classes.thresholds in segments.yaml")
        try:
            ref = pd.Series({k: float(th[k]) for k in ("recency", "frequency", "monetary")})
        except (TypeError, ValueError):
            raise ConfigError(f"class thresholds must be numbers, got {th!r}") from None
    else:
        raise ConfigError(f"unknown class reference {reference!r}", "use mean, median or thresholds")
    r_high = sub["recency"] < ref["recency"]
    f_high = sub["frequency"] > ref["frequency"]
    m_high = sub["monetary"] > ref["monetary"]
    code = r_high.astype(int) * 4 + f_high.astype(int) * 2 + m_high.astype(int)
    names = np.array([_CLASS_OF[(bool(i & 4), bool(i & 2), bool(i & 1))] for i in range(8)], dtype=object)
    out = pd.DataFrame(index=metrics.index)
    out["rfm_class"] = pd.Series(names[code.to_numpy()], index=sub.index).reindex(metrics.index).fillna("").astype(str)
    for col, s in (("r_high", r_high), ("f_high", f_high), ("m_high", m_high)):
        out[col] = s.reindex(metrics.index).astype("boolean")
    out.attrs["reference"] = {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in ref.items()}
    return out


def value_tiers(
    metrics: pd.DataFrame,
    *,
    method: str = "thresholds",
    high: float = 10000,
    mid: float = 3000,
    top_high_pct: float = 10,
    top_mid_pct: float = 30,
    column: str = "monetary_365d",
) -> pd.Series:
    """高价值/中价值/低价值 by annual spend (``column``): thresholds (≥ high, ≥ mid) or
    top-N% of customers (ties share a tier; only positive spend can be high or mid)."""
    import numpy as np
    import pandas as pd

    spend = metrics[column].astype(float).round(2).fillna(0.0)
    if method == "thresholds":
        if mid > high:
            raise ConfigError(f"tier thresholds: mid ({mid}) is above high ({high})", "mid must be ≤ high")
        tier = np.where(spend >= high, "高价值", np.where(spend >= mid, "中价值", "低价值"))
    elif method == "top":
        if not (0 <= top_high_pct <= top_mid_pct <= 100):
            raise ConfigError(f"tier top percentages must satisfy 0 ≤ high ({top_high_pct}) ≤ mid ({top_mid_pct}) ≤ 100")
        n = len(spend)
        rank = spend.rank(method="min", ascending=False).to_numpy()  # ties share the best rank
        pos = spend.to_numpy() > 0
        tier = np.where(pos & (rank <= np.ceil(n * top_high_pct / 100)), "高价值",
                        np.where(pos & (rank <= np.ceil(n * top_mid_pct / 100)), "中价值", "低价值"))
    else:
        raise ConfigError(f"unknown tier method {method!r}", "use thresholds or top")
    return pd.Series(tier, index=metrics.index, name="tier", dtype=object)


def assign_lifecycle(
    metrics: pd.DataFrame,
    *,
    new_days: int = 90,
    sleep_days: int = 30,
    lost_days: int = 90,
    mature_orders: int = 3,
    potential_growth: float = 0.30,
) -> pd.DataFrame:
    """``lifecycle`` and ``potential``.

    In order: 潜在 no purchase; 流失 recency > lost_days; 沉睡 recency > sleep_days;
    新客户 first purchase within new_days; 成熟 frequency ≥ mature_orders; else 成长.
    ``potential`` (潜力): spend growth vs the previous window ≥ potential_growth.
    """
    import numpy as np
    import pandas as pd

    if not (0 < sleep_days <= lost_days):
        raise ConfigError(f"lifecycle: need 0 < sleep_days ({sleep_days}) ≤ lost_days ({lost_days})")
    has = metrics["first_order"].notna().to_numpy()
    rec = metrics["recency"].to_numpy(dtype=float, na_value=np.nan)
    as_of = metrics["as_of"] if "as_of" in metrics.columns else None
    if as_of is not None:
        tenure = (as_of - metrics["first_order"]).dt.days.to_numpy(dtype=float, na_value=np.nan)
    else:
        tenure = metrics["bg_T"].to_numpy(dtype=float, na_value=np.nan)
    freq = metrics["frequency"].to_numpy()
    stage = np.select(
        [~has, rec > lost_days, rec > sleep_days, tenure <= new_days, freq >= mature_orders],
        ["潜在", "流失", "沉睡", "新客户", "成熟"],
        default="成长",
    )
    growth = metrics["growth"].to_numpy(dtype=float, na_value=np.nan)
    return pd.DataFrame(
        {"lifecycle": stage.astype(object), "potential": np.nan_to_num(growth, nan=-np.inf) >= potential_growth},
        index=metrics.index,
    )


# --------------------------------------------------------------------------- summary
def segment_summary(segmented: pd.DataFrame, by: tuple[str, ...] = ("rfm_class", "tier", "lifecycle"), *, nps_responses: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per segment of each dimension: customers, share of customers (%), revenue (net spend
    in the window), share of revenue (%), average recency/frequency/monetary and NPS.

    ``nps_responses``: survey responses with ``score`` and the same segment columns (from
    :func:`custtool.nps.attach_responses`); without it NPS comes from ``nps_score``.
    """
    import numpy as np
    import pandas as pd

    from custtool.nps import nps as nps_fn

    frames = []
    n_total = len(segmented)
    rev_total = float(segmented["monetary"].sum())
    for dim in by:
        if dim not in segmented.columns:
            continue
        seg = segmented[dim].astype(object).where(segmented[dim].astype(object).astype(str) != "", NO_ORDERS)
        g = segmented.assign(_seg=seg).groupby("_seg", sort=False)
        t = g.agg(
            customers=("monetary", "size"),
            revenue=("monetary", "sum"),
            avg_recency=("recency", "mean"),
            avg_frequency=("frequency", "mean"),
            avg_monetary=("monetary", "mean"),
        )
        t["customer_share"] = t["customers"] / n_total * 100 if n_total else np.nan
        t["revenue_share"] = t["revenue"] / rev_total * 100 if rev_total else np.nan
        if nps_responses is not None and dim in nps_responses.columns and len(nps_responses):
            r = nps_responses.assign(_seg=nps_responses[dim].astype(object).where(nps_responses[dim].astype(str) != "", NO_ORDERS))
            t["nps"] = nps_fn(r, by="_seg").set_index("_seg")["nps"].reindex(t.index)
        elif "nps_score" in segmented.columns:
            t["nps"] = nps_fn(segmented.assign(_seg=seg).rename(columns={"nps_score": "score"})[["_seg", "score"]], by="_seg").set_index("_seg")["nps"].reindex(t.index)
        else:
            t["nps"] = np.nan
        order = _segment_order(dim)
        t = t.reindex(sorted(t.index, key=lambda s: (order.index(s) if s in order else len(order), str(s))))
        t = t.reset_index().rename(columns={"_seg": "segment"})
        t.insert(0, "dimension", dim)
        frames.append(t)
    cols = ["dimension", "segment", "customers", "customer_share", "revenue", "revenue_share", "avg_recency", "avg_frequency", "avg_monetary", "nps"]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    out["revenue"] = out["revenue"].round(2)
    return out


def _segment_order(dim: str) -> list[str]:
    return {
        "rfm_class": [*RFM_CLASSES, NO_ORDERS],
        "tier": list(TIERS),
        "lifecycle": list(LIFECYCLE_STAGES),
    }.get(dim, [])


# --------------------------------------------------------------------------- config + whole step
DEFAULT_CONFIG: dict[str, Any] = {
    "timezone": "Asia/Shanghai",
    "metrics": {"window": "365d", "growth_window": None},
    "rfm": {"method": "quantile", "thresholds": None, "weights": {"r": 1, "f": 1, "m": 1}},
    "classes": {"reference": "mean", "thresholds": None},
    "tiers": {"method": "thresholds", "high": 10000, "mid": 3000, "top_high_pct": 10, "top_mid_pct": 30},
    "lifecycle": {"new_days": 90, "sleep_days": 30, "lost_days": 90, "mature_orders": 3, "potential_growth": 0.30},
    "ltv": {"horizon": "12m", "unit": "days", "churn_p_alive": 0.3, "min_customers": 20, "min_repeat": 5},
}


def load_segment_config(path: Any = None) -> dict[str, Any]:
    """The segment settings: defaults overlaid with a YAML file (``yaml.safe_load``)."""
    import copy
    from pathlib import Path


    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if path is None:
        return cfg
    from custtool.config import load_yaml

    p = Path(path)
    user = load_yaml(p, what="config file", hint="pass the path of a segments.yaml (see rules/segments.yaml)", empty={})
    if not isinstance(user, dict):
        raise ConfigError(f"{p.name}: expected a mapping of sections (rfm:, tiers:, …)")
    for key, val in user.items():
        if key not in cfg:
            raise ConfigError(f"{p.name}: unknown section {key!r}", f"known sections: {', '.join(cfg)}")
        if isinstance(cfg[key], dict):
            if not isinstance(val, dict):
                raise ConfigError(f"{p.name}: section {key!r} must be a mapping")
            unknown = set(val) - set(cfg[key])
            if unknown:
                raise ConfigError(f"{p.name}: unknown key(s) {', '.join(sorted(unknown))} in {key!r}", f"known keys: {', '.join(cfg[key])}")
            cfg[key].update(val)
        else:
            cfg[key] = val
    return cfg


@dataclass
class SegmentResult:
    """Everything the segment step produces."""

    customers: Any  # the segmented customers (DataFrame)
    summary: Any  # segment_summary DataFrame
    report: MatchReport
    ltv: Any  # custtool.ltv.LTVInfo
    nps: dict[str, Any]
    class_reference: dict[str, Any]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The machine summary (what `segment --json` prints)."""
        seg = self.customers
        summ = self.summary

        def dim(name: str) -> dict[str, Any]:
            t = summ[summ["dimension"] == name]
            t = t.set_index(t["segment"].astype(str))
            t = t[["customers", "customer_share", "revenue", "revenue_share"]].astype(float).round(4)
            t = t.astype(object).where(t.notna(), None)  # JSON null for a share of nothing
            t["customers"] = t["customers"].map(int)
            return t.to_dict(orient="index")

        return {
            "as_of": str(self.report.as_of.date()),
            "customers": int(len(seg)),
            "customers_with_orders": int(seg["first_order"].notna().sum()),
            "orders_used": self.report.orders_used,
            "orders_unmatched": self.report.rows_unmatched,
            "orders": self.report.to_dict(),
            "class_reference": self.class_reference,
            "classes": dim("rfm_class"),
            "tiers": dim("tier"),
            "lifecycle": dim("lifecycle"),
            "potential": int(seg["potential"].sum()),
            "churn_risk": int(seg["churn_risk"].sum()),
            "nps": self.nps,
            "ltv": self.ltv.to_dict(),
        }


def _num(v: Any) -> float | None:
    import math

    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)


def segment_customers(
    orders: Any,
    customers: Any = None,
    *,
    surveys: Any = None,
    interactions: Any = None,
    as_of: Any = None,
    window: Any = None,
    config: dict[str, Any] | None = None,
    engine: str = "pandas",
) -> SegmentResult:
    """The whole segment step: metrics → RFM scores and classes → tiers → lifecycle → LTV
    → NPS → summary. ``window`` overrides the config's ``metrics.window``."""
    import pandas as pd

    from custtool.io import read_table
    from custtool.ltv import fit_ltv
    from custtool.nps import attach_responses, nps, satisfaction

    cfg = config or load_segment_config()
    tz = cfg["timezone"]
    if surveys is not None and not isinstance(surveys, pd.DataFrame):
        surveys = read_table(surveys)
    if interactions is not None and not isinstance(interactions, pd.DataFrame):
        interactions = read_table(interactions)
    mcfg = cfg["metrics"]
    metrics, report = customer_metrics(
        orders, customers, as_of=as_of, window=window or mcfg["window"], interactions=interactions, tz=tz,
        engine=engine, growth_window=mcfg.get("growth_window"),
    )
    rc = cfg["rfm"]
    scores = rfm_scores(metrics, method=rc["method"], thresholds=rc.get("thresholds"), weights=rc.get("weights"))
    cc = cfg["classes"]
    classes = rfm_classes(metrics, reference=cc["reference"], thresholds=cc.get("thresholds"))
    tc = cfg["tiers"]
    tier = value_tiers(metrics, method=tc["method"], high=float(tc["high"]), mid=float(tc["mid"]),
                       top_high_pct=float(tc["top_high_pct"]), top_mid_pct=float(tc["top_mid_pct"]))
    lc = cfg["lifecycle"]
    life = assign_lifecycle(metrics, new_days=parse_days(lc["new_days"], "new_days"), sleep_days=parse_days(lc["sleep_days"], "sleep_days"),
                            lost_days=parse_days(lc["lost_days"], "lost_days"), mature_orders=int(lc["mature_orders"]),
                            potential_growth=float(lc["potential_growth"]))
    added: list[Any] = [c for part in (scores, classes[["rfm_class"]], tier, life) for c in (part.columns if hasattr(part, "columns") else [part.name])] + ["nps_score"]
    # a segmented table segmented again: its old scores/classes are replaced, not duplicated
    seg = pd.concat([metrics.drop(columns=[c for c in added if c in metrics.columns]), scores, classes[["rfm_class"]], tier, life], axis=1)
    lt = cfg["ltv"]
    ltv_cols, ltv_info = fit_ltv(seg, horizon_days=parse_days(lt["horizon"], "ltv horizon"), unit=lt["unit"],
                                 churn_level=float(lt["churn_p_alive"]), min_customers=int(lt["min_customers"]),
                                 min_repeat=int(lt["min_repeat"]))
    seg = pd.concat([seg.drop(columns=[c for c in {"historical_value", *ltv_cols.columns} if c in seg.columns]), ltv_cols], axis=1)
    nps_info: dict[str, Any] = {"surveys": False}
    responses = None
    if surveys is not None:
        responses, latest = attach_responses(surveys, seg, as_of=report.as_of, tz=tz)
        seg["nps_score"] = latest
        overall = nps(responses).iloc[0]
        matched = responses[responses["_customer"] >= 0]
        nps_info = {
            "surveys": True,
            "responses": int(overall["responses"]),
            "valid": int(overall["valid"]),
            "invalid": int(overall["invalid"]),
            "unmatched": int((responses["_customer"] < 0).sum()),
            "nps": _num(overall["nps"]),
            "promoters_pct": _num(overall["promoters_pct"]),
            "detractors_pct": _num(overall["detractors_pct"]),
            "by_class": {str(k) or NO_ORDERS: _num(v) for k, v in nps(matched, by="rfm_class").set_index("rfm_class")["nps"].items()},
            "by_tier": {str(k): _num(v) for k, v in nps(matched, by="tier").set_index("tier")["nps"].items()},
        }
        if "satisfaction" in responses.columns:
            sat = satisfaction(responses)
            nps_info["satisfaction_mean"] = _num(sat["mean"].iloc[0])
            nps_info["satisfaction_answers"] = int(sat["answers"].iloc[0])
    else:
        seg["nps_score"] = float("nan")
    if "birth_date" in seg.columns:
        derived = age_at(seg["birth_date"], report.as_of)
        if "age" in seg.columns:
            # the birth date is exact at any as-of date; an age column (e.g. from an earlier
            # run) only fills in where there is none
            seg["age"] = derived.fillna(pd.to_numeric(seg["age"], errors="coerce").astype("Int64"))
        else:
            # column names are unique here, so get_loc gives an int
            seg.insert(cast(int, seg.columns.get_loc("birth_date")) + 1, "age", derived)
    seg["as_of"] = report.as_of
    front = [c for c in seg.columns if c != "as_of"]
    seg = seg[front + ["as_of"]]
    summary = segment_summary(seg, nps_responses=None if responses is None else responses[responses["_customer"] >= 0])
    return SegmentResult(seg, summary, report, ltv_info, nps_info, classes.attrs.get("reference", {}), cfg)


def summary_sheets(result: SegmentResult, lang: str = "zh") -> dict[str, Any]:
    """The sheets of the summary workbook: one per dimension, model notes, unmatched orders."""
    import pandas as pd

    from custtool.labels import label

    sheets: dict[str, Any] = {}
    names = {"rfm_class": ("RFM分类", "RFM class"), "tier": ("价值等级", "Tier"), "lifecycle": ("生命周期", "Lifecycle")}
    for dim, pair in names.items():
        t = result.summary[result.summary["dimension"] == dim].drop(columns=["dimension"])
        # shares here are percentages (0–100); the label table's share labels are unit-free
        pct = {"customer_share", "revenue_share"}
        sheets[pair[0] if lang == "zh" else pair[1]] = t.rename(
            columns={c: label(c, lang) + ("(%)" if c in pct else "") for c in t.columns}
        )
    ltv = result.ltv.to_dict()
    rep = result.report
    items = [("as_of", str(rep.as_of.date())), ("ltv.unit", ltv["unit"]), ("ltv.horizon_days", ltv["horizon_days"]),
             ("ltv.churn_p_alive_below", ltv["churn_p_alive_below"])]
    items += [(f"bgnbd.{k}", v) for k, v in ltv["bgnbd"].items()]
    items += [(f"gamma_gamma.{k}", v) for k, v in ltv["gamma_gamma"].items()]
    items += [(f"class_reference.{k}", v) for k, v in result.class_reference.items()]
    items += [(f"nps.{k}", v) for k, v in result.nps.items() if not isinstance(v, dict)]
    items += [(f"orders.{k}", v) for k, v in rep.to_dict().items() if not isinstance(v, dict)]
    items += [(f"orders.matched_by.{k}", v) for k, v in rep.matched_by.items()]
    sheets["模型与说明" if lang == "zh" else "Notes"] = pd.DataFrame({"item": [i[0] for i in items], "value": [str(i[1]) for i in items]})
    if rep.rows_unmatched:
        sheets["未匹配订单" if lang == "zh" else "Unmatched orders"] = rep.unmatched
    return sheets


def write_summary_workbook(result: SegmentResult, path: Any, lang: str = "zh") -> None:
    """Write the segment summary workbook atomically (xlsxwriter; text is never a formula,
    numbers stay numbers, missing values are empty cells)."""
    import math

    import pandas as pd
    import xlsxwriter

    from custtool.io import _safe_sheet_name, atomic_path

    sheets = summary_sheets(result, lang)
    with atomic_path(path) as tmp:
        wb = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False})
        head = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
        num = wb.add_format({"num_format": "#,##0.00"})
        date = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        for name, df in sheets.items():
            ws = wb.add_worksheet(_safe_sheet_name(name))
            for j, c in enumerate(df.columns):
                ws.write_string(0, j, str(c), head)
                ws.set_column(j, j, max(10, min(2 * len(str(c)) + 2, 40)))
            ws.freeze_panes(1, 0)
            for j, c in enumerate(df.columns):
                s = df[c]
                is_num = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
                is_dt = pd.api.types.is_datetime64_any_dtype(s)
                for i, v in enumerate(s.tolist(), start=1):  # summary sheets: a few dozen rows
                    if v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                        continue
                    if is_dt:
                        ws.write_datetime(i, j, v.to_pydatetime(), date)
                    elif is_num:
                        ws.write_number(i, j, float(v), num)
                    else:
                        ws.write_string(i, j, str(v))
            if len(df.columns):
                ws.autofilter(0, 0, max(len(df), 1), len(df.columns) - 1)
        wb.close()
