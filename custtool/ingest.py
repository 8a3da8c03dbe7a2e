"""`custtool import`: read exports, find headers, map fields, normalise, validate, account.

Every row below a sheet's header is accounted for: accepted, rejected (with file,
sheet, row, column, value and a reason) or skipped (blank or a totals row), and
``rows_read = accepted + rejected + skipped`` holds per file and sheet.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from custtool import normalize as nz
from custtool.errors import InputError
from custtool.fields import (
    KIND_LABELS,
    KINDS,
    KindSpec,
    aliases_text,
    detect_kind,
    header_score,
    load_fields,
    map_headers,
    missing_required,
)
from custtool.io import RawSheet, read_raw
from custtool.schemas import (
    REJECT_COLUMNS,
    check_keys,
    key_columns,
    reasons,
    rejects_frame,
    validate,
)
from custtool.template import template_example_rows

HEADER_SEARCH_ROWS = 30
TOTAL_WORDS = r"^[ \t]*(合计|总计|小计|共计|总合计|[Tt]otal|TOTAL|[Gg]rand [Tt]otal|[Ss]ubtotal)[ \t]*[:：]?[ \t]*$"
PROVENANCE = ["_source_file", "_sheet", "_row", "_channel", "_flags"]


#: the row counts of a SheetReport that add up across sheets, files and batches
ROW_COUNTS = (
    "rows_read",
    "accepted",
    "rejected",
    "skipped",
    "skipped_blank",
    "skipped_total",
    "flagged",
)


@dataclass
class SheetReport:
    """Row accounting of one file/sheet."""

    file: str
    sheet: str
    kind: str
    encoding: str | None
    header_row: int
    rows_read: int
    accepted: int
    rejected: int
    skipped: int
    skipped_blank: int
    skipped_total: int
    flagged: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImportResult:
    """The imported table of one kind, its rejects and the accounting per file/sheet."""

    kind: str
    data: pd.DataFrame
    rejects: pd.DataFrame
    files: list[SheetReport]
    warnings: list[str] = field(default_factory=list)
    sensitive: tuple[str, ...] = ()  # fields of this kind stored encrypted (custtool.crypto)

    @property
    def totals(self) -> dict[str, int]:
        return {k: int(sum(getattr(f, k) for f in self.files)) for k in ROW_COUNTS}

    def problem_counts(self) -> dict[str, int]:
        """How many kept values were cleared or flagged, per problem code."""
        if "_flags" not in self.data or self.data.empty:
            return {}
        codes = self.data["_flags"].str.split(";").explode()
        codes = codes[codes.astype(bool)].str.split(":").str[0]
        return {str(k): int(v) for k, v in codes.value_counts().items()}


#: what import_files takes: paths of exports, or DataFrames of their cells (one "file" each)
Source = str | os.PathLike[str] | pd.DataFrame


def import_files(
    paths: Sequence[Source] | Source,
    *,
    kind: str | None = None,
    channel: str | Sequence[str] | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
    fields: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
    tz: str = "Asia/Shanghai",
    max_field_bytes: int | None = None,
) -> ImportResult:
    """Import one or many exports (CSV/TSV/xlsx, all sheets or ``sheet``) into one table.

    An input may also be a DataFrame (its columns the header, its cells the values): it is
    one "file" named ``<DataFrame 0>`` (its position among the inputs), row numbers counted
    as in a CSV (the header is row 1), with the same normalisation, validation and row
    accounting as the file written from it.
    ``kind`` is detected from the headers when not given; all inputs must be of one kind.
    ``channel`` labels every row (default: the file name without extension); a list gives
    one channel per file, in the order of ``paths``.
    ``max_field_bytes``: the longest field a CSV may hold (default 1 MB, or
    ``$CUSTTOOL_MAX_FIELD_BYTES``); past it, or past 16,384 fields in a row, the file is
    refused with the line before it is parsed.
    """
    if isinstance(paths, (str, os.PathLike, pd.DataFrame)):
        paths = [paths]
    if not paths:
        raise InputError("no input files given", "name at least one CSV or Excel file")
    if channel is not None and not isinstance(channel, str):
        channel = list(channel)
        if len(channel) == 1:
            channel = channel[0]
        elif len(channel) != len(paths):
            raise InputError(
                f"{len(channel)} channels for {len(paths)} files",
                "give one channel for all files, or one per file in order",
            )
    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    specs = load_fields(fields)
    with _arrow_memory_pool():
        return _import_files(
            paths,
            kind=kind,
            channel=channel,
            sheet=sheet,
            encoding=encoding,
            specs=specs,
            tz=tz,
            max_field_bytes=max_field_bytes,
        )


@contextlib.contextmanager
def _arrow_memory_pool() -> Iterator[None]:
    """jemalloc as pyarrow's memory pool while importing, then the pool as it was.

    An import allocates and frees many column-sized buffers; with pyarrow's default
    mimalloc pool that cost 1-2 s of system time (page faults) on 1,000,000 rows here
    against 0.6 s with jemalloc. An explicit ARROW_DEFAULT_MEMORY_POOL is respected, and
    builds without jemalloc keep their pool.
    """
    import pyarrow as pa

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        yield
        return
    before = pa.default_memory_pool()
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except (NotImplementedError, pa.ArrowNotImplementedError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def _import_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    kind: str | None,
    channel: str | list[str] | None,
    sheet: str | None,
    encoding: str | None,
    specs: dict[str, KindSpec],
    tz: str,
    max_field_bytes: int | None = None,
) -> ImportResult:
    frames: list[pd.DataFrame] = []
    rejects: list[pd.DataFrame] = []
    reports: list[SheetReport] = []
    warnings: list[str] = []
    kinds_seen: dict[str, list[str]] = {}
    seen_paths: set[Path] = set()
    for position, source in enumerate(paths):
        file_channel = channel[position] if isinstance(channel, list) else channel
        if isinstance(source, pd.DataFrame):
            path: str | os.PathLike[str] = f"<DataFrame {position}>"
            sheets = [frame_sheet(source, str(path))]
        else:
            path = source
            resolved = Path(path).resolve()
            if resolved in seen_paths:
                warnings.append(
                    f"{Path(path).name} is named twice; its rows are imported twice (clean collapses exact duplicates)"
                )
            seen_paths.add(resolved)
            sheets = read_raw(path, sheet=sheet, encoding=encoding, max_field_bytes=max_field_bytes)
        usable = 0
        for raw in sheets:
            header_at = find_header_row(raw.grid, specs, allow_single=len(sheets) == 1)
            where = f"{raw.file}" + (f", sheet {raw.sheet!r}" if raw.sheet else "")
            if header_at is None:
                if raw.grid.replace("", np.nan).notna().any().any():
                    warnings.append(f"{where}: no recognisable header row; sheet skipped")
                continue
            usable += 1
            headers = raw.grid.iloc[header_at].tolist()
            sheet_kind = kind or detect_kind(headers, specs)
            kinds_seen.setdefault(sheet_kind, []).append(where)
            frame, rej, report = _import_sheet(
                raw, header_at, specs[sheet_kind], file_channel or Path(path).stem, tz
            )
            report.encoding = raw.encoding
            example = template_example_rows(frame, sheet_kind)
            if example:
                warnings.append(
                    f"{where}: row {', '.join(map(str, example[:5]))} is the import template's "
                    f"example row (custtool template), imported as {KIND_LABELS[sheet_kind]}; "
                    "delete it from the file if it is not a real record"
                )
            frames.append(frame)
            rejects.append(_with_file_notes(rej, raw))
            reports.append(report)
            warnings.extend(raw.warnings)
        if usable == 0:
            known = ", ".join(list(specs["customers"].aliases.get("phone", []))[:3])
            raise InputError(
                f"{Path(path).name}: no header row found (looked at the first {HEADER_SEARCH_ROWS} rows"
                + (" of every sheet)" if len(sheets) > 1 else ")"),
                f"the header row must name at least two known columns, e.g. 姓名, {known}; "
                "add your own header names with --fields my_fields.yaml",
            )
    if len(kinds_seen) > 1:
        listing = "; ".join(
            f"{KIND_LABELS[k]} ({k}): {', '.join(v)}" for k, v in kinds_seen.items()
        )
        raise InputError(
            f"the inputs hold different kinds of data — {listing}",
            "import each kind in its own call, or pass --kind (and --sheet) to choose",
        )
    final_kind = next(iter(kinds_seen)) if kinds_seen else (kind or "customers")
    data = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    data = _fill_missing_text(data) if len(frames) > 1 else data
    rej = (
        pd.concat([r for r in rejects if len(r)], ignore_index=True)
        if any(len(r) for r in rejects)
        else pd.DataFrame(columns=REJECT_COLUMNS)
    )
    from custtool.fields import sensitive_fields

    return ImportResult(
        final_kind, data, rej, reports, warnings, sensitive_fields(specs, final_kind)
    )


def _with_file_notes(rej: pd.DataFrame, raw: RawSheet) -> pd.DataFrame:
    """The rejects lines of a sheet plus one line per damaged stretch of its file (broken
    quotes, undecodable lines): ``row`` its first row, ``value`` the rows it spans; the rows
    themselves were read (``action`` kept)."""
    if not raw.notes:
        return rej
    first, last, codes, messages = zip(*raw.notes, strict=True)
    spans = [f"rows {a}–{b}" if b > a else f"row {a}" for a, b in zip(first, last, strict=True)]
    zh = {
        "quote_unbalanced": "引号未闭合：这些行已逐行读取，请核对",
        "encoding_line": "该行编码不是 UTF-8，已按 GB18030 或替换字符读取，请核对",
    }
    notes = pd.DataFrame(
        {
            "file": raw.file,
            "sheet": raw.sheet,
            "row": list(first),
            "column": "",
            "value": spans,
            "code": list(codes),
            "reason_zh": [zh[c] for c in codes],
            "reason_en": list(messages),
            "action": "kept",
        }
    )[list(rej.columns)]
    return pd.concat([rej, notes], ignore_index=True) if len(rej) else notes


def frame_sheet(df: pd.DataFrame, name: str) -> RawSheet:
    """A DataFrame as the text grid a CSV of it would give: the column names as the header
    row, every cell as text ("" for a missing one, whole numbers without ``.0``, dates as
    ``YYYY-MM-DD HH:MM:SS``)."""
    if df.columns.nlevels > 1:
        raise InputError(
            f"{name}: the DataFrame has a multi-level header",
            "flatten its columns to one row of names first",
        )
    cells = {j: _cell_text(df.iloc[:, j]) for j in range(df.shape[1])}
    body = pd.DataFrame(cells, index=pd.RangeIndex(len(df)), dtype="str")
    header = pd.DataFrame([[str(c) for c in df.columns]], columns=body.columns, dtype="str")
    grid = pd.concat([header, body], ignore_index=True) if len(body.columns) else header
    return RawSheet(
        file=name, sheet="", grid=grid, row_numbers=np.arange(1, len(grid) + 1, dtype="int64")
    )


def _cell_text(s: pd.Series) -> pd.Series:
    """A column's cells as text, as a CSV writer would put them."""
    s = s.reset_index(drop=True)
    if pd.api.types.is_bool_dtype(s):
        return s.astype(object).where(s.notna(), "").astype(str)
    if pd.api.types.is_datetime64_any_dtype(s):
        return (
            s.dt.strftime("%Y-%m-%d %H:%M:%S").str.replace(" 00:00:00", "", regex=False).fillna("")
        )
    if pd.api.types.is_numeric_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        whole = num.dropna()
        if len(whole) and (whole == whole.round()).all() and whole.abs().max() < 2**63:
            return num.astype("Int64").astype(str).where(num.notna(), "")
        return num.astype(str).where(num.notna(), "")
    return s.astype(object).where(s.notna(), "").astype(str)


def find_header_row(
    grid: pd.DataFrame, specs: dict[str, KindSpec], allow_single: bool = True
) -> int | None:
    """The grid row (0-based) that is the header: the first row with the most known
    header names among the first rows (at least two; one only when no row has two and
    ``allow_single``, i.e. the file has no other sheet that could be the data)."""
    best, best_score, first_single = None, 1, None
    for i in range(min(HEADER_SEARCH_ROWS, len(grid))):
        score = header_score(grid.iloc[i].tolist(), specs)
        if score > best_score:
            best, best_score = i, score
        elif score == 1 and first_single is None:
            first_single = i
    # a narrow file may name only one known column (顾客大名, 手机号): its first such row
    return best if best is not None else (first_single if allow_single else None)


def _import_sheet(
    raw: RawSheet, header_at: int, spec: KindSpec, channel: str, tz: str
) -> tuple[pd.DataFrame, pd.DataFrame, SheetReport]:
    headers = raw.grid.iloc[header_at].tolist()
    names, used = map_headers(headers, spec)
    where = raw.file + (f", sheet {raw.sheet!r}" if raw.sheet else "")
    missing = missing_required(used, spec)
    if missing:
        need = "; ".join(" or ".join(aliases_text(spec, f) for f in group) for group in missing)
        raise InputError(
            f"{where}: required column missing for {spec.kind}: {need}",
            "rename the column in the file, or add your header to a --fields file",
        )
    body = raw.grid.iloc[header_at + 1 :]
    if raw.sheet:  # Excel: the row a person sees
        row_numbers = raw.row_numbers[header_at + 1 :]
    else:  # CSV: record number, the header being record 1
        row_numbers = np.arange(2, len(body) + 2, dtype="int64")
    body = body.copy()
    body.columns = names
    body.index = pd.RangeIndex(len(body))
    body = _fill_merged_down(body, raw, header_at)
    text = body.astype(str)
    # every row is normalised (each row's result depends on that row only) and the
    # skipped rows are left out of validation, so the table is filtered once, at the end
    with _thread_pool(len(text)) as pool:
        skips = _start_skips(text, pool) if pool else None
        normalized = _normalize(text, spec.kind, tz, pool)
        blank, total = _finish_skips(skips) if skips else _blank_and_total_rows(text)
        norm, originals = normalized.data, normalized.originals
        keep = ~(blank | total).to_numpy()
        norm.insert(0, "_source_file", _repeat_text(raw.file, norm.index))
        norm.insert(1, "_sheet", _repeat_text(raw.sheet, norm.index))
        norm.insert(2, "_row", np.asarray(row_numbers, dtype="int64"))
        norm.insert(3, "_channel", _repeat_text(channel, norm.index))
        # the rejects lines of kept values, for every row not skipped, while validating;
        # those of rows validation rejects are dropped after
        args = (norm, keep, normalized.problems, originals)
        noted = pool.submit(_kept_problem_rows, *args) if pool else None
        # the rows the checks already done reject are known: filtering starts on the pool
        # while validation writes its rejects lines (and is redone in the rare case that
        # validation rejects more)
        early = keep & ~_failing_rows(normalized.checked, norm.index)
        taking = _start_take(norm, early, pool) if pool and not early.all() else None
        rejected, rejects = validate(
            norm, spec.kind, originals, skip=~keep, checked=normalized.checked
        )
        is_rejected = rejected.to_numpy()
        wanted = keep & ~is_rejected
        if wanted.all():
            kept = norm
        elif taking is not None and np.array_equal(wanted, early):
            kept = _finish_take(taking)
        else:
            kept = _take_rows(norm, wanted, pool)
        kept_problems, at = noted.result() if noted else _kept_problem_rows(*args)
    if len(kept_problems) and is_rejected[at].any():
        kept_problems = kept_problems[~is_rejected[at]].reset_index(drop=True)
    flagged_rows = (norm["_flags"] != "").to_numpy() & keep
    rejects = (
        pd.concat([rejects, kept_problems], ignore_index=True) if len(kept_problems) else rejects
    )
    accepted = kept.reset_index(drop=True)
    report = SheetReport(
        file=raw.file,
        sheet=raw.sheet,
        kind=spec.kind,
        encoding=raw.encoding,
        header_row=int(raw.row_numbers[header_at]) if raw.sheet else 1,
        rows_read=len(body),
        accepted=len(accepted),
        rejected=int(rejected.sum()),
        skipped=int(blank.sum() + total.sum()),
        skipped_blank=int(blank.sum()),
        skipped_total=int(total.sum()),
        flagged=int((flagged_rows & ~is_rejected).sum()),
    )
    return accepted, rejects, report


#: below this many rows a sheet is normalised on one thread (a pool costs more than it gives)
THREADED_ROWS = 50_000


@contextlib.contextmanager
def _thread_pool(rows: int) -> Iterator[Any]:
    """A pool of threads for the column work of a large sheet, or None: one thread per
    CPU this process may use, at most 4 (``CUSTTOOL_THREADS`` sets the number; 1 = none)."""
    from concurrent.futures import ThreadPoolExecutor

    env = os.environ.get("CUSTTOOL_THREADS", "").strip()
    try:
        n = (
            int(env)
            if env
            else min(
                4,
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else (os.cpu_count() or 1),
            )
        )
    except ValueError:
        n = 1
    if n <= 1 or rows < THREADED_ROWS:
        yield None
        return
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="custtool-import") as pool:
        yield pool


def _take_rows(df: pd.DataFrame, mask: np.ndarray, pool: Any = None) -> pd.DataFrame:
    """``df[mask].reset_index(drop=True)`` (same columns and dtypes), Arrow-backed text
    columns filtered in pyarrow (on ``pool`` when given), several times quicker than pandas' take."""
    return _finish_take(_start_take(df, mask, pool))


def _start_take(
    df: pd.DataFrame, mask: np.ndarray, pool: Any = None
) -> tuple[pd.DataFrame, np.ndarray, dict[Any, Any]]:
    """:func:`_take_rows` started: the Arrow columns' filters go to ``pool`` (nothing there
    waits), the other columns are filtered here."""
    import pyarrow as pa

    pmask = pa.array(mask)
    index = pd.RangeIndex(int(mask.sum()))
    cols: dict[Any, Any] = {}
    for j in range(df.shape[1]):
        s = df.iloc[:, j]
        arr = getattr(s.array, "_pa_array", None)
        if arr is not None and isinstance(s.dtype, pd.StringDtype):
            cols[j] = (
                pool.submit(arr.filter, pmask) if pool is not None else arr.filter(pmask),
                s.dtype,
            )
        else:
            # dtype given: an object column stays object (pandas would read text into str)
            kept = s.to_numpy()[mask] if isinstance(s.dtype, np.dtype) else s.array[mask]
            cols[j] = pd.Series(kept, dtype=s.dtype, index=index, copy=False)
    return df, mask, cols


def _finish_take(started: tuple[pd.DataFrame, np.ndarray, dict[Any, Any]]) -> pd.DataFrame:
    df, mask, cols = started
    if not cols:
        return df[mask].reset_index(drop=True)
    index = pd.RangeIndex(int(mask.sum()))
    for j, c in cols.items():
        if isinstance(c, tuple):
            filtered, dtype = c
            cols[j] = pd.Series(
                filtered.result() if hasattr(filtered, "result") else filtered,
                dtype=dtype,
                index=index,
            )
    out = pd.DataFrame(dict(enumerate(cols.values())), index=index, copy=False)
    out.columns = df.columns
    return out


def _failing_rows(checked: dict[str, pd.DataFrame], index: pd.Index) -> np.ndarray:
    """The rows (as a bool array over ``index``) named in the failure cases of checks."""
    out = np.zeros(len(index), dtype=bool)
    for fc in checked.values():
        if len(fc) and "index" in fc:
            labels = fc["index"].dropna()
            at = index.get_indexer(pd.Index(labels.to_numpy()))
            out[at[at >= 0]] = True
    return out


def _repeat_text(value: str, index: pd.Index) -> pd.Series:
    """A ``str`` column holding ``value`` on every row, built in pyarrow."""
    import pyarrow as pa

    return pd.Series(pa.repeat(pa.scalar(value, pa.string()), len(index)), index=index, dtype="str")


def _blank_and_total_rows(text: pd.DataFrame, pool: Any = None) -> tuple[pd.Series, pd.Series]:
    """Rows whose every cell is blank after stripping, and (not blank) rows with a cell
    that is only a totals word (合计, 总计, Total: …), in pyarrow.

    Blank: stripped only where still needed (rows blank in every column so far). Totals:
    one column at a time (on ``pool`` when given).
    """
    return _finish_skips(_start_skips(text, pool))


def _start_skips(text: pd.DataFrame, pool: Any = None) -> tuple[pd.Index, Any, list[Any]]:
    """:func:`_blank_and_total_rows` started: its jobs go to ``pool`` (nothing there waits
    for anything), or are done here without one."""
    cols = [nz._arrow(text.iloc[:, j]) for j in range(text.shape[1])]
    if pool is None:
        return text.index, _blank_cells(cols, len(text)), [_total_cells(arr) for arr in cols]
    return (
        text.index,
        pool.submit(_blank_cells, cols, len(text)),
        [pool.submit(_total_cells, arr) for arr in cols],
    )


def _finish_skips(started: tuple[pd.Index, Any, list[Any]]) -> tuple[pd.Series, pd.Series]:
    index, blank, totals = started
    blank = blank.result() if hasattr(blank, "result") else blank
    total = np.zeros(len(index), dtype=bool)
    for hit in totals:
        hit = hit.result() if hasattr(hit, "result") else hit
        if hit is not None:
            total |= hit
    return pd.Series(blank, index=index), pd.Series(total & ~blank, index=index)


def _blank_cells(cols: list[Any], n: int) -> np.ndarray:
    """Rows whose cells are all "" after stripping."""
    import pyarrow as pa
    import pyarrow.compute as pc

    blank = np.ones(n, dtype=bool)
    for arr in cols:
        cand = np.flatnonzero(blank)
        if not len(cand):
            break
        sub = arr if len(cand) == n else arr.take(pa.array(cand))
        empty = pc.or_(
            pc.equal(pc.binary_length(sub), 0), pc.utf8_is_space(sub)
        )  # "" after stripping
        blank[cand] = pc.fill_null(empty, False).to_numpy(zero_copy_only=False)
    return blank


def _total_cells(arr: Any) -> np.ndarray | None:
    """Where a text column's cell is only a totals word; None when none can be: every
    totals word holds 计, otal or OTAL, and one look at the column's bytes tells."""
    import pyarrow.compute as pc

    if not _bytes_contain(arr, "计|otal|OTAL"):
        return None
    hit = pc.match_substring_regex(pc.utf8_trim_whitespace(arr), TOTAL_WORDS)
    return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)


def _bytes_contain(arr: Any, pattern: str) -> bool:
    """Whether the text of a pyarrow string array, read as one run of bytes, matches
    ``pattern`` somewhere (one regex pass instead of one per value; no copy)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for chunk in arr.chunks if hasattr(arr, "chunks") else [arr]:
        if len(chunk) == 0 or chunk.buffers()[2] is None:
            continue
        offsets, _ = nz._offsets_and_bytes(chunk)
        start, end = int(offsets[0]), int(offsets[-1])
        data = chunk.buffers()[2].slice(start, end - start)
        bounds = pa.py_buffer(np.array([0, end - start], dtype=np.int64).tobytes())
        whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, bounds, data])
        if pc.match_substring_regex(whole, pattern)[0].as_py():
            return True
    return False


def _fill_merged_down(body: pd.DataFrame, raw: RawSheet, header_at: int) -> pd.DataFrame:
    """Excel merged cells below the header: every cell of the range gets the top-left value."""
    if raw.typed is None or not raw.merged:
        return body
    out = body
    for (r0, c0), (r1, c1) in raw.merged:
        if r0 <= header_at or c0 >= body.shape[1]:
            continue
        b0, b1 = r0 - header_at - 1, r1 - header_at - 1
        if out is body:
            out = body.copy()
        value = out.iat[b0, c0]
        out.iloc[b0 : b1 + 1, c0 : min(c1, body.shape[1] - 1) + 1] = value  # type: ignore[index,assignment]  # pandas-stubs: no 2-d slice setitem
    return out


def normalize_table(
    rows: pd.DataFrame, kind: str, tz: str = "Asia/Shanghai"
) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Normalise the canonical columns of a text table of ``kind`` (unknown columns kept).

    Returns the typed table with a ``_flags`` column and the original text of the
    normalised columns (for the rejects file).
    """
    result = _normalize(rows, kind, tz)
    return result.data, result.originals


@dataclass
class _Column:
    """What normalising one column gave: the new column(s), the original text when the
    rejects file may quote it, and problem codes (object array, "" = none)."""

    values: dict[str, Any]
    original: pd.Series | None = None
    problems: np.ndarray | None = None
    with_column: bool = False  # the _flags text says which column (``date_invalid:birth_date``)
    failures: pd.DataFrame | None = None  # the schema's failure cases of the column (checked alone)
    hits: np.ndarray | None = None  # the rows with a problem code (replaces ``problems``)
    codes: np.ndarray | None = None  # their codes


@dataclass
class _Normalized:
    data: pd.DataFrame
    originals: dict[str, pd.Series]
    # (column the codes are about, "" for a row; rows with a code; their codes), in _flags order
    problems: list[tuple[str, np.ndarray, np.ndarray]]
    checked: dict[
        str, pd.DataFrame
    ]  # the schema's failure cases of the columns checked as they were done


def _normalize_column(col: str, s: pd.Series, kind: str, tz: str, add_region: bool) -> _Column:
    """One column through its normaliser (a pure function of the column: threads may run
    several at once)."""
    if col == "phone":
        v, (hits, codes) = nz.phone_codes(s)
        phones, ext = nz.phone_lists(s, v)  # a cell may hold two numbers, or an extension
        return _Column({col: v, "phones": phones, "phone_ext": ext}, s, hits=hits, codes=codes)
    if col == "email":
        v, (hits, codes) = nz.email_codes(s)
        return _Column({col: v}, s, hits=hits, codes=codes)
    if col in ("birth_date", "first_contact_date", "next_follow_up", "last_purchase_date") or (
        col == "time" and kind == "surveys"
    ):
        v, (hits, codes) = nz.on_uniques_codes(nz.normalize_date, s)
        return _Column({col: v}, s, with_column=True, hits=hits, codes=codes)
    if col in ("order_time", "time"):
        v, (hits, codes) = nz.on_uniques_codes(nz.normalize_date, s, keep_time=True, tz=tz)
        return _Column({col: v}, s, with_column=True, hits=hits, codes=codes)
    if col == "gender":
        v, (hits, codes) = nz.on_uniques_codes(nz.normalize_gender, s)
        return _Column({col: v}, None, hits=hits, codes=codes)
    if col in ("amount", "total_spend"):
        v, (hits, codes) = nz.on_uniques_codes(nz.normalize_amount, s)
        return _Column({col: v}, s, hits=hits, codes=codes)
    if col == "order_count":  # 累计消费次数: "12", "12次", "12单"
        v, (hits, codes) = nz.on_uniques_codes(
            nz.normalize_number, s.str.replace(r"\s*[次单笔]$", "", regex=True)
        )
        return _Column({col: v}, None, with_column=True, hits=hits, codes=codes)
    if (
        col in ("quantity", "satisfaction", "company_size")
        and kind != "customers"
        or col == "quantity"
    ):
        v, (hits, codes) = nz.on_uniques_codes(nz.normalize_number, s)
        return _Column({col: v}, None, with_column=True, hits=hits, codes=codes)
    if col == "score":
        num, p = nz.normalize_number(s)
        bad = (p != "") | ~num.between(0, 10) & num.notna() | (s.str.strip() == "")
        return _Column({col: num.where(~bad)}, s, np.where(bad, "score_invalid", "").astype(object))
    if col == "age":
        num, p = nz.normalize_number(s.str.replace("岁", "", regex=False))
        ok = num.notna() & (num == num.round()) & num.between(0, 120)
        bad = (s.str.strip() != "") & ~ok
        return _Column(
            {col: num.where(ok).astype("Int64")},
            None,
            np.where(bad, "age_invalid", "").astype(object),
        )
    if col == "name":
        v, (hits, codes) = nz.on_uniques_codes(nz.normalize_name, s)
        return _Column({col: v}, None, hits=hits, codes=codes)
    if col == "city":  # the standard city (or the text when unknown), and the places in it
        province, city, district, region, _ = nz.on_uniques_codes(nz.normalize_address, s)
        v = city.where(city != "", nz._text(s)).astype("str")
        places = {"province": province, "district": district} | (
            {"region": region} if add_region else {}
        )
        return _Column({col: v, **places})
    if col == "address":  # kept as written; the places in it become their own columns
        province, city, district, region, _ = nz.on_uniques_codes(nz.normalize_address, s)
        places = {"province": province, "city": city, "district": district} | (
            {"region": region} if add_region else {}
        )
        return _Column({col: s.str.strip(), **places})
    if col == "refund":
        v, _ = nz.normalize_bool(s)
        return _Column({col: v})
    if col in ("id_number", "bank_card"):  # flagged, kept; never quoted in the rejects file
        v = nz._text(s).str.strip()
        valid = nz.id_number_valid(v) if col == "id_number" else nz.bank_card_valid(v)
        bad = (v != "").to_numpy(dtype=bool) & ~valid.to_numpy(dtype=bool)
        if col == "id_number":
            v = v.str.upper()
        else:
            v = v.str.replace(r"[\s-]", "", regex=True)
        return _Column({col: v}, None, np.where(bad, f"{col}_invalid", "").astype(object))
    if col in ("customer_id", "order_id", "record_id"):
        return _Column({col: nz._text(s)})
    return _Column({col: s.str.strip()})


#: the place columns read from a city or address column (a file's own column wins)
_PLACES = ("province", "city", "district", "region")

#: columns normalised row by row (no distinct-value work): a large one is done in halves
_BY_ROW = frozenset({"phone", "email", "customer_id", "order_id", "record_id"})


def _refunds_without_order(order_id: pd.Series, back: np.ndarray, sold: np.ndarray) -> np.ndarray:
    """The rows among ``back`` (money going back) whose order id is given but on no row
    of ``sold`` (money coming in), with pyarrow's hash lookup."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = nz._arrow(
        order_id if isinstance(order_id.dtype, pd.StringDtype) else order_id.astype(str)
    )
    asked = ids.take(pa.array(back))
    # refunds are few: every id is looked up in a table of the asked ones, and only the
    # sales among them are hashed (a table of every sold id cost ~10x more per batch)
    wanted = pc.and_(pc.is_in(ids, value_set=asked), pa.array(sold))
    known = np.asarray(
        pc.is_in(asked, value_set=ids.filter(wanted)).to_numpy(zero_copy_only=False), dtype=bool
    )
    given = np.asarray(pc.not_equal(asked, "").to_numpy(zero_copy_only=False), dtype=bool)
    return back[given & ~known]


def _merge_halves(parts: list[_Column], half: int, whole: pd.Series) -> _Column:
    """The results of a column normalised in two halves (rows ``[:half]`` and ``[half:]``)."""
    first, second = parts
    values = {}
    for name, v in first.values.items():
        joined = pd.concat([v, second.values[name]], ignore_index=True)
        joined.index = whole.index
        values[name] = joined
    failures = [p.failures for p in parts if p.failures is not None and len(p.failures)]
    return _Column(
        values,
        whole if first.original is not None else None,
        None,
        first.with_column,
        (pd.concat(failures, ignore_index=True) if failures else pd.DataFrame())
        if first.failures is not None
        else None,
        np.concatenate([first.hits, second.hits + half])
        if first.hits is not None and second.hits is not None
        else None,
        np.concatenate([first.codes, second.codes])
        if first.codes is not None and second.codes is not None
        else None,
    )


#: the normalisers that take longest on a large file: started first on the pool
_SLOW_FIRST = {
    "phone": 0,
    "email": 1,
    "name": 2,
    "order_time": 2,
    "time": 2,
    "customer_id": 3,
    "order_id": 3,
}


def _normalize(
    rows: pd.DataFrame, kind: str, tz: str = "Asia/Shanghai", pool: Any = None
) -> _Normalized:
    """:func:`normalize_table` with the problem codes kept per column, the columns
    normalised on ``pool`` (a thread pool: the string work runs in pyarrow, which lets
    other threads go on) when given."""
    cols = list(rows.columns)
    series = {c: rows[c] for c in cols}  # taken here, not in the threads
    add_region = "region" not in rows.columns
    order = sorted(cols, key=lambda c: _SLOW_FIRST.get(c, 9))
    jobs = {
        c: (lambda c=c: _checked(_normalize_column(c, series[c], kind, tz, add_region), c, kind))
        for c in order
    }
    keys = [c for c in key_columns(kind) if c in jobs]
    key_failures = None
    if pool is None:
        done = {c: job() for c, job in jobs.items()}
    else:
        # a long column normalised row by row goes to the pool in halves, so that no one
        # job keeps a thread busy after the others are done
        half = len(rows) // 2 if len(rows) >= 2 * THREADED_ROWS else 0
        futures: dict[str, list[Any]] = {}
        for c in order:
            if half and c in _BY_ROW:
                parts = (series[c].iloc[:half], series[c].iloc[half:])
                futures[c] = [
                    pool.submit(
                        lambda c=c, part=part: _checked(
                            _normalize_column(c, part, kind, tz, add_region), c, kind
                        )
                    )
                    for part in parts
                ]
            else:
                futures[c] = [pool.submit(jobs[c])]
        merged: dict[str, _Column] = {}

        def result(c: str) -> _Column:
            if c not in merged:
                parts = [f.result() for f in futures[c]]
                merged[c] = parts[0] if len(parts) == 1 else _merge_halves(parts, half, series[c])
            return merged[c]

        if keys:  # the key rule checked on the pool while the other columns are still going
            key_failures = pool.submit(check_keys, kind, {c: result(c).values[c] for c in keys})
        done = {c: result(c) for c in cols}
    values: dict[str, Any] = {}
    originals: dict[str, pd.Series] = {}
    problems: list[tuple[str, np.ndarray, np.ndarray]] = []
    flag_parts: list[tuple[np.ndarray, np.ndarray]] = []
    checked: dict[str, pd.DataFrame] = {}
    derived: dict[str, list[Any]] = {}  # place columns read from city/address, city first
    for c in sorted(cols, key=lambda c: c != "city"):
        for name, v in done[c].values.items():
            if name in _PLACES and name != c:
                derived.setdefault(name, []).append(v)
    for c in cols:
        r = done[c]
        if r.failures is not None:
            checked[c] = r.failures
        for name, v in r.values.items():
            if name not in _PLACES or name == c:
                values[name] = v
        if r.original is not None:
            originals[c] = r.original
        if r.hits is not None and r.codes is not None:
            problems.append((c, r.hits, r.codes))
            flag_parts.append(
                (r.hits, r.codes + (":" + c) if r.with_column and len(r.codes) else r.codes)
            )
    for name, found in derived.items():
        # the file's own column wins where it has a value; an empty place is filled from
        # the next source (a city column first, then an address)
        v = values[name] if name in cols and name in values else found.pop(0)
        for more in found:
            v = v.where(v != "", more)
        values[name] = v
    out = pd.DataFrame(values, index=rows.index, copy=False)
    if kind == "orders" and "refund" in out.columns and "amount" in out.columns:
        # a refund flagged line with a positive amount counts as money going back
        out["amount"] = out["amount"].where(~out["refund"], -out["amount"].abs())
    if kind == "orders" and "amount" in out.columns and "order_id" in out.columns:
        # money going back for an order this export does not hold: kept, but say so
        back = np.flatnonzero((out["amount"] < 0).to_numpy())
        if len(back):
            hits = _refunds_without_order(out["order_id"], back, (out["amount"] > 0).to_numpy())
            codes = np.full(len(hits), "refund_without_order", dtype=object)
            problems.append(("", hits, codes))
            flag_parts.append((hits, codes))
    out["_flags"] = pd.Series(_join_flags(flag_parts, len(out)), index=out.index, dtype="str")
    if keys:
        checked["_key_present"] = (
            key_failures.result()
            if key_failures is not None
            else check_keys(kind, {c: out[c] for c in keys})
        )
    return _Normalized(out, originals, problems, checked)


def _checked(result: _Column, col: str, kind: str) -> _Column:
    """The column's own schema checks, run as soon as it is normalised (so on the pool)."""
    from custtool.schemas import check_column

    if col in result.values:
        result.failures = check_column(kind, col, result.values[col])
    if result.problems is not None:  # kept as (rows, codes) from here on
        result.hits = nz.code_rows(result.problems)
        result.codes = result.problems[result.hits]
        result.problems = None
    return result


def _join_flags(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> Any:
    """The ``_flags`` text as an Arrow string array: each row's codes joined with ``;`` in
    the order of ``parts`` ((rows with a code, their codes) per column), "" for a row with
    none. Only rows with two codes or more are joined as text."""
    import pyarrow as pa

    parts = [(hits, codes) for hits, codes in parts if len(hits)]
    if not parts:
        return pa.repeat(pa.scalar("", pa.large_string()), n)
    rows = np.concatenate([hits for hits, _ in parts])
    codes = np.concatenate([codes for _, codes in parts])
    order = np.argsort(rows, kind="stable")  # by row, then in the order of parts
    rows, codes = rows[order], codes[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    joined = codes[first]
    if not first.all():
        joined = joined.copy()
        group = np.cumsum(first) - 1
        depth = np.arange(len(rows)) - np.flatnonzero(first)[group]
        for d in range(1, int(depth.max()) + 1):
            at = depth == d
            joined[group[at]] = joined[group[at]] + ";" + codes[at]
    return nz._scatter_text(pa.array(joined, pa.large_string()), rows[first], n)


def _kept_problem_rows(
    norm: pd.DataFrame,
    wanted: np.ndarray,
    problems: list[tuple[str, np.ndarray, np.ndarray]],
    originals: dict[str, pd.Series],
) -> tuple[pd.DataFrame, np.ndarray]:
    """Rejects-file rows for values that were cleared or flagged on kept rows (``wanted``):
    one per row and code, rows in file order, a row's codes in the order of its _flags;
    and the position in ``norm`` of each line's row."""
    pos_parts, order_parts, col_parts, value_parts, code_parts = [], [], [], [], []
    for k, (col, hits, codes) in enumerate(problems):
        sel = wanted[hits]
        hit, code = hits[sel], codes[sel]
        if not len(hit):
            continue
        if any(";" in str(c) for c in pd.unique(code)):  # a normaliser that gave two codes at once
            split = pd.Series(code, index=hit).str.split(";").explode()
            split = split[split != ""]
            hit, code = split.index.to_numpy(), split.to_numpy(dtype=object)
        if col in originals:
            value = _text_at(originals[col], hit)
        elif col in norm.columns:
            value = norm[col].iloc[hit].astype(str).to_numpy(dtype=object)
        else:
            value = np.full(len(hit), "", dtype=object)
        pos_parts.append(hit)
        order_parts.append(np.full(len(hit), k))
        col_parts.append(np.full(len(hit), col, dtype=object))
        value_parts.append(value)
        code_parts.append(code)
    if not pos_parts:
        return pd.DataFrame(columns=REJECT_COLUMNS), np.zeros(0, dtype=np.int64)
    pos = np.concatenate(pos_parts)
    by = np.lexsort((np.concatenate(order_parts), pos))
    pos = pos[by]
    codes = np.concatenate(code_parts)[by]
    zh, en = reasons(codes)
    out = rejects_frame(
        {
            "file": _text_at(norm["_source_file"], pos),
            "sheet": _text_at(norm["_sheet"], pos),
            "row": norm["_row"].to_numpy()[pos],
            "column": np.concatenate(col_parts)[by],
            "value": np.concatenate(value_parts)[by],
            "code": codes,
            "reason_zh": zh,
            "reason_en": en,
            "action": np.full(len(pos), "kept", dtype=object),
        }
    )
    return out[REJECT_COLUMNS], pos


def _text_at(values: pd.Series, at: np.ndarray) -> np.ndarray:
    """The text of ``values`` at positions ``at`` ("" for a missing one), as objects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = getattr(values.array, "_pa_array", None)
    if arr is not None and isinstance(values.dtype, pd.StringDtype):
        return np.asarray(
            pc.fill_null(arr.take(pa.array(at)), "").to_numpy(zero_copy_only=False), dtype=object
        )
    return values.iloc[at].fillna("").astype(str).to_numpy(dtype=object)


def _fill_missing_text(df: pd.DataFrame) -> pd.DataFrame:
    """After concatenating sheets with different columns, text gaps are "" not NaN."""
    if df.empty:
        return df
    out = df
    for col in df.columns:
        s = df[col]
        arr = getattr(s.array, "_pa_array", None)
        if arr is not None and arr.null_count == 0:  # Arrow text knows its null count
            continue
        if (s.dtype == object or pd.api.types.is_string_dtype(s)) and s.isna().any():
            if out is df:
                out = df.copy()
            out[col] = s.fillna("")
    if "_flags" in out:
        out["_flags"] = out["_flags"].fillna("")
    return out
