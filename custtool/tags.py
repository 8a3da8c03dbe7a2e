"""Tag rules: loading, applying them, tag statistics.

A tag library is YAML (``rules/tags.yaml`` ships with custtool)::

    fields:                      # optional: extra columns your tables carry, and their type
      会员积分: number            # number | text | date | bool | any
    tags:
      - name: 高价值
        path: [价值评估, 客户价值]  # 一级 / 二级 (the name is the 三级 tag)
        condition: monetary_365d >= 100000 or ltv >= 10000
        priority: 90              # higher wins when a customer has more than max_tags tags
        description: 近一年消费≥10万或 LTV≥1万

Conditions are the safe expression language of :mod:`custtool.conditions` (parsed with
:mod:`ast` and a whitelist, evaluated over whole columns); its public names
(:func:`parse_condition`, :func:`evaluate_condition`, ``FUNCTIONS``, ``MAX_EXPRESSION``,
``MAX_DEPTH``, :func:`canonical_field_kinds`) are importable from here too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool.conditions import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_EXPRESSION,
    _Columns,
    _ConditionError,
    _evaluate_rule,
    _need_as_of,
    _resolve_as_of,
    canonical_field_kinds,
    evaluate_condition,
    parse_condition,
)
from custtool.errors import ConfigError, InputError, RuleError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

#: the tag library that ships with custtool
DEFAULT_RULES = Path(__file__).resolve().parent / "rules" / "tags.yaml"

#: level-1 category of manual tags that no rule defines
MANUAL_CATEGORY = "手工标签"

#: column of the input table that may carry manual tags (``;``/``,``/``、`` separated, ``-tag`` removes)
MANUAL_COLUMN = "manual_tags"

__all__ = [
    "DEFAULT_RULES",
    "FUNCTIONS",
    "MANUAL_CATEGORY",
    "MANUAL_COLUMN",
    "MAX_DEPTH",
    "MAX_EXPRESSION",
    "RuleProblem",
    "TagResult",
    "TagRule",
    "TagStats",
    "apply_tags",
    "canonical_field_kinds",
    "check_rules",
    "evaluate_condition",
    "load_rules",
    "parse_condition",
    "rules_table",
    "tag_customers",
    "tag_statistics",
]

_RULE_KEYS = {"name", "path", "level1", "level2", "condition", "priority", "description", "enabled"}
_FIELD_TYPES = {"number": "num", "text": "text", "date": "date", "bool": "bool", "any": "any"}


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class TagRule:
    """One tag: its name (三级), level-1/level-2 path, condition and priority."""

    name: str
    level1: str
    level2: str
    condition: str
    priority: int = 50
    description: str = ""
    file: str | None = None
    line: int | None = None
    condition_line: int | None = None
    order: int = 0
    tree: ast.Expression | None = field(default=None, repr=False, compare=False)
    fields: tuple[str, ...] = ()

    def error(self, message: str, hint: str | None = None, *, line: int | None = None) -> RuleError:
        return RuleError(
            message,
            hint,
            rule=self.name,
            file=self.file,
            line=line or self.condition_line or self.line,
        )


@dataclass(frozen=True)
class RuleProblem:
    """One problem found in a rules file."""

    file: str
    line: int | None
    rule: str | None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{where}: " + (f"rule {self.rule!r}: " if self.rule else "") + self.message


def _read_yaml(path: Path) -> Any:
    """Parse a rules file with the one loader (:func:`custtool.config.read_yaml`): Python
    tags refused; errors name file and line."""
    from custtool.config import YamlError, read_yaml

    if not path.exists():
        raise RuleError(
            "rules file not found",
            "check the path, or omit --rules to use the shipped library",
            file=str(path),
        )
    try:
        return read_yaml(path, what="rules file")
    except YamlError as exc:
        raise RuleError(exc.problem, exc.hint, file=path.name, line=exc.line) from None
    except ConfigError as exc:  # not UTF-8, a folder, a pipe
        problem = exc.message.removeprefix(f"{path}: ")
        raise RuleError(problem, exc.hint, file=path.name) from None


def _parse_file(
    path: Path, known: dict[str, str], start_order: int
) -> tuple[list[TagRule], dict[str, str], list[RuleProblem]]:
    """Rules and declared fields of one file plus every problem found (nothing raised)."""
    from custtool.config import TagLibraryFile, check

    fname = path.name
    problems: list[RuleProblem] = []
    doc = _read_yaml(path)
    data = doc.data
    if data is None:
        return [], {}, [RuleProblem(fname, None, None, "the file is empty", "add a 'tags:' list")]
    prefix: tuple[Any, ...] = ()
    if isinstance(data, list):  # a bare list of rules
        data, prefix = {"tags": data}, ("tags",)
    if not isinstance(data, dict):
        return [], {}, [RuleProblem(fname, 1, None, "expected a mapping with a 'tags:' list")]

    def line_of(*key: Any) -> int | None:
        key = key[1:] if prefix and key[:1] == ("tags",) else key
        return doc.value_lines.get(key) or doc.line(key)

    for dup, line in doc.duplicates:
        if len(dup) == 1 + len(prefix) and not prefix:
            problems.append(RuleProblem(fname, line, None, f"key {dup[-1]!r} appears twice"))
    # the top level (version, fields, tags) is a TagLibraryFile; unknown keys are problems
    for p in check(TagLibraryFile, data, [doc]):
        if p.key.startswith("tags["):
            continue  # the rules themselves are checked one by one below
        problems.append(
            RuleProblem(
                fname,
                p.line or 1,
                None,
                f"{p.key}: {p.message}" if p.key else p.message,
                p.hint or "expected 'tags', 'fields' or 'version'",
            )
        )
    declared: dict[str, str] = {}
    fields_spec = data.get("fields") or {}
    if isinstance(fields_spec, list):
        fields_spec = {str(f): "any" for f in fields_spec}
    if not isinstance(fields_spec, dict):
        fields_spec = {}
    for fname_, ftype in fields_spec.items():
        kind = _FIELD_TYPES.get(str(ftype).strip().lower()) if ftype is not None else "any"
        if kind is None:
            problems.append(
                RuleProblem(
                    fname,
                    line_of("fields", fname_),
                    None,
                    f"field {fname_!r}: unknown type {ftype!r}",
                    "use number, text, date, bool or any",
                )
            )
            kind = "any"
        declared[str(fname_)] = kind
    tags = data.get("tags")
    if not isinstance(tags, list):
        return [], declared, problems
    all_known = {**known, **declared}
    rules: list[TagRule] = []
    for i, item in enumerate(tags):
        dups = [(d[-1], line) for d, line in doc.duplicates if d[:-1] == (*prefix, i)]
        rule, probs = _parse_rule(
            item,
            fname,
            i,
            all_known,
            start_order + len(rules),
            lambda key, i=i: line_of("tags", i, key) if key else line_of("tags", i),
            dups,
        )
        problems.extend(probs)
        if rule is not None:
            rules.append(rule)
    return rules, declared, problems


def _parse_rule(
    item: Any,
    fname: str,
    i: int,
    known: dict[str, str],
    order: int,
    line_of: Any,
    dups: list[tuple[Any, int]],
) -> tuple[TagRule | None, list[RuleProblem]]:
    """One rule of a file; ``line_of(key)`` is the line of its ``key`` (None: of the rule)."""
    problems: list[RuleProblem] = []
    if not isinstance(item, dict):
        return None, [
            RuleProblem(
                fname, None, None, f"tag #{i + 1} is not a mapping (name:, path:, condition:, ...)"
            )
        ]
    line = line_of(None)
    name = item.get("name")
    rname = str(name).strip() if name is not None else None

    def bad(msg: str, key: str | None = None, hint: str | None = None) -> None:
        problems.append(
            RuleProblem(fname, (line_of(key) or line) if key else line, rname, msg, hint)
        )

    for key, kline in dups:
        problems.append(RuleProblem(fname, kline, rname, f"key {key!r} appears twice"))
    for key in item:
        if key not in _RULE_KEYS:
            bad(f"unknown key {key!r}", key, f"expected: {', '.join(sorted(_RULE_KEYS))}")
    if not rname:
        bad("tag without a name", None, "add 'name: <标签名>'")
    elif any(ch in rname for ch in ";,，、；\n"):
        bad(f"tag name {rname!r} contains a separator (; , 、)", "name")
    # level path
    path = item.get("path")
    level1 = item.get("level1")
    level2 = item.get("level2")
    if path is not None:
        parts = path if isinstance(path, list) else str(path).replace("／", "/").split("/")
        parts = [str(p).strip() for p in parts if str(p).strip()]
        if not 1 <= len(parts) <= 2:
            bad("'path' must be 一级 or 一级/二级 (the name is the 三级 tag)", "path")
            parts = parts[:2] or [""]
        level1 = parts[0]
        level2 = parts[1] if len(parts) > 1 else ""
    if not level1 or not str(level1).strip():
        bad("no level-1 category", "path", "add 'path: [一级, 二级]', e.g. [价值评估, 客户价值]")
        level1 = ""
    priority = item.get("priority", 50)
    if isinstance(priority, bool) or not isinstance(priority, int):
        bad(f"priority must be a whole number, not {priority!r}", "priority")
        priority = 50
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        bad("'enabled' must be true or false", "enabled")
    cond = item.get("condition")
    cline = line_of("condition") or line
    tree = None
    fields: tuple[str, ...] = ()
    if cond is None or (isinstance(cond, str) and not cond.strip()):
        bad("no condition", None, "add 'condition: <expression>', e.g. orders_30d >= 3")
        cond = ""
    elif isinstance(cond, bool | int | float) or not isinstance(cond, str):
        bad(f"condition must be text, not {cond!r}", "condition")
        cond = str(cond)
    else:
        try:
            tree, fields = parse_condition(cond)
        except _ConditionError as exc:
            problems.append(RuleProblem(fname, cline, rname, exc.message, exc.hint))
        else:
            unknown = [f for f in fields if f not in known]
            for f in unknown:
                near = _nearest(f, known)
                problems.append(
                    RuleProblem(
                        fname,
                        cline,
                        rname,
                        f"unknown field {f!r}",
                        (f"did you mean {near!r}? " if near else "")
                        + "declare extra columns under 'fields:' at the top of the file",
                    )
                )
    if problems or enabled is False:
        return None, problems
    rule = TagRule(
        name=rname or "",
        level1=str(level1).strip(),
        level2=str(level2 or "").strip(),
        condition=cond.strip(),
        priority=int(priority),
        description=str(item.get("description") or "").strip(),
        file=fname,
        line=line,
        condition_line=cline,
        order=order,
        tree=tree,
        fields=fields,
    )
    # type check on a two-row prototype (a missing value and a present one) of the known kinds
    if not any(known.get(f) == "any" for f in fields):
        try:
            _evaluate_rule(_prototype(fields, known), rule, as_of=None)
        except RuleError as exc:
            msg = exc.message.split(": ", 1)[1] if exc.message.startswith(fname) else exc.message
            return None, [RuleProblem(fname, cline, rname, msg, exc.hint)]
    return rule, problems


def _nearest(name: str, known: Iterable[str]) -> str | None:
    import difflib

    hits = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return hits[0] if hits else None


def _prototype(fields: Iterable[str], known: dict[str, str]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    cols: dict[str, Any] = {}
    for f in fields:
        kind = known.get(f, "text")
        if kind == "num":
            cols[f] = pd.Series([np.nan, 1.0])
        elif kind == "date":
            cols[f] = pd.Series([pd.NaT, pd.Timestamp("2024-01-01")])
        elif kind == "bool":
            cols[f] = pd.Series([None, True], dtype="boolean")
        else:
            cols[f] = pd.Series(["", "x"], dtype=object)
    return pd.DataFrame(cols, index=range(2))


def _collect(
    paths: str | Path | Sequence[str | Path] | None,
) -> tuple[list[TagRule], list[RuleProblem]]:
    if paths is None:
        paths = [DEFAULT_RULES]
    elif isinstance(paths, str | Path):
        paths = [paths]
    known = canonical_field_kinds()
    rules: list[TagRule] = []
    problems: list[RuleProblem] = []
    seen: dict[str, TagRule] = {}
    for p in paths:
        file_rules, _declared, probs = _parse_file(Path(p), known, len(rules))
        problems.extend(probs)
        for r in file_rules:
            if r.name in seen:
                first = seen[r.name]
                problems.append(
                    RuleProblem(
                        r.file or "",
                        r.line,
                        r.name,
                        f"tag defined twice (first at {first.file}:{first.line})",
                        "tag names must be unique: rename or delete one",
                    )
                )
                continue
            seen[r.name] = r
            rules.append(r)
    return rules, problems


def load_rules(paths: str | Path | Sequence[str | Path] | None = None) -> list[TagRule]:
    """Load one or more tag rule files (default: the shipped library) into rules.

    Raises :class:`RuleError` for the first problem (with the count of the others);
    :func:`check_rules` lists them all.
    """
    rules, problems = _collect(paths)
    if problems:
        p = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RuleError(
            p.message + more,
            p.hint or "run `custtool rules check FILE` to see every problem",
            rule=p.rule,
            file=p.file,
            line=p.line,
        )
    if not rules:
        raise RuleError(
            "no (enabled) tag rules",
            "add rules under 'tags:'",
            file=", ".join(
                Path(str(x)).name
                for x in ([paths] if isinstance(paths, str | Path) else paths or [DEFAULT_RULES])
            ),
        )
    return rules


def check_rules(paths: str | Path | Sequence[str | Path]) -> list[RuleProblem]:
    """Every problem in one or more rules files (empty when they are fine).

    Unreadable files (not found, not YAML, Python tags) are reported as problems too.
    """
    try:
        _, problems = _collect(paths)
    except RuleError as exc:
        msg = exc.message.split(": ", 1)[-1] if exc.file else exc.message
        return [RuleProblem(exc.file or "", exc.line, exc.rule, msg, exc.hint)]
    return problems


def rules_table(rules: Sequence[TagRule]) -> pd.DataFrame:
    """The rules as a table: tag, level1, level2, priority, condition, description, file, line."""
    import pandas as pd

    return pd.DataFrame(
        {
            "tag": [r.name for r in rules],
            "level1": [r.level1 for r in rules],
            "level2": [r.level2 for r in rules],
            "priority": [r.priority for r in rules],
            "condition": [r.condition for r in rules],
            "description": [r.description for r in rules],
            "file": [r.file for r in rules],
            "line": [r.line for r in rules],
        }
    )


# --------------------------------------------------------------------------- applying
@dataclass
class TagResult:
    """What :func:`tag_customers` produced.

    ``customers``: the input plus ``tags`` (list of str) and ``tag_<一级>`` columns.
    ``skipped``: rules not applied (tag, file, line, reason) — e.g. their field is absent.
    ``dropped``: per customer, how many matched tags the cap removed (aligned with rows).
    """

    customers: pd.DataFrame
    skipped: pd.DataFrame
    dropped: np.ndarray
    manual_unmatched: int = 0
    applied: int = 0
    tag_names: list[str] = field(default_factory=list)

    @property
    def dropped_total(self) -> int:
        return int(self.dropped.sum())

    @property
    def customers_capped(self) -> int:
        return int((self.dropped > 0).sum())

    @property
    def warnings(self) -> list[str]:
        sk = self.skipped
        out = (
            "tag '"
            + sk["tag"].astype(str)
            + "' ("
            + sk["file"].astype(str)
            + ":"
            + sk["line"].astype(str)
            + ") skipped: "
            + sk["reason"].astype(str)
        ).tolist()
        if self.manual_unmatched:
            out.append(f"{self.manual_unmatched} manual tag row(s) name customers not in the table")
        return out


_SPLIT = r"[;；,，、|]"
_OPS = {
    "add": True,
    "+": True,
    "添加": True,
    "增加": True,
    "加": True,
    "remove": False,
    "-": False,
    "delete": False,
    "删除": False,
    "移除": False,
    "去掉": False,
    "del": False,
}
_MANUAL_ALIASES = {
    "key": ("客户编号", "客户ID", "客户id", "customer"),
    "tag": ("tag", "标签", "tags", "标签名"),
    "op": ("op", "操作", "action", "动作"),
}


def _manual_pairs_from_column(s: pd.Series) -> pd.DataFrame:
    """(position, tag, add) pairs from a ``manual_tags`` column; ``-tag`` removes."""
    import numpy as np
    import pandas as pd

    txt = s.astype(object).where(s.notna(), "").astype(str)
    txt = pd.Series(txt.to_numpy(), index=np.arange(len(s)))
    parts = txt.str.split(_SPLIT, regex=True).explode().str.strip()
    parts = parts[parts.notna() & (parts != "")]
    remove = parts.str.startswith("-") | parts.str.startswith("－")
    tag = parts.str.lstrip("+-－＋").str.strip()
    out = pd.DataFrame(
        {
            "pos": parts.index.to_numpy(dtype="int64"),
            "tag": tag.to_numpy(dtype=object),
            "add": ~remove.to_numpy(dtype=bool),
        }
    )
    return out[out["tag"] != ""]


def _manual_pairs_from_table(
    manual: pd.DataFrame, df: pd.DataFrame, key: str
) -> tuple[pd.DataFrame, int]:
    import numpy as np
    import pandas as pd

    cols = {str(c).strip(): c for c in manual.columns}

    def find(role: str, primary: str) -> Any:
        for name in (primary, *_MANUAL_ALIASES[role]):
            if name in cols:
                return cols[name]
        return None

    kcol, tcol, ocol = find("key", key), find("tag", "tag"), find("op", "op")
    if kcol is None or tcol is None:
        raise InputError(
            f"manual tags file needs a {key!r} column and a 'tag' column; it has: {', '.join(map(str, manual.columns))}",
            f"columns: {key} (or 客户编号), tag (or 标签), optional op (add/remove, 添加/删除)",
        )
    if key not in df.columns:
        raise InputError(
            f"the customers table has no {key!r} column to match manual tags on",
            "tag the output of `custtool clean`",
        )
    tags = manual[tcol].astype(object).where(manual[tcol].notna(), "").astype(str).str.strip()
    if ocol is None:
        add = pd.Series(True, index=manual.index)
    else:
        op = (
            manual[ocol]
            .astype(object)
            .where(manual[ocol].notna(), "")
            .astype(str)
            .str.strip()
            .str.lower()
        )
        op = op.replace("", "add")
        bad = sorted(set(op[~op.isin(list(_OPS))]))
        if bad:
            raise InputError(
                f"manual tags file: unknown op value(s) {', '.join(map(repr, bad[:5]))}",
                "use add or remove (添加/删除)",
            )
        add = op.map(_OPS).astype(bool)
    # a cell may hold several tags
    pairs = pd.DataFrame(
        {
            "key": manual[kcol].astype(str).str.strip().to_numpy(),
            "tag": tags.to_numpy(),
            "add": add.to_numpy(dtype=bool),
        }
    )
    pairs["tag"] = pairs["tag"].str.split(_SPLIT, regex=True)
    pairs = pairs.explode("tag")
    pairs["tag"] = pairs["tag"].str.strip()
    pairs = pairs[pairs["tag"].notna() & (pairs["tag"] != "") & (pairs["key"] != "")]
    keys = pd.DataFrame(
        {
            "key": df[key].astype(str).str.strip().to_numpy(),
            "pos": np.arange(len(df), dtype="int64"),
        }
    )
    merged = pairs.merge(keys, on="key", how="left")
    unmatched = int(merged["pos"].isna().sum())
    merged = merged[merged["pos"].notna()]
    return pd.DataFrame(
        {
            "pos": merged["pos"].to_numpy(dtype="int64"),
            "tag": merged["tag"].to_numpy(dtype=object),
            "add": merged["add"].to_numpy(dtype=bool),
        }
    ), unmatched


def tag_customers(
    df: pd.DataFrame,
    rules: Sequence[TagRule] | str | Path | None = None,
    *,
    max_tags: int | None = 10,
    manual: pd.DataFrame | None = None,
    key: str = "customer_id",
    as_of: Any = None,
) -> TagResult:
    """Apply tag rules (and manual tags) to customers; see :func:`apply_tags`."""
    import numpy as np
    import pandas as pd

    if rules is None or isinstance(rules, str | Path):
        rules = load_rules(rules)
    rules = list(rules)
    if max_tags is not None and max_tags < 1:
        raise ConfigError(f"max tags must be at least 1, not {max_tags}", "e.g. --max-tags 10")
    if max_tags is not None:  # a cap above every tag there is caps nothing (and fits int32)
        max_tags = min(max_tags, 1 << 30)
    n = len(df)
    base = df.drop(columns=[c for c in df.columns if c == "tags" or str(c).startswith("tag_")])
    as_of_ts = _resolve_as_of(df, as_of)
    _need_as_of([r for r in rules if all(f in base.columns for f in r.fields)], as_of_ts)
    cols = _Columns(base.reset_index(drop=True), as_of_ts)

    # 1. manual tags: from the input column and from a (key, tag, op) table
    names = [r.name for r in rules]
    pairs = []
    unmatched = 0
    if MANUAL_COLUMN in base.columns:
        pairs.append(_manual_pairs_from_column(base[MANUAL_COLUMN]))
    if manual is not None:
        p, unmatched = _manual_pairs_from_table(manual, base, key)
        pairs.append(p)
    mp = (
        pd.concat(pairs, ignore_index=True)
        if pairs
        else pd.DataFrame({"pos": [], "tag": [], "add": []})
    )
    extra = sorted(set(mp["tag"]) - set(names))

    # 2. the matrix customers × tags, columns in cap order: manual-only tags first, then
    #    rules by priority (high first), ties by rule order
    prio = {r.name: r.priority for r in rules}
    all_names = names + extra
    order = sorted(
        range(len(all_names)), key=lambda j: (j < len(names), -prio.get(all_names[j], 0), j)
    )
    sorted_names = [all_names[j] for j in order]
    col_of = {nm: i for i, nm in enumerate(sorted_names)}
    T = len(sorted_names)
    S = np.zeros((n, T), dtype=bool)
    skipped: list[tuple[str, str | None, int | None, str]] = []
    applied = 0
    for r in rules:
        missing = [f for f in r.fields if f not in base.columns]
        if missing:
            skipped.append((r.name, r.file, r.line, f"no column {', '.join(missing)} in the table"))
            continue
        S[:, col_of[r.name]] = _evaluate_rule(base, r, as_of_ts, cols)
        applied += 1
    del cols
    P = None  # manual additions: pinned, always kept
    if len(mp):
        pos = mp["pos"].to_numpy(dtype="int64")
        ci = mp["tag"].map(col_of).to_numpy(dtype="int64")
        add = mp["add"].to_numpy(dtype=bool)
        P = np.zeros((n, T), dtype=bool)
        S[pos[add], ci[add]] = True
        P[pos[add], ci[add]] = True
        S[pos[~add], ci[~add]] = False  # a removal beats an addition, whatever the order
        P &= S

    # 3. cap: pinned tags first, the remaining room to the leftmost (highest priority) columns
    if max_tags is None:
        keep = S
    else:
        room = max_tags - (
            P.sum(axis=1, dtype=np.int32) if P is not None else np.zeros(n, dtype=np.int32)
        )
        keep = np.empty_like(S)
        step = 262_144
        for start in range(0, n, step):  # row blocks bound the int16 cumsum's memory
            sl = slice(start, start + step)
            free = S[sl] & ~P[sl] if P is not None else S[sl]
            cum = np.cumsum(free, axis=1, dtype=np.int16)
            keep[sl] = free & (cum <= room[sl, None])
            if P is not None:
                keep[sl] |= P[sl]
    dropped = S.sum(axis=1, dtype=np.int32) - keep.sum(axis=1, dtype=np.int32)
    del S, P

    # 4. the list column and one ;-joined column per level-1 category, from the kept matrix
    level1 = {r.name: r.level1 for r in rules}
    cats = list(dict.fromkeys([r.level1 for r in rules] + ([MANUAL_CATEGORY] if extra else [])))
    col_cat = np.array(
        [cats.index(level1.get(nm, MANUAL_CATEGORY)) for nm in sorted_names], dtype=np.int32
    )
    out = base.copy(deep=False)  # copy-on-write: the input's columns are shared, not copied
    out["tags"] = pd.Series(_tag_lists(keep, sorted_names), index=base.index, dtype=object)
    for k, cat in enumerate(cats):
        cols_k = np.flatnonzero(col_cat == k)
        out[f"tag_{cat}"] = pd.Series(
            _joined_distinct(keep[:, cols_k], [sorted_names[j] for j in cols_k]),
            index=base.index,
            dtype=object,
        )
    skipped_df = pd.DataFrame(skipped, columns=["tag", "file", "line", "reason"])
    return TagResult(out, skipped_df, dropped, unmatched, applied, all_names)


def _distinct_rows(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(one row index per distinct row of a boolean matrix, each row's distinct-set number)."""
    import numpy as np
    import pandas as pd

    n, t = keep.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    packed = np.packbits(keep, axis=1, bitorder="little")
    width = max(1, -(-packed.shape[1] // 8))
    words = np.zeros((n, width * 8), dtype=np.uint8)
    words[:, : packed.shape[1]] = packed
    words = words.view(np.uint64)
    if width == 1:
        inv, uniq = pd.factorize(words[:, 0])
        first = np.empty(len(uniq), dtype=np.int64)
        first[inv[::-1]] = np.arange(n - 1, -1, -1, dtype=np.int64)
        return first, inv.astype(np.int64)
    _, first, inv = np.unique(words, axis=0, return_index=True, return_inverse=True)
    return first.astype(np.int64), inv.reshape(-1).astype(np.int64)


def _tag_lists(keep: np.ndarray, names: list[str]) -> np.ndarray:
    """One list of tag names per row of a boolean matrix (columns in ``names`` order).

    A single pass: the kept names flattened once, then one slice per customer. Python's
    cyclic garbage collector is paused meanwhile — it would otherwise rescan the growing
    heap again and again while a million new lists are made (3-4× slower, measured).
    """
    import gc

    import numpy as np

    n = keep.shape[0]
    rows, cidx = np.nonzero(keep)
    counts = np.bincount(rows, minlength=n) if len(rows) else np.zeros(n, dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    flat = np.asarray(names, dtype=object)[cidx].tolist() if len(names) else []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        lists = np.fromiter(
            map(flat.__getitem__, map(slice, starts.tolist(), ends.tolist())), dtype=object, count=n
        )
    finally:
        if was_enabled:
            gc.enable()
    return lists


def _joined_distinct(sub: np.ndarray, names: list[str]) -> np.ndarray:
    """``;``-joined kept names per row, built once per distinct row (few per category)."""
    import numpy as np

    n = sub.shape[0]
    if sub.shape[1] == 0 or n == 0:
        return np.full(n, "", dtype=object)
    first, inv = _distinct_rows(sub)
    rows, cidx = np.nonzero(sub[first])
    return _joined(rows, cidx, names, len(first))[inv]


def _list_array(rows: np.ndarray, cidx: np.ndarray, names: list[str], n: int) -> Any:
    import numpy as np
    import pyarrow as pa

    counts = np.bincount(rows, minlength=n) if len(rows) else np.zeros(n, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = pa.DictionaryArray.from_arrays(
        pa.array(cidx.astype(np.int32)), pa.array(names, type=pa.string())
    )
    return pa.ListArray.from_arrays(pa.array(offsets), values.dictionary_decode())


def _joined(rows: np.ndarray, cidx: np.ndarray, names: list[str], n: int) -> Any:
    import pyarrow.compute as pc

    return pc.binary_join(_list_array(rows, cidx, names, n), ";").to_numpy(zero_copy_only=False)


def apply_tags(
    df: pd.DataFrame,
    rules: Sequence[TagRule] | str | Path | None = None,
    *,
    max_tags: int | None = 10,
    manual: pd.DataFrame | None = None,
    key: str = "customer_id",
    as_of: Any = None,
) -> pd.DataFrame:
    """Tag customers: ``tags`` (list of str, highest priority first) + ``tag_<一级>`` columns.

    ``rules``: loaded rules, a rules file, or None for the shipped library. A rule whose
    field is absent from the table is skipped (listed in ``.attrs["tags"]["skipped"]``).
    ``max_tags``: cap per customer (None: no cap); manual additions are always kept and
    the remaining room goes to the highest priorities, ties by rule order.
    ``manual``: a table of (``key``, ``tag``, optional ``op`` add/remove); a
    ``manual_tags`` column in ``df`` (``;``/``,``/``、`` separated, ``-tag`` removes) is
    used too. A removal beats an addition of the same tag.
    """
    res = tag_customers(df, rules, max_tags=max_tags, manual=manual, key=key, as_of=as_of)
    out = res.customers
    out.attrs["tags"] = {
        "skipped": res.skipped.to_dict("records"),
        "dropped_total": res.dropped_total,
        "customers_capped": res.customers_capped,
        "manual_unmatched": res.manual_unmatched,
    }
    return out


# --------------------------------------------------------------------------- statistics
@dataclass
class TagStats:
    """Tag usage: per tag, unused, too broad, co-occurrence, tags per customer."""

    customers: int
    usage: pd.DataFrame  # tag, level1, level2, priority, source, customers, share
    unused: pd.DataFrame
    broad: pd.DataFrame
    cooccurrence: pd.DataFrame  # top tags × top tags, counts (diagonal: customers with the tag)
    per_customer: pd.DataFrame  # n_tags, customers

    def sheets(self) -> dict[str, pd.DataFrame]:
        """Sheets for the statistics workbook (Chinese sheet names)."""
        co = self.cooccurrence.reset_index().rename(columns={"index": "标签"})
        usage = self.usage.copy()
        # manual tags have no priority: "" rather than a missing value (io.write_xlsx_sheets
        # cannot size columns holding NA), so this column is written as text
        usage["priority"] = usage["priority"].astype(object).where(usage["priority"].notna(), "")
        return {
            "标签使用": usage,
            "未使用标签": self.unused,
            "覆盖过广": self.broad,
            "标签共现": co,
            "标签数分布": self.per_customer,
        }


def _tag_matrix(tags: pd.Series, names: list[str]) -> tuple[Any, list[str]]:
    """Boolean matrix (customers × tags) of a tags column holding lists, arrays or ;-joined
    text; columns ``names`` first, then other tags found, sorted."""
    import itertools

    import numpy as np
    import pandas as pd

    s = pd.Series(tags.to_numpy(dtype=object), index=np.arange(len(tags)))
    is_text = s.map(lambda v: isinstance(v, str))  # CSV/xlsx round trip: ;-joined text
    if is_text.any():
        s = s.where(~is_text, s[is_text].str.split(_SPLIT, regex=True))
    listlike = s.map(lambda v: isinstance(v, list | tuple | np.ndarray))
    if not listlike.all():
        s = s.where(listlike, pd.Series([[]] * len(s), index=s.index, dtype=object))
    values = s.to_numpy(dtype=object)
    # flatten in C (itertools/map), not a Python loop per customer
    lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    flat = np.fromiter(itertools.chain.from_iterable(values), dtype=object, count=int(lens.sum()))
    rows = np.repeat(np.arange(len(values), dtype=np.int64), lens)
    present = pd.notna(flat)
    flat, rows = flat[present], rows[present]
    codes, uniques = pd.factorize(flat)
    labels = [str(u).strip() for u in uniques]
    extra = sorted(set(labels) - set(names) - {""})
    all_names = list(names) + extra
    where = {t: i for i, t in enumerate(all_names)}
    col_of = np.array([where.get(t, -1) for t in labels], dtype=np.int64)
    cols = col_of[codes] if len(codes) else np.zeros(0, dtype=np.int64)
    ok = cols >= 0
    M = np.zeros((len(tags), len(all_names)), dtype=bool)
    M[rows[ok], cols[ok]] = True  # a tag listed twice for one customer counts once
    return M, all_names


def tag_statistics(
    tagged: pd.DataFrame,
    rules: Sequence[TagRule] | None = None,
    *,
    top: int = 10,
    broad_share: float = 0.9,
    skipped: Iterable[str] = (),
) -> TagStats:
    """Customers per tag and share, unused tags, tags matching almost everybody
    (share > ``broad_share``), co-occurrence of the ``top`` tags, tags per customer.

    Counts are of the tags customers carry (after the cap and manual changes), so a rule
    that matches but is always capped shows as unused. ``skipped``: tags whose rule was not
    applied (column absent): marked ``applied=False`` and not listed as unused.
    """
    import numpy as np
    import pandas as pd

    if "tags" not in tagged.columns:
        raise InputError("the table has no 'tags' column", "run `custtool tag` first")
    rules = list(rules or [])
    n = len(tagged)
    skipped_set = set(skipped)
    M, all_names = _tag_matrix(tagged["tags"], [r.name for r in rules])
    counts = M.sum(axis=0, dtype=np.int64)
    info = {r.name: r for r in rules}
    usage = pd.DataFrame(
        {
            "tag": all_names,
            "level1": [info[t].level1 if t in info else MANUAL_CATEGORY for t in all_names],
            "level2": [info[t].level2 if t in info else "" for t in all_names],
            "priority": pd.array(
                [info[t].priority if t in info else pd.NA for t in all_names], dtype="Int64"
            ),
            "source": ["rule" if t in info else "manual" for t in all_names],
            "applied": [t not in skipped_set for t in all_names],
            "customers": counts,
            "share": counts / n if n else np.zeros(len(all_names)),
        }
    )
    usage = usage.sort_values(
        ["customers", "tag"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
    unused = usage[(usage["customers"] == 0) & usage["applied"]].reset_index(drop=True)
    broad = usage[usage["share"] > broad_share].reset_index(drop=True)
    top_tags = usage[usage["customers"] > 0]["tag"].head(top).tolist()
    index_of = {t: i for i, t in enumerate(all_names)}
    K = M[:, [index_of[t] for t in top_tags]].astype(np.float32)
    co = (K.T @ K).round().astype("int64")  # float32 BLAS: exact below 2**24 customers per pair
    if n >= 2**24:
        Ki = K.astype(np.int64)
        co = Ki.T @ Ki
    cooc = pd.DataFrame(co, index=top_tags, columns=top_tags)
    per = np.bincount(M.sum(axis=1, dtype=np.int64), minlength=1)
    per_customer = pd.DataFrame({"n_tags": np.arange(len(per)), "customers": per.astype("int64")})
    return TagStats(n, usage, unused, broad, cooc, per_customer)
