"""Masking personal data and role profiles for exports (SPEC E4, E5).

Every function works on whole columns with pandas ``str`` operations: no per-row Python.

- names: ``张三`` → ``张*``, ``张三明`` / ``欧阳小明`` → ``张*明`` / ``欧*明``
- phones: ``13812345678`` → ``138****5678``, ``021-62345678`` → ``021-****5678``
- emails: ``zhang@example.com`` → ``z***@example.com``
- ID numbers: ``110101199001011234`` → ``110***********1234``
- bank cards: ``6222021234567890123`` → ``6222***********0123``

This is the one masking policy of custtool: every export (report, pivot, cards, follow-ups,
clean report, segment summary, rejects) goes through :func:`mask_for_output` or
:func:`mask_frame`. The decision is made per column by :func:`column_maskers`:

- by canonical name (or its display label / a header alias from ``rules/fields.yaml``):
  names, phones, emails, ID numbers, bank cards, contact keys, free text;
- by content for any other text column: phones, emails, ID numbers and bank cards written
  in it are masked in place;
- ID numbers and bank cards are masked **always**, for every role, even with ``mask=False``
  (``--no-mask``); a rejects table's ``value`` is masked by the field named in ``column``.

Role profiles come from ``rules/roles.yaml``: which columns a role never sees, whether it
may see unmasked data, and whether it only sees the customers it owns; every ``--no-mask``
goes through :func:`check_unmask`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool.arrow_text import arrow_text
from custtool.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
DEFAULT_ROLES = RULES_DIR / "roles.yaml"

#: which masker applies to which canonical column
NAME_COLUMNS = ("name",)
PHONE_COLUMNS = ("phone", "phones")
EMAIL_COLUMNS = ("email", "emails")
ID_COLUMNS = ("id_number",)
BANK_CARD_COLUMNS = ("bank_card",)
ADDRESS_COLUMNS = ("address",)
#: masked for every role, even with --no-mask
ALWAYS_MASKED_COLUMNS = ID_COLUMNS + BANK_CARD_COLUMNS
#: key columns whose value may be a phone number or an email (customers derived from orders
#: without a member id are keyed by them); only such values are masked, ids like C00000001 stay
KEY_COLUMNS = ("customer_id", "source_customer_id")
#: free-text columns in which mobile numbers / emails / ID numbers are masked inside the text
FREE_TEXT_COLUMNS = ("notes", "needs", "content", "comments", "result", "value")

_MOBILE_IN_TEXT = r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)"
_ID_IN_TEXT = r"(?<![\dA-Za-z])(\d{3})\d{11}(\d{3}[\dXx])(?![\dA-Za-z])"
_EMAIL_IN_TEXT = r"([A-Za-z0-9])[A-Za-z0-9._%+\-]*(@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})"
#: 16–19 digits (optionally in groups of four): a bank card number
_CARD_IN_TEXT = r"(?<![\dA-Za-z])(\d{4})(?:[ -]?\d){8,11}[ -]?(\d{4})(?![\dA-Za-z])"
#: any of the above, to tell whether a column of unknown meaning holds personal data
_PERSONAL_IN_TEXT = "|".join(
    (
        r"(?<!\d)1[3-9]\d{9}(?!\d)",
        r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])",
        r"[A-Za-z0-9]@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",
        r"(?<!\d)\d{4}(?:[ -]?\d){8,11}[ -]?\d{4}(?!\d)",
    )
)
#: cheap pre-filters for the two above (RE2 syntax): text without them holds no match
_ALWAYS_HINT = r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}"
_PERSONAL_HINT = r"[0-9]{11}|@|" + _ALWAYS_HINT
_ALWAYS_IN_TEXT = "|".join(
    (r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])", r"(?<!\d)\d{4}(?:[ -]?\d){8,11}[ -]?\d{4}(?!\d)")
)
#: canonical columns that never hold personal data, so their content is not scanned
#: (order numbers have 16–19 digits like a bank card)
NOT_PERSONAL_COLUMNS = frozenset({
    "order_id", "record_id", "_source_file", "_sheet", "_row", "_channel", "_flags", "source_ids",
    "channels", "channel", "tags", "tier", "rfm_class", "lifecycle", "status", "code", "column", "file", "sheet",
    "row", "kind", "action", "reason_zh", "reason_en", "product", "category", "city", "region", "industry",
})  # fmt: skip


def _text(s: pd.Series) -> pd.Series:
    """The column as pandas string dtype with "" for missing."""
    return s.astype("string").fillna("").str.strip()


def _keep(original: pd.Series, masked: pd.Series) -> pd.Series:
    """Masked values as a pandas ``str`` column ("" for missing), same index and name as
    the input (Arrow-backed, as :func:`_from_arrow` returns them)."""
    out = masked.fillna("").astype("str")
    out.index = original.index
    out.name = original.name
    return out


def _value_by_value(t: pd.Series, fn: Any) -> pd.Series | None:
    """``fn`` applied to ``;``-joined lists value by value (None when no row holds a list).

    Only the rows holding a list are split and joined again (a Python join per row): one
    merged customer among a million must not send every row through it (that took ~30 s).
    """
    multi = t.str.contains(";", regex=False).to_numpy(dtype=bool)
    if not multi.any():
        return None
    pos = t.reset_index(drop=True)
    out = fn(pos.where(~multi, ""))  # single values; the list rows are masked below
    parts = pos[multi].str.split(";").explode()
    joined = fn(parts).groupby(level=0, sort=False).agg(";".join)
    out.iloc[joined.index.to_numpy()] = joined.to_numpy()
    return out


def _from_arrow(original: pd.Series, arr: Any) -> pd.Series:
    """Masked Arrow strings as a pandas ``str`` column ("" for missing; same index and
    name): Arrow-backed, so the exports (CSV fields, formula checks, workbook cells) read
    them without a conversion from a million Python strings per column."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    return pd.Series(
        pc.fill_null(arr, "").cast(pa.large_string()),
        index=original.index,
        name=original.name,
        dtype="str",
    )


def _join(*parts: Any) -> Any:
    """Arrow strings (arrays or str, at least one array) concatenated element-wise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ty = next(p.type for p in parts if not isinstance(p, str))
    return pc.binary_join_element_wise(
        *(pa.scalar(p, ty) if isinstance(p, str) else p for p in parts), pa.scalar("", ty)
    )


def _if(cond: Any, yes: Any, no: Any) -> Any:
    """``pc.if_else`` with str constants typed like the array branch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ty = (no if isinstance(yes, str) else yes).type
    return pc.if_else(
        cond,
        pa.scalar(yes, ty) if isinstance(yes, str) else yes,
        pa.scalar(no, ty) if isinstance(no, str) else no,
    )


def mask_names(s: pd.Series) -> pd.Series:
    """``张三`` → ``张*``; three or more characters → first + ``*`` + last (``张*明``)."""
    import pyarrow.compute as pc

    # Arrow kernels over the whole column (what pandas' str methods call, without a pandas
    # array per step)
    t = arrow_text(_text(s))
    n = pc.utf8_length(t)
    first = pc.utf8_slice_codeunits(t, 0, 1)
    out = _if(
        pc.greater_equal(n, 3),
        _join(first, "*", pc.utf8_slice_codeunits(t, -1, 2**31 - 1)),
        _if(pc.equal(n, 2), _join(first, "*"), _if(pc.equal(n, 0), t, "*")),
    )
    return _from_arrow(s, out)


def mask_phones(s: pd.Series) -> pd.Series:
    """Keep the first 3 and last 4 digits: ``138****5678``; landlines keep the area code.

    ``;``-joined lists (the ``phones`` column) are masked value by value.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = _text(s)
    listed = _value_by_value(t, mask_phones)
    if listed is not None:
        return _keep(s, listed)
    arr = arrow_text(t)
    n = pc.utf8_length(arr)
    # 8+ characters: first 3 + **** + last 4 (a mobile number 1xxxxxxxxxx included: the
    # same cells); shorter: ****; empty stays empty
    generic = _join(
        pc.utf8_slice_codeunits(arr, 0, 3), "****", pc.utf8_slice_codeunits(arr, -4, 2**31 - 1)
    )
    out = _if(pc.greater_equal(n, 8), generic, _if(pc.equal(n, 0), arr, "****"))
    # landlines (0area-number): only values starting with 0 can be one
    zero = pc.starts_with(arr, "0").to_numpy(zero_copy_only=False)
    if zero.any():
        at = np.flatnonzero(zero)
        cand = t.iloc[at]
        landline = cand.str.fullmatch(r"0\d{2,3}-\d{7,8}(-\d+)?").to_numpy(dtype=bool)
        if landline.any():
            land = cand[landline].str.replace(
                r"^(0\d{2,3})-\d+?(\d{4})(-\d+)?$", r"\1-****\2", regex=True
            )
            where = np.zeros(len(arr), dtype=bool)
            where[at[landline]] = True
            out = pc.replace_with_mask(
                out, pa.array(where), pa.array(land.to_numpy(dtype=object), type=out.type)
            )
    return _from_arrow(s, out)


def mask_emails(s: pd.Series) -> pd.Series:
    """``zhang@example.com`` → ``z***@example.com`` (``;``-joined lists value by value)."""
    import pyarrow.compute as pc

    t = _text(s)
    listed = _value_by_value(t, mask_emails)
    if listed is not None:
        return _keep(s, listed)
    arr = arrow_text(t)
    first = pc.utf8_slice_codeunits(arr, 0, 1)
    # the domain: everything after the first @
    domain = pc.replace_substring_regex(arr, "^[^@]*@", "", max_replacements=1)
    out = _if(
        pc.match_substring(arr, "@"),
        _join(first, "***@", domain),
        _if(pc.equal(pc.utf8_length(arr), 0), arr, _join(first, "***")),
    )
    return _from_arrow(s, out)


def _clear_for_masking(s: pd.Series) -> pd.Series:
    """Ciphertexts (custtool.crypto) decrypted so they can be masked like clear values when
    ``CUSTTOOL_KEY`` is set; without the key each becomes ``******`` (never the token)."""
    from custtool.crypto import is_encrypted, load_key, reveal_frame

    t = _text(s)
    enc = is_encrypted(t)
    if not enc.any():
        return t
    key = load_key()
    if key is None:
        return t.mask(enc, "******")
    return reveal_frame(t.to_frame("v"), key)["v"].astype(t.dtype)


def mask_id_numbers(s: pd.Series) -> pd.Series:
    """Keep the first 3 and last 4 characters: ``110***********1234``; short values fully."""
    t = _clear_for_masking(s)
    n = t.str.len()
    middle = t.str[3:-4].str.replace(r".", "*", regex=True)
    out = t.where(n == 0, t.str.replace(r".", "*", regex=True))
    out = out.mask(n >= 8, t.str[:3] + middle + t.str[-4:])
    return _keep(s, out)


def mask_bank_cards(s: pd.Series) -> pd.Series:
    """Keep the first 4 and last 4 digits: ``6222***********0123``; short values fully."""
    t = _clear_for_masking(s).str.replace(r"[\s-]", "", regex=True)
    n = t.str.len()
    middle = t.str[4:-4].str.replace(r".", "*", regex=True)
    out = t.where(n == 0, t.str.replace(r".", "*", regex=True))
    out = out.mask(n >= 12, t.str[:4] + middle + t.str[-4:])
    return _keep(s, out)


def mask_addresses(s: pd.Series) -> pd.Series:
    """Keep province, city and district; the street and number become ``****``:
    ``广东省深圳市南山区科技园路1号`` → ``广东省深圳市南山区****``."""
    t = _text(s)
    head = t.str.extract(
        r"^((?:[^省]{1,7}省|[^区]{1,10}自治区)?(?:[^市]{1,7}市)?(?:[^区县旗]{1,7}[区县旗])?)",
        expand=False,
    ).fillna("")
    out = t.where(t == "", head + "****")
    out = out.where(head.str.len() < t.str.len(), t)  # nothing after the district: kept
    return _keep(s, out)


def mask_contact_keys(s: pd.Series) -> pd.Series:
    """Ids that are a phone number or an email are masked like one; other ids are kept."""
    t = _text(s)
    phone_like = t.str.fullmatch(r"1[3-9]\d{9}|0\d{2,3}-\d{7,8}(-\d+)?|\+\d{7,15}")
    email_like = t.str.contains("@", regex=False) & ~t.str.contains(";", regex=False)
    out = t.astype(object)
    if phone_like.any():
        out = out.mask(phone_like, mask_phones(t.where(phone_like, "")))
    if email_like.any():
        out = out.mask(email_like, mask_emails(t.where(email_like, "")))
    return _keep(s, out)


#: the bytes without which neither hint can match (each needs a digit; the personal one a
#: digit or ``@``): a column holding none of them has no candidate row
_HINT_BYTES = b"0123456789@"


def _candidates(t: pd.Series, hint: str) -> Any:
    """Rows of ``t`` that may hold a match: a cheap RE2 pre-filter (pyarrow, no look-around),
    so the full patterns (Python ``re``) run only on the few rows that need them; before it,
    one scan of the column's bytes for a digit or ``@`` (most text columns of a customer
    table have none: no regex over their values at all)."""
    import numpy as np

    from custtool.arrow_text import has_bytes

    txt = t.astype("string[pyarrow]")
    if hint in (_ALWAYS_HINT, _PERSONAL_HINT) and not has_bytes(
        arrow_text(txt, combine=False), _HINT_BYTES
    ):
        return np.zeros(len(t), dtype=bool)
    return txt.str.contains(hint, regex=True, na=False).to_numpy(dtype=bool)


def _on_candidates(t: pd.Series, hint: str, fn: Any) -> pd.Series:
    """``fn`` applied to the candidate rows of ``t`` only (the others cannot change)."""
    hits = _candidates(t, hint)
    if not hits.any():
        return t
    out = t.copy()
    out[hits] = fn(t[hits]).to_numpy()
    return out


def _mask_contacts_in_text(t: pd.Series) -> pd.Series:
    t = t.str.replace(_MOBILE_IN_TEXT, r"\1****\2", regex=True)
    return t.str.replace(_EMAIL_IN_TEXT, r"\1***\2", regex=True)


def _mask_ids_in_text(t: pd.Series) -> pd.Series:
    t = t.str.replace(_ID_IN_TEXT, r"\1***********\2", regex=True)
    return t.str.replace(
        _CARD_IN_TEXT,
        lambda m: (
            m.group(1) + "*" * (len(m.group(0).replace(" ", "").replace("-", "")) - 8) + m.group(2)
        ),
        regex=True,
    )


def mask_free_text(s: pd.Series) -> pd.Series:
    """Mobile numbers, ID numbers, bank cards and emails written inside free text are masked in place."""
    t = _on_candidates(s.astype("string").fillna(""), _ALWAYS_HINT, _mask_ids_in_text)
    return _keep(s, _on_candidates(t, _PERSONAL_HINT, _mask_contacts_in_text))


def mask_message(text: str) -> str:
    """One message (an unexpected error's text, which may quote a cell) with the mobile
    numbers, ID numbers, bank cards and emails in it masked, as :func:`mask_free_text`."""
    import pandas as pd

    return str(mask_free_text(pd.Series([text], dtype=object)).iloc[0])


def mask_always_in_text(s: pd.Series) -> pd.Series:
    """ID numbers and bank card numbers written inside text masked in place (the part of
    :func:`mask_free_text` that applies even with ``mask=False``)."""
    t = s.astype("string").fillna("")
    return _keep(s, _on_candidates(t, _ALWAYS_HINT, _mask_ids_in_text))


def maskers() -> dict[str, Any]:
    """Canonical column → the function that masks it."""
    out: dict[str, Any] = {}
    for cols, fn in (
        (NAME_COLUMNS, mask_names),
        (PHONE_COLUMNS, mask_phones),
        (EMAIL_COLUMNS, mask_emails),
        (ID_COLUMNS, mask_id_numbers),
        (BANK_CARD_COLUMNS, mask_bank_cards),
        (ADDRESS_COLUMNS, mask_addresses),
        (KEY_COLUMNS, mask_contact_keys),
        (FREE_TEXT_COLUMNS, mask_free_text),
    ):
        for c in cols:
            out[c] = fn
    return out


@lru_cache(maxsize=1)
def _header_names() -> dict[str, str]:
    """Display label or header alias (normalised) → canonical column, for the columns masked
    or never scanned by name: reports show ``姓名`` / ``Phone``, imports keep ``银行卡号``."""
    from custtool.fields import load_fields, normalize_header
    from custtool.labels import COLUMN_LABELS

    wanted = set(maskers()) | NOT_PERSONAL_COLUMNS
    out: dict[str, str] = {}
    for spec in load_fields().values():
        for canon, aliases in spec.aliases.items():
            if canon in wanted:
                for a in aliases:
                    out.setdefault(normalize_header(a), canon)
    for canon, pair in COLUMN_LABELS.items():
        if canon in wanted:
            for text in pair:
                out[normalize_header(text)] = canon
    for canon in wanted:
        out[normalize_header(canon)] = canon
    return out


def canonical_column(column: Any) -> str | None:
    """The canonical name of a column given by name, display label or header alias (None if unknown)."""
    from custtool.fields import normalize_header

    name = str(column)
    if name in maskers() or name in NOT_PERSONAL_COLUMNS:
        return name
    return _header_names().get(normalize_header(name))


def _is_text(s: pd.Series) -> bool:
    import pandas as pd

    return bool(s.dtype == object or pd.api.types.is_string_dtype(s))


def column_maskers(df: pd.DataFrame, *, mask: bool = True) -> dict[Any, Any]:
    """Column → the function that masks it, for the columns of ``df`` that need one.

    The one decision of the masking policy: by canonical name (or label / alias) first; any
    other text column is scanned, and masked like free text when it holds a phone, email, ID
    number or bank card. With ``mask=False`` only ID numbers and bank cards are masked (by
    name, and inside any other text).
    """
    known = maskers()
    out: dict[Any, Any] = {}
    for c in df.columns:
        canon = canonical_column(c)
        if canon in ALWAYS_MASKED_COLUMNS:
            out[c] = known[canon]
        elif canon in known:
            if mask:
                out[c] = known[canon]
            elif canon in FREE_TEXT_COLUMNS:
                out[c] = mask_always_in_text
        elif canon is None and _is_text(df[c]):
            t = df[c].astype("string")
            hits = _candidates(t, _PERSONAL_HINT if mask else _ALWAYS_HINT)
            if hits.any() and bool(
                t[hits]
                .str.contains(_PERSONAL_IN_TEXT if mask else _ALWAYS_IN_TEXT, regex=True, na=False)
                .any()
            ):
                out[c] = mask_free_text if mask else mask_always_in_text
    return out


def _mask_phone_or_email(s: pd.Series) -> pd.Series:
    """Values with an ``@`` masked as emails, the others as phones."""
    t = _text(s)
    at = t.str.contains("@", regex=False).to_numpy(dtype=bool)
    out = mask_phones(t.where(~at, ""))
    if at.any():
        out[at] = mask_emails(t[at]).to_numpy()
    return _keep(s, out)


def _mask_reject_values(rej: pd.DataFrame, mask: bool) -> pd.DataFrame:
    """A rejects table's raw ``value`` masked by the field its ``column`` names."""
    import numpy as np

    raw = _text(rej["column"])
    # a few distinct fields; "phone/email" (no usable contact) is masked as either one
    lookup = {
        c: canonical_column(c) or ("phone/email" if set(c.split("/")) <= {"phone", "email"} else c)
        for c in raw.unique()
    }
    col = raw.map(lookup)
    val = rej["value"].astype("string").fillna("").astype(object)
    known = {**maskers(), "phone/email": _mask_phone_or_email}
    done = np.zeros(len(rej), dtype=bool)
    for field_name in col.unique():
        fn = known.get(field_name)
        if fn is None or (not mask and field_name not in ALWAYS_MASKED_COLUMNS):
            continue
        sel = (col == field_name).to_numpy()
        val[sel] = fn(val[sel]).to_numpy()
        done |= sel
    if (~done).any():
        rest = mask_free_text if mask else mask_always_in_text
        val[~done] = rest(val[~done]).to_numpy()
    out = rej.copy(deep=False)
    out["value"] = val
    return out


def mask_frame(df: pd.DataFrame, *, mask: bool = True) -> pd.DataFrame:
    """A copy of ``df`` with every personal column masked as :func:`column_maskers` decides
    (others untouched). ID numbers and bank cards are masked even with ``mask=False``."""
    is_rejects = "value" in df.columns and "column" in df.columns
    out = _mask_reject_values(df, mask) if is_rejects else df.copy(deep=False)
    for c, fn in column_maskers(
        out.drop(columns=["value"]) if is_rejects else out, mask=mask
    ).items():
        out[c] = fn(out[c])
    return _hide_ciphertexts(out)


def _hide_ciphertexts(df: pd.DataFrame) -> pd.DataFrame:
    """Any ciphertext left (a column a fields file marked sensitive) shows as ``******``:
    exports carry neither the clear value nor the token."""
    import pandas as pd

    from custtool.crypto import PREFIX

    for c in df.columns:
        s = df[c]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s)) or s.empty:
            continue
        if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) not in (
            "string",
            "empty",
        ):
            # lists (tags read from Parquet), numbers …: only text cells can hold a token;
            # str() of every list cell (numpy's array printing) took seconds per 100k rows
            is_str = s.map(type).eq(str).to_numpy(dtype=bool)  # type: ignore[arg-type]
            if not is_str.any() or not bool(
                s[is_str].astype("string").str.startswith(PREFIX).fillna(False).any()
            ):
                continue
        t = s.astype("string")
        enc = t.str.startswith(PREFIX).fillna(False).astype(bool)
        if enc.any():
            df[c] = _keep(s, t.mask(enc, "******"))
    return df


def mask_sheets(sheets: dict[str, pd.DataFrame], *, mask: bool = True) -> dict[str, pd.DataFrame]:
    """Every sheet of a workbook-to-be masked by :func:`mask_frame`."""
    return {name: mask_frame(df, mask=mask) for name, df in sheets.items()}


# --------------------------------------------------------------------------- roles
@dataclass(frozen=True)
class Role:
    """What one role may see in an export."""

    name: str
    description: str = ""
    hide_columns: tuple[str, ...] = ()  # glob patterns over canonical column names
    amounts: bool = True  # False: no revenue, amount or LTV anywhere (summary included)
    allow_unmask: bool = False  # may use --no-mask
    own_customers_only: bool = False  # needs --owner; rows filtered on the owner column
    extra: dict[str, Any] = field(default_factory=dict)

    def hidden(self, columns: list[str] | Any) -> list[str]:
        """The columns of ``columns`` this role does not see."""
        return [
            c for c in columns if any(fnmatch.fnmatchcase(str(c), p) for p in self.hide_columns)
        ]


def load_roles(path: str | Path | None = None) -> dict[str, Role]:
    """Role profiles: the shipped ``rules/roles.yaml`` overlaid key by key with ``path`` (a
    user's file adds roles or changes settings of shipped ones), checked by the one loader."""
    from custtool.config import RolesFile, load_model

    f = load_model(
        RolesFile,
        path,
        default="roles.yaml",
        what="roles file",
        hint="pass --roles with a roles.yaml, or omit it to use the shipped one",
    )
    out: dict[str, Role] = {}
    for name, spec in f.roles.items():
        given = spec.model_dump(exclude_none=True) if spec is not None else {}
        out[str(name)] = Role(
            name=str(name),
            description=given.get("description", ""),
            hide_columns=tuple(given.get("hide_columns", ())),
            amounts=given.get("amounts", True),
            allow_unmask=given.get("allow_unmask", False),
            own_customers_only=given.get("own_customers_only", False),
        )
    return out


def get_role(name: str | None, roles_path: str | Path | None = None) -> Role:
    """The named role (default ``admin``); ConfigError naming the known roles otherwise."""
    roles = load_roles(roles_path)
    key = name or "admin"
    if key not in roles:
        raise ConfigError(f"unknown role {key!r}", f"known roles: {', '.join(roles)}")
    return roles[key]


def owner_role(roles_path: str | Path | None = None) -> Role:
    """The role of a customer's owner (负责人): the first role with ``own_customers_only:
    true`` in the roles file (shipped: ``sales``); per-owner workbooks are written in its view.
    ConfigError when no role has it."""
    for role in load_roles(roles_path).values():
        if role.own_customers_only:
            return role
    raise ConfigError(
        "no role has own_customers_only: true, so per-owner workbooks have no role to use",
        "add one to the roles file (rules/roles.yaml ships `sales`)",
    )


def unassigned_view_role(role: Role) -> Role:
    """``role`` for the customers nobody owns (未分配): the same columns and masking, without
    the owner filter (the caller passes only the unowned customers)."""
    from dataclasses import replace

    return replace(role, own_customers_only=False)


#: columns that carry amounts; a role with ``amounts: false`` never sees them
AMOUNT_COLUMNS = (
    "monetary",
    "monetary_*",
    "aov",
    "ltv",
    "historical_value",
    "predicted_value",
    "predicted_aov",
    "bg_repeat_avg",  # 复购平均金额: the average repeat purchase value
    "amount",
    "growth",
)


def mask_for_output(
    df: pd.DataFrame,
    *,
    role: Role | str | None = None,
    mask: bool = True,
    owner: str | None = None,
    roles_path: str | Path | None = None,
) -> pd.DataFrame:
    """What an export shows of ``df``: the rows and columns ``role`` may see (default
    ``admin``), masked unless ``mask=False`` — which only a role that allows it may ask for;
    ID numbers and bank cards stay masked even then.

    Raises ConfigError when the role may not unmask, InputError when a sales role has no
    ``owner`` or the table has no owner column.
    """
    role_obj = role if isinstance(role, Role) else get_role(role, roles_path)
    check_unmask(role_obj, mask)
    return mask_frame(role_view(df, role_obj, owner=owner), mask=mask)


def check_unmask(role: Role, mask: bool) -> None:
    """ConfigError when ``mask=False`` is asked for by a role that may not unmask."""
    if not mask and not role.allow_unmask:
        raise ConfigError(
            f"role {role.name!r} always sees masked personal data",
            "--no-mask needs a role that allows it (admin)",
        )


def role_view(df: pd.DataFrame, role: Role, *, owner: str | None = None) -> pd.DataFrame:
    """The rows and columns ``role`` may see, not masked (a shallow copy)."""
    out = df
    if role.own_customers_only:
        if not owner:
            raise InputError(
                f"role {role.name!r} sees only its own customers: pass --owner NAME",
                "e.g. --owner 王五",
            )
        if "owner" not in df.columns:
            raise InputError(
                "the customers table has no 'owner' column, so a sales view cannot be made",
                "use another role",
            )
        own = df["owner"].astype("string").fillna("").str.strip() == owner.strip()
        out = df.loc[own.to_numpy()]
        if out.empty and len(df):
            known = sorted(set(df["owner"].astype("string").fillna("").str.strip()) - {""})[:8]
            raise InputError(
                f"no customers have owner {owner!r}",
                f"owners in the table: {', '.join(known) or '(none)'}",
            )
    elif owner:
        if "owner" not in df.columns:
            raise InputError(
                "--owner given but the customers table has no 'owner' column",
                "leave out --owner, or use a table with 负责人 (owner)",
            )
        own = df["owner"].astype("string").fillna("").str.strip() == owner.strip()
        out = df.loc[own.to_numpy()]
    hide = set(role.hidden(out.columns))
    if not role.amounts:
        hide |= {
            c for c in out.columns if any(fnmatch.fnmatchcase(str(c), p) for p in AMOUNT_COLUMNS)
        }
    if hide:
        out = out.drop(columns=[c for c in out.columns if c in hide])
    out = out.copy(deep=False) if out is df else out
    # no .attrs (the tag rules' notes): pandas deep-copies them at every operation on the
    # view, which cost seconds per export at 100k customers; exports never read them
    out.attrs = {}
    return out
