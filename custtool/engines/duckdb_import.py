"""Orders imported out of core (``custtool import --kind orders --engine duckdb``).

The file is never held whole in memory:

1. **Header.** The top of a CSV (1 MB, cut at a line end) goes through the pandas reader
   (:func:`custtool.io.read_raw`: encoding detection incl. GBK, separator, the grid) and
   the one header finder (:func:`custtool.ingest.find_header_row`); a file that small is
   imported from that grid as it is.
2. **Batches.** The rest is read by pyarrow's streaming reader (every cell text, a GBK file
   decoded as it streams); at the first row of another width or a blank line the file is
   read again by pandas' C reader in chunks, with the general CSV reader's options (blank
   lines kept as rows, short rows padded). Each batch goes through the pandas engine's own
   sheet import (:func:`custtool.ingest._import_sheet`: alias mapping, normalisers,
   validation, rejects lines), so rows and rejects are those of the pandas engine by
   construction — the rules have one home; its row numbers are shifted by the rows before
   it. Accepted rows, rejects lines and the order ids sold on rejected rows (for the refund
   rule below) are appended to Parquet files in the spill folder.
   Three threads overlap (DuckDB and pyarrow leave the GIL): the next batch is read and
   normalised by DuckDB (``custtool-read``) while this one is imported and the one before
   is written to Parquet (``custtool-stage``); one batch ahead and one behind are held.
3. **Across batches (DuckDB).** The only rule that looks across rows — a refund whose order
   id has no sale in the same file (``refund_without_order``) — was judged per batch; DuckDB
   finds, over the spilled Parquet and within ``--memory-limit``, the refunds whose sale is
   in another batch, and their flags and rejects lines are withdrawn while the output is
   written (atomically). The problem counts are a DuckDB ``GROUP BY`` over the output; the
   rejects lines are put in one validation's order by a DuckDB ``ORDER BY`` (with a third
   of the limit: :func:`_rejects_share`; lines spilled in that order already are read back
   without it) and written chunk by chunk
   (:func:`custtool.io.write_csv_chunks`: the next chunk masked while one is written).

Workbooks are read whole (a sheet holds at most 1,048,576 rows) and imported sheet by
sheet the same way. The spill folder (beside the output, or ``temp_dir``) is removed
afterwards, also on failure.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from custtool.engines import MIN_MEMORY, duckdb_connect, is_out_of_memory, memory_error
from custtool.engines.sql import quote
from custtool.errors import CusttoolError, InputError
from custtool.ingest import (
    HEADER_SEARCH_ROWS,
    REJECT_COLUMNS,
    ROW_COUNTS,
    ImportResult,
    SheetReport,
    _import_sheet,
    _with_file_notes,
    find_header_row,
)

#: the top of a CSV read for its header, encoding and width (cut at a line end)
HEAD_BYTES = 1 << 20
#: rows per batch without a memory limit; with one, about this many bytes per row are allowed
DEFAULT_BATCH_ROWS = 200_000
BYTES_PER_ROW = 4_000
REFUND_CODE = "refund_without_order"


@dataclass
class StreamedImport(ImportResult):
    """An import written straight to ``output`` (``data`` holds no rows, only its columns)."""

    output: str | None = None
    engine: str = "duckdb"
    problems: dict[str, int] = field(default_factory=dict)
    protection: Any = None

    def problem_counts(self) -> dict[str, int]:
        return dict(self.problems)


def batch_rows(memory_limit: int | None) -> int:
    """Rows per batch: ``memory_limit`` / 4 kB (the pandas normalisers' peak per row of an
    order export), between 20,000 and 500,000; 200,000 without a limit."""
    if memory_limit is None:
        return DEFAULT_BATCH_ROWS
    return int(min(500_000, max(20_000, memory_limit // BYTES_PER_ROW)))


def import_streamed(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None,
    kind: str = "orders",
    channel: str | Sequence[str] | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
    fields: str | os.PathLike[str] | None = None,
    tz: str = "Asia/Shanghai",
    memory_limit: int | None = None,
    temp_dir: str | os.PathLike[str] | None = None,
    sensitive: str | None = None,
    key: Any = None,
    engine: str = "duckdb",
    rows_per_batch: int | None = None,
    head_bytes: int = HEAD_BYTES,
    rejects_output: str | os.PathLike[str] | None = None,
    mask_rejects: bool = False,
    keep_rejects: bool = True,
) -> StreamedImport:
    """Import exports of ``kind`` batch by batch into the Parquet file ``output``.

    ``rows_per_batch`` and ``head_bytes`` (the top read for the header; a smaller file is
    imported from it whole) are for tests. The rejects lines are spilled as well: written to
    ``rejects_output`` chunk by chunk (masked as :func:`custtool.io.write_table` after
    :func:`custtool.report.masking.mask_frame` would), and held in ``.rejects`` only when
    ``keep_rejects``.
    Same rows, rejects, accounting and columns as :func:`custtool.ingest.import_files`
    followed by :func:`custtool.privacy.protect_sensitive` (see the module text). Without
    ``output`` nothing is written (a check). A DuckDB out-of-memory is a
    :class:`custtool.engines.MemoryLimitError` naming ``memory_limit``.
    """
    from custtool.fields import KINDS, load_fields, sensitive_fields

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise InputError("no input files given", "name at least one CSV or Excel file")
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    channels = _channels(channel, len(paths))
    specs = load_fields(fields)
    spec = specs[kind]
    extra = sensitive_fields(specs, kind)
    out = Path(output) if output is not None else None
    base = Path(temp_dir) if temp_dir is not None else (out.parent if out else None)
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    from custtool.atomic import sweep_leftovers, temp_prefix

    sweep_leftovers(base if base is not None else tempfile.gettempdir(), ".custtool-spill-")
    spill = Path(tempfile.mkdtemp(prefix=temp_prefix(".custtool-spill-"), dir=base))
    n_batch = rows_per_batch or batch_rows(memory_limit)
    batch_con: list[Any] = []
    opened: list[_Staged] = []  # their writer threads are ended on the way out

    def sql_con() -> Any:  # one DuckDB connection normalises every batch, in row order
        if not batch_con:
            con = duckdb_connect(_duckdb_share(memory_limit), spill / "duckdb-batches", threads=2)
            con.execute("SET preserve_insertion_order = true")
            batch_con.append(con)
        return batch_con[0]

    try:
        stages: list[_Staged] = []
        reports: list[SheetReport] = []
        warnings: list[str] = []
        protection = None
        from custtool.privacy import protect_sensitive

        seen_paths: set[Path] = set()
        for position, path in enumerate(paths):
            file_channel = channels[position] or Path(path).stem
            resolved = Path(path).resolve()
            if resolved in seen_paths:
                warnings.append(
                    f"{Path(path).name} is named twice; its rows are imported twice (clean collapses exact duplicates)"
                )
            seen_paths.add(resolved)
            for fast in (True, False):  # pyarrow's reader, else (ragged rows) pandas'
                staged = _Staged(spill / f"part-{position}-{int(fast)}.parquet", position)
                opened.append(staged)
                seen: list[str] = []
                batches = _read_ahead(
                    _file_batches(
                        Path(path), specs, sheet, encoding, n_batch, spill, head_bytes, fast
                    ),
                    lambda b: _normalise_ahead(b, spec, sql_con),
                )
                try:
                    for batch in batches:
                        seen.extend(batch.warnings)
                        if batch.raw is None:
                            continue
                        if batch.table is not None:
                            con = None if batch.sql_done else sql_con()
                            frame, rej, report, split = import_table_batch(
                                batch, spec, file_channel, tz, con
                            )
                            staged.batched |= split
                        else:
                            frame, rej, report = _import_sheet(
                                batch.raw, batch.header_at, spec, file_channel, tz
                            )
                        staged.note_dropped_sales(batch, frame, spec, tz)
                        frame, protection = protect_sensitive(
                            frame, mode=sensitive, key=key, extra=extra, where=Path(path).name
                        )
                        staged.add(frame, rej, report, batch)
                except _Ragged:
                    staged.discard()
                    continue
                except MemoryError as exc:  # a batch too large for what the machine has left
                    raise memory_error(exc, memory_limit, "import") from None
                finally:
                    batches.close()  # the reader's thread ended before anything is closed
                break
            warnings.extend(seen)
            if not staged.reports:
                raise _no_header(Path(path))
            stages.append(staged)
            reports.extend(staged.reports)
        while batch_con:  # what the batches' DuckDB holds is given back before the next one
            batch_con.pop().close()
        from custtool.memory import release_memory

        # and what the batches' threads freed (glibc keeps it per thread): the pass across
        # batches and the rejects' sort are the import's peak
        release_memory(sum(r.rows_read for r in reports))
        con = duckdb_connect(_duckdb_share(memory_limit), spill / "duckdb", threads=2)
        try:
            withdrawn = _withdraw_cross_batch_refunds(con, stages)
            target = out if out is not None else spill / "check.parquet"  # a check: counted
            columns = _write_output(stages, target, withdrawn)
            problems = _problem_counts(con, target, stages)
            if memory_limit is not None:  # the rejects' sort beside the chunks being written
                con.execute(f"SET memory_limit = '{_rejects_share(memory_limit)}B'")
            if rejects_output is not None:
                write_rejects(rejects_chunks(con, stages), Path(rejects_output), mask=mask_rejects)
            parts = list(rejects_chunks(con, stages)) if keep_rejects else []
            rejects = (
                pd.concat(parts, ignore_index=True)
                if parts
                else pd.DataFrame(columns=REJECT_COLUMNS)
            )
        except CusttoolError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise memory_error(exc, memory_limit, "import") from None
            raise
        finally:
            con.close()
        from custtool.privacy import Protection

        return StreamedImport(
            kind=kind,
            data=pd.DataFrame(columns=columns),
            rejects=rejects,
            files=reports,
            warnings=warnings,
            sensitive=extra,
            output=str(out) if out else None,
            engine=engine,
            problems=problems,
            protection=protection or Protection([], "none", key.id if key else None),
        )
    finally:
        for s in opened:
            s.stop()
        for c in batch_con:
            c.close()
        shutil.rmtree(spill, ignore_errors=True)


def _duckdb_share(memory_limit: int | None) -> int | None:
    """DuckDB's part of the limit: two thirds (the interpreter, its libraries and the
    rejects chunks being written hold the rest), at least the 64 MB minimum."""
    if memory_limit is None:
        return None
    return max(MIN_MEMORY, memory_limit * 2 // 3)


def _rejects_share(memory_limit: int) -> int:
    """DuckDB's part of the limit while the rejects lines are sorted and written: a third
    (at least the 64 MB minimum). Beside it the process holds what the batches left (about
    0.55 GB at 10M lines: the interpreter, its libraries, the allocators' retained pages)
    and the chunks being masked and written in two threads (~0.2 GB); with two thirds a
    file of 10M rejected lines peaked at 1.49 GB under a 1 GB limit, with a third its sort
    spills more and the pass stays below the batches' own peak."""
    return max(MIN_MEMORY, memory_limit // 3)


def _channels(channel: str | Sequence[str] | None, n: int) -> list[str | None]:
    if channel is None or isinstance(channel, str):
        return [channel] * n
    chosen: list[str | None] = list(channel)
    if len(chosen) == 1:
        return chosen * n
    if len(chosen) != n:
        raise InputError(
            f"{len(chosen)} channels for {n} files",
            "give one channel for all files, or one per file in order",
        )
    return list(chosen)


def _no_header(path: Path) -> InputError:
    return InputError(
        f"{path.name}: no header row found (looked at the first {HEADER_SEARCH_ROWS} rows)",
        "the header row must name at least two known columns, e.g. 订单号, 下单时间, 实付金额; "
        "add your own header names with --fields my_fields.yaml",
    )


# --------------------------------------------------------------------------- reading
@dataclass
class _Batch:
    """A grid to import as one sheet: its header at ``header_at``; ``offset`` rows of the
    same sheet came before it; ``last``: the sheet's last batch."""

    raw: Any
    header_at: int = 0
    offset: int = 0
    last: bool = True
    warnings: list[str] = field(default_factory=list)
    notes_raw: Any = None  # the raw sheet whose damaged-stretch notes go to the rejects
    table: Any = None  # the rows as Arrow text (pyarrow's reader), for the SQL normalisers
    header: Any = None  # then the header row (``raw`` is built only when pandas needs it)
    sql: Any = None  # the rows DuckDB normalised (normalised_by_sql), when done ahead
    sql_done: bool = False


def _file_batches(
    path: Path,
    specs: dict[str, Any],
    sheet: str | None,
    encoding: str | None,
    n_batch: int,
    spill: Path,
    head_bytes: int,
    fast: bool = False,
) -> Generator[_Batch, None, None]:
    """The grids of one input, in batches of at most ``n_batch`` rows below the header."""
    from custtool.io import CSV_SUFFIXES, read_raw

    if not path.is_file() or path.suffix.lower() not in CSV_SUFFIXES | {""}:
        sheets = read_raw(path, sheet=sheet, encoding=encoding)  # its errors, as pandas gives
        for raw in sheets:
            header_at = find_header_row(raw.grid, specs, allow_single=len(sheets) == 1)
            if header_at is None:
                note = []
                if raw.grid.replace("", np.nan).notna().any().any():
                    where = raw.file + (f", sheet {raw.sheet!r}" if raw.sheet else "")
                    note = [f"{where}: no recognisable header row; sheet skipped"]
                yield _Batch(None, warnings=note)
                continue
            yield _Batch(raw, header_at, warnings=list(raw.warnings), notes_raw=raw)
        return
    if sheet:
        raise InputError(
            f"{path.name}: --sheet applies to workbooks, not CSV files",
            "leave out --sheet for CSV files",
        )
    head, whole, raw = _csv_head(path, encoding, head_bytes, spill)
    header_at = find_header_row(raw.grid, specs, allow_single=True)
    if header_at is None:
        yield _Batch(None)
        return
    if whole:  # a small file: the grid is the whole file
        yield _Batch(raw, header_at, warnings=list(raw.warnings), notes_raw=raw)
        return
    if raw.notes:
        raise InputError(
            f"{path.name}: damaged lines near the top ({raw.notes[0][3]})",
            "import it with --engine pandas, which repairs them line by line",
        )
    start = _data_start(head, header_at, raw.encoding) if fast else None
    if start is not None:
        yield from _arrow_batches(path, raw, header_at, n_batch, start)
    else:
        yield from _csv_batches(path, raw, header_at, n_batch)


def _read_ahead(
    batches: Generator[_Batch, None, None], prepare: Any
) -> Generator[_Batch, None, None]:
    """``batches``, the next one read and given to ``prepare`` on a thread while this one is
    imported (one batch ahead: one batch more held). Its errors come where it is taken."""
    from concurrent.futures import ThreadPoolExecutor

    def step() -> _Batch | None:
        b = next(batches, None)
        if b is not None:
            prepare(b)
        return b

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="custtool-read") as pool:
            ahead = pool.submit(step)
            while (b := ahead.result()) is not None:
                ahead = pool.submit(step)
                yield b
    finally:  # the thread has ended (the pool waited): the reader can be closed here
        batches.close()


def _normalise_ahead(b: _Batch, spec: Any, con: Any) -> None:
    """The DuckDB part of a batch of Arrow rows, done on the reader's thread (DuckDB and
    pyarrow leave the GIL to the import of the batch before)."""
    if b.raw is not None and b.table is not None:
        b.sql, b.sql_done = normalised_by_sql(b, spec, con()), True


def _csv_head(
    path: Path, encoding: str | None, head_bytes: int, spill: str | os.PathLike[str] | None
) -> tuple[bytes, bool, Any]:
    """The top of a CSV cut at a line end, whether that is the whole file, and its grid as
    the pandas reader gives it (read from a copy in ``spill``)."""
    from custtool.io import read_raw

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(head_bytes)
    whole = len(head) >= size
    if not whole:
        end = head.rfind(b"\n")
        head = head[: end + 1] if end >= 0 else head
    folder = Path(tempfile.mkdtemp(prefix="head-", dir=spill))
    try:
        top = folder / path.name
        top.write_bytes(head)
        (raw,) = read_raw(top, encoding=encoding)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return head, whole, raw


def detect_kind_streamed(
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    fields: str | os.PathLike[str] | None = None,
    sheet: str | None = None,
) -> str | None:
    """The kind of data in ``path`` from its header (a CSV: its top 1 MB only), as the
    pandas import detects it; None when no header is found."""
    from custtool.fields import detect_kind, load_fields
    from custtool.io import CSV_SUFFIXES, read_raw

    specs = load_fields(fields)
    p = Path(path)
    if p.is_file() and p.suffix.lower() in CSV_SUFFIXES | {""} and not sheet:
        sheets = [_csv_head(p, encoding, HEAD_BYTES, None)[2]]
    else:
        sheets = read_raw(p, sheet=sheet, encoding=encoding)
    for raw in sheets:
        at = find_header_row(raw.grid, specs, allow_single=len(sheets) == 1)
        if at is not None:
            return detect_kind(raw.grid.iloc[at].tolist(), specs)
    return None


class _Ragged(Exception):
    """pyarrow's reader met a row of another width (or a blank line): read with pandas'."""


#: encodings whose bytes never hold a newline inside a character (and pyarrow decodes)
_BYTE_LINES = {"utf-8", "utf8", "utf-8-sig", "gbk", "gb18030", "gb2312", "cp936"}


def _data_start(head: bytes, header_at: int, encoding: str | None) -> int | None:
    """The byte offset of the first line below the header, when it can be found by counting
    newlines (no quote above it, an encoding without newline bytes inside characters)."""
    if (encoding or "utf-8").lower().replace("_", "-") not in _BYTE_LINES:
        return None
    at = 0
    for _ in range(header_at + 1):
        at = head.find(b"\n", at) + 1
        if at == 0:
            return None
    lines = head[:at].split(b"\n")
    if any(line.count(b'"') % 2 for line in lines) or re.search(rb"\r(?!\n)", head[:at]):
        # a quoted cell over two lines, or old Mac line ends: pandas' reader counts them
        # (quotes in pairs on every line, as a quoted header has, end no record early)
        return None
    return at


def _arrow_batches(
    path: Path, raw: Any, header_at: int, n_batch: int, start: int
) -> Iterator[_Batch]:
    """:func:`_csv_batches` with pyarrow's streaming reader (several threads, Arrow text);
    raises :class:`_Ragged` at the first row whose width differs from the top's."""
    import sys

    import pyarrow as pa
    import pyarrow.csv as pcsv

    from custtool.io import guess_separator

    width = raw.grid.shape[1]
    header = raw.grid.iloc[[header_at]].reset_index(drop=True)
    enc = (raw.encoding or "utf-8").lower().replace("_", "-")
    sep = guess_separator(_sample_text(path, raw.encoding), path.suffix)
    names = [f"c{i}" for i in range(width)]
    bad: list[int] = []

    def on_invalid(_row: Any) -> str:
        bad.append(1)
        return "skip"

    def unraisable(_info: Any) -> None:  # an undecodable row reported inside pyarrow
        bad.append(1)

    f = open(path, "rb")  # noqa: SIM115 - closed below, also when the consumer stops
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        f.seek(start)
        reader = pcsv.open_csv(
            f,
            read_options=pcsv.ReadOptions(
                column_names=names,
                encoding="utf8" if enc.startswith("utf") else enc,
                block_size=4 << 20,
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=sep,
                ignore_empty_lines=False,
                newlines_in_values=True,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.large_string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        offset = 0
        pending: list[Any] = []
        rows = 0
        previous: pa.Table | None = None
        for rb in _read_all(reader, path):
            if bad:
                raise _Ragged()
            pending.append(rb)
            rows += rb.num_rows
            while rows >= n_batch:
                table = pa.Table.from_batches(pending)
                part, rest = table.slice(0, n_batch), table.slice(n_batch)
                pending, rows = rest.to_batches(), rest.num_rows
                if previous is not None:
                    yield _table_batch(raw, header, previous, offset, last=False)
                    offset += previous.num_rows
                previous = part
        if bad:
            raise _Ragged()
        tail = pa.Table.from_batches(pending, schema=reader.schema)
        if previous is not None and tail.num_rows:
            yield _table_batch(raw, header, previous, offset, last=False)
            offset += previous.num_rows
            previous = None
        last = tail if previous is None else previous
        yield _table_batch(raw, header, last, offset, last=True)
    finally:
        sys.unraisablehook = previous_hook
        f.close()


def _read_all(reader: Any, path: Path) -> Iterator[Any]:
    import pyarrow as pa

    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
            raise _Ragged() from None


def _sample_text(path: Path, encoding: str | None) -> str:
    with open(path, "rb") as f:
        sample = f.read(8192)
    return sample.decode(encoding or "utf-8", errors="replace")


def _frame(table: Any) -> pd.DataFrame:
    """Arrow text columns as the grid's str columns (no copy)."""
    return pd.DataFrame(
        {j: pd.Series(table.column(j), dtype="str") for j in range(table.num_columns)}
    )


def _csv_batches(path: Path, raw: Any, header_at: int, n_batch: int) -> Iterator[_Batch]:
    """The rows below the header, ``n_batch`` at a time, read as the general CSV reader does."""
    from custtool.io import guess_separator

    width = raw.grid.shape[1]
    header = raw.grid.iloc[[header_at]].reset_index(drop=True)
    with open(path, "rb") as f:
        sample = f.read(8192)
    sep = guess_separator(sample.decode(raw.encoding or "utf-8", errors="replace"), path.suffix)
    enc = raw.encoding or "utf-8"
    reader = pd.read_csv(
        path,
        sep=sep,
        header=None,
        names=list(range(width)),
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=False,
        engine="c",
        encoding=enc,
        encoding_errors="strict",
        skiprows=header_at + 1,
        chunksize=n_batch,
    )
    offset = 0
    pending: pd.DataFrame | None = None
    try:
        with reader:
            for chunk in reader:
                if pending is not None:
                    yield _table_batch(raw, header, _text_table(pending), offset, last=False)
                    offset += len(pending)
                pending = chunk
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"{path.name}: cannot be read in batches ({str(exc).splitlines()[0][:160]})",
            "rows wider than the top of the file, broken quotes or mixed encodings: "
            "import it with --engine pandas, which repairs them",
            file=path.name,
        ) from None
    if pending is None:
        pending = header.iloc[0:0]
    yield _table_batch(raw, header, _text_table(pending), offset, last=True)


def _text_table(chunk: pd.DataFrame) -> Any:
    """A chunk read by pandas as the Arrow text table pyarrow's reader gives (columns
    ``c0, c1, …``; a cell missing from a short row is "")."""
    import pyarrow as pa

    return pa.table(
        {
            f"c{j}": pa.array(chunk.iloc[:, j].fillna("").astype("str"), pa.large_string())
            for j in range(chunk.shape[1])
        }
    )


def _table_batch(raw: Any, header: pd.DataFrame, table: Any, offset: int, *, last: bool) -> _Batch:
    """A batch of Arrow text rows; its grid (``raw``) is built when pandas needs it."""
    from custtool.io import RawSheet

    meta = RawSheet(raw.file, "", header, np.arange(1, 2, dtype="int64"), raw.encoding)
    warnings = list(raw.warnings) if offset == 0 else []
    return _Batch(meta, 0, offset, last, warnings=warnings, table=table, header=header)


def _grid_batch(
    raw: Any, header: pd.DataFrame, body: pd.DataFrame, offset: int, *, last: bool
) -> _Batch:
    from custtool.io import RawSheet

    body = body.fillna("")  # a row shorter than the width is padded with ""
    grid = pd.concat([header, body.astype("str")], ignore_index=True)
    grid.columns = pd.RangeIndex(grid.shape[1])
    sheet = RawSheet(raw.file, "", grid, np.arange(1, len(grid) + 1, dtype="int64"), raw.encoding)
    return _Batch(sheet, 0, offset, last, warnings=list(raw.warnings) if offset == 0 else [])


# --------------------------------------------------------------------------- SQL batches
def import_table_batch(
    b: _Batch, spec: Any, channel: str, tz: str, con: Any
) -> tuple[pd.DataFrame, pd.DataFrame, SheetReport, bool]:
    """One batch of Arrow text rows imported as :func:`custtool.ingest._import_sheet` would
    import it (the same accepted rows, rejects lines and accounting; row numbers within the
    batch), and whether it was split.

    The alias mapping is decided once from the header (:func:`custtool.fields.map_headers`);
    DuckDB then normalises every cell by the SQL twins of the pandas rules
    (:mod:`custtool.normalize_sql`), which also say which rows are *plain*: every cell in a
    form the SQL reads exactly as pandas does, nothing to flag or reject. Those rows are
    taken as DuckDB gives them; the other rows (rare forms, bad values, refunds, blank and
    totals rows) go through the pandas engine's sheet import, and both parts are put back
    in file order. A file with a column the SQL has no rule for (a city, a name, …) and
    other kinds go to pandas whole.
    """
    import pyarrow as pa

    out = b.sql if b.sql_done else normalised_by_sql(b, spec, con)
    table, raw = b.table, b.raw
    n = table.num_rows
    if out is None:
        grid = _grid_batch(raw, b.header, _frame(table), 0, last=True).raw
        return (*_import_sheet(grid, 0, spec, channel, tz), False)
    plain = np.asarray(out.column("_plain").to_numpy(zero_copy_only=False), dtype=bool)
    rows = np.flatnonzero(plain)
    messy = np.flatnonzero(~plain)
    body = out.drop(["_plain"])
    if len(messy):  # most batches are plain throughout: no copy of every column
        body = body.filter(pa.array(plain))
    frame = _plain_frame(body, rows, raw.file, channel)
    flagged = _flag_refunds(frame)
    refund_lines = _refund_lines(frame, flagged)
    if len(messy):
        body = _frame(table if len(messy) == n else table.take(pa.array(messy)))
        grid = _grid_batch(raw, b.header, body, 0, last=True).raw
        messy_frame, rej, report = _import_sheet(grid, 0, spec, channel, tz)
        back = messy + 2  # a row of the part -> its row in the batch (the header is row 1)
        messy_frame["_row"] = back[messy_frame["_row"].to_numpy() - 2]
        rej = rej.assign(row=back[rej["row"].astype("int64").to_numpy() - 2])
        report.rows_read += len(rows)
        report.accepted += len(rows)
        report.flagged += len(flagged)
        if len(refund_lines):  # the kept lines of both parts, in row order
            kept = (rej["action"] == "kept").to_numpy()
            lines = pd.concat([rej[kept], refund_lines], ignore_index=True)
            lines = lines.take(np.argsort(lines["row"].to_numpy(), kind="stable"))
            rej = pd.concat([rej[~kept], lines], ignore_index=True)
        if len(rows):
            frame = pd.concat([frame[list(messy_frame.columns)], messy_frame], ignore_index=True)
            order = np.argsort(frame["_row"].to_numpy(), kind="stable")
            frame = frame.take(order).reset_index(drop=True)
        else:
            frame = messy_frame
    else:
        rej = refund_lines if len(refund_lines) else pd.DataFrame(columns=REJECT_COLUMNS)
        report = SheetReport(
            file=raw.file,
            sheet="",
            kind=spec.kind,
            encoding=raw.encoding,
            header_row=1,
            rows_read=n,
            accepted=n,
            rejected=0,
            skipped=0,
            skipped_blank=0,
            skipped_total=0,
            flagged=len(flagged),
        )
    return frame, rej, report, bool(len(messy) and len(rows))


def normalised_by_sql(b: _Batch, spec: Any, con: Any) -> Any:
    """The rows of batch ``b`` as DuckDB normalises them (:mod:`custtool.normalize_sql`),
    in file order, with ``_plain``; None when the batch goes to pandas whole (see
    :func:`import_table_batch`). Only DuckDB and Arrow work: it may run on the reader's
    thread."""
    import pyarrow as pa

    from custtool import normalize_sql as ns
    from custtool.fields import map_headers, missing_required

    table = b.table
    names, used = map_headers(b.header.iloc[0].tolist(), spec)
    n = table.num_rows
    known = set(spec.lookup().values())
    if (
        spec.kind != "orders"
        or n == 0
        or missing_required(used, spec)
        or not ns.sql_supported(names, known)
        or len(set(names) | _MADE_COLUMNS) != len(names) + len(_MADE_COLUMNS)
    ):
        return None
    # DuckDB scans an Arrow table of several chunks on several threads in no set order:
    # each row carries its position, and the result is put back in file order
    con.register("batch_rows", table.append_column("_pos", pa.array(np.arange(n))))
    try:
        out = con.sql(ns.orders_select(names, "batch_rows")).to_arrow_table()
    finally:
        con.unregister("batch_rows")
    pos = np.asarray(out.column("_pos").to_numpy(zero_copy_only=False))
    if (np.diff(pos) < 0).any():
        out = out.take(pa.array(np.argsort(pos, kind="stable")))
    return out.drop(["_pos"])


def _flag_refunds(frame: pd.DataFrame) -> np.ndarray:
    """The refund rule of one import (:func:`custtool.ingest._refunds_without_order`) over
    the plain rows: their ``_flags`` set in place; returns the flagged positions."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from custtool.ingest import _refunds_without_order

    if "order_id" not in frame or "amount" not in frame or not len(frame):
        return np.zeros(0, dtype=np.int64)
    amount = frame["amount"].to_numpy()
    back = np.flatnonzero(amount < 0)
    if not len(back):
        return np.zeros(0, dtype=np.int64)
    hits = _refunds_without_order(frame["order_id"], back, amount > 0)
    if len(hits):
        mask = np.zeros(len(frame), dtype=bool)
        mask[hits] = True
        flags = pc.if_else(pa.array(mask), REFUND_CODE, pa.scalar("", pa.large_string()))
        frame["_flags"] = pd.Series(flags, index=frame.index, dtype="str")
    return hits


def _refund_lines(frame: pd.DataFrame, at: np.ndarray) -> pd.DataFrame:
    """The rejects lines (kept) of the refunds flagged at positions ``at`` of ``frame``,
    as the pandas engine writes them (no column, no value)."""
    from custtool.schemas import reasons, rejects_frame

    n = len(at)
    if not n:
        return pd.DataFrame(columns=REJECT_COLUMNS)
    codes = np.full(n, REFUND_CODE, dtype=object)
    zh, en = reasons(codes)
    blank = np.full(n, "", dtype=object)
    out = rejects_frame(
        {
            # the few flagged rows taken first (a whole column as objects: tens of ms a batch)
            "file": frame["_source_file"].take(at).to_numpy(dtype=object),
            "sheet": frame["_sheet"].take(at).to_numpy(dtype=object),
            "row": frame["_row"].to_numpy()[at],
            "column": blank,
            "value": blank.copy(),
            "code": codes,
            "reason_zh": zh,
            "reason_en": en,
            "action": np.full(n, "kept", dtype=object),
        }
    )
    return out[REJECT_COLUMNS]


#: columns the batch query or the import make: a header of that name goes to pandas whole
_MADE_COLUMNS = frozenset({"phones", "phone_ext", "_pos", "_plain", "_flags", "_source_file"})
_MADE_COLUMNS |= {"_sheet", "_row", "_channel"}


def _plain_frame(out: Any, rows: np.ndarray, file: str, channel: str) -> pd.DataFrame:
    """The rows DuckDB normalised, with the provenance columns and the types the pandas
    engine gives (text ``str``, times ``datetime64[ns]``, numbers ``float64``)."""
    import pyarrow as pa

    from custtool.ingest import _repeat_text

    index = pd.RangeIndex(len(rows))
    cols: dict[str, Any] = {
        "_source_file": _repeat_text(file, index),
        "_sheet": _repeat_text("", index),
        "_row": pd.Series(rows + 2, index=index, dtype="int64"),
        "_channel": _repeat_text(channel, index),
    }
    for name in out.column_names:
        col = out.column(name)
        if pa.types.is_timestamp(col.type):
            values = col.to_numpy().astype("datetime64[ns]")
            cols[name] = pd.Series(values, index=index)
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            cols[name] = pd.Series(col, index=index, dtype="str")
        elif pa.types.is_boolean(col.type):
            cols[name] = pd.Series(col.to_numpy(zero_copy_only=False), index=index, dtype=bool)
        else:
            values = col.to_numpy(zero_copy_only=False)
            cols[name] = pd.Series(values, index=index, dtype="float64")
    if "_flags" not in cols:
        cols["_flags"] = _repeat_text("", index)
    cols["_flags"] = cols.pop("_flags")  # the last column, as the pandas engine has it
    return pd.DataFrame(cols, index=index, copy=False)


# --------------------------------------------------------------------------- staging
class _Staged:
    """The accepted rows of one input appended to a Parquet file; its rejects and reports."""

    def __init__(self, path: Path, position: int) -> None:
        self.path = path
        self.position = position
        self.writer: Any = None
        # batch k is encoded and written on this thread while batch k+1 is normalised (the
        # writer holds no GIL); one write at a time, so one batch more is held at most
        self.pool: Any = None
        self.pending: Any = None
        self.schema: Any = None
        self.empty_schema: Any = None
        self.batches: list[int] = []  # rows of each staged batch
        # the rejects lines, spilled too, with what orders them as one import would: sheet;
        # group (0 validation rejects, 1 lines of kept rows, 2 damaged stretches); for group
        # 0 the schema's column, the check (first seen) and the row; then the order written
        self.rejects_path = path.with_name(path.stem + "-rejects.parquet")
        self.rejects_writer: Any = None
        self.rejects_rows = 0
        # whether the lines were spilled in that order already (a file whose lines are
        # all of one check: its rows in order): then they are read back without a sort
        self.rejects_in_order = True
        self.last_order_key: np.ndarray | None = None
        self.checks: dict[tuple[int, str], int] = {}
        self.withdrawn: list[Any] = []  # rows whose refund line was withdrawn (one sheet)
        self.kind = ""
        self.reports: list[SheetReport] = []
        self.refund_flags = 0
        self.batched = False  # a sheet came in more than one batch
        # order ids sold on rows that are not in the output (rejected, skipped): the
        # refund rule of one import counts them as sales too; spilled as well (a file of
        # rejected sales holds one per line: ~20 bytes a line held to the end otherwise)
        self.sold_path = path.with_name(path.stem + "-sold.parquet")
        self.sold_writer: Any = None
        self.sold_rows = 0

    def add(self, frame: pd.DataFrame, rej: pd.DataFrame, report: SheetReport, b: _Batch) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if b.offset:
            self.batched = True
            frame["_row"] = frame["_row"] + b.offset
            rej = rej.assign(row=rej["row"].astype("int64") + b.offset)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if not len(frame):  # nothing accepted: its columns only matter if no batch has rows
            self.empty_schema = self.empty_schema or table.schema
        elif self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        elif not table.schema.equals(self.schema, check_metadata=False):
            table = table.cast(self.schema)
        if len(frame):
            self._write(table)
        self.batches.append(len(frame))
        if "_flags" in frame and len(frame):
            self.refund_flags += int(frame["_flags"].str.contains(REFUND_CODE, regex=False).sum())
        report.encoding = b.raw.encoding
        if b.offset and self.reports and self.reports[-1].sheet == report.sheet:
            self.reports[-1] = _merged(self.reports[-1], report)
        else:  # a new sheet
            self.reports.append(report)
        self.kind = report.kind
        sheet_no = len(self.reports) - 1
        if len(rej):
            group = np.where((rej["action"] == "kept").to_numpy(), 1, 0)
            self._spill_rejects(rej, group, sheet_no)
        if b.notes_raw is not None and b.notes_raw.notes:
            notes = _with_file_notes(pd.DataFrame(columns=REJECT_COLUMNS), b.notes_raw)
            self._spill_rejects(notes, np.full(len(notes), 2), sheet_no)

    def _write(self, table: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._wait()
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="custtool-stage")
        self.pending = self.pool.submit(self.writer.write_table, table)

    def _wait(self) -> None:
        """Wait for the batch being written (its error raised here)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def stop(self) -> None:
        """Wait for the writer thread and end it, whatever it raised (on failure)."""
        try:
            self._wait()
        except Exception:  # noqa: BLE001 - the failure being handled is the one to report
            pass
        finally:
            if self.pool is not None:
                self.pool.shutdown()
                self.pool = None

    def _spill_rejects(self, rej: pd.DataFrame, group: np.ndarray, sheet_no: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from custtool.schemas import schema_for

        rank = {str(c): i for i, c in enumerate(schema_for(self.kind).columns)}
        shown = rej["column"].astype(str)
        key = shown.where(~shown.str.contains("/", regex=False), "_key_present")
        codes = rej["code"].astype(str)
        for code in pd.unique(codes[group == 0]):  # distinct checks, in order of first line
            self.checks.setdefault((sheet_no, str(code)), len(self.checks))
        known = {c: i for (n, c), i in self.checks.items() if n == sheet_no}
        cols = {c: _reject_text(rej[c]) for c in REJECT_COLUMNS}
        cols["row"] = pa.array(rej["row"].astype("int64").to_numpy())
        cols["_sheet_no"] = pa.array(np.full(len(rej), sheet_no, dtype=np.int32))
        cols["_group"] = pa.array(group.astype(np.int8))
        cols["_rank"] = pa.array(_looked_up(key, rank, len(rank)))
        cols["_check"] = pa.array(_looked_up(codes, known, 0))
        cols["_seq"] = pa.array(np.arange(self.rejects_rows, self.rejects_rows + len(rej)))
        self._note_order(cols, group)
        table = pa.table(cols)
        if self.rejects_writer is None:
            self.rejects_writer = pq.ParquetWriter(self.rejects_path, table.schema)
        self.rejects_writer.write_table(table)
        self.rejects_rows += len(rej)

    def _note_order(self, cols: dict[str, Any], group: np.ndarray) -> None:
        """Whether the lines spilled so far (these included) are in :func:`rejects_query`'s
        order: its sort keys never decrease from one line to the next (ties stay in the
        order spilled, as its last key ``_seq`` has them)."""
        if not self.rejects_in_order or not len(group):
            return
        first = group == 0  # rank, check and row order the validation rejects only
        keys = np.stack(
            [
                cols["_sheet_no"].to_numpy().astype(np.int64),
                group.astype(np.int64),
                np.where(first, cols["_rank"].to_numpy(), 0).astype(np.int64),
                np.where(first, cols["_check"].to_numpy(), 0).astype(np.int64),
                np.where(first, cols["row"].to_numpy(), 0).astype(np.int64),
            ]
        )
        if self.last_order_key is not None:
            keys = np.concatenate([self.last_order_key[:, None], keys], axis=1)
        step = np.diff(keys, axis=1)
        deciding = step[(step != 0).argmax(axis=0), np.arange(step.shape[1])]  # first change
        self.rejects_in_order = bool((deciding >= 0).all())
        self.last_order_key = keys[:, -1]

    def note_dropped_sales(self, b: _Batch, frame: pd.DataFrame, spec: Any, tz: str) -> None:
        """The order ids sold on rows of batch ``b`` that are not in ``frame`` (rejected
        or skipped), read by the pandas rules (only those rows; orders only)."""
        from custtool.fields import map_headers
        from custtool.ingest import _normalize_column

        if spec.kind != "orders":
            return
        if b.table is not None:
            header, n = b.header.iloc[0].tolist(), b.table.num_rows
            numbers = np.arange(2, n + 2)
        else:
            header = b.raw.grid.iloc[b.header_at].tolist()
            n = len(b.raw.grid) - b.header_at - 1
            numbers = (
                np.asarray(b.raw.row_numbers[b.header_at + 1 :])
                if b.raw.sheet
                else np.arange(2, n + 2)
            )
        names, _ = map_headers(header, spec)
        if "order_id" not in names or "amount" not in names or len(frame) == n:
            return
        dropped = np.flatnonzero(~np.isin(numbers, frame["_row"].to_numpy()))
        if not len(dropped):
            return
        cells: dict[str, pd.Series] = {}
        for c in ("order_id", "amount", "refund"):
            if c in names:
                j = names.index(c)
                if b.table is not None:
                    col = b.table.column(j).take(dropped)
                    cells[c] = pd.Series(col, dtype="str")
                else:
                    col = b.raw.grid.iloc[b.header_at + 1 + dropped, j]
                    cells[c] = col.astype("str").reset_index(drop=True)
        done = {c: _normalize_column(c, s, "orders", tz, False).values[c] for c, s in cells.items()}
        amount = done["amount"]
        if "refund" in done:
            amount = amount.where(~done["refund"], -amount.abs())
        sold = (amount > 0).to_numpy()
        if sold.any():
            self._spill_sold(nz_arrow(done["order_id"][sold]))

    def _spill_sold(self, ids: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"order_id": ids.cast(pa.large_string())})
        if self.sold_writer is None:
            self.sold_writer = pq.ParquetWriter(self.sold_path, table.schema)
        self.sold_writer.write_table(table)
        self.sold_rows += len(table)

    def discard(self) -> None:
        """Forget what was staged (the file is read again another way)."""
        self.close()
        self.path.unlink(missing_ok=True)
        self.rejects_path.unlink(missing_ok=True)
        self.sold_path.unlink(missing_ok=True)

    def close(self) -> None:
        self._wait()  # its error raised here
        self.stop()
        if self.rejects_writer is not None:
            self.rejects_writer.close()
            self.rejects_writer = None
        if self.sold_writer is not None:
            self.sold_writer.close()
            self.sold_writer = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        elif self.schema is None and self.empty_schema is not None:
            import pyarrow.parquet as pq

            self.schema = self.empty_schema  # no row accepted: an empty table of its columns
            pq.write_table(self.schema.empty_table(), self.path)


def _reject_text(s: pd.Series) -> Any:
    """A rejects column as Arrow text, a missing value "" (text columns taken as they are,
    without a Python string per cell; other cells as ``str``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from custtool.arrow_text import arrow_text

    if isinstance(s.dtype, pd.StringDtype) or (
        s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")
    ):
        return pc.fill_null(arrow_text(s).cast(pa.string()), "")
    return pa.array(s.fillna("").astype(str).to_numpy(dtype=object), pa.string())


def _looked_up(values: pd.Series, table: dict[str, int], missing: int) -> np.ndarray:
    """``table``'s number of each value (``missing`` for a value not in it, or missing),
    looked up once per distinct value, as int32."""
    at, distinct = pd.factorize(values)
    numbers = [table.get(v, missing) for v in distinct] + [missing]  # at -1: missing
    return np.asarray(numbers, dtype=np.int32)[at]


def nz_arrow(s: pd.Series) -> Any:
    from custtool.normalize import _arrow

    return _arrow(s.reset_index(drop=True))


def _merged(a: SheetReport, b: SheetReport) -> SheetReport:
    out = SheetReport(**a.as_dict())
    for k in ROW_COUNTS:
        setattr(out, k, getattr(a, k) + getattr(b, k))
    return out


# --------------------------------------------------------------------------- across batches
def _withdraw_cross_batch_refunds(con: Any, stages: list[_Staged]) -> dict[int, Any]:
    """Per input: the order ids whose refund was flagged in one batch while the file sells
    them in another (DuckDB over the spilled Parquet); the flags of those refunds go."""
    import pyarrow as pa

    for s in stages:
        s.close()
    out: dict[int, Any] = {}
    for s in stages:
        if s.refund_flags == 0 or not s.batched:
            continue
        part = quote(str(s.path))
        if s.sold_rows:
            con.execute(
                "CREATE OR REPLACE TEMP VIEW sold_elsewhere AS "
                f"SELECT order_id FROM read_parquet({quote(str(s.sold_path))})"
            )
        else:
            con.execute(
                "CREATE OR REPLACE TEMP VIEW sold_elsewhere AS "
                "SELECT ''::VARCHAR AS order_id WHERE false"
            )
        ids = con.execute(
            f"""
            WITH staged AS (SELECT order_id, amount, _flags FROM read_parquet({part})),
            flagged AS (
                SELECT DISTINCT order_id FROM staged
                WHERE amount < 0 AND order_id <> '' AND contains(_flags, '{REFUND_CODE}')
            ),
            sold AS (
                SELECT order_id FROM staged WHERE amount > 0
                UNION ALL SELECT order_id FROM sold_elsewhere
            )
            -- the few flagged ids are the join's table, not the sold ones (every order)
            SELECT DISTINCT s.order_id FROM sold s SEMI JOIN flagged USING (order_id)
            """
        ).fetchall()
        con.execute("DROP VIEW sold_elsewhere")
        if ids:
            out[s.position] = pa.array([i for (i,) in ids], pa.large_string())
    return out


def _write_output(stages: list[_Staged], out: Path, withdrawn: dict[int, Any]) -> list[str]:
    """The staged rows of every input into ``out`` (atomically), the withdrawn refund flags
    taken off on the way; returns the output's columns."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from custtool.atomic import atomic_path

    schema = _output_schema(stages)
    if schema is None:
        schema = pa.schema([])
    staged = [s for s in stages if s.schema is not None]
    if len(staged) == 1 and not withdrawn and staged[0].schema.equals(schema):
        # one input, nothing to change: the staged file is the output (renamed into place)
        with atomic_path(out) as tmp:
            try:
                os.replace(staged[0].path, tmp)
            except OSError:  # the spill folder is on another file system
                shutil.copyfile(staged[0].path, tmp)
        return list(schema.names)

    def tables() -> Iterator[tuple[_Staged, Any]]:
        for s in stages:
            if s.schema is None:
                continue
            pf = pq.ParquetFile(s.path)
            for i in range(pf.num_row_groups):
                yield s, pf.read_row_group(i)

    writer = None
    with atomic_path(out) as tmp:
        for s, table in tables():
            ids = withdrawn.get(s.position)
            if ids is not None and table.num_rows:
                flags = table.column("_flags")
                hit = pc.and_(
                    pc.match_substring(flags, REFUND_CODE),
                    pc.is_in(
                        table.column("order_id"), value_set=ids.cast(table.column("order_id").type)
                    ),
                )
                hit = pc.and_(hit, pc.less(table.column("amount"), 0))
                if pc.any(hit).as_py():
                    fixed = pc.replace_substring_regex(flags, f";?{REFUND_CODE}$", "")
                    table = table.set_column(
                        table.schema.get_field_index("_flags"),
                        "_flags",
                        pc.if_else(hit, fixed, flags),
                    )
                    _withdraw_lines(s, table, hit, fixed)
            table = _conform(table, schema)
            if writer is None:
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(table)
        if writer is None:
            writer = pq.ParquetWriter(tmp, schema)
        writer.close()
    return list(schema.names)


def _withdraw_lines(s: _Staged, table: Any, hit: Any, fixed: Any) -> None:
    """The rejects lines and the flagged count of refunds whose flag was withdrawn."""
    import pyarrow.compute as pc

    s.withdrawn.append(table.column("_row").filter(hit).combine_chunks())
    file = table.column("_source_file").filter(hit).to_pylist()[0]
    now_clean = int(pc.sum(pc.equal(fixed.filter(hit), "")).as_py() or 0)
    for r in s.reports:  # a CSV has one report
        if r.file == file:
            r.flagged -= now_clean
            break


def _output_schema(stages: list[_Staged]) -> Any:
    """The output's schema: one input's, or (inputs with different columns) the columns in
    order of first appearance, as pandas' concat gives them."""
    import pyarrow as pa

    schemas = [s.schema for s in stages if s.schema is not None]
    if not schemas:
        return None
    if all(sc.equals(schemas[0], check_metadata=False) for sc in schemas):
        return schemas[0]
    empty = [sc.empty_table().to_pandas() for sc in schemas]
    joined = pd.concat(empty, ignore_index=True, sort=False)
    for col in joined.columns:  # text gaps are "" (ingest._fill_missing_text)
        if joined[col].dtype == object and all(
            col not in e or pd.api.types.is_string_dtype(e[col]) for e in empty
        ):
            joined[col] = joined[col].astype("str")
    return pa.Schema.from_pandas(joined, preserve_index=False)


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with the columns of ``schema`` (a missing text column is "", others null)."""
    import pyarrow as pa

    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            cols.append(pa.repeat(pa.scalar("", f.type), table.num_rows))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _problem_counts(con: Any, out: Path, stages: list[_Staged]) -> dict[str, int]:
    """How many kept values were cleared or flagged, per problem code (``_flags``), counted
    by DuckDB over the written output."""
    if not any(s.schema is not None for s in stages):
        return {}
    path = quote(str(out))
    rows = con.execute(
        f"""
        SELECT split_part(code, ':', 1) AS code, count(*) AS n
        FROM (SELECT unnest(string_split(_flags, ';')) AS code
              FROM read_parquet({path}) WHERE _flags <> '')
        WHERE code <> ''
        GROUP BY 1 ORDER BY n DESC, code
        """
    ).fetchall()
    return {str(code): int(n) for code, n in rows}


def rejects_query(con: Any, stages: list[_Staged]) -> Any | None:
    """The rejects lines of every input in the pandas engine's order (per input and sheet:
    the rejected rows as one validation lists them — by the schema's column, check and row —
    then the lines of kept rows, then the damaged stretches), withdrawn refund lines left
    out: a DuckDB relation over the spilled lines (None: no line)."""
    import pyarrow as pa

    parts, withdrawn = [], []
    for s in stages:
        if s.rejects_rows:
            path = quote(str(s.rejects_path))
            parts.append(f"SELECT *, {s.position} AS _stage FROM read_parquet({path})")
        for rows in s.withdrawn:
            withdrawn.append(pa.table({"_stage": pa.repeat(s.position, len(rows)), "row": rows}))
    if not parts:
        return None
    gone = (
        pa.concat_tables(withdrawn)
        if withdrawn
        else pa.table({"_stage": pa.array([], pa.int64()), "row": pa.array([], pa.int64())})
    )
    con.register("withdrawn_refunds", gone)
    cols = ", ".join(f'"{c}"' for c in REJECT_COLUMNS)
    return con.sql(
        f"""
        SELECT {cols} FROM ({" UNION ALL ".join(parts)}) l
        WHERE NOT (l._group = 1 AND l.code = '{REFUND_CODE}' AND EXISTS (
            SELECT 1 FROM withdrawn_refunds w WHERE w._stage = l._stage AND w.row = l.row))
        ORDER BY l._stage, l._sheet_no, l._group,
            CASE WHEN l._group = 0 THEN l._rank ELSE 0 END,
            CASE WHEN l._group = 0 THEN l._check ELSE 0 END,
            CASE WHEN l._group = 0 THEN l.row ELSE 0 END,
            l._seq
        """
    )


def rejects_chunks(con: Any, stages: list[_Staged], rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """The rejects lines of :func:`rejects_query`, as frames of about ``rows`` lines (the
    types the pandas engine gives). Lines spilled in that order already (every input's:
    ``rejects_in_order``) are read back as they are, without DuckDB's sort (a file whose
    every line fails one check: 10M lines sorted in ~20 s beside the chunks written)."""
    if all(s.rejects_in_order for s in stages):
        batches: Iterator[Any] = _rejects_in_order(stages, rows)
    else:
        query = rejects_query(con, stages)
        batches = iter(query.to_arrow_reader(rows)) if query is not None else iter(())
    for rb in batches:
        frame = rb.to_pandas()
        frame["row"] = frame["row"].astype("int64")
        yield frame


def _rejects_in_order(stages: list[_Staged], rows: int) -> Iterator[Any]:
    """The spilled lines of every input in file order, the withdrawn refund lines left
    out, as Arrow record batches of :data:`custtool.ingest.REJECT_COLUMNS`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for s in stages:
        if not s.rejects_rows:
            continue
        gone = pa.concat_arrays(s.withdrawn).cast(pa.int64()) if s.withdrawn else None
        reader = pq.ParquetFile(s.rejects_path)
        columns = [*REJECT_COLUMNS, "_group"]
        for rb in reader.iter_batches(batch_size=rows, columns=columns):
            if gone is not None:
                withdrawn = pc.and_(
                    pc.and_(
                        pc.equal(rb.column("_group"), 1), pc.equal(rb.column("code"), REFUND_CODE)
                    ),
                    pc.is_in(rb.column("row"), value_set=gone),
                )
                rb = rb.filter(pc.invert(withdrawn))
            if rb.num_rows:
                yield rb.select(REJECT_COLUMNS)


def write_rejects(chunks: Iterator[pd.DataFrame], path: Path, *, mask: bool) -> None:
    """The rejects file as :func:`custtool.io.write_table` writes it, chunk by chunk for a
    CSV (:func:`custtool.io.write_csv_chunks`: masked by the one policy, formulas
    neutralised, UTF-8 with BOM, the next chunk masked while this one is written),
    atomically."""
    from custtool.io import write_csv_chunks, write_table
    from custtool.report.masking import mask_frame

    if path.suffix.lower() not in {".csv", ".tsv"}:  # a workbook holds 1,048,576 rows anyway
        parts = list(chunks)
        frame = (
            pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REJECT_COLUMNS)
        )
        write_table(mask_frame(frame, mask=mask), path)
        return
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    write_csv_chunks(_or_no_line(chunks), path, lambda c: mask_frame(c, mask=mask), sep=sep)


def _or_no_line(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``chunks``, or one empty rejects frame when there is none (the header is written)."""
    empty = True
    for chunk in chunks:
        empty = False
        yield chunk
    if empty:
        yield pd.DataFrame(columns=REJECT_COLUMNS)
