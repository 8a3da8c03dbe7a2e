"""Masking personal data and role profiles for exports (SPEC E4, E5).

Every function works on whole columns with pandas ``str`` operations: no per-row Python.

- names: ``张三`` → ``张*``, ``张三明`` / ``欧阳小明`` → ``张*明`` / ``欧*明``
- phones: ``13812345678`` → ``138****5678``, ``021-62345678`` → ``021-****5678``
- emails: ``zhang@example.com`` → ``z***@example.com``
- ID numbers: ``110101199001011234`` → ``110***********1234``

Role profiles come from ``rules/roles.yaml``: which columns a role never sees, whether it
may see unmasked data, and whether it only sees the customers it owns.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
#: key columns whose value may be a phone number or an email (customers derived from orders
#: without a member id are keyed by them); only such values are masked, ids like C00000001 stay
KEY_COLUMNS = ("customer_id", "source_customer_id")
#: free-text columns in which mobile numbers / emails / ID numbers are masked inside the text
FREE_TEXT_COLUMNS = ("notes", "needs", "content", "comments", "result", "value")

_MOBILE_IN_TEXT = r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)"
_ID_IN_TEXT = r"(?<![\dA-Za-z])(\d{3})\d{11}(\d{3}[\dXx])(?![\dA-Za-z])"
_EMAIL_IN_TEXT = r"([A-Za-z0-9])[A-Za-z0-9._%+\-]*(@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})"


def _text(s: pd.Series) -> pd.Series:
    """The column as pandas string dtype with "" for missing."""
    return s.astype("string").fillna("").str.strip()


def _keep(original: pd.Series, masked: pd.Series) -> pd.Series:
    """Masked values as plain object strings, same index and name as the input."""
    out = masked.fillna("").astype(object)
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


def mask_names(s: pd.Series) -> pd.Series:
    """``张三`` → ``张*``; three or more characters → first + ``*`` + last (``张*明``)."""
    t = _text(s)
    n = t.str.len()
    two = t.str[:1] + "*"
    more = t.str[:1] + "*" + t.str[-1:]
    out = t.where(n == 0, "*")
    out = out.mask(n == 2, two).mask(n >= 3, more)
    return _keep(s, out)


def mask_phones(s: pd.Series) -> pd.Series:
    """Keep the first 3 and last 4 digits: ``138****5678``; landlines keep the area code.

    ``;``-joined lists (the ``phones`` column) are masked value by value.
    """
    t = _text(s)
    listed = _value_by_value(t, mask_phones)
    if listed is not None:
        return _keep(s, listed)
    n = t.str.len()
    mobile = t.str.fullmatch(r"1\d{10}")
    landline = t.str.fullmatch(r"0\d{2,3}-\d{7,8}(-\d+)?")
    generic = t.str[:3] + "****" + t.str[-4:]
    land = t.str.replace(r"^(0\d{2,3})-\d+?(\d{4})(-\d+)?$", r"\1-****\2", regex=True)
    out = t.where(n == 0, "****")
    out = out.mask(n >= 8, generic).mask(mobile, t.str[:3] + "****" + t.str[-4:]).mask(landline, land)
    return _keep(s, out)


def mask_emails(s: pd.Series) -> pd.Series:
    """``zhang@example.com`` → ``z***@example.com`` (``;``-joined lists value by value)."""
    t = _text(s)
    listed = _value_by_value(t, mask_emails)
    if listed is not None:
        return _keep(s, listed)
    has_at = t.str.contains("@", regex=False)
    local_first = t.str[:1]
    domain = t.str.split("@", n=1).str[1].fillna("")
    out = t.where(t.str.len() == 0, local_first + "***")
    out = out.mask(has_at, local_first + "***@" + domain)
    return _keep(s, out)


def mask_id_numbers(s: pd.Series) -> pd.Series:
    """Keep the first 3 and last 4 characters: ``110***********1234``; short values fully."""
    t = _text(s)
    n = t.str.len()
    middle = t.str[3:-4].str.replace(r".", "*", regex=True)
    out = t.where(n == 0, t.str.replace(r".", "*", regex=True))
    out = out.mask(n >= 8, t.str[:3] + middle + t.str[-4:])
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


def mask_free_text(s: pd.Series) -> pd.Series:
    """Mobile numbers, ID numbers and emails written inside free text are masked in place."""
    t = s.astype("string").fillna("")
    t = t.str.replace(_ID_IN_TEXT, r"\1***********\2", regex=True)
    t = t.str.replace(_MOBILE_IN_TEXT, r"\1****\2", regex=True)
    t = t.str.replace(_EMAIL_IN_TEXT, r"\1***\2", regex=True)
    return _keep(s, t)


def maskers() -> dict[str, Any]:
    """Canonical column → the function that masks it."""
    out: dict[str, Any] = {}
    for cols, fn in (
        (NAME_COLUMNS, mask_names),
        (PHONE_COLUMNS, mask_phones),
        (EMAIL_COLUMNS, mask_emails),
        (ID_COLUMNS, mask_id_numbers),
        (KEY_COLUMNS, mask_contact_keys),
        (FREE_TEXT_COLUMNS, mask_free_text),
    ):
        for c in cols:
            out[c] = fn
    return out


def mask_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every personal column it has masked (others untouched)."""
    out = df.copy(deep=False)
    for c, fn in maskers().items():
        if c in out.columns:
            out[c] = fn(out[c])
    return out


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
        return [c for c in columns if any(fnmatch.fnmatchcase(str(c), p) for p in self.hide_columns)]


def load_roles(path: str | Path | None = None) -> dict[str, Role]:
    """Role profiles: the shipped ``rules/roles.yaml`` overlaid key by key with ``path`` (a
    user's file adds roles or changes settings of shipped ones), checked by the one loader."""
    from custtool.config import RolesFile, load_model

    f = load_model(
        RolesFile, path, default="roles.yaml", what="roles file",
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


def apply_role(
    df: pd.DataFrame,
    role: Role,
    *,
    owner: str | None = None,
    mask: bool = True,
) -> pd.DataFrame:
    """Rows and columns ``role`` may see, masked unless ``mask=False`` (and allowed).

    Raises ConfigError when the role may not unmask, InputError when a sales role has no
    ``owner`` or the table has no owner column.
    """
    check_unmask(role, mask)
    out = role_view(df, role, owner=owner)
    return mask_frame(out) if mask else out.copy(deep=False)


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
            raise InputError(f"role {role.name!r} sees only its own customers: pass --owner NAME")
        if "owner" not in df.columns:
            raise InputError("the customers table has no 'owner' column, so a sales view cannot be made", "use another role")
        own = df["owner"].astype("string").fillna("").str.strip() == owner.strip()
        out = df.loc[own.to_numpy()]
        if out.empty and len(df):
            known = sorted(set(df["owner"].astype("string").fillna("").str.strip()) - {""})[:8]
            raise InputError(f"no customers have owner {owner!r}", f"owners in the table: {', '.join(known) or '(none)'}")
    elif owner:
        if "owner" not in df.columns:
            raise InputError("--owner given but the customers table has no 'owner' column")
        own = df["owner"].astype("string").fillna("").str.strip() == owner.strip()
        out = df.loc[own.to_numpy()]
    hide = set(role.hidden(out.columns))
    if not role.amounts:
        hide |= {c for c in out.columns if any(fnmatch.fnmatchcase(str(c), p) for p in AMOUNT_COLUMNS)}
    if hide:
        out = out.drop(columns=[c for c in out.columns if c in hide])
    return out.copy(deep=False) if out is df else out
