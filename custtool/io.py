"""Reading any customer spreadsheet and writing outputs atomically.

Reading keeps every cell as text (see PITFALLS.md: type inference ruins phones, ids and
landlines); the normalisers in :mod:`custtool.clean` turn text into typed values.
Writing goes to a temporary file beside the target and is renamed into place, so a
crash never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import shutil
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# atomic_path, flatten_lists and _safe_sheet_name are re-exported for the modules that import
# them from here; their homes are custtool.atomic and custtool.xlsx (the one workbook factory)
from custtool.atomic import atomic_path
from custtool.errors import InputError
from custtool.xlsx import FORMULA_PREFIXES, flatten_lists
from custtool.xlsx import safe_sheet_name as _safe_sheet_name  # noqa: F401  (kept for callers)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"}
TABLE_SUFFIXES = CSV_SUFFIXES | EXCEL_SUFFIXES | {".parquet"}

EXCEL_MAX_ROWS = 1_048_576  # rows in one worksheet, header included


@dataclass
class RawSheet:
    """One grid of text cells as it was in the file, before the header is found.

    ``rows`` is a DataFrame of str with positional columns; ``row_numbers`` gives the
    number a person sees for each grid row (Excel row, or CSV record number counting
    the header as record 1 once the header is known: see :func:`csv_row_numbers`).
    """

    file: str
    sheet: str
    grid: pd.DataFrame
    row_numbers: Any  # numpy int64 array, one per grid row
    encoding: str | None = None
    typed: pd.DataFrame | None = None  # xlsx: the cells with their own types (dates, numbers)
    merged: list[tuple[tuple[int, int], tuple[int, int]]] = field(
        default_factory=list
    )  # 0-based grid ranges
    warnings: list[str] = field(default_factory=list)
    # damaged stretches of the file for the rejects file: (first row, last row, code, message)
    notes: list[tuple[int, int, str, str]] = field(default_factory=list)


#: characters at the top of a CSV whose widest row names the columns for pyarrow's reader
WIDTH_SAMPLE = 50_000

#: bytes pyarrow's CSV reader parses at a time (one block per thread)
CSV_BLOCK_SIZE = 1 << 22


# --------------------------------------------------------------------------- encodings
def detect_encoding(data: bytes, filename: str = "") -> str:
    """BOM → strict UTF-8 → GB18030 (never GBK before UTF-8: UTF-8 bytes decode as GBK mojibake)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        data.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError as exc:
        if _mostly_utf8(data):
            return "utf-8"  # a few bad lines: decode() names them

        raise InputError(
            f"{filename}: cannot tell the text encoding (neither UTF-8 nor GB18030; "
            f"bad byte at offset {exc.start})",
            "save the file as UTF-8 CSV, or pass --encoding with the right codec",
        ) from None


def decode(data: bytes, encoding: str | None, filename: str) -> tuple[str, str]:
    """Decode bytes with the given or detected encoding; returns (text, encoding used)."""
    text, enc, _notes = decode_with_notes(data, encoding, filename)
    return text, enc


def decode_with_notes(
    data: bytes, encoding: str | None, filename: str
) -> tuple[str, str, list[str]]:
    """:func:`decode`, plus a warning per line that was not valid in the file's encoding
    (a UTF-8 file with a few such lines is read line by line, see :func:`_decode_utf8_by_line`)."""
    enc = encoding or detect_encoding(data, filename)
    if enc.lower().replace("_", "-") in {"utf-8", "utf8"} and data.startswith(b"\xef\xbb\xbf"):
        enc = "utf-8-sig"
    try:
        return data.decode(enc), enc, []
    except LookupError:
        raise InputError(
            f"{filename}: unknown encoding {enc!r}", "use e.g. utf-8, gb18030 or gbk"
        ) from None
    except UnicodeDecodeError as exc:
        if enc.lower().replace("_", "-") in {"utf-8", "utf8", "utf-8-sig"} and _mostly_utf8(data):
            text, notes = _decode_utf8_by_line(data, enc, filename)
            return text, enc, notes
        guess = None
        with contextlib.suppress(InputError):
            guess = detect_encoding(data, filename)
        if guess is not None and guess.replace("-sig", "") == enc.lower().replace("-sig", ""):
            guess = None  # never the circular hint "pass --encoding <what failed>"
        hint = f"it looks like {guess}: pass --encoding {guess}" if guess else "pass --encoding"
        raise InputError(
            f"{filename} is not valid {enc} (bad byte at offset {exc.start})", hint
        ) from None


#: at most this share of a file's lines may be undecodable for it to count as UTF-8
BAD_LINE_SHARE = 0.05


def _mostly_utf8(data: bytes) -> bool:
    """All but a few lines (≤ 5 %, at least one good) decode as UTF-8."""
    import re

    text = data.decode("utf-8", errors="surrogateescape")
    bad_lines = {text.count("\n", 0, m.start()) for m in re.finditer("[\udc80-\udcff]+", text)}
    lines = text.count("\n") + 1
    return 0 < len(bad_lines) <= max(1, int(lines * BAD_LINE_SHARE)) and len(bad_lines) < lines


def _decode_utf8_by_line(data: bytes, enc: str, filename: str) -> tuple[str, list[str]]:
    """UTF-8 text whose few undecodable lines are decoded as GB18030 where that works (a
    warning names each row) or with U+FFFD in place of the bad bytes (the file was cut
    short, or a byte is damaged)."""
    import re

    text = data.decode("utf-8", errors="surrogateescape")
    if enc == "utf-8-sig":
        text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    bad = sorted({text.count("\n", 0, m.start()) for m in re.finditer("[\udc80-\udcff]+", text)})
    notes: list[str] = []
    for i in bad:  # a few lines only (see _mostly_utf8)
        raw = lines[i].encode("utf-8", errors="surrogateescape")
        try:
            lines[i] = raw.decode("gb18030")
            why = "not valid UTF-8; looks like GBK, read as GB18030"
        except UnicodeDecodeError:
            lines[i] = raw.decode("utf-8", errors="replace")
            why = "not valid UTF-8 (damaged or cut short); bad bytes shown as �"
        notes.append(f"{filename}, line {i + 1}: {why}; check that row")
    return "\n".join(lines), notes


# --------------------------------------------------------------------------- raw reading
def check_regular_file(p: Path, *, dataset: bool = False) -> None:
    """An InputError for an input that exists but is no file to read: a folder (unless
    ``dataset`` and it holds Parquet parts), or a pipe, socket or device, whose reading could
    wait for ever (a FIFO with no writer) or never end."""
    if p.is_dir():
        if dataset and any(p.glob("*.parquet")):
            return
        raise InputError(f"{p} is a folder, not a file", "name the files inside it", file=str(p))
    if p.exists() and not p.is_file():
        raise InputError(
            f"{p} is not a regular file (a pipe, socket or device)",
            "save the data to a file and pass that file",
            file=str(p),
        )


def read_raw(
    path: str | os.PathLike[str],
    *,
    sheet: str | None = None,
    encoding: str | None = None,
    max_field_bytes: int | None = None,
) -> list[RawSheet]:
    """Read a CSV/TSV or workbook into text grids, one per sheet (CSV: one, sheet '').

    ``max_field_bytes``: the longest field a text file may hold (default 1 MB, or
    ``$CUSTTOOL_MAX_FIELD_BYTES``); a longer one, or a row of more than 16,384 fields, is
    an :class:`InputError` naming the line, raised before the file is parsed."""
    p = Path(path)
    if not p.exists():
        raise InputError(
            f"{p}: file not found",
            "check the path (globs must match at least one file)",
            file=str(p),
        )
    check_regular_file(p)
    suffix = p.suffix.lower()
    try:
        if suffix in EXCEL_SUFFIXES:
            return _read_workbook(p, sheet)
        if suffix in CSV_SUFFIXES or suffix == "":
            if sheet:
                raise InputError(
                    f"{p.name}: --sheet applies to workbooks, not CSV files",
                    "leave out --sheet for CSV files",
                )
            return [_read_csv_raw(p, encoding, max_field_bytes)]
    except OSError as exc:  # permission, a vanished file, an I/O error: the environment
        raise InputError(
            f"{p}: cannot read ({exc.strerror or type(exc).__name__})",
            "check that the file exists and that you may read it",
            file=str(p),
        ) from None
    raise InputError(
        f"{p.name}: unsupported file type {suffix!r}",
        "custtool reads .csv, .tsv, .txt, .xlsx, .xlsm, .xls and .ods",
    )


def guess_separator(head: str, suffix: str = "") -> str:
    """The field separator of a text export: tab for .tsv, else the most frequent of
    , tab ; | over the first lines (title rows above the header hold few of them)."""
    if suffix.lower() == ".tsv":
        return "\t"
    lines = head.lstrip("\ufeff").splitlines()[:10]
    counts = {sep: sum(line.count(sep) for line in lines) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] > counts[","] else ","


def _read_csv_raw(p: Path, encoding: str | None, max_field_bytes: int | None = None) -> RawSheet:
    import numpy as np
    import pandas as pd

    with open(p, "rb") as f:
        head = f.read(4 * WIDTH_SAMPLE + 8)
    whole = len(head) == p.stat().st_size
    if not head or whole and head.isspace():
        raise InputError(f"{p.name} is empty", "export the sheet again; the file has no rows")
    data, notes = _checked_csv_bytes(p, head, whole, max_field_bytes)
    if data is None and (
        encoding is None or encoding.lower().replace("_", "-") in {"utf-8", "utf8", "utf-8-sig"}
    ):
        fast = _read_utf8_csv_fast(p, head, encoding)
        if fast is not None:
            return fast
    if data is None:
        data = head if whole else p.read_bytes()
    if data.isspace():  # as ``not data.strip()``, without copying the file
        raise InputError(f"{p.name} is empty", "export the sheet again; the file has no rows")
    text, enc, decode_notes = decode_with_notes(data, encoding, p.name)
    notes = [*notes, *decode_notes]
    sep = guess_separator(text[:8192], p.suffix)
    grid = _parse_csv_fast(text, sep)
    if grid is None:
        # ragged rows (a title line, trailing fields left off): name every column up front
        # so short rows are padded instead of refused
        import csv

        from custtool.csvshape import max_field_bytes as _limit

        previous = csv.field_size_limit()
        csv.field_size_limit(max(previous, 2 * _limit(max_field_bytes)))  # bounded by the scan
        try:
            width = max(
                (
                    len(r)
                    for r in csv.reader(
                        _io.StringIO(text.lstrip("\ufeff"), newline=None), delimiter=sep
                    )
                ),
                default=1,
            )
            grid = pd.read_csv(
                _io.StringIO(text.lstrip("\ufeff"), newline=None),
                sep=sep,
                header=None,
                names=list(range(width)),
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                engine="c",
            )
        except (csv.Error, pd.errors.ParserError) as exc:
            raise InputError(
                f"{p.name}: cannot be read as a table ({str(exc)[:160]})",
                "open it in a spreadsheet program and save it as CSV (UTF-8) again",
                file=p.name,
            ) from None
        finally:
            csv.field_size_limit(previous)
    grid.columns = pd.RangeIndex(grid.shape[1])  # what assigning a range gives
    # provisional numbering: record number counted from 1; rebased once the header is found
    raw = RawSheet(p.name, "", grid, np.arange(1, len(grid) + 1, dtype="int64"), enc)
    raw.warnings.extend(notes)
    raw.notes.extend(_note_rows(notes))
    return raw


def _note_rows(notes: list[str]) -> list[tuple[int, int, str, str]]:
    """The rows of the warnings about a damaged file, for its rejects lines."""
    import re

    out = []
    for note in notes:
        m = re.search(r", (?:rows?|line) (\d+)(?:–(\d+))?: ", note)
        if m:
            first = int(m.group(1))
            code = "quote_unbalanced" if "quote" in note else "encoding_line"
            out.append((first, int(m.group(2) or first), code, note[m.end() :]))
    return out


def _checked_csv_bytes(
    p: Path, head: bytes, whole: bool, limit: int | None
) -> tuple[bytes | None, list[str]]:
    """Bounds and quoting of a text file (:mod:`custtool.csvshape`), before any parser sees
    it: raises on a field past the limit or absurd column counts; returns the bytes to
    parse instead of the file when broken quoting was repaired (None: the file as it is)."""
    import numpy as np

    from custtool.csvshape import broken_note, scan_shape, split_broken

    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: bytes are not characters
        return None, []
    sep = guess_separator(head[:8192].decode("utf-8", errors="replace"), p.suffix)
    if whole:
        shape = scan_shape(head, sep, p.name, limit=limit)
        return (
            (split_broken(head, shape, sep), broken_note(shape, p.name))
            if shape.broken
            else (
                None,
                [],
            )
        )
    mapped = np.memmap(p, dtype=np.uint8, mode="r")  # numpy keeps the map while it is used
    shape = scan_shape(mapped, sep, p.name, limit=limit)
    if not shape.broken:
        return None, []
    return split_broken(mapped, shape, sep), broken_note(shape, p.name)


def _read_utf8_csv_fast(p: Path, first: bytes, encoding: str | None) -> RawSheet | None:
    """The UTF-8 case without reading the file into Python: pyarrow reads it, memory
    mapped (and checks it is UTF-8); ``first`` is the top of the file. Same grid, encoding
    name and separator as the general path; None when that path is needed (not UTF-8,
    UTF-16, ragged rows, a doubled BOM)."""
    import codecs

    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if first.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    bom = first.startswith(b"\xef\xbb\xbf")
    if first[3:6] == b"\xef\xbb\xbf" and bom:  # pyarrow skips one BOM only
        return None
    try:  # the first characters, as the general path sees them
        head = codecs.getincrementaldecoder("utf-8-sig" if bom else "utf-8")().decode(
            first, final=False
        )
    except UnicodeDecodeError:
        return None
    sep = guess_separator(head[:8192], p.suffix)
    top = first[3:] if bom else first
    end = top.find(b"\n")
    # a quote further down only matters where a value holding a newline straddles two of
    # pyarrow's blocks, which then fail to parse (the general reader takes the file)
    with pa.memory_map(str(p)) as source:
        grid = _parse_csv_source(
            source,
            top if end < 0 else top[:end],
            head.lstrip("\ufeff")[:WIDTH_SAMPLE],
            sep,
            b'"' in first,
        )
    if grid is None:
        return None
    grid.columns = pd.RangeIndex(grid.shape[1])  # what assigning a range gives
    # the name :func:`decode` reports
    if encoding is None or bom and encoding.lower().replace("_", "-") in {"utf-8", "utf8"}:
        enc = "utf-8-sig" if bom else "utf-8"
    else:
        enc = encoding
    return RawSheet(p.name, "", grid, np.arange(1, len(grid) + 1, dtype="int64"), enc)


def _parse_csv_fast(text: str, sep: str) -> pd.DataFrame | None:
    """pyarrow's reader with every column as text; None when the file has ragged rows."""
    body = text.lstrip("\ufeff").encode("utf-8")
    return _parse_csv_bytes(body, text.lstrip("\ufeff")[:WIDTH_SAMPLE], sep)


def _parse_csv_bytes(body: bytes, sample_text: str, sep: str) -> pd.DataFrame | None:
    """pyarrow's reader on UTF-8 bytes, every column as text; ``sample_text`` (the first
    :data:`WIDTH_SAMPLE` characters) gives the width. None when the file has ragged rows
    (a row wider than the sample's: the general reader takes the file) or is not UTF-8."""
    import pyarrow as pa

    end = body.find(b"\n")
    source = pa.BufferReader(pa.py_buffer(body))  # no copy, no Python file calls
    return _parse_csv_source(
        source, body if end < 0 else body[:end], sample_text, sep, b'"' in body
    )


def _parse_csv_source(
    source: Any, first_line: bytes, sample_text: str, sep: str, quoted: bool
) -> pd.DataFrame | None:
    """:func:`_parse_csv_bytes` on a pyarrow input; ``quoted``: the text may hold quotes."""
    import sys

    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pcsv

    bad: list[int] = []

    def _on_invalid(_row: Any) -> str:
        bad.append(1)
        return "skip"

    def _unraisable(_info: Any) -> None:
        # pyarrow decodes an invalid row's text before calling the handler; on a row that
        # is not UTF-8 that fails inside pyarrow and would print a traceback
        bad.append(1)

    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable
    try:
        # count the widest row cheaply via a first pass with the pandas-compatible width
        import csv

        sample = list(csv.reader(_io.StringIO(sample_text, newline=None), delimiter=sep))
        width = max((len(r) for r in sample), default=len(first_line.split(sep.encode())))
        names = [f"c{i}" for i in range(width)]
        table = pcsv.read_csv(
            source,
            read_options=pcsv.ReadOptions(column_names=names, block_size=CSV_BLOCK_SIZE),
            parse_options=pcsv.ParseOptions(
                delimiter=sep,
                ignore_empty_lines=False,
                # without a quote no value can hold a newline; the reader is faster then (a
                # single column: two halves of a split value would both look like rows)
                newlines_in_values=quoted or width == 1,
                invalid_row_handler=_on_invalid,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.large_string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, csv.Error, ValueError):
        return None
    finally:
        sys.unraisablehook = previous_hook
    if bad:
        return None
    # str columns over the Arrow data (large_string, as pandas keeps it: no copy); no
    # nulls: strings_can_be_null=False
    frame = pd.DataFrame({n: pd.Series(table.column(n), dtype="str") for n in table.column_names})
    return (
        frame.fillna("") if any(table.column(n).null_count for n in table.column_names) else frame
    )


def _read_workbook(p: Path, sheet: str | None) -> list[RawSheet]:
    import numpy as np
    import pandas as pd

    if p.stat().st_size == 0:
        raise InputError(f"{p.name} is empty", "export the workbook again")
    try:
        from python_calamine import CalamineWorkbook

        wb = CalamineWorkbook.from_path(str(p))
        names = list(wb.sheet_names)
    except Exception as exc:  # calamine raises its own error types for corrupt files
        fallback = (
            _read_workbook_openpyxl(p, sheet) if p.suffix.lower() in (".xlsx", ".xlsm") else None
        )
        if fallback is not None:
            note = f"{p.name}: read with openpyxl (slower): calamine could not open it ({type(exc).__name__})"
            for raw in fallback:
                raw.warnings.append(note)
            return fallback
        raise InputError(
            f"{p.name}: cannot open the workbook ({type(exc).__name__}: {str(exc)[:120]})",
            "the file is damaged or not really an Excel file: open it in Excel and save it as .xlsx again",
        ) from None
    hidden = {
        m.name
        for m in getattr(wb, "sheets_metadata", [])
        if not str(getattr(m, "visible", ".Visible")).endswith(".Visible")
    }
    if sheet is not None:
        if sheet not in names:
            raise InputError(
                f"{p.name}: no sheet named {sheet!r}", f"the sheets are: {', '.join(names)}"
            )
        names = [sheet]
    else:  # hidden sheets hold drop-down lists and lookups, not data
        names = [n for n in names if n not in hidden]
    out: list[RawSheet] = []
    for name in names:
        try:
            ws = wb.get_sheet_by_name(name)
            cells = ws.to_python(skip_empty_area=False)
            merged = list(getattr(ws, "merged_cell_ranges", None) or [])
        except Exception as exc:
            raise InputError(
                f"{p.name}, sheet {name!r}: cannot read ({str(exc)[:120]})",
                "save the workbook again",
            ) from None
        width = max((len(r) for r in cells), default=0)
        typed = pd.DataFrame(
            [list(r) + [""] * (width - len(r)) for r in cells], columns=range(width), dtype=object
        )
        grid = _cells_as_text(typed)
        out.append(
            RawSheet(
                p.name, name, grid, np.arange(1, len(grid) + 1, dtype="int64"), None, typed, merged
            )
        )
    return out


def _read_workbook_openpyxl(p: Path, sheet: str | None) -> list[RawSheet] | None:
    """The grids of a workbook calamine cannot open, read with openpyxl (cached values of
    formulas, merged ranges, hidden sheets left out as with calamine); None when openpyxl
    cannot open it either."""
    import warnings

    import numpy as np
    import pandas as pd

    try:
        from openpyxl import load_workbook

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions it drops
            wb = load_workbook(p, data_only=True)
    except Exception:  # openpyxl raises many kinds of errors for a file it cannot read
        return None
    names = list(wb.sheetnames)
    if sheet is not None:
        if sheet not in names:
            raise InputError(
                f"{p.name}: no sheet named {sheet!r}", f"the sheets are: {', '.join(names)}"
            )
        names = [sheet]
    else:  # hidden sheets hold drop-down lists and lookups, not data
        names = [n for n in names if wb[n].sheet_state == "visible"]
    out: list[RawSheet] = []
    for name in names:
        ws = wb[name]
        cells = [list(r) for r in ws.iter_rows(min_row=1, min_col=1, values_only=True)]
        width = max((len(r) for r in cells), default=0)
        typed = pd.DataFrame(
            [r + [""] * (width - len(r)) for r in cells], columns=range(width), dtype=object
        )
        typed = typed.where(typed.notna(), "")
        merged = [
            ((r.min_row - 1, r.min_col - 1), (r.max_row - 1, r.max_col - 1))
            for r in ws.merged_cells.ranges
        ]
        # a merged range's other cells are empty, as calamine gives them
        grid = _cells_as_text(typed)
        out.append(
            RawSheet(
                p.name, name, grid, np.arange(1, len(grid) + 1, dtype="int64"), None, typed, merged
            )
        )
    return out


def _cells_as_text(typed: pd.DataFrame) -> pd.DataFrame:
    """Text view of typed cells: integral floats lose '.0', dates become ISO, None ''."""
    import datetime as dt

    import pandas as pd

    def col_text(s: pd.Series) -> pd.Series:
        kinds = s.map(type)
        if (kinds == str).all():  # noqa: E721 (vectorised)
            return s
        out = s.astype(object).copy()
        is_float = kinds == float  # noqa: E721
        if is_float.any():
            f = pd.to_numeric(s[is_float], errors="coerce")
            integral = f.notna() & (f == f.round()) & (f.abs() < 1e15)
            txt = f.astype(str)
            txt[integral] = f[integral].astype("int64").astype(str)
            out[is_float] = txt
        is_int = (kinds == int) | (kinds == bool)  # noqa: E721
        if is_int.any():
            out[is_int] = s[is_int].astype(str)
        is_dt = (kinds == dt.datetime) | (kinds == dt.date) | (kinds == pd.Timestamp)
        if is_dt.any():
            out[is_dt] = s[is_dt].map(
                lambda v: v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v.isoformat()
            )
        is_time = kinds == dt.time
        if is_time.any():
            out[is_time] = s[is_time].map(lambda v: v.isoformat())
        is_none = s.isna()
        out[is_none] = ""
        return out.astype(str).where(~is_none, "")

    return typed.apply(col_text) if len(typed.columns) else typed


# --------------------------------------------------------------------------- typed tables
def read_table(path: str | os.PathLike[str], *, sheet: str | None = None) -> pd.DataFrame:
    """Read a table custtool wrote (Parquet typed; CSV/xlsx with sensible types).

    For raw exports from other systems use :func:`custtool.ingest.import_files`.
    """
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise InputError(
            f"{p}: file not found", "run the previous step first, or check the path", file=str(p)
        )
    check_regular_file(p, dataset=True)
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(p)
        if suffix in CSV_SUFFIXES:
            data = p.read_bytes()
            text, _ = decode(data, None, p.name)
            df = pd.read_csv(
                _io.StringIO(text.lstrip("\ufeff")),
                dtype=str,
                keep_default_na=False,
                sep="\t" if suffix == ".tsv" else ",",
            )
            return _restore_types(df)
        if suffix in EXCEL_SUFFIXES:
            df = pd.read_excel(p, sheet_name=sheet or 0, engine="calamine", dtype=object)
            return _restore_types(df.where(df.notna(), ""))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"{p.name}: cannot read ({type(exc).__name__}: {str(exc)[:120]})",
            "is it a file custtool wrote?",
        ) from None
    raise InputError(f"{p.name}: unsupported file type {suffix!r}", "use .parquet, .csv or .xlsx")


# columns whose text form should be turned back into numbers / dates when read from CSV/xlsx
_TEXT_COLUMNS = {
    "customer_id",
    "phone",
    "email",
    "order_id",
    "record_id",
    "id_number",
    "bank_card",
    "source_customer_id",
    "name",
    "phones",
    "phone_ext",
    "emails",
    "source_ids",
    "channels",
    "tags",
    "_flags",
}


def _restore_types(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    out: dict[Hashable, pd.Series] = {}
    for col in df.columns:
        s = df[col]
        name = str(col)
        if name in _TEXT_COLUMNS:
            out[col] = s.astype(str).replace({"nan": ""})
            continue
        if name.endswith(("_date", "_time", "_order")) or name in {
            "time",
            "as_of",
            "next_follow_up",
            "first_order",
            "last_order",
        }:
            out[col] = pd.to_datetime(s.replace("", None), errors="coerce")
            continue
        num = pd.to_numeric(s.replace("", None), errors="coerce")
        nonblank = s.astype(str).str.strip() != ""
        if nonblank.any() and num[nonblank].notna().all() and name not in _TEXT_COLUMNS:
            out[col] = num
        else:
            out[col] = s.astype(str).where(s.notna(), "")
    return pd.DataFrame(out, index=df.index)


# --------------------------------------------------------------------------- writing
def neutralize_formula_text(s: pd.Series) -> pd.Series:
    """Prefix ``'`` to text that a spreadsheet would run as a formula (= + - @ tab CR LF).

    Numbers stored as text that are plain numbers (``-20``, ``+86…`` is not) stay as they are.
    """
    import numpy as np
    import pandas as pd

    from custtool.arrow_text import arrow_text, has_bytes

    txt = s.astype("string[pyarrow]")  # Arrow-backed: the checks below run in C
    # none of the prefix characters anywhere in the column (most columns): nothing starts
    # with one (one scan of its bytes, not a test per value)
    prefixes = "".join(FORMULA_PREFIXES).encode()
    if not has_bytes(arrow_text(txt, combine=False), prefixes):
        return s
    starts = txt.str.startswith(FORMULA_PREFIXES, na=False).to_numpy(dtype=bool)
    if not starts.any():
        return s
    pos = np.flatnonzero(starts)
    plain_number = txt.iloc[pos].str.fullmatch(r"-\d+(\.\d+)?", na=False).to_numpy(dtype=bool)
    pos = pos[~plain_number]
    if not len(pos):
        return s
    out = s.astype(object).copy()
    out.iloc[pos] = ("'" + txt.iloc[pos].astype(str)).to_numpy(dtype=object)
    return pd.Series(out, index=s.index, name=s.name)


def _text_columns(df: pd.DataFrame) -> list[Any]:
    import pandas as pd

    return [
        c
        for c in df.columns
        if pd.api.types.is_object_dtype(df[c]) or pd.api.types.is_string_dtype(df[c])
    ]


CSV_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: rows per block of the CSV writer (memory: one block of text at a time)
CSV_BLOCK_ROWS = 65_536


def float_text(values: Any) -> Any:
    """Python's ``repr`` of each float (what pandas writes to CSV; NaN → null) as an Arrow
    string array, without a Python or numpy call per value: whole numbers below 2**53 are
    their integer text + ``.0``; other values in [1e-4, 1e9) are Arrow's shortest text
    (the same digits, both notations positional there); the rest (tiny, huge, -0.0, inf)
    take numpy's ``astype(str)``, which pandas itself uses."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    x = np.asarray(values, dtype=np.float64)
    a = np.abs(x)
    finite = np.isfinite(x)
    whole = finite & (x == np.trunc(x)) & (a < 2.0**53) & ~((x == 0) & np.signbit(x))
    middle = finite & ~whole & (a >= 1e-4) & (a < 1e9)
    ints = pc.binary_join_element_wise(
        pc.cast(pa.array(np.where(whole, x, 0).astype(np.int64)), pa.string()), ".0", ""
    )
    short = pc.cast(pa.array(np.where(middle, x, 0.5)), pa.string())
    text = pc.if_else(pa.array(whole), ints, short)
    rest = ~whole & ~middle & ~np.isnan(x)
    if rest.any():
        idx = np.flatnonzero(rest)
        text = pc.replace_with_mask(
            text, pa.array(rest), pa.array(x[idx].astype(str).astype(object), type=pa.string())
        )
    return pc.if_else(pa.array(np.isnan(x)), pa.scalar(None, pa.string()), text)


def _csv_fields(s: pd.Series, sep: str) -> Any:
    """One column as the text pandas' ``to_csv`` writes for it (QUOTE_MINIMAL: a field with
    the separator, a quote or a newline is quoted, quotes doubled), as an Arrow string
    array; None for a dtype this writer does not format exactly as pandas does."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from custtool.arrow_text import has_bytes

    dtype = s.dtype
    quote_check = True
    if isinstance(dtype, pd.StringDtype):
        text = pa.array(s.array, type=pa.string(), from_pandas=True)
    elif pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(s, skipna=True)
        if kind in ("string", "empty"):
            text = pa.array(s.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        else:  # mixed cells: str() of each (missing: empty), as the csv module does
            text = pa.array(s.astype("string").array, type=pa.string(), from_pandas=True)
    elif isinstance(dtype, np.dtype) and dtype == np.float64:
        text = float_text(s.to_numpy())
        quote_check = False
    elif isinstance(dtype, np.dtype) and dtype.kind in "iu":
        text = pc.cast(pa.array(s.to_numpy()), pa.string())  # = numpy's str of each value
        quote_check = False
    elif isinstance(dtype, np.dtype) and dtype.kind == "b":
        # True/False, what pandas writes (numpy's astype(str) of 65k flags took ~0.1 s)
        text = pc.if_else(pa.array(s.to_numpy()), "True", "False")
        quote_check = False
    elif isinstance(dtype, np.dtype) and dtype.kind == "f":
        values = s.to_numpy()
        out = values.astype(str)  # what pandas does (repr of floats)
        text = pa.array(out, type=pa.string())
        text = pc.if_else(pa.array(np.isnan(values)), pa.scalar(None, pa.string()), text)
        quote_check = False
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        out = s.array._format_native_types(na_rep="", date_format=CSV_DATE_FORMAT)
        text = pa.array(np.asarray(out, dtype=object), type=pa.string())
        quote_check = False
    elif isinstance(s.array, pd.arrays.IntegerArray | pd.arrays.FloatingArray):
        # pandas writes str() of each value: the numpy text of the data, blank where missing
        data = s.array._data
        missing = s.isna().to_numpy()
        if data.dtype.kind in "iu":
            text = pc.cast(pa.array(data), pa.string())
        elif data.dtype == np.float64 and not np.isnan(data[~missing]).any():
            # float_text: numpy's text of each value without numpy's per-value str (65k
            # scores: ~0.3 s → ~0.05 s); a NaN that is not missing (written "nan") goes below
            text = float_text(np.where(missing, 0.0, data))
        else:
            text = pa.array(data.astype(str), type=pa.string())
        text = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), text)
        quote_check = False
    elif isinstance(s.array, pd.arrays.BooleanArray):
        text = pc.if_else(pa.array(s.array, from_pandas=True), "True", "False")
        quote_check = False
    else:
        return None
    text = pc.fill_null(text, "")
    if quote_check and has_bytes(text, (sep + '"\n').encode()):
        needs = pc.match_substring_regex(text, "[" + ("\\t" if sep == "\t" else sep) + '"\\n]')
        if pc.any(needs).as_py():
            quoted = pc.binary_join_element_wise(
                '"', pc.replace_substring(text, '"', '""'), '"', ""
            )
            text = pc.if_else(needs, quoted, text)
    return text


def write_csv_fast(
    df: pd.DataFrame, path: str | os.PathLike[str], *, sep: str = ",", encoding: str = "utf-8-sig"
) -> bool:
    """``df.to_csv(path, index=False, sep=sep, encoding=encoding, date_format=…)``, byte for
    byte, built a column at a time with Arrow in blocks of :data:`CSV_BLOCK_ROWS` rows.
    Returns False (nothing written) for what it does not format exactly like pandas (an
    encoding other than UTF-8, a column of another dtype, a single column); the caller then
    uses pandas."""
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf-8-sig", "utf8"):
        return False
    if not _csv_fast_ok(df, sep):
        return False
    with open(path, "wb") as f:
        _write_csv_fast_to(f, df, sep=sep, bom=encoding.lower().replace("_", "-") == "utf-8-sig")
    return True


def _csv_fast_ok(df: pd.DataFrame, sep: str) -> bool:
    """Whether :func:`write_csv_fast` writes ``df`` exactly as pandas does."""
    if len(df.columns) < 2 or df.columns.duplicated().any():
        return False
    return all(_csv_fields(df[c].iloc[:0], sep) is not None for c in df.columns)


def _write_csv_fast_to(
    f: Any, df: pd.DataFrame, *, sep: str = ",", head: bool = True, bom: bool = True
) -> bool:
    """The bytes of :func:`write_csv_fast` into the open binary file ``f`` (``head``: with
    the header line, and the BOM when ``bom``). False (nothing written) when
    :func:`write_csv_fast` would decline ``df``."""
    import pandas as pd
    import pyarrow.compute as pc

    from custtool.arrow_text import write_joined

    if not _csv_fast_ok(df, sep):
        return False
    if head:
        names = _csv_fields(pd.Series([str(c) for c in df.columns], dtype=object), sep)
        if bom:
            f.write("\ufeff".encode())
        f.write((sep.join(names.to_pylist()) + "\n").encode("utf-8"))
    for start in range(0, len(df), CSV_BLOCK_ROWS):
        block = df.iloc[start : start + CSV_BLOCK_ROWS]
        fields = [_csv_fields(block[c], sep) for c in block.columns]
        lines = pc.binary_join_element_wise(*fields, sep)
        write_joined(f, pc.binary_join_element_wise(lines, "\n", ""))
    return True


def write_table(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    sheet_name: str = "data",
    encoding: str = "utf-8-sig",
    private: bool = False,
) -> Path:
    """Write a frame by extension (.parquet, .csv, .tsv, .xlsx), atomically.

    CSV is UTF-8 with BOM (Excel opens it correctly) and xlsx text cells are written as
    strings; in both, text that would start a formula is neutralised.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in {".parquet", ".csv", ".tsv", ".xlsx"}:
        raise InputError(
            f"{target.name}: cannot write {suffix!r} files", "use .parquet, .csv or .xlsx"
        )
    with atomic_path(target, private=private) as tmp:  # private: stays 0600 (custtool reveal)
        if suffix == ".parquet":
            _write_parquet(df, tmp)
        elif suffix in {".csv", ".tsv"}:
            safe = _formula_safe(df)
            sep = "\t" if suffix == ".tsv" else ","
            if not write_csv_fast(safe, tmp, sep=sep, encoding=encoding):
                safe.to_csv(
                    tmp, index=False, encoding=encoding, sep=sep, date_format=CSV_DATE_FORMAT
                )
        else:
            write_xlsx_sheets({sheet_name: df}, tmp)
    return target


#: frames longer than this go to Parquet a slice of rows at a time (memory: one slice's
#: Arrow copy, not the table's — 1M customers' 82 columns were +223 MiB at once)
PARQUET_SLICE_ROWS = 200_000


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """``df.to_parquet(path, index=False)``, in row groups of :data:`PARQUET_SLICE_ROWS`
    converted one at a time under the schema of the whole frame (the same table read back)."""
    if len(df) <= PARQUET_SLICE_ROWS:
        df.to_parquet(path, index=False)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Schema.from_pandas(df, preserve_index=False)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(df), PARQUET_SLICE_ROWS):
            part = df.iloc[start : start + PARQUET_SLICE_ROWS]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))


def _formula_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Lists joined and formula-like text neutralised, as CSV writes them (a shallow copy:
    only the changed columns are new)."""
    flat = flatten_lists(df)
    safe = flat.copy(deep=False)
    for c in _text_columns(flat):
        safe[c] = neutralize_formula_text(flat[c])
    return safe


#: rows per block of :func:`write_csv_blocks` (two blocks' transformed copies alive at a time;
#: customers.csv is written beside the report, the run's memory peak: kept small)
MASK_BLOCK_ROWS = 50_000


def write_csv_blocks(
    df: Any, path: str | os.PathLike[str], transform: Any, *, rows: int = MASK_BLOCK_ROWS
) -> None:
    """``write_table(transform(df), path)`` for a CSV, byte for byte, with ``transform``
    (a row-wise change such as :func:`custtool.report.masking.mask_frame`; filter rows
    before, not in it) applied to blocks of ``rows`` rows: at most two blocks' transformed
    copies are alive at a time. Written atomically, each block once, straight into the file
    (:func:`write_csv_chunks`)."""
    blocks = (df.iloc[start : start + rows] for start in range(0, max(len(df), 1), rows))
    write_csv_chunks(blocks, path, transform)


def write_csv_chunks(
    chunks: Iterable[pd.DataFrame],
    path: str | os.PathLike[str],
    transform: Any,
    *,
    sep: str = ",",
) -> None:
    """The frames ``chunks`` (the same columns; at least one, maybe empty) written one
    after the other as one CSV (``sep``), as :func:`write_table` writes their concatenation
    after ``transform`` (row-wise), byte for byte: UTF-8 with BOM, formulas neutralised.
    Atomic; at most two chunks' transformed copies alive at a time.

    A chunk is formatted and written in a second thread while the next one is taken and
    transformed in this one (Arrow's kernels and file writes release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as out,
        ThreadPoolExecutor(1, thread_name_prefix="custtool-csv") as pool,
    ):
        part = Path(str(tmp) + ".block.csv")
        pending = None
        try:
            for n, chunk in enumerate(chunks):
                safe = _formula_safe(transform(chunk))
                if pending is not None:
                    pending.result()  # blocks in order, one at a time
                pending = pool.submit(_write_csv_block, out, safe, part, not n, sep)
                del safe
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                pending.exception()  # wait: the file is closed only after the last write
            part.unlink(missing_ok=True)


def _write_csv_block(out: Any, safe: pd.DataFrame, part: Path, head: bool, sep: str) -> None:
    """One block of :func:`write_csv_chunks` (``head``: the first, with the BOM and header)."""
    if _write_csv_fast_to(out, safe, sep=sep, head=head):
        return
    # a block the fast writer does not format: pandas, through a block file
    safe.to_csv(part, index=False, encoding="utf-8-sig", sep=sep, date_format=CSV_DATE_FORMAT)
    with open(part, "rb") as f:
        if not head:  # the BOM and the header line once, from the first block
            f.readline()
        shutil.copyfileobj(f, out, 1 << 20)


def write_xlsx_sheets(
    sheets: dict[str, pd.DataFrame],
    path: str | os.PathLike[str],
    *,
    notes: dict[str, str] | None = None,
) -> None:
    """Plain multi-sheet workbook through the one formula-safe factory (:mod:`custtool.xlsx`);
    ``notes``: a line above the header of the named sheets (capped sheets say so)."""
    from custtool.xlsx import write_sheets

    write_sheets(sheets, path, max_rows=EXCEL_MAX_ROWS, notes=notes)
