"""The safe condition language of tag rules: parsing, checking and evaluating over columns.

Conditions are a small expression language parsed with :mod:`ast` and a whitelist of
node types and functions, then evaluated over whole columns (never row by row, never
with ``eval``/``query``)::

    monetary_365d >= 100000 and city in ["北京市", "上海市"]
    days_since_last_interaction > 60        not is_null(email)
    contains(notes, "定制", "个性化")        age between 25 and 30        growth >= 30%

Null semantics: a comparison with a missing value (NaN, NaT, "" text) is false; ``not``
flips the result of its operand as computed. ``is_null``/``not_null`` test for missing values.

The rule files, applying rules and tag statistics live in :mod:`custtool.tags`; the evaluator
needs of a rule only its ``name``, parsed ``tree`` and ``error()`` (:class:`RuleLike`).
"""

from __future__ import annotations

import ast
import io
import math
import operator
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from custtool.errors import InputError, RuleError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


MAX_EXPRESSION = 2000

#: deepest nesting of a condition (brackets, not/-, calls); deeper is refused by `rules check`
MAX_DEPTH = 40

_KIND_WORDS = {
    "num": "a number",
    "text": "text",
    "date": "a date",
    "bool": "a yes/no value",
    "null": "empty",
}

# kinds of the canonical columns (docs/DATA.md); anything else in labels.py is text
_NUM = (
    "age recency frequency monetary aov orders_30d orders_90d orders_365d monetary_30d monetary_90d "
    "monetary_365d monetary_prev growth days_since_last_interaction interactions_30d interactions_365d "
    "complaints_365d r_score f_score m_score rfm_score historical_value p_alive predicted_purchases "
    "predicted_aov predicted_value ltv nps_score score satisfaction amount quantity _row row "
    "complaints events_365d days_since_interaction order_count total_spend"
).split()
_DATE = "birth_date first_contact_date first_order last_order last_interaction as_of order_time time next_follow_up last_purchase_date".split()
_BOOL = "repurchase potential churn_risk follow_up_flag refund exact_duplicate".split()


def canonical_field_kinds() -> dict[str, str]:
    """Every field a rule may name without declaring it, with its kind (num/text/date/bool)."""
    from custtool.labels import COLUMN_LABELS

    kinds = {c: "text" for c in COLUMN_LABELS}
    kinds.update({c: "num" for c in _NUM})
    kinds.update({c: "date" for c in _DATE})
    kinds.update({c: "bool" for c in _BOOL})
    kinds["manual_tags"] = "text"
    kinds.pop("tags", None)  # a list column; tag rules do not read it
    return kinds


class RuleLike(Protocol):
    """What the evaluator needs of a rule (:class:`custtool.tags.TagRule` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def tree(self) -> ast.Expression | None: ...

    def error(
        self, message: str, hint: str | None = None, *, line: int | None = None
    ) -> RuleError: ...


@dataclass(frozen=True)
class _Condition:
    """A condition evaluated on its own (:func:`evaluate_condition`): no file, no line."""

    name: str
    condition: str
    tree: ast.Expression | None
    fields: tuple[str, ...] = ()

    def error(self, message: str, hint: str | None = None, *, line: int | None = None) -> RuleError:
        return RuleError(message, hint, rule=self.name, file=None, line=line)


def _resolve_as_of(df: pd.DataFrame, as_of: Any) -> Any:
    """The explicit as-of date, else the segment's (the ``as_of`` column); None without both
    (a rule that needs it then raises :func:`_need_as_of`) — never today's date."""
    from custtool.dates import resolve_as_of

    return resolve_as_of(as_of, df["as_of"] if "as_of" in df.columns else None, required=False)


def _uses_as_of(rule: RuleLike) -> bool:
    """Whether the rule's condition counts days up to the as-of date (``days_since``)."""
    return rule.tree is not None and any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "days_since"
        for n in ast.walk(rule.tree)
    )


def _need_as_of(rules: Sequence[RuleLike], as_of: Any) -> None:
    """InputError when a rule needs an as-of date and there is none."""
    if as_of is None:
        needing = [r.name for r in rules if _uses_as_of(r)]
        if needing:
            raise InputError(
                f"tag {needing[0]!r} counts days up to the as-of date, but there is none: "
                "the table has no as_of column",
                "pass --as-of YYYY-MM-DD (the segment's as-of date), or tag the segmented table",
            )


class _ConditionError(RuleError):
    """A condition outside the language; callers add the rule's name, file and line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)


# function name -> (min args, max args or None)
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "is_null": (1, 1),
    "not_null": (1, 1),
    "contains": (2, None),
    "startswith": (2, None),
    "endswith": (2, None),
    "days_since": (1, 1),
    "len": (1, 1),
    "lower": (1, 1),
    "upper": (1, 1),
    "strip": (1, 1),
    "abs": (1, 1),
    "year": (1, 1),
    "month": (1, 1),
    "between": (3, 3),
    "col": (1, 1),
}

_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Name,
    ast.Load,
    ast.Call,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
)
_REFUSED_NAMES = {
    ast.Attribute: "attribute access (x.y)",
    ast.Subscript: "indexing (x[...])",
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.NamedExpr: "assignment (:=)",
    ast.IfExp: "'x if c else y'",
    ast.Starred: "*args",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.JoinedStr: "f-strings",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.Is: "'is' (use is_null(x))",
    ast.IsNot: "'is not' (use not_null(x))",
    ast.Pow: "'**'",
    ast.Mod: "'%' between values",
    ast.FloorDiv: "'//'",
}


def _re_literal(text: str) -> str:
    """``text`` as a regular expression matching itself (RE2 and Python re)."""
    return "".join("\\" + ch if ch in ".^$*+?{}[]\\|()" else ch for ch in text)


def _scan_operand(
    parts: list[tuple[int, str]],
    k: int,
    opens: dict[str, str],
    closes: set[str],
    stop_words: set[str],
    stop_ops: set[str],
) -> int:
    """Index of the token ending the operand that starts at ``k`` (depth-0 keyword/operator)."""
    depth = 0
    while k < len(parts):
        ttype, s = parts[k]
        if s in opens:
            depth += 1
        elif s in closes:
            if depth == 0:
                return k
            depth -= 1
        elif depth == 0 and (
            (ttype == tokenize.NAME and s in stop_words) or (ttype == tokenize.OP and s in stop_ops)
        ):
            return k
        k += 1
    return k


def _rewrite(expr: str) -> str:
    """Token-level rewrite: ``x between a and b`` → ``between(x, a, b)``; ``30%`` → ``(30/100)``.

    Works on tokens, so text inside string literals is never touched.
    """
    try:
        toks = [
            t
            for t in tokenize.generate_tokens(io.StringIO(expr).readline)
            if t.type
            not in (
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.COMMENT,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            )
        ]
    except tokenize.TokenError as exc:
        what = (
            "a quote is not closed" if "string" in str(exc.args[0]) else "a bracket is not closed"
        )
        raise _ConditionError(f"syntax error: {what}", "check brackets and quotes") from None
    except (IndentationError, SyntaxError) as exc:
        raise _ConditionError(
            f"syntax error: {exc.args[0] if exc.args else exc}", "check brackets and quotes"
        ) from None
    parts: list[tuple[int, str]] = [(t.type, t.string) for t in toks]
    # percent literals
    out: list[tuple[int, str]] = []
    for t in parts:
        if t == (tokenize.OP, "%") and out and out[-1][0] == tokenize.NUMBER:
            num = out.pop()
            out.extend(
                [
                    (tokenize.OP, "("),
                    num,
                    (tokenize.OP, "/"),
                    (tokenize.NUMBER, "100"),
                    (tokenize.OP, ")"),
                ]
            )
        else:
            out.append(t)
    parts = out
    opens, closes = {"(": ")", "[": "]", "{": "}"}, {")", "]", "}"}
    stop_words = {"and", "or", "not", "in", "is", "if", "else", "between"}
    stop_ops = {",", ")", "]", "}", "==", "!=", "<", ">", "<=", ">=", ":"}
    for _ in range(50):  # one `between` per pass
        idx = next(
            (
                i
                for i, t in enumerate(parts)
                if t == (tokenize.NAME, "between")
                and not (i + 1 < len(parts) and parts[i + 1] == (tokenize.OP, "("))
            ),
            None,
        )
        if idx is None:
            break
        # operand: the atom before `between` (a name, literal, bracketed group, call)
        j = idx - 1
        if j < 0:
            raise _ConditionError("'between' needs a value before it: x between a and b")
        if parts[j][1] in closes:
            depth = 0
            while j >= 0:
                if parts[j][1] in closes:
                    depth += 1
                elif parts[j][1] in opens:
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            if j < 0:
                raise _ConditionError("unbalanced brackets before 'between'")
            if j > 0 and parts[j - 1][0] == tokenize.NAME and parts[j - 1][1] not in stop_words:
                j -= 1
        elif (
            parts[j][0] not in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING)
            or parts[j][1] in stop_words
        ):
            raise _ConditionError("'between' needs a value before it: x between a and b")

        lo_end = _scan_operand(parts, idx + 1, opens, closes, stop_words, stop_ops)
        if lo_end >= len(parts) or parts[lo_end] != (tokenize.NAME, "and") or lo_end == idx + 1:
            raise _ConditionError("'between' must read: x between a and b")
        hi_end = _scan_operand(parts, lo_end + 1, opens, closes, stop_words, stop_ops)
        if hi_end == lo_end + 1:
            raise _ConditionError("'between' must read: x between a and b")
        new = (
            [(tokenize.NAME, "between"), (tokenize.OP, "(")]
            + parts[j:idx]
            + [(tokenize.OP, ",")]
            + parts[idx + 1 : lo_end]
            + [(tokenize.OP, ",")]
            + parts[lo_end + 1 : hi_end]
            + [(tokenize.OP, ")")]
        )
        parts = parts[:j] + new + parts[hi_end:]
    return tokenize.untokenize(parts).strip()


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value)) and abs(float(value)) < 1e300
    except OverflowError:
        return False


def _tree_depth(tree: ast.AST) -> int:
    """How deeply the nodes of ``tree`` nest (without recursion, so any depth is safe)."""
    deepest, level = 0, [tree]
    while level:
        deepest += 1
        level = [child for node in level for child in ast.iter_child_nodes(node)]
    return deepest


def parse_condition(expr: str) -> tuple[ast.Expression, tuple[str, ...]]:
    """Parse and whitelist a condition; returns the tree and the fields it reads.

    Raises :class:`RuleError` for syntax errors and anything outside the language (the
    loaders add the rule's name, file and line).
    """
    if not isinstance(expr, str) or not expr.strip():
        raise _ConditionError("empty condition")
    if len(expr) > MAX_EXPRESSION:
        raise _ConditionError(
            f"condition longer than {MAX_EXPRESSION} characters", "split it into several tags"
        )
    text = " ".join(expr.strip().splitlines())
    src = _rewrite(text)
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        col = f" near column {exc.offset}" if exc.offset else ""
        raise _ConditionError(
            f"syntax error{col}: {exc.msg}",
            'conditions look like: orders_30d >= 3 and city in ["北京市"]',
        ) from None
    except (RecursionError, MemoryError, ValueError):
        raise _ConditionError("condition too deeply nested") from None
    depth = _tree_depth(tree)
    if depth > MAX_DEPTH:
        raise _ConditionError(
            f"condition nested {depth} levels deep (at most {MAX_DEPTH})",
            "simplify it or split it into several tags",
        )
    fields: list[str] = []
    nodes = list(ast.walk(tree))
    for node in nodes:  # first every node type, so the message names the construct itself
        refused = next(
            (label for typ, label in _REFUSED_NAMES.items() if isinstance(node, typ)), None
        )
        if refused:
            raise _ConditionError(
                f"{refused} is not allowed in a tag condition",
                "use fields, comparisons, and/or/not and the listed functions",
            )
        if not isinstance(node, _ALLOWED):
            raise _ConditionError(
                f"{type(node).__name__} is not allowed in a tag condition",
                "use fields, comparisons, and/or/not and the listed functions",
            )
    for node in nodes:
        if isinstance(node, ast.Constant) and not (
            node.value is None or isinstance(node.value, bool | int | float | str)
        ):
            raise _ConditionError(f"constant {node.value!r} is not allowed")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
            and not _finite(node.value)
        ):
            raise _ConditionError(f"number {str(node.value)[:20]}… is too large")
        if isinstance(node, ast.List | ast.Tuple):
            for el in node.elts:
                if not (
                    isinstance(el, ast.Constant)
                    or (
                        isinstance(el, ast.UnaryOp)
                        and isinstance(el.op, ast.USub | ast.UAdd)
                        and isinstance(el.operand, ast.Constant)
                    )
                ):
                    raise _ConditionError(
                        'lists may only hold constants, e.g. ["北京市", "上海市"]'
                    )
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                raise _ConditionError(
                    "attribute access (x.y) is not allowed in a tag condition",
                    f"only these functions can be called: {', '.join(FUNCTIONS)}",
                )
            if not isinstance(node.func, ast.Name):
                raise _ConditionError(
                    "only the listed functions can be called", f"functions: {', '.join(FUNCTIONS)}"
                )
            fn = node.func.id
            if fn not in FUNCTIONS:
                raise _ConditionError(
                    f"unknown function {fn!r}", f"functions: {', '.join(FUNCTIONS)}"
                )
            if node.keywords:
                raise _ConditionError(f"{fn}() takes no keyword arguments")
            lo, hi = FUNCTIONS[fn]
            n = len(node.args)
            if n < lo or (hi is not None and n > hi):
                want = str(lo) if lo == hi else f"at least {lo}" if hi is None else f"{lo}-{hi}"
                raise _ConditionError(f"{fn}() takes {want} argument(s), got {n}")
            if fn == "col":
                arg = node.args[0]
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    raise _ConditionError(
                        'col() takes a column name in quotes, e.g. col("会员 等级")'
                    )
                fields.append(arg.value)
        if isinstance(node, ast.Name):
            fields.append(node.id)
    # function names are Name nodes too: drop them (they are always call targets here)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    cols = [
        n.args[0].value  # type: ignore[attr-defined]  # col() arg checked above
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and n.func.id == "col"  # type: ignore[attr-defined]
    ]
    ordered = list(dict.fromkeys(names + cols))
    return tree, tuple(ordered)


@dataclass
class _V:
    """A value during evaluation: a whole column (array) or a constant."""

    kind: str  # num | text | date | bool | null | const | list
    data: Any
    valid: Any = None  # numpy bool array (columns only)


class _Columns:
    """Columns of the table converted once into evaluation values (shared by all rules)."""

    def __init__(self, df: pd.DataFrame, as_of: Any) -> None:
        self.df = df
        self.n = len(df)
        self.as_of = as_of
        self.cache: dict[str, _V] = {}

    def get(self, name: str) -> _V:
        if name not in self.cache:
            v = _column_value(self.df[name])
            if v.kind == "text" and name in _DATE + _BOOL:
                v = _text_as(v, name)
            self.cache[name] = v
        return self.cache[name]


def _text_as(v: _V, name: str) -> _V:
    """A canonical date or yes/no column that arrived as text (CSV keeps True/False as text).

    Values that do not read as that kind become missing; a column where none do stays text.
    (Numbers are not coerced: read_table restores numeric columns, so a text one holds
    values that are not numbers, and comparing it with a number is reported.)
    """
    import numpy as np
    import pandas as pd

    t = v.data
    if name in _BOOL:
        low = t.str.strip().str.lower()
        truth = low.isin(["true", "1", "是", "yes"]).to_numpy(dtype=bool)
        known = truth | low.isin(["false", "0", "否", "no"]).to_numpy(dtype=bool)
        return _V("bool", truth, known) if known.any() else v
    arr = pd.to_datetime(t, errors="coerce").to_numpy(dtype="datetime64[ns]")
    ok = ~np.isnat(arr)
    return _V("date", arr, ok) if ok.any() else v


def _column_value(s: pd.Series) -> _V:
    import numpy as np
    import pandas as pd

    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt):
        valid = s.notna().to_numpy(bool)
        return _V("bool", s.to_numpy(dtype=bool, na_value=False), valid)
    if pd.api.types.is_numeric_dtype(dt):
        arr = s.to_numpy(dtype="float64", na_value=np.nan)
        return _V("num", arr, ~np.isnan(arr))
    if pd.api.types.is_datetime64_any_dtype(dt):
        if getattr(dt, "tz", None) is not None:
            s = s.dt.tz_localize(None)
        arr = s.to_numpy(dtype="datetime64[ns]")
        return _V("date", arr, ~np.isnat(arr))
    kind = pd.api.types.infer_dtype(s, skipna=True)
    if kind == "empty":
        return _V("null", None, np.zeros(len(s), bool))
    if kind == "boolean":
        b = s.astype("boolean")
        return _V("bool", b.to_numpy(dtype=bool, na_value=False), b.notna().to_numpy(bool))
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        arr = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return _V("num", arr, ~np.isnan(arr))
    if kind in ("datetime", "datetime64", "date"):
        arr = pd.to_datetime(s, errors="coerce").to_numpy(dtype="datetime64[ns]")
        return _V("date", arr, ~np.isnat(arr))
    if (
        kind in ("mixed", "unknown-array")
        and s.map(lambda v: isinstance(v, list | tuple | np.ndarray)).any()
    ):
        s = s.map(
            lambda v: ";".join(map(str, v)) if isinstance(v, list | tuple | np.ndarray) else v
        )
    t = s.astype(pd.StringDtype("pyarrow"))
    t = t.mask(t.str.strip() == "")
    return _V("text", t, t.notna().to_numpy(bool))


def _evaluate_rule(
    df: pd.DataFrame, rule: RuleLike, as_of: Any, cols: _Columns | None = None
) -> np.ndarray:
    import numpy as np

    if rule.tree is None:
        raise rule.error("the rule has no valid condition")
    cols = cols or _Columns(df, as_of)
    ev = _Evaluator(cols, rule)
    v = ev.value_of(rule.tree.body)
    if v.kind == "const" and isinstance(v.data, bool):
        return np.full(cols.n, v.data)
    if v.kind != "bool":
        raise rule.error(
            f"the condition gives {ev.word(v)}, not true/false", "compare it, e.g. orders_30d >= 3"
        )
    return np.array(v.data, dtype=bool)  # a fresh array: the column cache is shared


def evaluate_condition(df: pd.DataFrame, expr: str, *, as_of: Any = None) -> pd.Series:
    """Evaluate one condition over a table: a boolean Series aligned with ``df``.

    Fields missing from ``df`` raise :class:`RuleError`.
    """
    import pandas as pd

    tree, fields = parse_condition(expr)
    missing = [f for f in fields if f not in df.columns]
    if missing:
        raise RuleError(f"unknown field(s): {', '.join(missing)}", "the table has no such column")
    rule = _Condition(name="<condition>", condition=expr, tree=tree, fields=fields)
    as_of_ts = _resolve_as_of(df, as_of)
    _need_as_of([rule], as_of_ts)
    out = _evaluate_rule(df, rule, as_of_ts)
    return pd.Series(out, index=df.index, name="match")


_FLIP = {
    ast.Lt: ast.Gt,
    ast.Gt: ast.Lt,
    ast.LtE: ast.GtE,
    ast.GtE: ast.LtE,
    ast.Eq: ast.Eq,
    ast.NotEq: ast.NotEq,
}
#: the comparisons, for constants and for columns alike
_COMPARE = {
    ast.Lt: operator.lt,
    ast.Gt: operator.gt,
    ast.LtE: operator.le,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_OPSYM = {
    ast.Lt: "<",
    ast.Gt: ">",
    ast.LtE: "<=",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
}


class _Evaluator:
    def __init__(self, cols: _Columns, rule: RuleLike) -> None:
        self.cols = cols
        self.rule = rule
        self.n = cols.n

    # -- helpers
    def err(self, message: str, hint: str | None = None) -> RuleError:
        return self.rule.error(message, hint)

    def word(self, v: _V) -> str:
        if v.kind == "const":
            return (
                "text"
                if isinstance(v.data, str)
                else "a number"
                if isinstance(v.data, int | float) and not isinstance(v.data, bool)
                else repr(v.data)
            )
        if v.kind == "list":
            return "a list"
        return _KIND_WORDS.get(v.kind, v.kind)

    def desc(self, node: ast.AST) -> str:
        try:
            return ast.unparse(node)
        except Exception:  # pragma: no cover
            return "value"

    def boolv(self, arr: Any) -> _V:
        return _V("bool", arr, None)

    def full(self, value: bool) -> _V:
        import numpy as np

        return self.boolv(np.full(self.n, value))

    def as_bool(self, node: ast.AST) -> Any:
        v = self.value_of(node)
        if v.kind == "const" and isinstance(v.data, bool):
            return self.full(v.data).data
        if v.kind != "bool":
            raise self.err(
                f"{self.desc(node)!r} is {self.word(v)}, not true/false",
                "compare it with a value, e.g. orders_30d >= 3, or use not_null(x)",
            )
        return v.data

    # -- nodes
    def value_of(self, node: ast.AST) -> _V:  # noqa: C901 - one dispatch over whitelisted nodes
        import numpy as np

        if isinstance(node, ast.Constant):
            return _V("const", node.value)
        if isinstance(node, ast.List | ast.Tuple):
            return _V("list", tuple(self.value_of(e).data for e in node.elts))
        if isinstance(node, ast.Name):
            return self.cols.get(node.id)
        if isinstance(node, ast.BoolOp):
            arrs = [self.as_bool(v) for v in node.values]
            fn = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return self.boolv(fn.reduce(arrs))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return self.boolv(~self.as_bool(node.operand))
            v = self.value_of(node.operand)
            if (
                v.kind == "const"
                and isinstance(v.data, int | float)
                and not isinstance(v.data, bool)
            ):
                return _V("const", -v.data if isinstance(node.op, ast.USub) else v.data)
            if v.kind == "num":
                return _V("num", -v.data if isinstance(node.op, ast.USub) else v.data, v.valid)
            raise self.err(f"'-' needs a number, {self.desc(node.operand)!r} is {self.word(v)}")
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Compare):
            result = None
            left_node = node.left
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                part = self.compare(left_node, op, right_node)
                result = part if result is None else result & part
                left_node = right_node
            return self.boolv(result)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.err(
            f"{type(node).__name__} is not allowed"
        )  # pragma: no cover - parse_condition refuses it

    def binop(self, node: ast.BinOp) -> _V:
        import numpy as np

        a, b = self.value_of(node.left), self.value_of(node.right)
        sym = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
        if a.kind == "date" and b.kind == "date" and isinstance(node.op, ast.Sub):
            days = (a.data - b.data) / np.timedelta64(1, "D")
            return _V("num", days.astype("float64"), a.valid & b.valid)
        for v, nd in ((a, node.left), (b, node.right)):
            if not (
                v.kind in ("num", "null")
                or (
                    v.kind == "const"
                    and isinstance(v.data, int | float)
                    and not isinstance(v.data, bool)
                )
            ):
                raise self.err(f"'{sym}' needs numbers, {self.desc(nd)!r} is {self.word(v)}")
        if a.kind == "null" or b.kind == "null":
            return _V("num", np.full(self.n, np.nan), np.zeros(self.n, bool))
        x = a.data if a.kind == "num" else float(a.data)
        y = b.data if b.kind == "num" else float(b.data)
        with np.errstate(divide="ignore", invalid="ignore"):
            if isinstance(node.op, ast.Add):
                r = np.add(x, y)
            elif isinstance(node.op, ast.Sub):
                r = np.subtract(x, y)
            elif isinstance(node.op, ast.Mult):
                r = np.multiply(x, y)
            else:
                r = (
                    np.divide(x, y)
                    if isinstance(y, np.ndarray) or y != 0
                    else np.full(self.n, np.nan)
                )
        if not isinstance(r, np.ndarray):
            return _V("const", float(r))
        r = np.where(np.isfinite(r), r, np.nan)
        return _V("num", r, ~np.isnan(r))

    def compare(self, lnode: ast.AST, op: ast.cmpop, rnode: ast.AST) -> Any:
        import numpy as np

        a, b = self.value_of(lnode), self.value_of(rnode)
        if isinstance(op, ast.In | ast.NotIn):
            return self.membership(a, op, b, lnode, rnode)
        if b.kind == "list" or a.kind == "list":
            raise self.err(
                f"'{_OPSYM[type(op)]}' cannot compare with a list", "use 'in [...]' for lists"
            )
        if a.kind == "const" and b.kind == "const":
            try:
                res = _COMPARE[type(op)](a.data, b.data)
            except TypeError:
                raise self.err(f"cannot compare {a.data!r} with {b.data!r}") from None
            return np.full(self.n, bool(res))
        if a.kind == "const":  # put the column on the left
            a, b, lnode, rnode = b, a, rnode, lnode
            op = _FLIP[type(op)]()
        if a.kind == "null" or b.kind == "null":
            return np.zeros(self.n, bool)
        return self.cmp_values(a, op, b, lnode, rnode)

    def cmp_values(self, a: _V, op: ast.cmpop, b: _V, lnode: ast.AST, rnode: ast.AST) -> Any:
        import numpy as np
        import pandas as pd

        sym = _OPSYM[type(op)]
        mismatch = self.err(
            f"cannot compare {self.desc(lnode)!r} ({self.word(a)}) with {self.desc(rnode)!r} ({self.word(b)})",
            'compare numbers with numbers and text with quoted text, e.g. city == "北京市"',
        )
        fn = {
            ast.Lt: np.less,
            ast.Gt: np.greater,
            ast.LtE: np.less_equal,
            ast.GtE: np.greater_equal,
            ast.Eq: np.equal,
            ast.NotEq: np.not_equal,
        }[type(op)]
        other: Any  # a constant or a column, depending on the branch
        if a.kind == "num":
            if b.kind == "const":
                if not isinstance(b.data, int | float) or isinstance(b.data, bool):
                    raise mismatch
                other, ovalid = float(b.data), True
            elif b.kind == "num":
                other, ovalid = b.data, b.valid
            else:
                raise mismatch
            with np.errstate(invalid="ignore"):
                return fn(a.data, other) & a.valid & ovalid
        if a.kind == "date":
            if b.kind == "const":
                if not isinstance(b.data, str):
                    raise mismatch
                try:
                    ts = pd.Timestamp(b.data)
                except (ValueError, TypeError):
                    raise self.err(
                        f"{b.data!r} is not a date", 'write dates as "2024-01-31"'
                    ) from None
                if ts is pd.NaT:
                    raise self.err(f"{b.data!r} is not a date", 'write dates as "2024-01-31"')
                other, ovalid = np.datetime64(ts.tz_localize(None) if ts.tz else ts, "ns"), True
            elif b.kind == "date":
                other, ovalid = b.data, b.valid
            else:
                raise mismatch
            return fn(a.data, other) & a.valid & ovalid
        if a.kind == "bool":
            if not isinstance(op, ast.Eq | ast.NotEq):
                raise self.err(f"'{sym}' cannot order yes/no values", "use == true / == false")
            if b.kind == "const":
                if not isinstance(b.data, bool):
                    raise mismatch
                other, ovalid = b.data, True
            elif b.kind == "bool":
                other, ovalid = b.data, b.valid
            else:
                raise mismatch
            return fn(a.data, other) & a.valid & ovalid
        if a.kind == "text":
            if b.kind == "const":
                if not isinstance(b.data, str):
                    raise mismatch
                other = b.data
            elif b.kind == "text":
                other = b.data
            else:
                raise mismatch
            res = _COMPARE[type(op)](a.data, other)
            return res.fillna(False).to_numpy(dtype=bool) & a.valid
        raise mismatch  # pragma: no cover

    def membership(self, a: _V, op: ast.cmpop, b: _V, lnode: ast.AST, rnode: ast.AST) -> Any:
        import numpy as np

        negate = isinstance(op, ast.NotIn)
        if a.kind == "const" and isinstance(a.data, str) and b.kind == "text":  # "定制" in notes
            hit = b.data.str.contains(a.data, regex=False).fillna(False).to_numpy(dtype=bool)
            return (~hit if negate else hit) & b.valid
        if b.kind != "list":
            raise self.err(
                f'\'in\' needs a list on the right, e.g. city in ["北京市", "上海市"]; got {self.word(b)}',
                'to look for text inside a field use contains(field, "词")',
            )
        items = list(b.data)
        if a.kind == "null":
            return np.zeros(self.n, bool)
        if a.kind == "const":
            return np.full(self.n, (a.data in items) != negate)
        if a.kind == "text":
            if not all(isinstance(x, str) for x in items):
                raise self.err(
                    f"{self.desc(lnode)!r} is text, but the list {self.desc(rnode)} holds non-text values",
                    'quote the values: ["A", "B"]',
                )
            hit = a.data.isin(items).to_numpy(dtype=bool)
        elif a.kind == "num":
            if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in items):
                raise self.err(
                    f"{self.desc(lnode)!r} is a number, but the list {self.desc(rnode)} holds non-numbers"
                )
            hit = np.isin(a.data, np.asarray(items, dtype="float64"))
        elif a.kind == "bool":
            if not all(isinstance(x, bool) for x in items):
                raise self.err(f"{self.desc(lnode)!r} is yes/no, the list must hold true/false")
            hit = np.isin(a.data, np.asarray(items, dtype=bool))
        elif a.kind == "date":
            import pandas as pd

            try:
                dates = np.asarray(
                    [pd.Timestamp(x).to_datetime64() for x in items], dtype="datetime64[ns]"
                )
            except (ValueError, TypeError):
                raise self.err(
                    f"the list {self.desc(rnode)} holds values that are not dates"
                ) from None
            hit = np.isin(a.data, dates)
        else:  # pragma: no cover
            raise self.err(f"cannot use 'in' with {self.word(a)}")
        return (~hit if negate else hit) & a.valid

    # -- functions
    def call(self, node: ast.Call) -> _V:  # noqa: C901 - one dispatch
        import numpy as np

        fn = node.func.id  # type: ignore[attr-defined]
        if fn == "col":
            return self.cols.get(node.args[0].value)  # type: ignore[attr-defined]
        if fn == "between":
            subject, lo, hi = node.args
            return self.boolv(
                self.compare(subject, ast.GtE(), lo) & self.compare(subject, ast.LtE(), hi)
            )
        args = [self.value_of(a) for a in node.args]
        x = args[0]
        if fn in ("is_null", "not_null"):
            if x.kind == "const":
                miss = x.data is None or x.data == ""
                return self.full(miss if fn == "is_null" else not miss)
            if x.kind == "null":
                return self.full(fn == "is_null")
            if x.kind == "list":
                raise self.err(f"{fn}() takes a field, not a list")
            return self.boolv(~x.valid if fn == "is_null" else x.valid.copy())
        if fn in ("contains", "startswith", "endswith"):
            self.need(fn, x, "text", node.args[0])
            needles: list[str] = []
            for a, nd in zip(args[1:], node.args[1:], strict=True):
                vals = a.data if a.kind == "list" else (a.data,) if a.kind == "const" else None
                if vals is None or not all(isinstance(s, str) for s in vals):
                    raise self.err(
                        f"{fn}() looks for quoted text, {self.desc(nd)!r} is not",
                        f'e.g. {fn}(notes, "定制")',
                    )
                needles.extend(vals)
            if x.kind == "null":
                return self.full(False)
            hit = np.zeros(self.n, bool)
            s = x.data
            if fn == "contains" and len(needles) > 1:
                # one pass: an alternation of escaped literals (RE2 in pyarrow: linear time)
                r = s.str.contains("|".join(_re_literal(nd) for nd in needles), regex=True)
                return self.boolv(r.fillna(False).to_numpy(dtype=bool) & x.valid)
            for needle in needles:
                if fn == "contains":
                    r = s.str.contains(needle, regex=False)
                elif fn == "startswith":
                    r = s.str.startswith(needle)
                else:
                    r = s.str.endswith(needle)
                hit |= r.fillna(False).to_numpy(dtype=bool)
            return self.boolv(hit & x.valid)
        if fn in ("lower", "upper", "strip"):
            self.need(fn, x, "text", node.args[0])
            if x.kind == "null":
                return x
            t = getattr(x.data.str, fn)()
            t = t.mask(t == "")
            return _V("text", t, t.notna().to_numpy(bool))
        if fn == "len":
            self.need(fn, x, "text", node.args[0])
            if x.kind == "null":
                return _V("num", np.full(self.n, np.nan), np.zeros(self.n, bool))
            arr = x.data.str.len().to_numpy(dtype="float64", na_value=np.nan)
            arr = np.where(x.valid, arr, 0.0)  # an empty text has length 0
            return _V("num", arr, np.ones(self.n, bool))
        if fn == "abs":
            self.need(fn, x, "num", node.args[0])
            if x.kind == "null":
                return x
            return _V("num", np.abs(x.data), x.valid)
        if fn in ("days_since", "year", "month"):
            self.need(fn, x, "date", node.args[0])
            if x.kind == "null":
                return _V("num", np.full(self.n, np.nan), np.zeros(self.n, bool))
            if fn == "days_since":
                as_of = self.cols.as_of
                if as_of is None:
                    import pandas as pd

                    as_of = pd.Timestamp("2024-12-31")  # prototype checks only
                days = (np.datetime64(as_of, "ns") - x.data) / np.timedelta64(1, "D")
                days = np.where(x.valid, days, np.nan).astype("float64")
                return _V("num", days, x.valid)
            import pandas as pd

            idx = pd.DatetimeIndex(x.data)
            arr = (idx.year if fn == "year" else idx.month).to_numpy(
                dtype="float64", na_value=np.nan
            )
            return _V("num", arr, x.valid)
        raise self.err(f"unknown function {fn!r}")  # pragma: no cover - parse_condition refuses it

    def need(self, fn: str, v: _V, kind: str, node: ast.AST) -> None:
        if v.kind == kind or v.kind == "null":
            return
        raise self.err(f"{fn}() needs {_KIND_WORDS[kind]}, {self.desc(node)!r} is {self.word(v)}")
