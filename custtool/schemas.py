"""pandera schemas per data kind, and validation into (accepted, rejects).

Validation is lazy: every failure of every row at once. pandera's own report is keyed
to the frame's index and escapes Chinese, so failures are rendered here into a rejects
table keyed to the file row, with the original value and a reason in Chinese and English.

What is rejected (the contract in SPEC "normalisation and reject contract"): only rows
that cannot be what they claim — a customer with neither a valid phone nor email, an
order without amount, time or any customer key, a follow-up without time or key, a survey
without key. Everything else is kept with a flag (see :mod:`custtool.normalize`).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from custtool.normalize import PROBLEMS, _plain_mobiles

REJECT_COLUMNS = [
    "file",
    "sheet",
    "row",
    "column",
    "value",
    "code",
    "reason_zh",
    "reason_en",
    "action",
]

_PHONE = r"(1[3-9][0-9]{9}|0[0-9]{2,3}-[0-9]{7,8}|[48]00-[0-9]{3}-[0-9]{4}|\+[1-9][0-9]{6,14})?"
_EMAIL = r"([^@ ]+@[^@ ]+\.[a-z]{2,})?"


def _text_col(pattern: str | None = None, **kw: Any) -> pa.Column:
    checks = (
        [
            pa.Check(
                _full_match(pattern), name="str_matches", error=f"str_matches('^(?:{pattern})$')"
            )
        ]
        if pattern
        else []
    )
    return pa.Column(None, checks=checks, required=False, nullable=False, **kw)


def _full_match(pattern: str):  # noqa: ANN202
    """A column check: every value matches ``pattern`` whole (RE2 on the Arrow text; a
    missing value does not match)."""
    import pyarrow as pa_
    import pyarrow.compute as pc

    whole = f"^(?:{pattern})$"
    empty_ok = re.fullmatch(pattern, "") is not None

    def check(s: pd.Series) -> pd.Series:
        arr = getattr(s.array, "_pa_array", None)
        if arr is None or not (
            pa_.types.is_string(arr.type) or pa_.types.is_large_string(arr.type)
        ):
            return s.astype(str).str.fullmatch(whole).fillna(False).astype(bool) & s.notna()
        # a plain mobile matches the phone pattern (and "" an optional one): RE2 looks at
        # the other values only
        plain = _plain_mobiles(arr) if pattern == _PHONE else np.zeros(len(s), dtype=bool)
        if empty_ok:
            plain |= np.asarray(
                pc.fill_null(pc.equal(pc.binary_length(arr), 0), False).to_numpy(
                    zero_copy_only=False
                ),
                dtype=bool,
            )
        ok = plain.copy()
        rest = ~plain
        if rest.any():
            sub = arr.filter(pa_.array(rest)) if plain.any() else arr
            ok[rest] = np.asarray(
                pc.fill_null(pc.match_substring_regex(sub, whole), False).to_numpy(
                    zero_copy_only=False
                ),
                dtype=bool,
            )
        return pd.Series(ok, index=s.index)

    return check


def _has_any(cols: tuple[str, ...]):  # noqa: ANN202
    def check(df: pd.DataFrame) -> pd.Series:
        present = [c for c in cols if c in df.columns]
        if not present:
            return pd.Series(False, index=df.index)
        ok = np.zeros(len(df), dtype=bool)
        for c in present:
            ok |= _given(df[c])
        return pd.Series(ok, index=df.index)

    return check


def _given(s: pd.Series) -> np.ndarray:
    """``s.astype(str).str.strip() != ""`` as a numpy bool array (pyarrow for text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = getattr(s.array, "_pa_array", None)
    if (
        arr is None
        or not isinstance(s.dtype, pd.StringDtype)
        or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type))
    ):
        return (s.astype(str).str.strip() != "").to_numpy(dtype=bool)
    # a missing value reads as "nan" after astype(str): given; "   " is not
    given = pc.fill_null(
        pc.and_(pc.greater(pc.binary_length(arr), 0), pc.invert(pc.utf8_is_space(arr))), True
    )
    return (
        given.to_numpy(zero_copy_only=False)
        if isinstance(given, pa.Array)
        else given.combine_chunks().to_numpy(zero_copy_only=False)
    )


def schema_for(kind: str) -> pa.DataFrameSchema:
    """The schema of a normalised table of ``kind`` (columns optional, checks strict)."""
    return _schema(kind)


#: columns whose checks may run on their own, as each is normalised (see :func:`check_column`)
OWN_CHECK_COLUMNS = frozenset(
    {
        "phone",
        "email",
        "gender",
        "age",
        "birth_date",
        "first_contact_date",
        "order_time",
        "time",
        "next_follow_up",
        "quantity",
        "score",
    }
)


def check_column(kind: str, name: str, values: pd.Series) -> pd.DataFrame | None:
    """pandera's failure cases of one column of a normalised ``kind`` table, checked alone
    (an empty frame when it passes); None when the schema does not check that column on
    its own. :func:`validate` takes these as ``checked`` instead of checking again."""
    columns = _schema(kind).columns
    if name not in OWN_CHECK_COLUMNS and name != "_key_present" or name not in columns:
        return None
    schema = pa.DataFrameSchema({name: columns[name]}, strict=False, coerce=False, name=kind)
    try:
        schema.validate(values.to_frame(name), lazy=True)
    except SchemaErrors as exc:
        return exc.failure_cases
    return pd.DataFrame()


def key_columns(kind: str) -> tuple[str, ...]:
    """The columns of which a row of ``kind`` needs at least one (a customer: phone or
    e-mail; any other record: the channel's customer id, phone or e-mail)."""
    return ("phone", "email") if kind == "customers" else ("customer_id", "phone", "email")


def check_keys(kind: str, columns: dict[str, pd.Series]) -> pd.DataFrame:
    """The failure cases of the "at least one key" rule, from the normalised key columns
    alone (so it can run before the rest of the table is done); :func:`validate` takes
    them as ``checked["_key_present"]``."""
    names = [c for c in key_columns(kind) if c in columns]
    if not names:
        present = _has_any(key_columns(kind))(pd.DataFrame(columns))
        failures = check_column(kind, "_key_present", present.rename("_key_present"))
        return failures if failures is not None else pd.DataFrame()
    index = columns[names[0]].index
    # the rule looks only at which keys a row has: pandera checks each distinct combination
    # once (at most 8), and a failing combination fails every row that has it
    pattern = np.zeros(len(index), dtype=np.int64)
    for bit, c in enumerate(names):
        pattern |= _given(columns[c]).astype(np.int64) << bit
    seen = np.zeros(1 << len(names), dtype=bool)
    seen[pattern] = True
    combos = np.flatnonzero(seen)  # each combination, as "x" for a given key and "" for none
    reps = pd.DataFrame(
        {
            c: pd.Series(np.where(combos >> bit & 1, "x", ""), dtype="str")
            for bit, c in enumerate(names)
        },
        index=combos,
    )
    present = _has_any(key_columns(kind))(reps)
    failures = check_column(kind, "_key_present", present.rename("_key_present"))
    if failures is None or not len(failures):
        return pd.DataFrame()
    failing = np.zeros(len(seen), dtype=bool)
    failing[failures["index"].dropna().astype(np.int64).to_numpy()] = True
    rows = np.flatnonzero(failing[pattern])
    template = failures.iloc[0]
    out = pd.DataFrame(
        {
            k: np.repeat(np.array([template[k]], dtype=object), len(rows))
            for k in failures.columns
            if k != "index"
        }
    )
    out["index"] = index[rows]
    return out[list(failures.columns)]


@cache
def _schema(kind: str) -> pa.DataFrameSchema:
    """The schema of a normalised table of ``kind`` (columns optional, checks strict)."""
    common = {
        "_source_file": pa.Column(None, required=True),
        "_row": pa.Column("int64", required=True),
        "phone": _text_col(_PHONE),
        "email": _text_col(_EMAIL),
    }
    if kind == "customers":
        cols = {
            **common,
            "gender": pa.Column(None, pa.Check.isin(["男", "女", "未知"]), required=False),
            "age": pa.Column("Int64", pa.Check.in_range(0, 120), required=False, nullable=True),
            "birth_date": pa.Column(None, required=False, nullable=True),
            "first_contact_date": pa.Column(None, required=False, nullable=True),
        }
        cols["_key_present"] = pa.Column(
            bool, pa.Check(lambda s: s, name="no_contact"), required=True
        )
        checks: list[pa.Check] = []
    elif kind == "orders":
        cols = {
            **common,
            "amount": pa.Column("float64", required=True, nullable=False, name="amount"),
            "order_time": pa.Column(None, required=True, nullable=False),
            "quantity": pa.Column("float64", required=False, nullable=True),
        }
        cols["_key_present"] = pa.Column(
            bool, pa.Check(lambda s: s, name="no_customer_key"), required=True
        )
        checks = []
    elif kind == "interactions":
        cols = {
            **common,
            "time": pa.Column(None, required=True, nullable=False),
            "next_follow_up": pa.Column(None, required=False, nullable=True),
        }
        cols["_key_present"] = pa.Column(
            bool, pa.Check(lambda s: s, name="no_customer_key"), required=True
        )
        checks = []
    elif kind == "surveys":
        cols = {
            **common,
            "score": pa.Column("float64", pa.Check.in_range(0, 10), required=True, nullable=True),
            "time": pa.Column(None, required=False, nullable=True),
        }
        cols["_key_present"] = pa.Column(
            bool, pa.Check(lambda s: s, name="no_customer_key"), required=True
        )
        checks = []
    else:  # pragma: no cover - guarded by callers
        raise ValueError(kind)
    return pa.DataFrameSchema(cols, checks=checks, strict=False, coerce=False, name=kind)


# check name (pandera) → our code
_CHECK_CODES: dict[str, Any] = {
    "not_nullable": {
        "amount": "amount_missing",
        "order_time": "time_missing",
        "time": "time_missing",
    },
    "no_contact": "no_contact",
    "no_customer_key": "no_customer_key",
}


def validate(
    df: pd.DataFrame,
    kind: str,
    originals: dict[str, pd.Series] | None = None,
    *,
    skip: np.ndarray | None = None,
    checked: dict[str, pd.DataFrame] | None = None,
) -> tuple[pd.Series, pd.DataFrame]:
    """Validate a normalised table lazily.

    Returns (rejected: bool Series on ``df.index``, rejects table with
    :data:`REJECT_COLUMNS`), one rejects row per failing row and column, with the
    original text of the cell from ``originals`` when given. Rows where the bool array
    ``skip`` is true (blank and totals rows) are neither rejected nor reported.
    ``checked`` holds the failure cases of columns already checked by
    :func:`check_column` (those columns are not checked again).
    """
    if not df.index.is_unique:  # rows are looked up by label below: give them unique ones
        flat = {k: v.reset_index(drop=True) for k, v in (originals or {}).items()}
        rej, out = validate(df.reset_index(drop=True), kind, flat, skip=skip)
        return pd.Series(rej.to_numpy(), index=df.index), out
    rejected = pd.Series(False, index=df.index)
    checked = checked or {}
    # the "at least one key" rule as a column, so pandera reports one failure per row
    if "_key_present" not in checked:
        df = df.assign(_key_present=_has_any(key_columns(kind))(df))
    schema = schema_for(kind)
    # only the columns the schema knows (it is not strict: the others are never checked)
    order: dict[str, int] = {str(c): i for i, c in enumerate(schema.columns)}
    found = [fc for fc in checked.values() if len(fc)]
    try:
        schema.remove_columns([c for c in checked if c in schema.columns]).validate(
            df[[c for c in df.columns if c in schema.columns and c not in checked]], lazy=True
        )
    except SchemaErrors as exc:
        found.append(exc.failure_cases)
    if not found:
        return rejected, pd.DataFrame(columns=REJECT_COLUMNS)
    all_fc = pd.concat(found, ignore_index=True) if len(found) > 1 else found[0]
    if len(found) > 1:  # in the schema's column order, as one validation gives them
        rank = all_fc["column"].map(order).fillna(len(order)).to_numpy()
        all_fc = all_fc.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)
    fc = all_fc[all_fc["index"].notna()].copy()
    if fc.empty:  # a schema-level failure (wrong dtype): a bug in normalisation, not user data
        raise RuntimeError(f"schema check failed on column types: {all_fc.to_dict('records')[:3]}")
    fc["index"] = fc["index"].astype(df.index.dtype)
    if skip is not None and skip.any():
        fc = fc[~pd.Series(skip, index=df.index).reindex(fc["index"].to_numpy()).to_numpy()]
        if fc.empty:
            return rejected, pd.DataFrame(columns=REJECT_COLUMNS)
    # the code and the column to report, once per distinct (check, column) pair
    pair_at, pairs = pd.factorize(
        fc["check"].astype(str)
        + "\x00"
        + fc["column"].astype(str).where(fc["column"].notna(), "\x01")
    )
    pair_code, pair_col = [], []
    for pair in pairs:
        check, column = str(pair).split("\x00", 1)
        col = None if column == "\x01" else column
        if check == "not_nullable":
            code = _CHECK_CODES["not_nullable"].get(col, "value_missing")
        else:
            code = (
                _CHECK_CODES.get(check)
                if isinstance(_CHECK_CODES.get(check), str)
                else f"{col}_invalid"
            )
        # a frame-wide check names no column: report it on the key columns it is about
        shown = {"no_contact": "phone/email", "no_customer_key": "customer_id/phone/email"}.get(
            code
        )
        if shown is None:
            shown = col if col is not None and col not in (kind, "_key_present") else ""
        pair_code.append(code)
        pair_col.append(shown)
    code = np.array(pair_code, dtype=object)[pair_at]
    col_for = np.array(pair_col, dtype=object)[pair_at]
    # the failing rows by position (labels looked up once)
    at = df.index.get_indexer(pd.Index(fc["index"].to_numpy()))
    value = np.full(len(fc), "", dtype=object)
    originals = originals or {}
    for k, col_name in enumerate(pair_col):
        parts = [c for c in col_name.split("/") if c in originals]
        sel = pair_at == k
        if parts and sel.any():
            joined = None
            for c in parts:
                v = _cells(originals[c], df.index, at[sel], fc["index"].to_numpy()[sel])
                joined = (
                    v
                    if joined is None
                    else np.where(joined == "", v, np.where(v == "", joined, joined + " / " + v))
                )
            value[sel] = joined
    files = df["_source_file"].iloc[at].to_numpy(dtype=object)
    sheets = (
        df["_sheet"].iloc[at].to_numpy(dtype=object)
        if "_sheet" in df
        else np.full(len(at), "", dtype=object)
    )
    rows = df["_row"].to_numpy()[at]
    # one line per file, sheet, row and code
    if len(pd.unique(files)) == 1 and len(pd.unique(sheets)) == 1:
        code_at, _ = pd.factorize(code)
        _, first = np.unique(
            rows.astype(np.int64) * (int(code_at.max()) + 1) + code_at, return_index=True
        )
        keep = np.sort(first)
    else:
        keep = np.flatnonzero(
            ~pd.DataFrame({"f": files, "s": sheets, "r": rows, "c": code}).duplicated().to_numpy()
        )
    zh, en = reasons(code[keep])
    out = rejects_frame(
        {
            "file": files[keep],
            "sheet": sheets[keep],
            "row": rows[keep],
            "column": col_for[keep],
            "value": value[keep],
            "code": code[keep],
            "reason_zh": zh,
            "reason_en": en,
            "action": np.full(len(keep), "rejected", dtype=object),
        }
    )
    hit = np.zeros(len(df), dtype=bool)
    hit[at] = True
    return pd.Series(hit, index=df.index), out[REJECT_COLUMNS]


def _cells(given: pd.Series, index: pd.Index, at: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The stripped text of cells of ``given`` (by position ``at`` when it shares
    ``index``, else by label), "" for a missing one."""
    import pyarrow as pa_
    import pyarrow.compute as pc

    if given.index.equals(index):
        arr = getattr(given.array, "_pa_array", None)
        if arr is not None and isinstance(given.dtype, pd.StringDtype):
            cells = pc.utf8_trim_whitespace(pc.fill_null(arr.take(pa_.array(at)), ""))
            return np.asarray(cells.to_numpy(zero_copy_only=False), dtype=object)
        picked = given.iloc[at]
    else:
        picked = given.reindex(labels)
    return picked.fillna("").astype(str).str.strip().to_numpy(dtype=object)


def rejects_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A rejects table from whole columns: text stays object (pandas would otherwise copy
    every value into Arrow text)."""
    return pd.DataFrame(
        {
            k: pd.Series(v, dtype=object, copy=False)
            if isinstance(v, np.ndarray) and v.dtype.kind == "O"
            else v
            for k, v in columns.items()
        },
        copy=False,
    )


def reasons(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Chinese and English reasons of problem codes (an unknown code stands for itself),
    looked up once per distinct code."""
    at, distinct = pd.factorize(codes)
    zh = np.array([PROBLEMS.get(c, (c, c))[0] for c in distinct] + [""], dtype=object)
    en = np.array([PROBLEMS.get(c, (c, c))[1] for c in distinct] + [""], dtype=object)
    return zh[at], en[at]


# pandera registers its pandas backends on the first validation (importing hypothesis
# when it is installed, ~0.1 s): once, with this module, not inside the first import
pa.DataFrameSchema.register_default_backends(pd.DataFrame)
