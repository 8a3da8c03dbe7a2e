"""The one formula-safe workbook (SPEC E5, G2): every .xlsx custtool writes is opened here.

- :func:`open_workbook` opens an xlsxwriter workbook with formula-safe options (text is never
  turned into a formula, a URL or a number) on a temporary file beside the target and renames
  it into place only when the workbook was written completely.
- :class:`CellWriter` writes one cell or one column safely: text that a spreadsheet would run
  as a formula (``= + - @``, tab, CR, LF) is written as quote-prefixed text, numbers as
  numbers, dates as dates, missing values as empty cells.
- :func:`write_sheets` writes a plain multi-sheet workbook of frames with these two.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: rows in one worksheet, header included
EXCEL_MAX_ROWS = 1_048_576
#: characters that make a spreadsheet cell start a formula (OWASP CSV injection)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")

#: xlsxwriter options of every workbook custtool writes
WORKBOOK_OPTIONS: dict[str, Any] = {
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
    "nan_inf_to_errors": True,
    # a sheet of 1M customers is 2.6 GB of XML; Python's zipfile needs ZIP64 for a member
    # over 2 GiB, else the workbook fails at close (ZIP64 is used only for such members)
    "use_zip64": True,
}


@contextlib.contextmanager
def open_workbook(path: str | os.PathLike[str], *, constant_memory: bool = False) -> Iterator[Any]:
    """An xlsxwriter workbook with formula-safe options, written atomically to ``path``.

    In constant-memory mode each sheet must be written row by row, completely, before the
    next one is started.
    """
    import xlsxwriter

    with atomic_path(path) as tmp:
        wb = xlsxwriter.Workbook(str(tmp), {**WORKBOOK_OPTIONS, "constant_memory": constant_memory})
        ok = False
        try:
            yield wb
            ok = True
        finally:
            try:
                _close_fast(wb)
            except Exception:
                if ok:
                    raise


#: zlib level of the sheets in the .xlsx zip: 1 deflates a 1M-row sheet (3 GB of XML)
#: about 3.5x faster than zipfile's default 6, for a file about a third larger
ZIP_LEVEL = 1


def _close_fast(wb: Any) -> None:
    """``wb.close()`` with the zip written at :data:`ZIP_LEVEL` (xlsxwriter has no option for
    it: its zip class is swapped for the duration of the close)."""
    import functools
    import zipfile

    import xlsxwriter.workbook as xw

    original = xw.ZipFile
    xw.ZipFile = functools.partial(zipfile.ZipFile, compresslevel=ZIP_LEVEL)  # type: ignore[misc]
    try:
        wb.close()
    finally:
        xw.ZipFile = original  # type: ignore[misc]


def safe_sheet_name(name: str) -> str:
    """A valid worksheet name: no ``[]:*?/\\``, at most 31 characters, never empty."""
    for ch in "[]:*?/\\":
        name = name.replace(ch, "_")
    return name[:31] or "sheet"


#: pandas.api.types.infer_dtype results of object columns that hold no list
_NO_LISTS = frozenset(
    {"string", "empty", "integer", "floating", "mixed-integer-float", "boolean", "decimal"}
)


def flatten_lists(df: pd.DataFrame, sep: str = ";") -> pd.DataFrame:
    """List-valued cells (tags) joined with ``sep`` for CSV/xlsx."""
    import pandas as pd

    out = df
    for c in df.columns:
        s = df[c]
        if s.dtype != object:  # str and numeric columns cannot hold lists
            continue
        if pd.api.types.infer_dtype(s, skipna=True) in _NO_LISTS:  # one C pass, no lambda
            continue
        joined_all = _join_lists_arrow(s, sep)
        if joined_all is not None:
            if out is df:
                out = df.copy(deep=False)  # whole columns are replaced: no data copy
            out[c] = joined_all
            continue
        is_list = s.map(
            lambda v: (
                isinstance(v, (list, tuple)) or hasattr(v, "tolist") and not isinstance(v, str)
            )
        )
        if is_list.any():
            if out is df:
                out = df.copy(deep=False)
            joined = s[is_list].map(lambda v: sep.join(map(str, list(v))))  # list cells only
            out[c] = s.where(~is_list, joined)
    return out


def _join_lists_arrow(s: pd.Series, sep: str) -> pd.Series | None:
    """``flatten_lists`` of one object column whose cells are all lists (or arrays) of
    text or missing, joined by Arrow (no Python call per cell): each list as
    ``sep.join(items)``, a missing cell kept as it is. None for anything else (a cell that
    is not a list, an item that is not text or is missing): the caller joins value by value."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pa.array(s, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError):
        return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        return None
    if not (
        pa.types.is_string(arr.type.value_type) or pa.types.is_large_string(arr.type.value_type)
    ):
        return None
    if pc.list_flatten(arr).null_count:  # str(None) items: joined value by value
        return None
    joined = pc.binary_join(arr, sep).to_numpy(zero_copy_only=False)
    missing = arr.is_null().to_numpy(zero_copy_only=False)
    if missing.any():
        joined = joined.astype(object)
        joined[missing] = s.to_numpy(dtype=object)[missing]
    return pd.Series(np.asarray(joined, dtype=object), index=s.index, name=s.name, dtype=object)


def formula_like(values: pd.Series) -> pd.Series:
    """True where a text value would start a formula in a spreadsheet (= + - @ tab CR LF)."""
    return values.astype("string").str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)


def _missing(v: Any) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


class CellWriter:
    """The safe cell writer of one workbook (holds its quote-prefix text format)."""

    def __init__(self, wb: Any) -> None:
        self.wb = wb
        self.quote = wb.add_format({"quote_prefix": True})
        self.date = wb.add_format({"num_format": "yyyy-mm-dd"})
        self.datetime = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})

    def cell(self, ws: Any, row: int, col: int, value: Any, fmt: Any = None) -> None:
        """One cell: text as text (quote-prefixed when it looks like a formula), numbers as
        numbers, booleans as booleans, dates as dates (``fmt`` or yyyy-mm-dd), nothing for
        missing values."""
        import numpy as np
        import pandas as pd

        if _missing(value):
            return
        if isinstance(value, (bool, np.bool_)):
            ws.write_boolean(row, col, bool(value), fmt)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            ws.write_number(row, col, float(value), fmt)
        elif isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date)):
            if isinstance(value, pd.Timestamp):
                value = (
                    value.tz_localize(None).to_pydatetime()
                    if value.tz is not None
                    else value.to_pydatetime()
                )
            elif isinstance(value, _dt.datetime) and value.tzinfo is not None:
                value = value.replace(tzinfo=None)
            ws.write_datetime(row, col, value, fmt or self.date)
        else:
            text = str(value)
            if text.startswith(FORMULA_PREFIXES):
                ws.write_string(row, col, text, self.quote)
            else:
                ws.write_string(row, col, text, fmt)

    def column(self, ws: Any, first_row: int, col: int, values: pd.Series, fmt: Any = None) -> None:
        """A whole column from ``first_row`` down, typed by the column's dtype (a few hundred
        rows; large tables go through :func:`write_sheets` or the report's chunked writer)."""
        import pandas as pd

        is_num = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        is_dt = pd.api.types.is_datetime64_any_dtype(values)
        for i, v in enumerate(values.tolist(), start=first_row):
            if _missing(v):
                continue
            if is_num:
                ws.write_number(i, col, float(v), fmt)
            elif is_dt:
                self.cell(ws, i, col, v, fmt)
            else:  # a text (or mixed) column: every value as text
                self.cell(ws, i, col, str(v))


#: Python's ``\\s`` (str.isspace): leading or trailing ones get xml:space="preserve"
_SPACE_CLASS = "".join(
    f"\\x{{{c:04x}}}"
    for c in (0x9, 0xA, 0xB, 0xC, 0xD, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680)
    + tuple(range(0x2000, 0x200B))
    + (0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
)
#: text xlsxwriter rewrites (control characters, its own ``_xHHHH_`` escapes, non-characters);
#: such values (rare) take xlsxwriter's own escaping, value by value
_ODD_TEXT = r"[\x00-\x08\x0b-\x1f\x{fffe}\x{ffff}]|_x[0-9a-fA-F]{4}_"
#: what makes a text value more than ``<is><t>value</t></is>``: a formula start, an XML
#: special character, leading/trailing whitespace, odd text (and, checked apart, length)
_SPECIAL_TEXT = rf"^[=+\-@{_SPACE_CLASS}]|[{_SPACE_CLASS}]$|[&<>]|{_ODD_TEXT}"
#: FORMULA_PREFIXES as one RE2 pattern
_FORMULA_START = r"^[=+\-@\t\r\n]"
#: characters of a string below which Excel's 32,767 UTF-16 units cannot be exceeded
_SHORT_TEXT = 32767 // 2


def _odd_text_cell(value: str) -> str:
    """The ``<is>`` part of one inline-string cell, escaped exactly as xlsxwriter does it."""
    from xlsxwriter.utility import _preserve_whitespace, _utf16_len, _utf16_truncate
    from xlsxwriter.xmlwriter import XMLwriter

    if len(value) > _SHORT_TEXT and _utf16_len(value) > 32767:
        value = _utf16_truncate(value, 32767)
    value = XMLwriter._escape_control_characters(value)
    space = ' xml:space="preserve"' if _preserve_whitespace(value) else ""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<is><t{space}>{value}</t></is>"


def _style(fmt: Any) -> str:
    return "" if fmt is None else f' s="{fmt._get_xf_index()}"'


def _special_text_cells(t: Any, fmt: Any, quote: Any) -> tuple[Any, Any]:
    """(style attribute, ``<is>`` part) of text values that need more than the plain form:
    XML escapes, ``xml:space="preserve"``, the quote prefix, xlsxwriter's own escaping."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    odd = pc.or_(pc.match_substring_regex(t, _ODD_TEXT), pc.greater(pc.utf8_length(t), _SHORT_TEXT))
    esc = t
    if pc.any(pc.match_substring_regex(t, "[&<>]")).as_py():
        for ch, ent in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
            esc = pc.replace_substring(esc, ch, ent)
    preserve = pc.match_substring_regex(t, f"^[{_SPACE_CLASS}]|[{_SPACE_CLASS}]$")
    inner = pc.binary_join_element_wise(
        pc.if_else(preserve, '<is><t xml:space="preserve">', "<is><t>"), esc, "</t></is>", ""
    )
    if pc.any(odd).as_py():
        where = np.flatnonzero(odd.to_numpy(zero_copy_only=False))
        fixed = inner.to_numpy(zero_copy_only=False)
        for i in where:
            fixed[i] = _odd_text_cell(t[int(i)].as_py())
        inner = pa.array(fixed, type=pa.string())
    hit = pc.match_substring_regex(t, _FORMULA_START)
    return pc.if_else(hit, _style(quote), _style(fmt)), inner


def _text_cells(values: Any, letter: str, rows: Any, fmt: Any, quote: Any) -> Any:
    """Inline-string cells of one column (Arrow string array, "" = blank cell). One regex
    pass finds the values that need more than ``<is><t>value</t></is>`` (usually none);
    only those go through :func:`_special_text_cells`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = values
    special = pc.or_(
        pc.match_substring_regex(t, _SPECIAL_TEXT), pc.greater(pc.utf8_length(t), _SHORT_TEXT)
    )
    if not pc.any(special).as_py():
        cells = pc.binary_join_element_wise(
            f'<c r="{letter}', rows, f'"{_style(fmt)} t="inlineStr"><is><t>', t, "</t></is></c>", ""
        )
    else:
        idx = pa.array(np.flatnonzero(special.to_numpy(zero_copy_only=False)))
        style, inner = _special_text_cells(t.take(idx), fmt, quote)
        some = pc.binary_join_element_wise(
            f'<c r="{letter}', rows.take(idx), '"', style, ' t="inlineStr">', inner, "</c>", ""
        )
        plain = pc.binary_join_element_wise(
            f'<c r="{letter}', rows, f'"{_style(fmt)} t="inlineStr"><is><t>', t, "</t></is></c>", ""
        )
        cells = pc.replace_with_mask(plain, special, some)
    return pc.if_else(pc.equal(pc.utf8_length(t), 0), "", cells)


def _number_cells(values: Any, letter: str, rows: Any, fmt: Any) -> Any:
    """Number cells of one column (float array; NaN and infinities = blank cells). The value
    is the shortest text that reads back as the same double."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = np.asarray(values, dtype=float)
    ok = np.isfinite(arr)
    text = pc.cast(pa.array(np.where(ok, arr, 0.0)), pa.string())
    cells = pc.binary_join_element_wise(
        f'<c r="{letter}', rows, f'"{_style(fmt)}><v>', text, "</v></c>", ""
    )
    return pc.if_else(pa.array(ok), cells, "")


def _append_rows_cell_by_cell(
    ws: Any, first_row: int, columns: list[tuple[str, Any, Any]], quote: Any, n: int
) -> int:
    """:func:`append_rows` through xlsxwriter's public calls (a workbook not in
    constant-memory mode keeps its cells in memory; such sheets are small)."""
    import numpy as np
    import pyarrow as pa

    for j, (kind, values, fmt) in enumerate(columns):
        if kind == "num":
            arr = np.asarray(values, dtype=float)
            for i in np.flatnonzero(np.isfinite(arr)):
                ws.write_number(first_row + int(i), j, float(arr[i]), fmt)
            continue
        vals = values.to_pylist() if isinstance(values, pa.Array) else list(values)
        for i, v in enumerate(vals):
            if v is None or v == "":
                continue
            text = str(v)
            ws.write_string(
                first_row + i, j, text, quote if text.startswith(FORMULA_PREFIXES) else fmt
            )
    return n


def _copy_rows_as_bytes(ws: Any) -> None:
    """Make ``ws`` copy its row stream into the sheet XML as bytes when the workbook closes
    (xlsxwriter copies it through text mode, decoding and encoding every byte: seconds per
    100k rows of 70 columns). Any other case keeps xlsxwriter's own copy."""
    import shutil

    if getattr(ws, "_custtool_byte_copy", False):
        return
    original = type(ws)._write_optimized_sheet_data

    def write_sheet_data() -> None:
        fh = ws.fh
        if ws.dim_rowmin is None or not hasattr(fh, "buffer") or ws.row_data_fh is None:
            original(ws)
            return
        ws._xml_start_tag("sheetData")
        fh.flush()
        ws.row_data_fh.flush()
        with open(ws.row_data_filename, "rb") as src:
            shutil.copyfileobj(src, fh.buffer, 1 << 20)
        ws.row_data_fh.close()
        os.unlink(ws.row_data_filename)
        ws._xml_end_tag("sheetData")

    ws._write_optimized_sheet_data = write_sheet_data
    ws._custtool_byte_copy = True


def append_rows(ws: Any, first_row: int, columns: list[tuple[str, Any, Any]], quote: Any) -> int:
    """Write rows from ``first_row`` straight into a constant-memory worksheet's row stream,
    one column at a time (Arrow string building, no Python call per cell). Returns the
    number of rows written.

    ``columns``: per column, left to right from column A, ``(kind, values, fmt)``:
    ``"num"`` — floats (numbers and Excel serial dates), NaN / infinite = blank cell;
    ``"text"`` — an Arrow string array or anything ``pyarrow.array`` takes ("" or missing =
    blank cell). ``fmt``: the cells' xlsxwriter format (None: none). Text that a
    spreadsheet would run as a formula (:data:`FORMULA_PREFIXES`) gets ``quote`` (a format
    with ``quote_prefix``), as :class:`CellWriter` does.

    The cells are the XML xlsxwriter itself writes for ``write_number`` / ``write_string``
    in constant-memory mode (inline strings, the same escaping of XML and control
    characters, ``xml:space="preserve"``, the 32,767-unit limit); numbers are the shortest
    text of the same double. Every row of the worksheet before ``first_row`` must be
    written already, and no cell may be written at or above the returned rows afterwards.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from xlsxwriter.utility import xl_col_to_name

    from custtool.arrow_text import write_joined

    n = min((len(v) for _k, v, _f in columns), default=0)
    if n == 0:
        return 0
    if not getattr(ws, "constant_memory", False) or getattr(ws, "row_data_fh", None) is None:
        return _append_rows_cell_by_cell(ws, first_row, columns, quote, n)
    ws._write_single_row(first_row)  # flush the rows above (the header) into the stream
    _copy_rows_as_bytes(ws)
    rows = pc.cast(pa.array(np.arange(first_row + 1, first_row + n + 1)), pa.string())
    parts: list[Any] = []
    for j, (kind, values, fmt) in enumerate(columns):
        letter = xl_col_to_name(j)
        if kind == "num":
            parts.append(_number_cells(values, letter, rows, fmt))
        else:
            t = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
            t = pc.fill_null(t.cast(pa.string()), "")
            parts.append(_text_cells(t, letter, rows, fmt, quote))
    joined = pc.binary_join_element_wise('<row r="', rows, '">', *parts, "</row>", "")
    fh = ws.row_data_fh
    fh.flush()
    write_joined(fh.buffer, joined)
    fh.buffer.flush()
    last = first_row + n - 1
    ws._check_dimensions(last, len(columns) - 1)
    ws.previous_row = last
    return n


def cap_sheets(
    sheets: dict[str, pd.DataFrame],
    cap: int,
    files: dict[str, str],
    *,
    lang: str = "zh",
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Sheets named in ``files`` cut to their first ``cap`` rows, never silently: returns the
    sheets and, per cut sheet, a note naming how many more rows there are and the file (from
    ``files``, which the caller writes in full) that holds them. Other sheets are unchanged."""
    from custtool.labels import text

    out: dict[str, pd.DataFrame] = {}
    notes: dict[str, str] = {}
    for name, df in sheets.items():
        if name in files and len(df) > cap:
            out[name] = df.iloc[:cap]
            notes[name] = text("capped_sheet", lang).format(
                listed=cap, more=len(df) - cap, file=files[name]
            )
        else:
            out[name] = df
    return out, notes


def unique_sheet_names(names: list[str]) -> list[str]:
    """Valid, distinct worksheet names (Excel compares them case-insensitively)."""
    used: set[str] = set()
    out = []
    for name in names:
        base = safe_sheet_name(name)
        candidate, k = base, 2
        while candidate.lower() in used:
            suffix = f" ({k})"
            candidate = base[: 31 - len(suffix)] + suffix
            k += 1
        used.add(candidate.lower())
        out.append(candidate)
    return out


def write_sheets(
    sheets: dict[str, pd.DataFrame],
    path: str | os.PathLike[str],
    *,
    max_rows: int = EXCEL_MAX_ROWS,
    notes: dict[str, str] | None = None,
) -> Path:
    """Plain multi-sheet workbook, atomically: frozen header, autofilter, widths from content;
    text never a formula. A table longer than Excel's row limit continues on "name (2)", …
    ``notes``: a line above the header of the named sheets (e.g. from :func:`cap_sheets`)."""
    import pandas as pd

    notes = notes or {}
    target = Path(path)
    with open_workbook(target, constant_memory=True) as wb:
        cw = CellWriter(wb)
        head = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
        note_fmt = wb.add_format({"bold": True, "font_color": "#C00000"})
        room = max_rows - 1
        parts: list[tuple[str, pd.DataFrame]] = []
        for name, df in sheets.items():
            if name in notes:
                room_here = room - 1
                if len(df) > room_here:  # never silently cut: the caller caps first
                    raise ValueError(
                        f"sheet {name!r} with a note holds more rows than Excel allows"
                    )
                parts.append((name, df))
            elif len(df) <= room:
                parts.append((name, df))
            else:
                for k, start in enumerate(range(0, len(df), room), start=1):
                    suffix = "" if k == 1 else f" ({k})"
                    parts.append(
                        (
                            safe_sheet_name(name)[: 31 - len(suffix)] + suffix,
                            df.iloc[start : start + room],
                        )
                    )
        for name, df in parts:
            ws = wb.add_worksheet(safe_sheet_name(name))
            top = 0
            if name in notes:
                ws.write_string(0, 0, notes[name], note_fmt)
                top = 1
            flat = flatten_lists(df)
            cols = list(flat.columns)
            for j, c in enumerate(cols):
                ws.write_string(top, j, str(c), head)
                sample = flat[c].head(200).map(lambda v: "" if _missing(v) else str(v))
                width = (
                    max([len(str(c)) * 2] + [min(len(v) * 1.6, 50) for v in sample])
                    if len(sample)
                    else len(str(c)) * 2
                )
                ws.set_column(j, j, max(8, min(width, 50)))
            ws.freeze_panes(top + 1, 0)
            if cols:
                ws.autofilter(top, 0, top + max(len(flat), 1), len(cols) - 1)
            kinds = []
            for c in cols:
                s = flat[c]
                if pd.api.types.is_datetime64_any_dtype(s):
                    has_time = bool((s.dropna().dt.normalize() != s.dropna()).any())
                    kinds.append(("dt", cw.datetime if has_time else cw.date))
                elif pd.api.types.is_bool_dtype(s):
                    kinds.append(("bool", None))
                elif pd.api.types.is_numeric_dtype(s):
                    kinds.append(("num", None))
                else:
                    kinds.append(("str", None))
            values = [flat[c].tolist() for c in cols]
            quote = cw.quote
            for i in range(len(flat)):
                r = i + 1 + top
                for j, (kind, fmt) in enumerate(kinds):
                    v = values[j][i]
                    if _missing(v):
                        continue
                    if kind == "dt":
                        ws.write_datetime(r, j, v.to_pydatetime(), fmt)
                    elif kind == "num":
                        ws.write_number(r, j, float(v))
                    elif kind == "bool":
                        ws.write_boolean(r, j, bool(v))
                    else:
                        text = str(v)
                        ws.write_string(
                            r, j, text, quote if text.startswith(FORMULA_PREFIXES) else None
                        )
    return target


__all__ = [
    "EXCEL_MAX_ROWS",
    "FORMULA_PREFIXES",
    "safe_sheet_name",
    "flatten_lists",
    "WORKBOOK_OPTIONS",
    "open_workbook",
    "formula_like",
    "CellWriter",
    "write_sheets",
    "cap_sheets",
    "unique_sheet_names",
    "append_rows",
]
