"""Records → customers: the only matcher (SPEC D0).

Orders, follow-ups and surveys name a customer by the channel's own id (the platform's
客户ID, the POS 会员ID), by phone or by email. :class:`CustomerIndex` looks those keys up in a
customers table — a ``clean`` output (stable ``customer_id`` plus ``source_ids`` =
``channel:id;…``, ``phones``, ``emails``) or a plain import — in that order: id (channel-
qualified when the id is used on several channels), then phone, then email. Keys that point
at two customers are ambiguous and never used. Every consumer (metrics, NPS, follow-ups,
cards, pivot, report) takes its result; nothing else joins raw records on an id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from custtool.arrow_text import (
    arrow_text,
    encode_text,
    has_repeats,
    rows_of,
    take_rows,
    text_column,
    text_hash,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


def phone_keys(arr: Any) -> Any:
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


def email_keys(arr: Any) -> Any:
    import pyarrow.compute as pc

    return pc.utf8_lower(pc.utf8_trim(arr, characters=" \t\r\n\u3000"))


def phone_key_series(s: pd.Series) -> pd.Series:
    """A matching key for phones (pandas in, pandas out)."""
    import pandas as pd

    return pd.Series(
        phone_keys(arrow_text(s)).to_numpy(zero_copy_only=False), index=s.index, dtype=object
    )


def email_key_series(s: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.Series(
        email_keys(arrow_text(s)).to_numpy(zero_copy_only=False), index=s.index, dtype=object
    )


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
    # the rows used, for the attributed orders (row positions in the input, the customer's
    # row position, net amount rounded to cents, inside the metrics window)
    used_rows: Any = None
    used_customers: Any = None
    used_amounts: Any = None
    used_in_window: Any = None
    used_how: Any = None
    used_times: Any = None  # order times in the firm's time zone
    customer_ids: Any = None  # the customers' customer_id column (stable ids)
    # out of core: the portrait's inputs grouped by the SQL engine (portrait.PortraitGroups)
    portrait_groups: Any = None
    # the CustomerIndex the rows were matched with (its rows are the metrics' rows): the
    # segment's surveys and the run's follow-up log are matched with it too (1M customers:
    # ~2 s a fresh index and its phone/email lookups); not part of to_dict
    customer_index: Any = None

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
            return pc.utf8_trim_whitespace(pc.fill_null(arrow_text(customers[col]), ""))

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
        own_ids = text("customer_id") if "customer_id" in customers.columns else blank
        ids.append(own_ids)
        owners.append(pos)
        idv = pa.concat_arrays([c.cast(pa.string()) for c in ids])
        own = pa.concat_arrays([o.cast(pa.int64()) for o in owners])
        keep = pc.not_equal(idv, "")
        idv, own = idv.filter(keep), own.filter(keep)
        self.plain, self.ambiguous = _unique_map(idv, own, with_ambiguous=True)

        def qualified() -> _Lut:
            ch = pa.concat_arrays([(c() if callable(c) else c).cast(pa.string()) for c in chans])
            return _unique_map(
                pc.binary_join_element_wise(pc.utf8_lower(ch).filter(keep), idv, "\x1f"), own
            )

        # the other lookups are built when first needed (most order rows match by plain id),
        # once, also when another thread asks for them at the same time
        self._build = {
            "qualified": qualified,
            "phone": lambda: _unique_map(
                *_contact_keys(customers, "phones", "phone", pos, phone_keys)
            ),
            "email": lambda: _unique_map(
                *_contact_keys(customers, "emails", "email", pos, email_keys)
            ),
        }
        self._built: dict[str, _Lut] = {}
        self._lock = threading.Lock()
        self.n = n
        self._ids = own_ids  # the table's customer_id per row (see fits)

    def fits(self, customers: pd.DataFrame) -> bool:
        """Whether ``customers`` has this index's rows: the same customer_id, row by row
        (a later table of the same run: segmented, tagged; its contact columns are the
        ones the index was built on)."""
        import pyarrow.compute as pc

        if len(customers) != self.n or "customer_id" not in customers.columns:
            return False
        ids = pc.utf8_trim_whitespace(pc.fill_null(arrow_text(customers["customer_id"]), ""))
        return bool(ids.equals(self._ids))

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

    def match(
        self, records: pd.DataFrame, channel_col: str | list[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Customer position per record (-1 = none) and how it matched (0 none, 1 id, 2 phone, 3 email).

        An id matches when it belongs to one customer across all channels; an id used by
        several customers on different channels matches only with the record's channel
        (``channel_col``: one column, or several tried in order, e.g. the import's
        ``_channel`` then the record's own ``channel``).
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
            arr = arrow_text(records["customer_id"], combine=False)
            out = self.plain.lookup(arr)
            nonblank = pc.fill_null(pc.not_equal(arr, ""), False).to_numpy(zero_copy_only=False)
            rest = np.flatnonzero((out < 0) & nonblank)
            del nonblank
            if len(rest):
                id_codes, u_ids = encode_text(take_rows(arr, rest), len(rest))
                out[rest] = self.plain.lookup(u_ids)[id_codes]
                chan_cols = (
                    [channel_col] if isinstance(channel_col, str) else list(channel_col or [])
                )
                if chan_cols and len(self.ambiguous):
                    amb = pc.is_in(u_ids, value_set=self.ambiguous).to_numpy(zero_copy_only=False)
                    rows = np.flatnonzero(amb[id_codes])
                    for col in chan_cols:
                        if not len(rows):
                            break
                        ch_codes, u_ch = encode_text(
                            records[col].iloc[rest[rows]], len(rows), lower=True
                        )
                        key = pc.binary_join_element_wise(
                            u_ch.take(pa.array(ch_codes)),
                            u_ids.take(pa.array(id_codes[rows])),
                            "\x1f",
                        )
                        out[rest[rows]] = self.qualified.lookup(key)
                        rows = rows[out[rest[rows]] < 0]
            how[out >= 0] = 1
        for col, code in (("phone", 2), ("email", 3)):
            if col not in records.columns:
                continue
            todo = np.flatnonzero(out < 0)
            if not len(todo):
                break
            lut = self.phone if col == "phone" else self.email
            codes, u = encode_text(rows_of(records[col], todo), len(todo))
            norm = phone_keys(u) if col == "phone" else email_keys(u)
            hit = lut.lookup(norm)[codes]
            out[todo] = hit
            how[todo[hit >= 0]] = code
        return out, how


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

        arr = (
            values
            if isinstance(values, pa.Array | pa.ChunkedArray)
            else pa.array(values.to_numpy(dtype=object), type=pa.string())
        )
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
    if isinstance(keys, pa.Array) and not has_repeats(text_hash(keys)):  # all keys differ
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
        arr = pc.fill_null(arrow_text(customers[col]), "")
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

    ids = text_column(orders, "customer_id")
    chan = text_column(orders, channel_col) if channel_col else pd.Series("", index=orders.index)
    phone = text_column(orders, "phone")
    email = text_column(orders, "email")
    keys = pd.DataFrame({"id": ids, "ch": chan, "phone": phone, "email": email}).drop_duplicates()
    multi = keys[keys["id"] != ""].groupby("id")["ch"].nunique()
    multi_ids = set(multi[multi > 1].index)
    qualified = keys["id"].isin(multi_ids)
    pnorm = phone_key_series(keys["phone"])
    enorm = email_key_series(keys["email"])
    has_id = (keys["id"] != "").to_numpy()
    id_key = pd.Series(
        np.where(qualified, keys["ch"] + ":" + keys["id"], keys["id"]), index=keys.index
    )
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
    keys["source_ids"] = np.where(
        keys["id"] != "", np.where(keys["ch"] != "", keys["ch"] + ":" + keys["id"], keys["id"]), ""
    )
    first = (
        keys[["customer_id", "phone", "email", "ch", "source_ids"]]
        .replace("", np.nan)
        .groupby("customer_id", sort=True)
        .first()
    )
    out = first.fillna("").rename(columns={"ch": "channel"}).reset_index()
    return out


#: match codes of :meth:`CustomerIndex.match` → the ``match_key`` written on attributed records
MATCH_KEYS = {0: "", 1: "id", 2: "phone", 3: "email"}
KINDS = ("orders", "interactions", "surveys")


def channel_columns(records: pd.DataFrame) -> list[str]:
    """The records' channel columns with text, in the order they qualify an ambiguous id:
    the import's ``_channel`` (the channel the file was imported for), then the records'
    own ``channel`` column."""
    from custtool.arrow_text import has_text

    return [c for c in ("_channel", "channel") if c in records.columns and has_text(records[c])]


def match_positions(records: pd.DataFrame, index: CustomerIndex) -> tuple[np.ndarray, np.ndarray]:
    """Customer row position per record (-1 = unmatched) and the match code (0 none, 1 id,
    2 phone, 3 email): the low-level form of :func:`attribute` for row-sized numeric work
    (the metrics step)."""
    return index.match(records, channel_columns(records))


@dataclass
class Attributed:
    """Records attributed to customers by :func:`attribute`.

    ``records``: the input rows, in order, with ``customer_id`` = the customers' stable id
    ("" when unmatched), ``source_customer_id`` = the id the record carried, and
    ``match_key`` = how it matched (id / phone / email / ""). ``positions``: the customer's
    row position per record (-1 unmatched).
    """

    records: Any
    positions: Any
    kind: str = "orders"
    matched_by: dict[str, int] = field(default_factory=dict)

    @property
    def matched(self) -> pd.DataFrame:
        """The records that matched a customer."""
        return self.records[self.positions >= 0]

    @property
    def unmatched(self) -> pd.DataFrame:
        return self.records[self.positions < 0]

    def to_dict(self) -> dict[str, Any]:
        n = int(len(self.positions))
        hit = int((self.positions >= 0).sum())
        return {
            "kind": self.kind,
            "rows": n,
            "matched": hit,
            "unmatched": n - hit,
            "matched_by": dict(self.matched_by),
        }


def attribute(
    records: pd.DataFrame,
    customers: pd.DataFrame | CustomerIndex,
    *,
    kind: str = "orders",
    customer_ids: Any = None,
    index: CustomerIndex | None = None,
) -> Attributed:
    """Attribute order, interaction or survey rows to customers (SPEC D0): the only matcher.

    ``customers``: a ``clean`` output or a plain import (or a :class:`CustomerIndex` built on
    one, with ``customer_ids`` = that table's ``customer_id`` column). A record matches by
    its id (the stable id, or a source id; channel-qualified by ``_channel``/``channel`` when
    the id is used on several channels), else by phone, else by email; ambiguous keys match
    nothing. ``index``: a :class:`CustomerIndex` built on a table with the rows of
    ``customers`` (:meth:`CustomerIndex.fits`), used instead of building one; ignored when
    it does not fit.
    """
    import numpy as np
    import pandas as pd

    from custtool.errors import InputError

    if kind not in KINDS:
        raise InputError(f"unknown record kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    if isinstance(customers, CustomerIndex):
        index = customers
        if customer_ids is None:
            raise InputError(
                "attribute() with a CustomerIndex needs customer_ids",
                "pass the customers table instead",
            )
        cids = pd.Series(customer_ids).reset_index(drop=True)
    else:
        table = customers.reset_index(drop=True)
        if index is None or not index.fits(table):
            index = CustomerIndex(table)
        cids = (
            table["customer_id"]
            if "customer_id" in table.columns
            else pd.Series("", index=table.index)
        )
    pos, how = match_positions(records, index)
    out = records.copy()
    own = (
        text_column(records, "customer_id")
        if "customer_id" in records.columns
        else pd.Series("", index=records.index)
    )
    ids = cids.astype("string").fillna("").str.strip().to_numpy(dtype=object)
    out["customer_id"] = np.where(pos >= 0, ids[np.maximum(pos, 0)] if len(ids) else "", "")
    out["source_customer_id"] = own.to_numpy(dtype=object)
    out["match_key"] = np.array([MATCH_KEYS[k] for k in range(4)], dtype=object)[how]
    matched_by = {name: int(np.count_nonzero(how == k)) for k, name in MATCH_KEYS.items() if k}
    return Attributed(out, pos, kind, matched_by)


def is_attributed(records: pd.DataFrame) -> bool:
    """Whether ``records`` were attributed by :func:`attribute` already (they carry
    ``source_customer_id`` and ``match_key``; ``customer_id`` is the customer's stable id)."""
    return {"source_customer_id", "match_key"} <= set(records.columns)


def ensure_attributed(orders: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """``orders`` as attributed orders: returned as they are when they already are
    (``SegmentResult.orders``, or a frame :func:`attribute` made: they carry
    ``source_customer_id`` and ``match_key``), else attributed to ``customers`` here and the
    matched rows returned. Consumers (cards, report, pivot) call this instead of joining
    raw rows on an id."""
    if is_attributed(orders):
        return orders
    return attribute(orders, customers, kind="orders").matched
