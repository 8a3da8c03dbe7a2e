"""The normalisers of :mod:`custtool.normalize` for order columns, as DuckDB SQL.

Each rule here is the SQL twin of a pandas rule in :mod:`custtool.normalize` (or
:func:`custtool.ingest._normalize_column`), written for the forms that make up nearly every
cell of a real export, and *decides* only those: for a cell it gives the normalised value
and whether the cell is **plain** — in a form the SQL reads exactly as the pandas rule does,
with no problem code. A cell that is not plain (a rare form, a bad value, anything with a
flag or a reject) is left to the pandas rule, so the two never disagree: the out-of-core
import (:mod:`custtool.engines.duckdb_import`) normalises the rows whose every cell is plain
in DuckDB and sends the other rows through the pandas engine's own sheet import.
``tests/test_normalize_sql.py`` runs each pair on one table of cases.

Plain, per column (``x`` is the cell text as read):

- ids (``order_id``, ``customer_id``): printable ASCII without spaces (NFKC and trimming
  change nothing), or empty; the blank words (nan, null, n/a, …) read as "".
- ``phone``: empty, or a mainland mobile written as 11 digits ``1[3-9]…`` that is not a
  known dummy number (rules/phones.yaml); ``phones`` is the number, ``phone_ext`` "".
- ``email``: empty only.
- ``order_time``: ``YYYY-MM-DD`` or ``YYYY/MM/DD``, optionally `` HH:MM:SS`` (or ``T``), a
  real date and time, year 1900–2100.
- ``amount``: digits with an optional minus and decimal part, rounded to cents half to
  even as pandas' ``round(2)``.
- ``quantity``: empty or unsigned digits.
- ``refund``: a "no" word (否, 正常, 已完成, n, false, 0, …) or empty.
- any other column (text kept as written, stripped): no white space at either end.

A row is plain when all its cells are, no cell could be a totals word (计, otal, OTAL) and
it has a customer key (customer id or phone); such a row is never blank.

The one rule that looks across rows — money going back for an order id no row of the file
sells (``refund_without_order``) — is not written twice: the importer runs the pandas rule
(:func:`custtool.ingest._refunds_without_order`, a pyarrow hash lookup) over the plain rows
of a batch, and a sale on another row (not plain, or in another batch) withdraws the flag
afterwards.
"""

from __future__ import annotations

from typing import Any

from custtool.engines.sql import quote

#: canonical columns with a rule of their own here (others: kept as written, stripped)
ID_COLUMNS = ("order_id", "customer_id", "record_id")
#: canonical order columns the pandas rules keep as written, stripped (a file holding one
#: of the other canonical columns — a name, city, address — is imported by the pandas rules)
TEXT_ONLY_COLUMNS = frozenset({"channel", "category", "product", "pay_method"})
RULE_COLUMNS = frozenset(
    {*ID_COLUMNS, "phone", "email", "order_time", "amount", "quantity", "refund"}
)

#: Python's ``str.strip`` white space at either end (RE2: ASCII spaces, \\x0b, \\x1c-\\x1f,
#: \\x85 and the Unicode separators)
_EDGE_SPACE = r"^[\s\x0b\x1c-\x1f\x{85}\p{Z}]|[\s\x0b\x1c-\x1f\x{85}\p{Z}]$"


def _in_list(values: Any) -> str:
    return "(" + ", ".join(quote(v) for v in sorted(values)) + ")"


def sql_supported(names: list[str], known: set[str]) -> bool:
    """Whether a table with the columns ``names`` (``known``: the kind's canonical names)
    can be normalised here: every canonical column has a rule here or is plain text."""
    return all(n in RULE_COLUMNS or n in TEXT_ONLY_COLUMNS or n not in known for n in names)


def id_sql(x: str) -> tuple[str, str]:
    """(value, plain) of :func:`custtool.normalize._text` for an id cell."""
    from custtool.normalize import _BLANKS

    size = max(len(b) for b in _BLANKS)  # the blank words are short ASCII: look at those
    value = (
        f"CASE WHEN length({x}) <= {size} AND lower({x}) IN {_in_list(_BLANKS)} "
        f"THEN '' ELSE {x} END"
    )
    plain = f"regexp_full_match({x}, '[!-~]*')"
    return value, plain


def phone_sql(x: str) -> tuple[str, str]:
    """(value, plain) of :func:`custtool.normalize.phone_codes` (also ``phones``; the
    extension is "")."""
    from custtool.normalize import dummy_phones

    dummies = dummy_phones()
    not_dummy = f" AND {x} NOT IN {_in_list(dummies)}" if dummies else ""
    plain = f"({x} = '' OR (regexp_full_match({x}, '1[3-9][0-9]{{9}}'){not_dummy}))"
    return x, plain


def email_sql(x: str) -> tuple[str, str]:
    """(value, plain) of :func:`custtool.normalize.email_codes`: only the empty cell."""
    return x, f"({x} = '')"


_TIME_FORM = r"[0-9]{4}([-/])[0-9]{2}[-/][0-9]{2}([ T][0-9]{2}:[0-9]{2}:[0-9]{2})?"


def time_sql(x: str, ref: str | None = None) -> tuple[str, str]:
    """(value, plain) of :func:`custtool.normalize.normalize_date` with ``keep_time``: a
    TIMESTAMP (naive, as written); ``ref``: the value already computed under that name."""
    # one separator between the date parts (2024-01/05 is read by the patterns)
    same_sep = f"substr({x}, 5, 1) = substr({x}, 8, 1)"
    forms = [f"%Y{d}%m{d}%d{t}" for d in "-/" for t in (" %H:%M:%S", "T%H:%M:%S", "")]
    value = f"try_strptime({x}, [{', '.join(quote(f) for f in forms)}])"
    plain = (
        f"(regexp_full_match({x}, '{_TIME_FORM}') AND {same_sep} "
        f"AND substr({x}, 1, 4) BETWEEN '1900' AND '2100' AND ({ref or value}) IS NOT NULL)"
    )
    return value, plain


def amount_sql(x: str) -> tuple[str, str]:
    """(value, plain) of :func:`custtool.normalize.normalize_amount`: numpy's ``round(2)``
    is ``rint(v * 100) / 100``, DuckDB's ``round_even(v * 100, 0) / 100``."""
    value = f"round_even(TRY_CAST({x} AS DOUBLE) * 100, 0) / 100"
    plain = f"regexp_full_match({x}, '-?[0-9]{{1,12}}(\\.[0-9]{{1,6}})?')"
    return value, plain


def quantity_sql(x: str) -> tuple[str, str]:
    """(value, plain) of :func:`custtool.normalize.normalize_number` (NULL for empty)."""
    value = f"CASE WHEN {x} = '' THEN NULL ELSE TRY_CAST({x} AS DOUBLE) END"
    plain = f"regexp_full_match({x}, '[0-9]{{0,15}}')"
    return value, plain


def refund_sql(x: str) -> tuple[str, str]:
    """(value, plain) of :func:`custtool.normalize.normalize_bool`: only "no" words (a yes
    makes the amount money going back, judged in pandas)."""
    from custtool.normalize import _FALSE

    return "false", f"lower({x}) IN {_in_list(_FALSE)}"


def text_sql(x: str) -> tuple[str, str]:
    """(value, plain) of a column kept as written (``s.str.strip()``)."""
    return x, f"NOT regexp_matches({x}, '{_EDGE_SPACE}')"


_RULES = {
    "phone": phone_sql,
    "email": email_sql,
    "order_time": time_sql,
    "amount": amount_sql,
    "quantity": quantity_sql,
    "refund": refund_sql,
}


def column_sql(name: str, x: str, ref: str | None = None) -> tuple[str, str]:
    """(value, plain) SQL for the canonical (or unknown) column ``name`` over cell ``x``
    (``ref``: the value's name where it is already computed)."""
    if name in ID_COLUMNS:
        return id_sql(x)
    if name == "order_time":
        return time_sql(x, ref)
    rule = _RULES.get(name)
    return rule(x) if rule else text_sql(x)


def no_total_sql(x: str) -> str:
    """The cell cannot be a totals word (:data:`custtool.ingest.TOTAL_WORDS` all hold 计,
    otal or OTAL)."""
    return f"NOT (contains({x}, '计') OR contains({x}, 'otal') OR contains({x}, 'OTAL'))"


def orders_select(names: list[str], source: str) -> str:
    """The query normalising a batch ``source`` (text columns ``c0, c1, …`` in the order
    of ``names``, and ``_pos``, the file's columns under their canonical names): one column per output
    value (phone gives ``phone``, ``phones``, ``phone_ext``) and ``_plain``."""
    values: list[str] = []
    selects: list[str] = []
    plains: list[str] = []
    for i, name in enumerate(names):
        x, ref = f'"c{i}"', f'"_v{i}"'
        value, plain = column_sql(name, x, ref)
        values.append(f"{value} AS {ref}")
        alias = name.replace('"', '""')
        selects.append(f'{ref} AS "{alias}"')
        if name == "phone":
            selects += [f'{ref} AS "phones"', "'' AS \"phone_ext\""]
        plains.append(plain)
        if name in ID_COLUMNS or name not in RULE_COLUMNS:  # the others hold digits only
            plains.append(no_total_sql(x))
    keys = [f"\"_v{i}\" <> ''" for i, n in enumerate(names) if n in ("customer_id", "phone")]
    plains.append("(" + (" OR ".join(keys) if keys else "false") + ")")
    plain = " AND ".join(f"coalesce({p}, false)" for p in plains)
    cells = ", ".join(f'"c{i}"' for i in range(len(names)))
    # the values once (a time is parsed once), then whether the row is plain; ``_pos``
    # (the row's position in the batch) is passed through
    return (
        f"SELECT {', '.join(selects)}, {plain} AS _plain, _pos "
        f"FROM (SELECT {', '.join(values)}, {cells}, _pos FROM {source})"
    )
