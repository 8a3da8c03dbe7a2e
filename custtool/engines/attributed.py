"""The run's attributed orders (``orders_attributed.parquet``) counted by DuckDB for the
cards: only per-customer or per-(customer, category) figures come back, never 10M order rows.
The connection is the seam's (:class:`custtool.engines.seam.DuckRunner`: ``memory_limit``
bytes, a spill folder removed afterwards); an out-of-memory error is the exit-2 error naming
the limit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: what the cards' ``_s`` strips: ``str.strip`` and Arrow's ``utf8_trim_whitespace`` remove
#: the same characters, none above U+3000 (tests/test_cards.py checks every code point), so
#: DuckDB strips the attributed orders' ids as ``_s`` would
WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def sql_text(x: str) -> str:
    """DuckDB SQL for the cards' ``_s`` of the text expression ``x``: stripped of
    :data:`WHITESPACE`, missing as ''. A value whose first and last characters are not
    whitespace is its own strip (the trim of a character set costs several times that test
    per row)."""
    from custtool.engines.sql import quote

    ws = quote(WHITESPACE)
    return (
        f"coalesce(CASE WHEN NOT contains({ws}, left({x}, 1)) AND NOT contains({ws}, right({x}, 1))"
        f" THEN {x} ELSE trim({x}, {ws}) END, '')"
    )


class OrdersFile:
    """The attributed orders' Parquet in the seam's DuckDB connection."""

    id_column = '"customer_id"'
    raw_category = "coalesce(o.\"category\", '')"

    def __init__(self, path: Path, memory_limit: int | None) -> None:
        from custtool.engines.sql import quote

        self.path = path
        self.memory_limit = memory_limit
        self.source = f"read_parquet({quote(str(path))})"

    def __enter__(self) -> OrdersFile:
        from custtool.engines.seam import DuckRunner

        self.runner = DuckRunner(self.memory_limit, "UTC")  # no time is read
        return self

    def __exit__(self, *exc: Any) -> None:
        self.runner.close()

    def register(self, name: str, table: Any) -> None:
        """``table`` (Arrow) as ``name``, scanned where it is (no copy)."""
        self.runner.con.register(name, table)

    def arrow(self, sql: str) -> Any:
        from custtool.engines import is_out_of_memory, memory_error

        try:
            return self.runner.arrow(sql)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise memory_error(
                    exc, self.memory_limit, f"the cards over {self.path.name}"
                ) from exc
            raise

    def categories(self, strip: Callable[[pd.Series], pd.Series]) -> pd.Series:
        """Registers ``catmap`` (each distinct raw category, a missing one as '' → ``c``, the
        position of its ``strip`` among the distinct stripped values) and returns those
        values: categories are stripped once per distinct value (a handful), in pandas, not
        per order row; two raw spellings of one category share a ``c``."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        raw = self.arrow(f"SELECT DISTINCT {self.raw_category} AS raw FROM {self.source} o")["raw"]
        codes, values = pd.factorize(strip(pd.Series(raw.to_pylist(), dtype=object)))
        self.register(
            "catmap", pa.table({"raw": raw, "c": pa.array(codes.astype(np.int32), pa.int32())})
        )
        return pd.Series(np.asarray(values, dtype=object), dtype="string")


def category_counts(
    path: Path, wanted: list[str], memory_limit: int | None, strip: Callable[..., Any]
) -> tuple[Any, pd.Series]:
    """Orders per (customer, category) of the customers ``wanted`` (stripped ids): an Arrow
    table (``k`` the id, ``c`` the category's position, ``n``) and the categories."""
    import pyarrow as pa

    with OrdersFile(path, memory_limit) as f:
        cats = f.categories(strip)
        f.register("wanted", pa.table({"k": pa.array(wanted, pa.string())}))
        got = f.arrow(
            f"SELECT w.k, c.c, count(*) AS n FROM {f.source} o"
            f" JOIN catmap c ON {f.raw_category} = c.raw"
            f" JOIN wanted w ON {sql_text('o.' + f.id_column)} = w.k GROUP BY w.k, c.c"
        )
    return got, cats


def order_pair_keys(
    path: Path, unique_ids: Any, memory_limit: int | None, strip: Callable[..., Any]
) -> Any:
    """Each attributed order of a listed customer as one integer key, its position in
    ``unique_ids`` × the number of categories + its category's code (from DuckDB: not 10M
    rows of text), and the categories (Arrow text, stripped; distinct); None when no order
    is theirs."""
    import numpy as np
    import pyarrow as pa

    keymap = pa.table({"k": unique_ids, "p": pa.array(np.arange(len(unique_ids), dtype=np.int64))})
    with OrdersFile(path, memory_limit) as f:
        cats = f.categories(strip)
        f.register("keymap", keymap)
        # the listed ids are stripped already, so an order whose id is one of them as it is
        # needs no strip: only the others are stripped and looked up again. The distinct
        # (customer, category) pairs are found in numpy (DuckDB's count(DISTINCT) of 10M
        # rows cost ~1.3 s more CPU)
        got = f.arrow(
            f"SELECT coalesce(j.p, m2.p) * {len(cats)} + j.c AS key FROM ("
            "  SELECT m1.p, cm.c,"
            f"  CASE WHEN m1.p IS NULL THEN {sql_text('o.' + f.id_column)} END AS k2"
            f"  FROM {f.source} o JOIN catmap cm ON {f.raw_category} = cm.raw"
            f"  LEFT JOIN keymap m1 ON o.{f.id_column} = m1.k) j"
            " LEFT JOIN keymap m2 ON j.k2 = m2.k WHERE coalesce(j.p, m2.p) IS NOT NULL"
        )
    if not got.num_rows:
        return None
    return got["key"].to_numpy(), pa.array(cats.tolist(), pa.string())
