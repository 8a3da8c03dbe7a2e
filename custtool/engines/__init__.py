"""Engines behind the metrics seam (orders → one row per customer), and their limits.

``--memory-limit`` is parsed here once (:func:`parse_memory_limit`) and every DuckDB
connection an engine opens comes from :func:`duckdb_connect`, so the limit, the spill folder
and the "limit too small" error are the same for import, segment and the book.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from custtool.errors import ConfigError, CusttoolError

if TYPE_CHECKING:  # pragma: no cover
    import os

ENGINES = ("pandas", "duckdb", "spark")

_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
_UNITS |= {"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}
_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*$", re.IGNORECASE)
MIN_MEMORY = 64 * 1000**2  # below this DuckDB cannot even hold a join's hash table header


class MemoryLimitError(CusttoolError):
    """The work does not fit in the memory limit given (exit 2, names the limit)."""


#: the largest limit taken: far above any machine, within what DuckDB reads
MAX_MEMORY = 1000**5


def parse_memory_limit(text: str | int | None) -> int | None:
    """``"1GB"``, ``"512MB"``, ``"2GiB"``, ``"1.5gb"`` or a byte count → bytes (None: no limit).

    Decimal units are powers of 1000 (as DuckDB reads them), ``KiB``/``MiB``/``GiB`` of 1024.
    """
    if text is None or text == "":
        return None
    if isinstance(text, int):
        value = text
    else:
        m = _LIMIT.match(str(text))
        unit = m.group(2).upper() if m else ""
        if not m or unit not in _UNITS:
            raise ConfigError(
                f"--memory-limit {text!r} is not a size",
                "write it as a number and a unit, for example 1GB, 512MB or 2GiB",
            )
        value = int(float(m.group(1)) * _UNITS[unit])
    if value > MAX_MEMORY:  # DuckDB refused 1e29 bytes with a parser error (exit 3)
        raise ConfigError(
            f"--memory-limit {text!r} is above the {MAX_MEMORY // 1000**5} PB maximum",
            "give what the machine has, e.g. 1GB or 16GB",
        )
    if value < MIN_MEMORY:
        raise ConfigError(
            f"--memory-limit {text!r} is below the {MIN_MEMORY // 1000**2} MB minimum",
            "give at least 64MB; 1GB is a good start for 10 million orders",
        )
    return value


def format_bytes(n: int) -> str:
    """Bytes as DuckDB and a person read them: 1000000000 → ``"1.0GB"``."""
    for unit, size in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n}B"


def duckdb_connect(
    memory_limit: int | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
) -> Any:
    """A DuckDB connection bounded by ``memory_limit`` bytes, spilling to ``temp_dir``.

    Insertion order is not preserved (it costs memory and no engine step needs it).
    """
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a base dependency
        raise ConfigError(
            "the DuckDB engine needs the duckdb package", "pip install duckdb"
        ) from None
    con = duckdb.connect()
    if memory_limit is not None:
        con.execute(f"SET memory_limit = '{int(memory_limit)}B'")
    if temp_dir is not None:
        from custtool.engines.sql import quote

        con.execute(f"SET temp_directory = {quote(str(temp_dir))}")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def memory_error(exc: BaseException, memory_limit: int | None, step: str) -> CusttoolError:
    """The exit-2 error for a DuckDB out-of-memory during ``step``, naming the limit."""
    limit = format_bytes(memory_limit) if memory_limit else "the machine's memory"
    return MemoryLimitError(
        f"{step} does not fit in --memory-limit {limit}: {str(exc).splitlines()[0][:200]}",
        "raise --memory-limit (or free disk space for the spill folder) and run again",
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """True for DuckDB's out-of-memory errors (and Python's MemoryError)."""
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__name__ == "OutOfMemoryException" or "Out of Memory" in str(exc)
