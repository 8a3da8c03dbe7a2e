"""One customer per person: exact duplicates, linking across channels, survivorship,
lineage, stable ids, 待跟进 flags and the clean report (SPEC B2–B5).

The input is the customers table of ``custtool import`` (docs/DATA.md): values are already
normalised, every row carries ``_source_file``, ``_sheet``, ``_row``, ``_channel``, ``_flags``.

How it works, all on whole columns:

1. **Exact duplicates** — rows equal in every non-provenance column collapse to the first one.
2. **Linking** — every distinct row is joined to its key values (phone, email, channel + source
   id, …) and the record–key graph is split into connected components
   (:func:`scipy.sparse.csgraph.connected_components`), so linking is transitive. A key value
   shared by more than ``hub_max_names`` different names is a *hub* (a store's phone): it does not
   link, and its records are listed for review. Names never link.
3. **Survivorship** — rows are sorted by customer and priority (newest ``first_contact_date``, then
   import order; or channel priority) and ``groupby().first()`` takes the first non-empty value of
   each field. ``first_contact_date`` is the earliest date; gender 未知 counts as no value; a
   real name wins over an honorific-only one (row flag ``name_honorific``, 张先生).
   ``channels``, ``source_ids``, ``phones`` and ``emails`` keep every value. Differing non-empty
   values are listed as conflicts.
4. **Stable ids** — a customer sharing a key with a customer of a previous clean output keeps that
   id; new customers get the next numbers, in order of first appearance by (file, sheet, row).
   The output holds the customers of this input only: previous customers who are absent are
   not carried into it.
5. **Missing key fields** — ``follow_up_flag`` (待跟进) and ``missing_fields``; optional explicit
   fill rules, recorded in ``_flags``.
"""

from __future__ import annotations

import dataclasses
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

DEFAULT_RULES_PATH = Path(__file__).parent / "rules" / "clean.yaml"

PROVENANCE = ("_source_file", "_sheet", "_row", "_channel", "_flags")
#: canonical customer fields, in output order (docs/DATA.md)
CUSTOMER_FIELDS = (
    "name", "phone", "email", "gender", "age", "birth_date", "id_number", "bank_card", "city", "region",
    "industry", "position", "customer_type", "company", "company_size", "first_contact_date",
    "source_channel", "owner", "status", "needs", "notes", "member_level",
)  # fmt: skip
MULTI_VALUED = ("channels", "source_ids", "phones", "emails")
LINEAGE_COLUMNS = (
    "_source_file", "_sheet", "_row", "_channel", "source_customer_id", "customer_id",
    "match_key", "exact_duplicate",
)  # fmt: skip

_CHAN_SEP = "\x1f"  # between channel and source id
_SEQ_MARK = "\x1d"  # stands for the sequence number in an id's prefix


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class FillRule:
    """Fill an empty ``field`` with a constant ``value`` or from another field (``source``)."""

    field: str
    value: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class CleanRules:
    """Settings of :func:`dedupe`; :func:`load_clean_rules` reads them from ``rules/clean.yaml``
    (the only home of their defaults)."""

    keys: tuple[str, ...]
    hub_max_names: int
    survivorship: str
    channel_priority: tuple[str, ...]
    conflict_ignore: tuple[str, ...]
    id_format: str
    id_start: int
    id_defaults: dict[str, str]
    codes: dict[str, dict[str, str]]
    required: tuple[tuple[str, ...], ...]
    fill: tuple[FillRule, ...]
    fuzzy_threshold: float
    fuzzy_max_block: int
    examples: int


def load_clean_rules(path: str | Path | None = None) -> CleanRules:
    """Clean settings: the shipped ``rules/clean.yaml`` overlaid key by key with ``path``."""
    from custtool.config import CleanSettings, load_model

    settings = load_model(
        CleanSettings,
        path,
        default="clean.yaml",
        what="rules file",
        hint="check the path given to --rules",
    )
    return _rules_from_settings(settings)


def rules_from_dict(raw: dict[str, Any], source: str = "rules") -> CleanRules:
    """:class:`CleanRules` from a parsed mapping laid over the shipped ``rules/clean.yaml``."""
    from custtool.config import CleanSettings, overlay, parse_yaml, read_yaml, shipped, validate

    base = read_yaml(shipped("clean.yaml"))
    settings = validate(CleanSettings, overlay(base.data, raw), [parse_yaml("", source), base])
    return _rules_from_settings(settings)


def _rules_from_settings(s: Any) -> CleanRules:
    def names(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = value.split(",")
        return tuple(v.strip() for v in value or () if v.strip())

    fill = tuple(
        FillRule(f.field, source=f.from_)
        if "from_" in f.model_fields_set
        else FillRule(f.field, value="" if f.value is None else str(f.value))
        for f in s.fill or ()
    )
    return CleanRules(
        keys=names(s.keys),
        hub_max_names=s.hub_max_names,
        survivorship=s.survivorship,
        channel_priority=names(s.channel_priority),
        conflict_ignore=names(s.conflict_ignore),
        id_format=s.id.format,
        id_start=s.id.start,
        id_defaults=dict(s.id.defaults or {}),
        codes={k: dict(v) for k, v in (s.id.codes or {}).items()},
        required=tuple((r,) if isinstance(r, str) else tuple(r) for r in s.required or ()),
        fill=fill,
        fuzzy_threshold=float(s.fuzzy.threshold),
        fuzzy_max_block=int(s.fuzzy.max_block),
        examples=s.examples,
    )


# --------------------------------------------------------------------------- report
#: clean report counts: key -> (中文, English), in the order the summary shows them
#: the clean report's sheet of customers flagged 待跟进 (capped in workbooks, full in CSV)
FOLLOWUP_SHEET = {"zh": "待跟进", "en": "Follow-up"}
CLEAN_METRICS: dict[str, tuple[str, str]] = {
    "rows_in": ("输入行数", "Rows in"),
    "exact_duplicates": ("完全重复行", "Exact duplicates"),
    "merged_rows": ("跨渠道合并行", "Rows merged into another"),
    "customers_out": ("输出客户数", "Customers out"),
    "conflicts": ("字段冲突", "Field conflicts"),
    "flagged": ("待跟进客户", "Flagged 待跟进"),
    "hub_rows": ("共用号码待审核行", "Rows with a shared (hub) key"),
    "fuzzy_matches": ("疑似重复(姓名相近)", "Proposed fuzzy matches"),
    "ids_kept": ("沿用上期编号", "Ids kept from previous"),
    "ids_new": ("新编号", "New ids"),
}


@dataclass
class CleanReport:
    """Counts and the tables of the clean report (one xlsx sheet each, see :meth:`sheets`).

    Accounting: ``rows_in == exact_duplicates + merged_rows + customers_out``.
    """

    rows_in: int
    exact_duplicates: int
    customers_out: int
    merged_rows: int
    conflicts: int
    flagged: int
    hub_rows: int
    fuzzy_matches: int
    ids_kept: int
    ids_new: int
    keys: list[str]
    merges_by_key: pd.DataFrame  # key, rows, customers
    conflict_table: pd.DataFrame  # customer_id, name, field, kept, values, n_values
    review: pd.DataFrame  # hub key values and their records
    fuzzy: pd.DataFrame  # proposed fuzzy-name matches
    examples: pd.DataFrame  # merged customers before / after
    followup: pd.DataFrame  # 待跟进 customers and what is missing
    id_changes: pd.DataFrame  # previous ids merged or split
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step (benchmarks)

    def counts(self) -> dict[str, Any]:
        """The numbers, JSON-ready."""
        return {
            "rows_in": self.rows_in,
            "exact_duplicates": self.exact_duplicates,
            "customers_out": self.customers_out,
            "merged_rows": self.merged_rows,
            "conflicts": self.conflicts,
            "flagged": self.flagged,
            "hub_rows": self.hub_rows,
            "fuzzy_matches": self.fuzzy_matches,
            "ids_kept": self.ids_kept,
            "ids_new": self.ids_new,
            "keys": list(self.keys),
            "merges_by_key": {
                str(k): int(v)
                for k, v in zip(
                    self.merges_by_key["merge_key"], self.merges_by_key["linked_rows"], strict=True
                )
            },
        }

    def summary(self, lang: str = "zh") -> pd.DataFrame:
        import pandas as pd

        rows = [(k, zh, en, getattr(self, k)) for k, (zh, en) in CLEAN_METRICS.items()]
        return pd.DataFrame(
            {
                "metric": [r[0] for r in rows],
                "metric_label": [r[1] if lang == "zh" else r[2] for r in rows],
                "metric_value": [r[3] for r in rows],
            }
        )

    def sheets(self, lang: str = "zh") -> dict[str, pd.DataFrame]:
        """Report sections as {sheet name: frame}, columns labelled for display."""
        from custtool.labels import labels

        names = {
            "summary": ("汇总", "Summary"),
            "merges_by_key": ("按键合并", "Merges by key"),
            "conflicts": ("字段冲突", "Conflicts"),
            "review": ("共用号码待审核", "Shared keys (review)"),
            "fuzzy": ("疑似重复", "Fuzzy matches"),
            "examples": ("合并示例", "Examples"),
            "followup": (FOLLOWUP_SHEET["zh"], FOLLOWUP_SHEET["en"]),
            "id_changes": ("编号变更", "Id changes"),
        }
        frames = {
            "summary": self.summary(lang),
            "merges_by_key": self.merges_by_key,
            "conflicts": self.conflict_table,
            "review": self.review,
            "fuzzy": self.fuzzy,
            "examples": self.examples,
            "followup": self.followup,
            "id_changes": self.id_changes,
        }
        if lang == "zh" and len(self.examples):
            stage = self.examples["example_stage"].map({"before": "合并前", "after": "合并后"})
            frames["examples"] = self.examples.assign(example_stage=stage)
        out = {}
        for key, df in frames.items():
            shown = df.copy()
            shown.columns = labels([str(c) for c in df.columns], lang)
            out[names[key][0 if lang == "zh" else 1]] = shown
        return out


# --------------------------------------------------------------------------- dedupe
def dedupe(
    df: pd.DataFrame,
    keys: tuple[str, ...] | list[str] | str | None = None,
    *,
    survivorship: str | None = None,
    channel_priority: tuple[str, ...] | list[str] | str | None = None,
    id_format: str | None = None,
    previous: pd.DataFrame | None = None,
    fuzzy_names: bool = False,
    hub_max_names: int | None = None,
    rules: CleanRules | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, CleanReport]:
    """One row per person from an imported customers table.

    Returns ``(customers, lineage, report)`` as described in docs/DATA.md. Arguments left as
    ``None`` come from ``rules`` (default: the shipped rules/clean.yaml).
    ``previous`` is an earlier clean output whose ids are carried over.
    """
    import time

    import numpy as np
    import pandas as pd

    clock = [time.perf_counter()]
    timings: dict[str, float] = {}

    def lap(step: str) -> None:
        now = time.perf_counter()
        timings[step] = round(now - clock[0], 3)
        clock[0] = now

    if {"order_id", "order_time"} & set(df.columns) and "amount" in df.columns:
        raise InputError(
            "this table holds orders (order_id/order_time/amount), not customers",
            "clean the customers import; orders go to `custtool segment --orders`",
        )
    r = _resolve_rules(rules, keys, survivorship, channel_priority, id_format, hub_max_names)
    data = _prepare(df)
    n = len(data)
    keys_used = [k for k in r.keys if k in data.columns]
    if not keys_used:
        raise InputError(
            f"none of the keys {', '.join(r.keys)} is a column of the customers table",
            "pass --keys with columns the table has (phone, email, customer_id, …)",
        )
    id_pieces = _parse_id_format(r.id_format, data.columns, r.codes)
    pos = np.arange(n, dtype=np.int64)

    # 1. exact duplicates ----------------------------------------------------------------
    content = [c for c in data.columns if not str(c).startswith("_")]
    if n:
        grp = data.groupby(content, sort=False, dropna=False).ngroup().to_numpy(np.int64)
        _, first_idx = np.unique(grp, return_index=True)
    else:
        grp = np.zeros(0, np.int64)
        first_idx = np.zeros(0, np.int64)
    exact_dup = first_idx[grp] != pos
    u_rows = data.iloc[first_idx].reset_index(drop=True)  # distinct rows, in first appearance
    u = len(u_rows)

    lap("prepare+exact_duplicates")
    # 2. linking ---------------------------------------------------------------------------
    # key values from every row (an exact duplicate from another channel brings its channel's id)
    nodes = _key_nodes(data, keys_used)
    rec = grp[nodes.rec]
    keep = ~pd.Series(rec * max(nodes.size, 1) + nodes.node).duplicated().to_numpy()
    rec, node, kidx = rec[keep], nodes.node[keep], nodes.kidx[keep]
    hub_node = _hub_nodes(u_rows, rec, node, kidx, nodes, r.hub_max_names)
    is_hub = hub_node[node]
    lrec, lnode, lkidx = rec[~is_hub], node[~is_hub], kidx[~is_hub]
    comp_u = _components(u, lrec, lnode, nodes.size)
    # which keys linked each distinct row: key nodes reached by at least two distinct rows
    linking = np.bincount(lnode, minlength=nodes.size)[lnode] >= 2
    linked_by = [np.zeros(u, bool) for _ in keys_used]
    for i in range(len(keys_used)):
        linked_by[i][lrec[linking & (lkidx == i)]] = True

    # customers numbered by first appearance in (file, sheet, row) order
    order_rank = _appearance_rank(data)
    comp_row = comp_u[grp] if n else np.zeros(0, np.int64)
    n_comp = int(comp_u.max()) + 1 if u else 0
    first_seen = np.full(n_comp, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first_seen, comp_row, order_rank)
    comp_order = np.argsort(first_seen, kind="stable")
    cust_of_comp = np.empty(n_comp, np.int64)
    cust_of_comp[comp_order] = np.arange(n_comp)
    cust_u = cust_of_comp[comp_u] if u else np.zeros(0, np.int64)
    cust_row = cust_of_comp[comp_row] if n else np.zeros(0, np.int64)
    m = n_comp
    rows_per_cust = np.bincount(cust_row, minlength=m)
    u_per_cust = np.bincount(cust_u, minlength=m)

    lap("linking")
    # 3. survivorship --------------------------------------------------------------------
    customers = _survive(u_rows, cust_u, u_per_cust, m, r)
    conflict_long = _conflicts(u_rows, cust_u, u_per_cust, customers, r)
    customers["channels"] = _join_per_customer(cust_row, data["_channel"], rows_per_cust, m)
    if "customer_id" in data.columns:
        sid = data["_channel"].str.cat(data["customer_id"], sep=":")
        sid = sid.where(data["customer_id"] != "", "")
        customers["source_ids"] = _join_per_customer(cust_row, sid, rows_per_cust, m)
    else:
        customers["source_ids"] = ""
    for col, multi in (("phone", "phones"), ("email", "emails")):
        if col == "phone" and "phones" in data.columns:  # every number of a cell that lists two
            at, listed = _phone_values(data)
            cust_at = cust_row[at]
            customers[multi] = _join_per_customer(
                cust_at, listed, np.bincount(cust_at, minlength=m), m
            )
            continue
        customers[multi] = (
            _join_per_customer(cust_row, data[col], rows_per_cust, m) if col in data.columns else ""
        )
    customers["_flags"] = _union_flags(cust_row, data["_flags"], m)

    lap("survivorship")
    # 4. stable ids ------------------------------------------------------------------------
    kept_ids, id_changes = _carry_ids(previous, cust_u[lrec], lnode, nodes, m)
    ids = _new_ids(customers, kept_ids, id_pieces, r, previous)
    customers.insert(0, "customer_id", ids)
    if "_cust" in id_changes.columns:
        id_changes.insert(0, "customer_id", ids[id_changes["_cust"].to_numpy(np.int64)])
        id_changes = id_changes.drop(columns="_cust").reset_index(drop=True)
    if m and customers["customer_id"].duplicated().any():
        raise ConfigError(
            f"the id format {r.id_format!r} produced duplicate customer ids",
            "put {seq} in the format, or use a format the previous output also used",
        )

    lap("ids")
    # 5. missing key fields, fill rules -----------------------------------------------------
    customers = _flag_missing(customers, r)

    lap("flags")
    # lineage -----------------------------------------------------------------------------
    texts, pattern_u = _bit_patterns(linked_by, keys_used, u)
    pattern_row = pattern_u[grp]
    texts = [*texts, "exact"]  # an exact duplicate linked by nothing else
    pattern_row = np.where(exact_dup & (pattern_row == 0), len(texts) - 1, pattern_row)
    lineage = pd.DataFrame(
        {
            "_source_file": data["_source_file"],
            "_sheet": data["_sheet"],
            "_row": data["_row"],
            "_channel": data["_channel"],
            "source_customer_id": data["customer_id"]
            if "customer_id" in data.columns
            else pd.Series("", index=data.index, dtype=str),
            "customer_id": pd.Series(ids, dtype=str).take(cust_row).to_numpy(),
            "match_key": pd.Series(texts, dtype=str).take(pattern_row).to_numpy(),
            "exact_duplicate": exact_dup,
        }
    )

    lap("lineage")
    # report --------------------------------------------------------------------------------
    merges = pd.DataFrame(
        {
            "merge_key": keys_used,
            "linked_rows": [int(b.sum()) for b in linked_by],
            "linked_customers": [int(len(np.unique(cust_u[b]))) for b in linked_by],
        }
    )
    conflict_table = _conflict_table(conflict_long, customers)
    review = _review_table(
        u_rows, rec[is_hub], node[is_hub], nodes, ids[cust_u] if u else np.zeros(0, object)
    )
    fuzzy = _fuzzy_matches(u_rows, cust_u, ids, r) if fuzzy_names else _empty_fuzzy()
    examples = _examples(data, cust_row, rows_per_cust, customers, r.examples)
    followup = customers.loc[
        customers["follow_up_flag"],
        [
            c
            for c in ("customer_id", "name", "phone", "email", "owner", "missing_fields")
            if c in customers.columns
        ],
    ].reset_index(drop=True)
    lap("report")
    report = CleanReport(
        timings=timings,
        rows_in=n,
        exact_duplicates=int(exact_dup.sum()),
        customers_out=m,
        merged_rows=u - m,
        conflicts=len(conflict_table),
        flagged=int(customers["follow_up_flag"].sum()),
        hub_rows=int(review[["_source_file", "_sheet", "_row"]].drop_duplicates().shape[0])
        if len(review)
        else 0,
        fuzzy_matches=len(fuzzy),
        ids_kept=int((kept_ids != "").sum()),
        ids_new=int(m - (kept_ids != "").sum()),
        keys=keys_used,
        merges_by_key=merges,
        conflict_table=conflict_table,
        review=review,
        fuzzy=fuzzy,
        examples=examples,
        followup=followup,
        id_changes=id_changes,
    )
    return customers, lineage, report


# --------------------------------------------------------------------------- steps
def _resolve_rules(
    rules: CleanRules | None,
    keys: Any,
    survivorship: str | None,
    channel_priority: Any,
    id_format: str | None,
    hub_max_names: int | None,
) -> CleanRules:
    r = rules or load_clean_rules()
    kw: dict[str, Any] = {}
    if keys is not None:
        kw["keys"] = (
            tuple(k.strip() for k in keys.split(",") if k.strip())
            if isinstance(keys, str)
            else tuple(keys)
        )
    if survivorship is not None:
        kw["survivorship"] = survivorship
    if channel_priority is not None:
        kw["channel_priority"] = (
            tuple(c.strip() for c in channel_priority.split(",") if c.strip())
            if isinstance(channel_priority, str)
            else tuple(channel_priority)
        )
    if id_format is not None:
        kw["id_format"] = id_format
    if hub_max_names is not None:
        kw["hub_max_names"] = hub_max_names
    r = dataclasses.replace(r, **kw)
    if not r.keys:
        raise ConfigError("no keys to link on", "pass e.g. --keys phone,email,customer_id")
    if "name" in r.keys:
        raise ConfigError(
            "names cannot be a merge key: common Chinese names chain strangers together",
            "link on phone, email, customer_id or id_number; use --fuzzy-names to review similar names",
        )
    if r.survivorship not in {"newest", "channel"}:
        raise ConfigError(f"unknown survivorship {r.survivorship!r}", "use newest or channel")
    if r.survivorship == "channel" and not r.channel_priority:
        raise ConfigError(
            "survivorship 'channel' needs a channel priority",
            "pass e.g. --channel-priority 门店,电商,公众号",
        )
    if r.hub_max_names < 1:
        raise ConfigError(
            "hub_max_names must be at least 1", "e.g. 3: a phone shared by 4 names is not merged on"
        )
    return r


def _as_text(s: pd.Series) -> pd.Series:
    """A column as text ("" for missing); integral numbers lose '.0' (ids read from CSV)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
        return s.astype(str).where(s.notna(), "")
    if pd.api.types.is_numeric_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        if (num.dropna() == num.dropna().round()).all():
            return num.astype("Int64").astype(str).where(num.notna(), "")
        return num.astype(str).where(num.notna(), "")
    if pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
        return s.fillna("") if s.hasnans else s
    out = s.where(s.notna(), "")
    if pd.api.types.infer_dtype(out.to_numpy(), skipna=False) not in {"string", "empty"}:
        out = out.map(str)  # mixed cells (numbers among text): their text
    return out.astype(str)


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    missing = [c for c in ("_source_file", "_sheet", "_row") if c not in df.columns]
    if missing:
        raise InputError(
            f"the customers table has no provenance column(s) {', '.join(missing)}",
            "clean reads the output of `custtool import` (it adds _source_file, _sheet, _row)",
        )
    if df.columns.duplicated().any():
        dup = df.columns[df.columns.duplicated()][0]
        raise InputError(f"the customers table has the column {dup!r} twice", "rename one of them")
    data = df.reset_index(drop=True).copy()
    data.columns = [str(c) for c in data.columns]
    for c in ("_channel", "_flags"):
        if c not in data.columns:
            data[c] = ""
    data["_row"] = pd.to_numeric(data["_row"], errors="coerce").astype("Int64")
    always_text = {
        "customer_id",
        "phone",
        "email",
        "id_number",
        "bank_card",
        "name",
        "_source_file",
        "_sheet",
        "_channel",
        "_flags",
    }
    for c in data.columns:
        s = data[c]
        if c == "_row":
            continue
        if c in always_text or pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            data[c] = _as_text(s)
    return data


@dataclass
class _KeyNodes:
    """Key values as integer nodes: edge ``i`` joins data row ``rec[i]`` to node ``node[i]``.

    Nodes of key ``keys[j]`` are ``offsets[j] … offsets[j+1]-1``; ``uniques[j]`` holds their
    values (for ``customer_id``: channel, U+001F, id).
    """

    keys: list[str]
    rec: np.ndarray
    node: np.ndarray
    kidx: np.ndarray
    offsets: np.ndarray
    uniques: list[pd.Index]

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def lookup(self, j: int, values: pd.Series) -> np.ndarray:
        """Node codes of ``values`` of key ``j`` (-1 when the value is not a node)."""
        import numpy as np

        # pandas-stubs want an Index; pandas takes any array-like (and this avoids building one)
        found = self.uniques[j].get_indexer(values.to_numpy(dtype=object))  # type: ignore[arg-type]
        return np.where(found >= 0, found + self.offsets[j], -1)

    def describe(self, node: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(key name, value) of nodes, the channel id shown as ``channel:id``."""
        import numpy as np
        import pandas as pd

        j = np.searchsorted(self.offsets, node, side="right") - 1
        names = np.asarray(self.keys, dtype=object)[j]
        values = np.empty(len(node), dtype=object)
        for k in np.unique(j):  # loop over the few keys, not the rows
            sel = j == k
            values[sel] = np.asarray(self.uniques[k], dtype=object)[node[sel] - self.offsets[k]]
        return names, pd.Series(values, dtype=object).str.replace(_CHAN_SEP, ":").to_numpy(
            dtype=object
        )


def _key_nodes(data: pd.DataFrame, keys: list[str]) -> _KeyNodes:
    """Factorise each key column once (customer_id together with the channel)."""
    import numpy as np
    import pandas as pd

    recs, nodes, kidx, uniques = [], [], [], []
    offsets = [0]
    for j, k in enumerate(keys):
        ok = (data[k] != "").to_numpy()
        rec = np.flatnonzero(ok)
        if k == "phone" and "phones" in data.columns:  # a second number of a cell links too
            rec, listed = _phone_values(data)
            codes, uniq = pd.factorize(listed)
            codes = codes.astype(np.int64)
        elif k == "customer_id":
            pair = data.loc[ok, ["_channel", k]]
            codes = pair.groupby(["_channel", k], sort=False).ngroup().to_numpy(np.int64)
            _, first = np.unique(codes, return_index=True)
            uniq = pd.Index(pair["_channel"].iloc[first] + _CHAN_SEP + pair[k].iloc[first])
        else:
            codes, uniq = pd.factorize(data[k].iloc[rec])
            codes = codes.astype(np.int64)
        recs.append(rec)
        nodes.append(codes + offsets[-1])
        kidx.append(np.full(len(rec), j, np.int8))
        uniques.append(pd.Index(uniq))
        offsets.append(offsets[-1] + len(uniq))
    return _KeyNodes(
        keys=list(keys),
        rec=np.concatenate(recs) if recs else np.zeros(0, np.int64),
        node=np.concatenate(nodes) if nodes else np.zeros(0, np.int64),
        kidx=np.concatenate(kidx) if kidx else np.zeros(0, np.int8),
        offsets=np.asarray(offsets, np.int64),
        uniques=uniques,
    )


def _phone_values(data: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """Every non-empty phone of every row: the row's ``phone``, then the other numbers its
    ``phones`` lists (an import keeps every number of a cell that held two), each once per
    row. Returns (row positions, phones), rows in order."""
    import numpy as np
    import pandas as pd

    phone = data["phone"].reset_index(drop=True)
    listed = data["phones"].reset_index(drop=True)
    extra = np.flatnonzero(((listed != "") & (listed != phone)).to_numpy(dtype=bool))
    rows = np.arange(len(phone), dtype=np.int64)
    if len(extra):
        parts = listed.iloc[extra].str.split(";").explode()
        rows = np.concatenate(
            [
                rows,
                extra[
                    np.repeat(np.arange(len(extra)), listed.iloc[extra].str.split(";").str.len())
                ],
            ]
        )
        values = pd.concat([phone, parts], ignore_index=True).astype(str)
        seq = np.concatenate([np.zeros(len(phone), np.int64), np.ones(len(parts), np.int64)])
        order = np.lexsort((seq, rows))
        rows, values = rows[order], values.iloc[order].reset_index(drop=True)
    else:
        values = phone.astype(str)
    keep = (values != "").to_numpy(dtype=bool)
    keep = (
        keep
        & ~pd.DataFrame({"r": rows, "v": values.to_numpy(dtype=object)}).duplicated().to_numpy()
    )
    return rows[keep], values[keep].reset_index(drop=True)


def _hub_nodes(
    u_rows: pd.DataFrame,
    rec: np.ndarray,
    node: np.ndarray,
    kidx: np.ndarray,
    nodes: _KeyNodes,
    max_names: int,
) -> np.ndarray:
    """Per node: shared by more than ``max_names`` different non-empty names (source ids exempt)."""
    import numpy as np
    import pandas as pd

    hub = np.zeros(nodes.size, bool)
    if "name" not in u_rows.columns or not len(rec):
        return hub
    exempt = [j for j, k in enumerate(nodes.keys) if k == "customer_id"]
    # only nodes on more than max_names records can be hubs: count names for those alone
    candidate = np.bincount(node, minlength=nodes.size) > max_names
    sel = candidate[node] & ~np.isin(kidx, exempt)
    if not sel.any():
        return hub
    names = u_rows["name"].iloc[rec[sel]]
    named = (names != "").to_numpy()
    name_code, _ = pd.factorize(names[named])
    pairs = pd.DataFrame({"node": node[sel][named], "name": name_code}).drop_duplicates()
    n_names = np.bincount(pairs["node"].to_numpy(), minlength=nodes.size)
    return n_names > max_names


def _components(u: int, rec: np.ndarray, node: np.ndarray, k: int) -> np.ndarray:
    """Connected components of the record–key graph; labels numbered by first record."""
    import numpy as np
    import pandas as pd
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if u == 0:
        return np.zeros(0, np.int64)
    size = u + k
    graph = coo_matrix((np.ones(len(rec), np.int8), (rec, node + u)), shape=(size, size)).tocsr()
    _, labels = connected_components(graph, directed=False)
    comp, _ = pd.factorize(labels[:u])
    return comp.astype(np.int64)


def _appearance_rank(data: pd.DataFrame) -> np.ndarray:
    """Rank of each row in (file, sheet, row, import position) order."""
    import numpy as np

    n = len(data)
    if not n:
        return np.zeros(0, np.int64)
    file_code = data["_source_file"].rank(method="dense").to_numpy()
    sheet_code = data["_sheet"].rank(method="dense").to_numpy()
    row = data["_row"].fillna(-1).to_numpy(np.int64)
    order = np.lexsort((np.arange(n), row, sheet_code, file_code))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank


def _priority_order(
    u_rows: pd.DataFrame, cust_u: np.ndarray, r: CleanRules, demote: np.ndarray | None = None
) -> np.ndarray:
    """Distinct rows sorted by customer, then best first for survivorship (``demote``d rows last)."""
    import numpy as np
    import pandas as pd

    u = len(u_rows)
    later = -np.arange(u, dtype=np.float64)  # imported later first
    if "first_contact_date" in u_rows.columns and pd.api.types.is_datetime64_any_dtype(
        u_rows["first_contact_date"]
    ):
        fcd = u_rows["first_contact_date"]
        newest = np.where(fcd.isna(), np.inf, -fcd.astype("int64").to_numpy(np.float64))
    else:
        newest = np.zeros(u)
    sort_keys: list[np.ndarray] = [later, newest]
    if r.survivorship == "channel":
        rank = {c: i for i, c in enumerate(r.channel_priority)}
        chan = u_rows["_channel"].map(rank).fillna(len(rank)).to_numpy(np.float64)
        sort_keys.append(chan)
    if demote is not None:
        sort_keys.append(demote.astype(np.float64))
    sort_keys.append(cust_u.astype(np.float64))
    return np.lexsort(sort_keys)


def _content_fields(columns: Any) -> list[str]:
    """Fields that survive into the customer row (canonical order, then extra columns)."""
    cols = [str(c) for c in columns]
    canon = [c for c in CUSTOMER_FIELDS if c in cols]
    extra = [
        c
        for c in cols
        if not c.startswith("_")
        and c not in CUSTOMER_FIELDS
        and c != "customer_id"
        and c not in MULTI_VALUED
    ]
    return canon + extra


#: values that say "unknown": any real value wins over them, and they are no conflict
_UNKNOWN_VALUES = {"gender": ("未知",)}


def _weak_mask(s: pd.Series, field: str) -> pd.Series:
    """Empty, or a value that only says "unknown" (gender 未知)."""
    weak = _blank_mask(s)
    if field in _UNKNOWN_VALUES:
        weak = weak | s.isin(_UNKNOWN_VALUES[field])
    return weak


def _blank_mask(s: pd.Series) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
        return s.isna() | (s == "")
    return s.isna()


def _survive(
    u_rows: pd.DataFrame, cust_u: np.ndarray, u_per_cust: np.ndarray, m: int, r: CleanRules
) -> pd.DataFrame:
    """One row per customer: the first non-empty value of each field in priority order.

    Customers with one distinct row take it as it is (a take, no per-value work); the
    others go through ``groupby().first()`` (which skips missing values) on their rows.
    """
    import numpy as np
    import pandas as pd

    fields = _content_fields(u_rows.columns)
    if not m:
        return pd.DataFrame({f: u_rows[f].iloc[:0] for f in fields}).reset_index(drop=True)
    single = u_per_cust[cust_u] == 1
    single_rows = np.flatnonzero(single)
    parts = [u_rows[fields].iloc[single_rows].set_axis(cust_u[single_rows])]
    multi_rows = np.flatnonzero(~single)
    if len(multi_rows):
        sub = u_rows[fields].iloc[multi_rows]
        order = _priority_order(
            u_rows.iloc[multi_rows].reset_index(drop=True), cust_u[multi_rows], r
        )
        sub = sub.iloc[order]
        sub_cust = cust_u[multi_rows][order]
        masked = pd.DataFrame({f: sub[f].mask(_weak_mask(sub[f], f)) for f in fields})
        merged = masked.groupby(sub_cust, sort=True).first()
        if "first_contact_date" in fields:
            merged["first_contact_date"] = (
                sub["first_contact_date"].groupby(sub_cust, sort=True).min()
            )
        for f in _UNKNOWN_VALUES:  # nothing known: keep the "unknown" value itself
            if f in fields:
                merged[f] = merged[f].fillna(sub[f].groupby(sub_cust, sort=True).first())
        if "name" in fields:  # a real name wins over an honorific-only one (张先生)
            rows = u_rows.iloc[multi_rows].reset_index(drop=True)
            honorific = rows["_flags"].str.contains("name_honorific", regex=False).to_numpy()
            if honorific.any():
                order2 = _priority_order(rows, cust_u[multi_rows], r, demote=honorific)
                names = rows["name"].iloc[order2]
                by = cust_u[multi_rows][order2]
                first = names.mask(_blank_mask(names)).groupby(by, sort=True).first()
                merged["name"] = first.reindex(merged.index)
        for f in fields:
            if _is_text(u_rows[f]):
                merged[f] = merged[f].fillna("").astype(u_rows[f].dtype)
            elif merged[f].dtype != u_rows[f].dtype:
                merged[f] = merged[f].astype(u_rows[f].dtype)
        parts.append(merged)
    out = pd.concat(parts).sort_index()
    return out.reset_index(drop=True)


def _is_text(s: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s))


def _conflicts(
    u_rows: pd.DataFrame,
    cust_u: np.ndarray,
    u_per_cust: np.ndarray,
    customers: pd.DataFrame,
    r: CleanRules,
) -> pd.DataFrame:
    """(cust, field, values, n_values) where a customer's rows hold different non-empty values."""
    import numpy as np
    import pandas as pd

    skip = {"phone", "email", "first_contact_date", *r.conflict_ignore}
    fields = [f for f in _content_fields(u_rows.columns) if f not in skip]
    multi_rows = np.flatnonzero(u_per_cust[cust_u] > 1) if len(cust_u) else np.zeros(0, np.int64)
    if len(multi_rows):  # values listed in survivorship order: the kept one first
        multi_rows = multi_rows[
            _priority_order(u_rows.iloc[multi_rows].reset_index(drop=True), cust_u[multi_rows], r)
        ]
    parts = []
    for f in fields:
        if not len(multi_rows):
            break
        s = u_rows[f].iloc[multi_rows]
        keep = ~_weak_mask(s, f).to_numpy()
        d = pd.DataFrame(
            {"cust": cust_u[multi_rows][keep], "value": s[keep].astype(str).to_numpy()}
        )
        d = d.drop_duplicates()
        cnt = d.groupby("cust").size()
        bad = cnt.index[cnt > 1]
        if not len(bad):
            continue
        d = d[d["cust"].isin(bad)]
        g, joined = _group_join(d["cust"].to_numpy(), d["value"].to_numpy(dtype=object))
        parts.append(
            pd.DataFrame(
                {"cust": g, "field": f, "values": joined, "n_values": cnt.loc[g].to_numpy()}
            )
        )
    if not parts:
        return pd.DataFrame(
            {
                "cust": pd.Series([], dtype=np.int64),
                "field": [],
                "values": [],
                "n_values": pd.Series([], dtype=np.int64),
            }
        )
    return (
        pd.concat(parts, ignore_index=True)
        .sort_values(["cust", "field"], kind="stable")
        .reset_index(drop=True)
    )


def _conflict_table(long: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    idx = long["cust"].to_numpy(np.int64)
    kept = np.full(len(long), "", dtype=object)
    fields = long["field"].to_numpy(dtype=object)
    for f in pd.unique(fields):
        sel = fields == f
        kept[sel] = customers[f].iloc[idx[sel]].astype(str).to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].iloc[idx].to_numpy(dtype=object),
            "name": customers["name"].iloc[idx].to_numpy(dtype=object)
            if "name" in customers.columns
            else "",
            "conflict_field": fields,
            "kept_value": kept,
            "all_values": long["values"].to_numpy(dtype=object),
            "n_values": long["n_values"].to_numpy(np.int64),
        }
    )


def _join_per_customer(
    cust: np.ndarray, values: pd.Series, rows_per_cust: np.ndarray, m: int
) -> pd.Series:
    """All distinct non-empty values per customer, in input order, ';'-joined (str Series of m)."""
    import numpy as np
    import pandas as pd

    if not m:
        return pd.Series([], dtype=str)
    values = values.reset_index(drop=True).astype(str)
    one_row = rows_per_cust[cust] == 1
    single = np.flatnonzero(one_row)
    parts = [values.iloc[single].set_axis(cust[single])]  # a customer of one row: its value
    many = np.flatnonzero(~one_row)
    if len(many):
        v = values.iloc[many]
        keep = (v != "").to_numpy()
        d = pd.DataFrame({"cust": cust[many][keep], "v": v[keep].to_numpy()}).drop_duplicates()
        if len(d):
            g, joined = _group_join(d["cust"].to_numpy(), d["v"])
            parts.append(pd.Series(joined, index=g, dtype=str))
    out = pd.concat(parts)
    return out.reindex(pd.RangeIndex(m), fill_value="").astype(str).reset_index(drop=True)


def _group_join(groups: np.ndarray, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(group, values ';'-joined in input order) per group — pyarrow's hash_list + binary_join."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(pd.Series(values, dtype=str).to_numpy(dtype=object), type=pa.string())
    table = pa.table({"g": np.asarray(groups, dtype=np.int64), "v": arr})
    agg = table.group_by("g", use_threads=False).aggregate([("v", "list")])
    joined = pc.binary_join(agg["v_list"], ";")
    return agg["g"].to_numpy(), np.asarray(joined.to_numpy(zero_copy_only=False), dtype=object)


def _union_flags(cust: np.ndarray, flags: pd.Series, m: int) -> pd.Series:
    import numpy as np
    import pandas as pd

    has = (flags != "").to_numpy()
    if not has.any():
        return pd.Series(np.full(m, "", dtype=object)).astype(str)
    d = pd.DataFrame({"cust": cust[has], "flag": flags[has].str.split(";").to_numpy()}).explode(
        "flag"
    )
    d = d[d["flag"] != ""]
    counts = np.bincount(d["cust"].to_numpy(np.int64), minlength=m)
    return _join_per_customer(
        d["cust"].to_numpy(np.int64), d["flag"].astype(str), np.maximum(counts, 2), m
    )


def _bit_patterns(
    flags: list[np.ndarray], names: list[str], length: int
) -> tuple[list[str], np.ndarray]:
    """Per row, which flags are set, as (texts of all 2^k patterns, pattern index per row)."""
    import numpy as np

    bits = np.zeros(length, np.int64)
    for i, f in enumerate(flags):
        bits |= f.astype(np.int64) << i
    texts = [";".join(n for i, n in enumerate(names) if p >> i & 1) for p in range(1 << len(names))]
    return texts, bits


def _bits_to_text(flags: list[np.ndarray], names: list[str]) -> np.ndarray:
    """Per row, the names whose flag is set, ';'-joined."""
    import numpy as np

    if not flags:
        return np.zeros(0, object)
    texts, bits = _bit_patterns(flags, names, len(flags[0]))
    return np.asarray(texts, dtype=object)[bits]


# --------------------------------------------------------------------------- ids
def _parse_id_format(
    fmt: str, columns: Any, codes: dict[str, dict[str, str]]
) -> list[tuple[str, str | None, str]]:
    """[(literal, field, spec)] of an id format, checked against the fields it may use."""
    try:
        pieces = [(lit, fld, spec or "") for lit, fld, spec, _ in string.Formatter().parse(fmt)]
    except ValueError as exc:
        raise ConfigError(
            f"id format {fmt!r} is not a valid format string ({exc})", "e.g. C{seq:08d}"
        ) from None
    fields = [f for _, f, _ in pieces if f is not None]
    if "seq" not in fields:
        raise ConfigError(
            f"id format {fmt!r} has no {{seq}}", "add a sequence number, e.g. C{seq:08d}"
        )
    if fields.count("seq") > 1:
        raise ConfigError(f"id format {fmt!r} has {{seq}} twice", "use it once")
    for _, f, spec in pieces:  # {seq} is formatted as a number, the other fields as text
        try:
            format(1 if f == "seq" else "x", spec)
        except ValueError as exc:
            raise ConfigError(
                f"id format {fmt!r}: {{{f}:{spec}}} is not a valid format ({exc})",
                "e.g. C{seq:08d}",
            ) from None
    cols = {str(c) for c in columns}
    for f in fields:
        if f in {"seq", "year", "month"} or f in cols:
            continue
        if f.endswith("_code") and f[:-5] in codes:
            continue
        hint = (
            f"add a code table for {f[:-5]!r} under id.codes in rules/clean.yaml"
            if f.endswith("_code")
            else "use {seq}, {year}, {month}, a customer column or {<column>_code}"
        )
        raise ConfigError(f"id format {fmt!r}: unknown field {{{f}}}", hint)
    return pieces


def _format_spec(values: pd.Series, spec: str) -> pd.Series:
    if not spec:
        return values.astype(str)
    zero = re.fullmatch(r"0(\d+)d", spec)
    if zero:
        return values.astype(str).str.zfill(int(zero.group(1)))
    return values.map(lambda v: format(v, spec))


def _render_ids(
    customers: pd.DataFrame,
    pieces: list[tuple[str, str | None, str]],
    r: CleanRules,
    seq: pd.Series | None,
) -> pd.Series:
    """Ids of the given customers; with ``seq=None`` the prefix with the sequence marked."""
    import pandas as pd

    out = pd.Series("", index=customers.index, dtype=object)
    for literal, fld, spec in pieces:
        out = out + literal
        if fld is None:
            continue
        if fld == "seq":
            out = out + (_SEQ_MARK if seq is None else _format_spec(seq.astype("int64"), spec))
            continue
        if fld in {"year", "month"}:
            d = (
                customers["first_contact_date"]
                if "first_contact_date" in customers.columns
                else pd.Series(pd.NaT, index=customers.index)
            )
            d = pd.to_datetime(d, errors="coerce")
            part = d.dt.year if fld == "year" else d.dt.month
            text = part.astype("Int64").astype(str).str.zfill(4 if fld == "year" else 2)
            text = text.where(
                part.notna(), r.id_defaults.get(fld, "0000" if fld == "year" else "00")
            )
        elif fld.endswith("_code") and fld[:-5] in r.codes:
            table = r.codes[fld[:-5]]
            src = (
                customers[fld[:-5]].astype(str)
                if fld[:-5] in customers.columns
                else pd.Series("", index=customers.index)
            )
            text = src.map(table).where(
                src.map(table).notna(), table.get("_default", r.id_defaults.get(fld, "XX"))
            )
        else:
            text = customers[fld].astype(str)
            text = text.where(text != "", r.id_defaults.get(fld, "X"))
        out = out + (_format_spec(text, spec) if spec else text.astype(str))
    return out.astype(str)


def _id_regex(pieces: list[tuple[str, str | None, str]]) -> re.Pattern[str]:
    """``^(?P<pre>…)(?P<seq>digits)(?P<post>…)$`` for ids written with this format."""
    parts = ["^(?P<pre>"]
    for literal, fld, _ in pieces:
        parts.append(re.escape(literal))
        if fld == "seq":
            parts.append(r")(?P<seq>\d+)(?P<post>")
        elif fld == "year":
            parts.append(r"\d{4}")
        elif fld == "month":
            parts.append(r"\d{2}")
        elif fld is not None:
            parts.append(r".*?")
    parts.append(")$")
    return re.compile("".join(parts))


def _previous_keys(previous: pd.DataFrame, nodes: _KeyNodes) -> pd.DataFrame:
    """(prev, node): the current key nodes each customer of an earlier clean output had."""
    import numpy as np
    import pandas as pd

    if "customer_id" not in previous.columns:
        raise InputError(
            "the previous clean output has no customer_id column",
            "pass the customers file an earlier `custtool clean` wrote",
        )
    prev_ids = _as_text(previous["customer_id"])
    if (prev_ids == "").any():
        raise InputError(
            "the previous clean output has customers without an id",
            "pass the customers file an earlier `custtool clean` wrote",
        )
    if prev_ids.duplicated().any():
        raise InputError(
            f"the previous clean output has duplicate customer ids (e.g. {prev_ids[prev_ids.duplicated()].iloc[0]})",
            "pass the customers file an earlier `custtool clean` wrote",
        )
    sources = {
        "phone": ("phones", "phone"),
        "email": ("emails", "email"),
        "customer_id": ("source_ids",),
    }
    parts = []
    for j, k in enumerate(nodes.keys):
        for col in sources.get(k, (k,)):
            if col not in previous.columns:
                continue
            s = _as_text(previous[col]).str.split(";")
            d = pd.DataFrame({"prev": np.arange(len(previous)), "v": s.to_numpy()}).explode("v")
            d = d[d["v"].notna() & (d["v"] != "")]
            if k == "customer_id":
                chan_id = d["v"].str.split(":", n=1, expand=True)
                if chan_id.shape[1] < 2:
                    continue
                ok = chan_id[1].notna()
                d = d[ok]
                d["v"] = chan_id[0][ok] + _CHAN_SEP + chan_id[1][ok]
            d = pd.DataFrame(
                {"prev": d["prev"].to_numpy(np.int64), "node": nodes.lookup(j, d["v"].astype(str))}
            )
            parts.append(d[d["node"] >= 0])
            break  # phones (all values) preferred over phone
    if not parts:
        return pd.DataFrame(
            {"prev": pd.Series([], dtype=np.int64), "node": pd.Series([], dtype=np.int64)}
        )
    return pd.concat(parts, ignore_index=True).drop_duplicates()


def _carry_ids(
    previous: pd.DataFrame | None, cust: np.ndarray, node: np.ndarray, nodes: _KeyNodes, m: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """Previous id per customer ("" when new) and the table of merged/split previous ids."""
    import numpy as np
    import pandas as pd

    kept = np.full(m, "", dtype=object)
    changes = pd.DataFrame(
        {
            "customer_id": pd.Series([], dtype=str),
            "id_change": pd.Series([], dtype=str),
            "previous_ids": pd.Series([], dtype=str),
        }
    )
    if previous is None or not m:
        return kept, changes
    prev_ids = _as_text(previous["customer_id"]) if "customer_id" in previous.columns else None
    pk = _previous_keys(previous, nodes)
    cust_keys = pd.DataFrame({"cust": cust, "node": node})
    pairs = cust_keys.merge(pk, on="node")[["cust", "prev"]].drop_duplicates()
    if pairs.empty:
        return kept, changes
    pairs = pairs.sort_values(["cust", "prev"], kind="stable")
    assert prev_ids is not None
    ids_arr = prev_ids.to_numpy(dtype=object)
    # greedy rounds: each customer claims its earliest free previous id; each id goes to the
    # first customer (in appearance order) claiming it; losers try their next id
    free = pairs
    taken_cust: list[np.ndarray] = []
    taken_prev: list[np.ndarray] = []
    while len(free):
        claim = free.drop_duplicates("cust", keep="first")
        win = claim.sort_values(["prev", "cust"], kind="stable").drop_duplicates(
            "prev", keep="first"
        )
        taken_cust.append(win["cust"].to_numpy())
        taken_prev.append(win["prev"].to_numpy())
        free = free[~free["cust"].isin(win["cust"]) & ~free["prev"].isin(win["prev"])]
    tc = np.concatenate(taken_cust)
    tp = np.concatenate(taken_prev)
    kept[tc] = ids_arr[tp]
    # report: customers touching several previous ids, previous ids claimed by several customers
    per_cust = pairs.groupby("cust")["prev"].nunique()
    per_prev = pairs.groupby("prev")["cust"].nunique()
    rows = []
    merged_c = per_cust.index[per_cust > 1].to_numpy()
    if len(merged_c):
        d = pairs[pairs["cust"].isin(merged_c)]
        g, joined = _group_join(d["cust"].to_numpy(), ids_arr[d["prev"].to_numpy()])
        rows.append(
            pd.DataFrame({"cust": g, "id_change": "merged previous ids", "previous_ids": joined})
        )
    split_p = per_prev.index[per_prev > 1].to_numpy()
    if len(split_p):
        d = pairs[pairs["prev"].isin(split_p)]
        rows.append(
            pd.DataFrame(
                {
                    "cust": d["cust"].to_numpy(),
                    "id_change": "previous id split",
                    "previous_ids": ids_arr[d["prev"].to_numpy()],
                }
            )
        )
    if rows:
        changes = pd.concat(rows, ignore_index=True).drop_duplicates()
        changes = changes.rename(columns={"cust": "_cust"})
    return kept, changes


def _new_ids(
    customers: pd.DataFrame,
    kept: np.ndarray,
    pieces: list[tuple[str, str | None, str]],
    r: CleanRules,
    previous: pd.DataFrame | None,
) -> np.ndarray:
    """Kept previous ids, and the next numbers per prefix for new customers (appearance order)."""
    import numpy as np
    import pandas as pd

    ids = kept.copy()
    new = ids == ""
    if not new.any():
        return ids
    sub = customers.loc[new]
    prefix = _render_ids(sub, pieces, r, None)
    start = pd.Series(r.id_start - 1, index=prefix.unique(), dtype=np.int64)
    if previous is not None and "customer_id" in previous.columns and len(previous):
        prev_ids = _as_text(previous["customer_id"])
        found = prev_ids.str.extract(_id_regex(pieces).pattern)
        ok = found["seq"].notna()
        if ok.any():
            # the prefix of a previous id: the id with its sequence digits marked
            pre = found.loc[ok, "pre"] + _SEQ_MARK + found.loc[ok, "post"]
            mx = found.loc[ok, "seq"].astype(np.int64).groupby(pre.to_numpy()).max()
            common = start.index.intersection(mx.index)
            start.loc[common] = np.maximum(start.loc[common].to_numpy(), mx.loc[common].to_numpy())
    seq = prefix.groupby(prefix, sort=False).cumcount() + 1 + prefix.map(start).astype(np.int64)
    ids[np.flatnonzero(new)] = _render_ids(sub, pieces, r, seq).to_numpy()
    return ids


# --------------------------------------------------------------------------- 待跟进
def _flag_missing(customers: pd.DataFrame, r: CleanRules) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    m = len(customers)
    out = customers.copy()
    miss = []
    names = []
    for group in r.required:
        present = np.zeros(m, bool)
        for f in group:
            if f in out.columns:
                present |= ~_blank_mask(out[f]).to_numpy()
        miss.append(~present)
        names.append("/".join(group))
    out["follow_up_flag"] = np.logical_or.reduce(miss) if miss and m else np.zeros(m, bool)
    out["missing_fields"] = pd.Series(
        _bits_to_text(miss, names) if miss and m else np.full(m, "", object), index=out.index
    ).astype(str)
    for rule in r.fill:
        if rule.field not in out.columns:
            out[rule.field] = ""
        blank = _blank_mask(out[rule.field])
        if rule.source is not None:
            if rule.source not in out.columns:
                raise ConfigError(
                    f"fill rule for {rule.field!r}: no field {rule.source!r} to copy from",
                    "check fill: in rules/clean.yaml",
                )
            src = out[rule.source].astype(str)
            blank = blank & (src != "")
            new = src
        else:
            new = pd.Series(rule.value or "", index=out.index)
        out.loc[blank, rule.field] = new[blank]
        mark = "filled:" + rule.field
        flags = out["_flags"]
        out["_flags"] = np.where(blank, np.where(flags == "", mark, flags + ";" + mark), flags)
        out["_flags"] = out["_flags"].astype(str)
    front = ["customer_id"]
    tail = [*MULTI_VALUED, "follow_up_flag", "missing_fields", "_flags"]
    middle = [c for c in out.columns if c not in front and c not in tail]
    return out[front + middle + tail]


# --------------------------------------------------------------------------- report tables
def _review_table(
    u_rows: pd.DataFrame, rec: np.ndarray, node: np.ndarray, nodes: _KeyNodes, ids_u: np.ndarray
) -> pd.DataFrame:
    """Records carrying a hub key value (one row per record and value), for review."""
    import pandas as pd

    cols = [
        "merge_key",
        "key_value",
        "n_names",
        "_source_file",
        "_sheet",
        "_row",
        "name",
        "customer_id",
    ]
    if not len(rec):
        return pd.DataFrame({c: pd.Series([], dtype=str) for c in cols})
    key, value = nodes.describe(node)
    d = pd.DataFrame(
        {
            "merge_key": key,
            "key_value": value,
            "_source_file": u_rows["_source_file"].to_numpy()[rec],
            "_sheet": u_rows["_sheet"].to_numpy()[rec],
            "_row": u_rows["_row"].to_numpy()[rec],
            "name": u_rows["name"].to_numpy(dtype=object)[rec],
            "customer_id": ids_u[rec],
        }
    )
    n_names = (
        d[d["name"] != ""].groupby(["merge_key", "key_value"])["name"].nunique().rename("n_names")
    )
    d = d.merge(n_names, left_on=["merge_key", "key_value"], right_index=True, how="left")
    return (
        d[cols]
        .sort_values(["merge_key", "key_value", "_source_file", "_sheet", "_row"], kind="stable")
        .reset_index(drop=True)
    )


def _empty_fuzzy() -> pd.DataFrame:
    import pandas as pd

    cols = ["customer_id_a", "name_a", "customer_id_b", "name_b", "fuzzy_block", "similarity"]
    return pd.DataFrame({c: pd.Series([], dtype=float if c == "similarity" else str) for c in cols})


def _fuzzy_matches(
    u_rows: pd.DataFrame, cust_u: np.ndarray, ids: np.ndarray, r: CleanRules
) -> pd.DataFrame:
    """Pairs of different customers in one block with close names (rapidfuzz), for review."""
    import numpy as np
    import pandas as pd
    from rapidfuzz import fuzz
    from rapidfuzz.process import cpdist

    if "name" not in u_rows.columns or not len(u_rows):
        return _empty_fuzzy()
    name = u_rows["name"].astype(str)
    blocks = []
    if "phone" in u_rows.columns and "city" in u_rows.columns:
        ph = u_rows["phone"].astype(str)
        ok = ph.str.fullmatch(r"1\d{10}") & (u_rows["city"] != "")
        blocks.append(("phone7+city:" + ph.str[:7] + "|" + u_rows["city"].astype(str))[ok])
    if "email" in u_rows.columns:
        em = u_rows["email"].astype(str)
        domain = em.str.extract(r"@(.+)$", expand=False)
        ok = domain.notna() & (name != "")
        blocks.append(("domain+surname:" + domain.fillna("") + "|" + name.str[0].fillna(""))[ok])
    if not blocks:
        return _empty_fuzzy()
    b = pd.concat(blocks)
    d = pd.DataFrame(
        {
            "block": b.to_numpy(),
            "cust": cust_u[b.index.to_numpy()],
            "name": name.to_numpy()[b.index.to_numpy()],
        }
    )
    d = d[d["name"] != ""].drop_duplicates()
    size = d.groupby("block")["cust"].transform("nunique")
    d = d[(size >= 2) & (size <= r.fuzzy_max_block)]
    if d.empty:
        return _empty_fuzzy()
    pairs = d.merge(d, on="block", suffixes=("_a", "_b"))
    pairs = pairs[pairs["cust_a"] < pairs["cust_b"]]
    if pairs.empty:
        return _empty_fuzzy()
    score = cpdist(pairs["name_a"].tolist(), pairs["name_b"].tolist(), scorer=fuzz.ratio, workers=1)
    pairs = pairs.assign(score=np.round(np.asarray(score, dtype=np.float64), 1))
    pairs = pairs[pairs["score"] >= r.fuzzy_threshold]
    pairs = pairs.sort_values(
        ["cust_a", "cust_b", "score"], ascending=[True, True, False], kind="stable"
    ).drop_duplicates(["cust_a", "cust_b"])
    return pd.DataFrame(
        {
            "customer_id_a": ids[pairs["cust_a"].to_numpy()],
            "name_a": pairs["name_a"].to_numpy(),
            "customer_id_b": ids[pairs["cust_b"].to_numpy()],
            "name_b": pairs["name_b"].to_numpy(),
            "fuzzy_block": pairs["block"].to_numpy(),
            "similarity": pairs["score"].to_numpy(np.float64),
        }
    ).reset_index(drop=True)


def _examples(
    data: pd.DataFrame,
    cust_row: np.ndarray,
    rows_per_cust: np.ndarray,
    customers: pd.DataFrame,
    k: int,
) -> pd.DataFrame:
    """The first ``k`` merged customers: their input rows ('before') and the result ('after')."""
    import numpy as np
    import pandas as pd

    merged = np.flatnonzero(rows_per_cust > 1)[:k]
    show = [
        c
        for c in ("name", "phone", "email", "city", "company", "owner", "needs", "status")
        if c in customers.columns
    ]
    if not len(merged):
        return pd.DataFrame(
            {
                c: pd.Series([], dtype=str)
                for c in [
                    "customer_id",
                    "example_stage",
                    "_source_file",
                    "_sheet",
                    "_row",
                    "_channel",
                    *show,
                ]
            }
        )
    sel = np.isin(cust_row, merged)
    before = data.loc[sel, ["_source_file", "_sheet", "_row", "_channel", *show]].copy()
    before.insert(0, "example_stage", "before")
    before.insert(0, "customer_id", customers["customer_id"].to_numpy()[cust_row[sel]])
    before["_order"] = cust_row[sel]
    after = customers.iloc[merged][["customer_id", *show]].copy()
    after.insert(1, "example_stage", "after")
    after["_channel"] = customers["channels"].to_numpy()[merged]
    for c in ("phone", "email"):
        if c in after.columns:
            after[c] = customers[c + "s"].to_numpy()[merged]
    after["_order"] = merged
    out = pd.concat([before, after], ignore_index=True)
    out["_stage_order"] = (out["example_stage"] == "after").astype(int)
    out = out.sort_values(["_order", "_stage_order"], kind="stable").drop(
        columns=["_order", "_stage_order"]
    )
    # '' (not <NA>) on the 'after' rows: io.write_xlsx_sheets cannot size a column holding NA
    out["_row"] = out["_row"].astype("Int64").astype(object).where(out["_row"].notna(), "")
    for c in ("_source_file", "_sheet"):
        out[c] = out[c].fillna("").astype(str)
    return out.reset_index(drop=True)
