"""Header aliases → canonical columns (``rules/fields.yaml``), kind detection, header row.

An export's headers (客户编号, 手机号码, 联系电话 *, 金额(元) …) are matched to canonical
English fields per data kind. Unknown headers are kept as they are.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from custtool.errors import ConfigError

KINDS = ("customers", "orders", "interactions", "surveys")
KIND_LABELS = {
    "customers": "客户档案",
    "orders": "订单",
    "interactions": "跟进记录",
    "surveys": "满意度调查",
}
DEFAULT_FIELDS = Path(__file__).parent / "rules" / "fields.yaml"
#: fields always stored encrypted (custtool.crypto); a fields file may mark more per kind
ALWAYS_SENSITIVE = ("id_number", "bank_card")


@dataclass(frozen=True)
class KindSpec:
    kind: str
    aliases: dict[str, list[str]]  # canonical field -> aliases as written
    required: list[list[str]]  # groups: at least one field of each group
    signature: list[str]
    sensitive: tuple[str, ...] = ()  # fields encrypted at rest besides id_number, bank_card

    def lookup(self) -> dict[str, str]:
        """Normalised alias -> canonical field (canonical names match themselves)."""
        key = id(self)
        cached = _LOOKUPS.get(key)
        if cached is not None and cached[0] is self:
            return cached[1]
        table: dict[str, str] = {}
        for canon, names in self.aliases.items():
            for name in [canon, *names]:
                table.setdefault(normalize_header(name), canon)
        _LOOKUPS[key] = (self, table)
        return table


_LOOKUPS: dict[int, tuple[KindSpec, dict[str, str]]] = {}


@lru_cache(maxsize=65536)
def normalize_header(text: Any) -> str:
    """Header text as compared: NFKC, lower-case, no spaces, no ``*``, no trailing (单位)."""
    s = unicodedata.normalize("NFKC", str(text)).strip().lower()
    s = re.sub(r"\s+", "", s)
    s = s.replace("*", "").replace("※", "")
    s = re.sub(r"[((][^()()]*[))]$", "", s)
    s = s.strip(":：")
    return s


def _load_yaml(path: Path) -> dict[str, Any]:
    from custtool.config import load_yaml

    data = load_yaml(
        path, what="field alias file", hint="pass --fields with a YAML file like rules/fields.yaml"
    )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of kinds (customers, orders, …)",
            "see rules/fields.yaml for the layout",
        )
    return data


def load_fields(
    extra: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
) -> dict[str, KindSpec]:
    """The shipped alias table, extended by the user's file(s) (aliases are added)."""
    data = _load_yaml(DEFAULT_FIELDS)
    extras = [] if extra is None else extra if isinstance(extra, list) else [extra]
    for path in extras:
        user = _load_yaml(Path(path))
        for kind, spec in user.items():
            if kind not in KINDS:
                raise ConfigError(
                    f"{path}: unknown kind {kind!r}", f"use one of: {', '.join(KINDS)}"
                )
            if not isinstance(spec, dict) or not isinstance(spec.get("fields", {}), dict):
                raise ConfigError(
                    f"{path}: {kind}: expected `fields:` with canonical field → list of aliases",
                    "see rules/fields.yaml for the layout",
                )
            target = data.setdefault(kind, {"fields": {}, "required": [], "signature": []})
            marked = target.setdefault("sensitive", [])
            marked.extend(str(f) for f in spec.get("sensitive") or [])
            for canon, names in (spec.get("fields") or {}).items():
                if isinstance(names, dict):  # {aliases: [...], sensitive: true}
                    if names.get("sensitive") is True:
                        marked.append(str(canon))
                    names = names.get("aliases") or []
                if isinstance(names, str):
                    names = [names]
                if not isinstance(names, list):
                    raise ConfigError(
                        f"{path}: {kind}.{canon}: aliases must be a list of header names",
                        "write them as a list, e.g. [会员手机, 联系方式]",
                    )
                # user aliases first so they win over shipped ones
                target["fields"][canon] = [str(n) for n in names] + list(
                    target["fields"].get(canon, [])
                )
    specs = {}
    for kind in KINDS:
        raw = data.get(kind) or {}
        specs[kind] = KindSpec(
            kind,
            {k: [str(a) for a in (v or [])] for k, v in (raw.get("fields") or {}).items()},
            [list(g) for g in raw.get("required") or []],
            list(raw.get("signature") or []),
            tuple(dict.fromkeys(str(f) for f in raw.get("sensitive") or [])),
        )
    return specs


def sensitive_fields(specs: dict[str, KindSpec], kind: str) -> tuple[str, ...]:
    """The fields of ``kind`` stored encrypted: 身份证号, 银行卡号 and those marked sensitive."""
    return tuple(dict.fromkeys([*ALWAYS_SENSITIVE, *specs[kind].sensitive]))


def map_headers(headers: list[Any], spec: KindSpec) -> tuple[list[str], dict[str, str]]:
    """Canonical names for a header row; unknown and repeated ones keep their own text.

    Returns (new column names, {canonical: original header}).
    """
    table = spec.lookup()
    used: dict[str, str] = {}
    names: list[str] = []
    seen: set[str] = set()
    for i, h in enumerate(headers):
        text = str(h).strip()
        canon = table.get(normalize_header(text))
        if canon and canon not in used:
            used[canon] = text
            name = canon
        else:
            name = text or f"列{i + 1}"
        base, k = name, 2
        while name in seen:
            name = f"{base}_{k}"
            k += 1
        seen.add(name)
        names.append(name)
    return names, used


def header_score(cells: list[Any], specs: dict[str, KindSpec]) -> int:
    """How many cells of a row are known headers (of any kind)."""
    known: set[str] = set()
    for spec in specs.values():
        known.update(spec.lookup())
    return sum(1 for c in cells if str(c).strip() and normalize_header(c) in known)


def detect_kind(headers: list[Any], specs: dict[str, KindSpec]) -> str:
    """The data kind a header row looks like: most signature fields matched; customers on ties."""
    best = "customers"
    best_score: float = -1
    for kind in KINDS:
        spec = specs[kind]
        _, used = map_headers(headers, spec)
        score = sum(2 for f in spec.signature if f in used) + len(used) * 0.1
        if score > best_score:
            best, best_score = kind, score
    return best


def missing_required(used: dict[str, str], spec: KindSpec) -> list[list[str]]:
    """Required groups none of whose fields is present."""
    return [group for group in spec.required if not any(f in used for f in group)]


def aliases_text(spec: KindSpec, field: str, limit: int = 6) -> str:
    names = spec.aliases.get(field, [])[:limit]
    return f"{field} ({' / '.join(names)})" if names else field
