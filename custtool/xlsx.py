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
import io
import os
import shutil
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
    next one is started. Rows written with :func:`append_rows` are deflated while they are
    written, by a second thread, and spliced into the .xlsx at close
    (:class:`_DeflatedRows`).
    """
    import xlsxwriter

    with atomic_path(path) as tmp:
        wb = xlsxwriter.Workbook(str(tmp), {**WORKBOOK_OPTIONS, "constant_memory": constant_memory})
        wb._custtool_spliced = {}  # sheet XML file → its rows deflated (_DeflatedRows)
        if constant_memory:
            add_worksheet = wb.add_worksheet

            def add_streamed_worksheet(*args: Any, **kw: Any) -> Any:
                ws = add_worksheet(*args, **kw)
                ws._custtool_spliced = wb._custtool_spliced  # append_rows deflates its rows
                return ws

            wb.add_worksheet = add_streamed_worksheet
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
    it: its zip class is swapped for the duration of the close) and the rows deflated while
    they were written spliced into their sheets (:class:`_SplicingZipFile`)."""
    import functools

    import xlsxwriter.workbook as xw

    spliced = getattr(wb, "_custtool_spliced", {})
    original = xw.ZipFile
    xw.ZipFile = functools.partial(  # type: ignore[misc]
        _SplicingZipFile, compresslevel=ZIP_LEVEL, spliced=spliced
    )
    try:
        wb.close()
    finally:
        xw.ZipFile = original  # type: ignore[misc]
        for rows in list(spliced.values()):  # a close that failed: no thread or file left
            rows.close()
        spliced.clear()


def deflate_module() -> Any:
    """The deflate of the big sheets' rows: ISA-L's (``isal.isal_zlib``, zlib's interface
    and raw-deflate format; the 1M-customer 客户明细's 3 GB of XML: ~3 s of CPU at level 1
    against zlib's ~12 s, and a smaller file), else zlib where isal has no wheel."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; a platform without it
        import zlib

        return zlib
    return isal_zlib


#: stands for a sheet's deflated rows in its XML file until the zip splices them in (NUL
#: never occurs in the XML xlsxwriter writes)
_ROWS_MARK = "\x00custtool:rows\x00"
#: bytes of XML deflated at a time by the rows' thread (memory: a few of these are queued)
_DEFLATE_SLICE = 8 << 20
#: slices queued before the writing thread waits for the deflating one
_DEFLATE_QUEUE = 4


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``a + b`` from ``crc32(a)``, ``crc32(b)`` and ``len(b)`` (zlib's
    ``crc32_combine``, which Python's zlib module does not expose)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = [_gf2_times(odd, odd[n]) for n in range(32)]  # two zero bits
    odd = [_gf2_times(even, even[n]) for n in range(32)]  # four zero bits
    while True:  # apply len2 zero bytes to crc1
        even = [_gf2_times(odd, odd[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = [_gf2_times(even, even[n]) for n in range(32)]
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


class _DeflatedRows:
    """A constant-memory worksheet's row stream, deflated (raw deflate, :data:`ZIP_LEVEL`)
    by a worker thread while the rows are written, into a temporary file: the sheet's XML
    then never goes through disk as text (xlsxwriter writes it to a temporary file, copies
    it into the sheet's file and deflates that at close). zlib and file writes release the
    GIL, so the deflating runs on the second core beside the building of the next rows.

    ``write`` keeps a reference to the buffer it is given until it is deflated (the caller
    hands over immutable Arrow buffers or bytes); :meth:`finish` ends the stream with a
    sync flush (byte-aligned, not final) and gives ``crc``, ``size`` and ``csize``.
    """

    def __init__(self, tmpdir: str | None = None) -> None:
        import queue
        import tempfile
        import threading

        fd, self.path = tempfile.mkstemp(dir=tmpdir, suffix=".rows.deflate")
        self._out = os.fdopen(fd, "wb")
        self._zlib = deflate_module()
        self._z = self._zlib.compressobj(ZIP_LEVEL, self._zlib.DEFLATED, -15)
        self.crc = 0
        self.size = 0
        self.csize = 0
        self.finished = False
        self._error: BaseException | None = None
        self._queue: Any = queue.Queue(maxsize=_DEFLATE_QUEUE)
        self._thread = threading.Thread(target=self._work, name="custtool-deflate", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        zlib = self._zlib
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is not None:
                continue  # drain after an error: the writer must never wait forever
            try:
                self.crc = zlib.crc32(data, self.crc)
                self.size += len(data)
                out = self._z.compress(data)
                if out:
                    self._out.write(out)
                    self.csize += len(out)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the writing thread
                self._error = exc

    def write(self, data: Any) -> int:
        """Queue ``data`` (bytes or a memoryview of an immutable buffer) for deflating."""
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B")
        n = len(view)
        for i in range(0, n, _DEFLATE_SLICE):
            self._queue.put(view[i : i + _DEFLATE_SLICE])
        return n

    def finish(self) -> None:
        """Wait for the thread, end the deflate stream (sync flush) and close the file."""
        zlib = self._zlib
        if self.finished:
            return
        self._queue.put(None)
        self._thread.join()
        self.finished = True
        if self._error is not None:
            self._out.close()
            raise self._error
        tail = self._z.flush(zlib.Z_SYNC_FLUSH)
        self._out.write(tail)
        self.csize += len(tail)
        self._out.close()

    def inflate_into(self, fh: Any) -> None:
        """The rows as text into the text file ``fh`` (after :meth:`finish`)."""
        import codecs
        import zlib

        z = zlib.decompressobj(-15)
        text = codecs.getincrementaldecoder("utf-8")()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                fh.write(text.decode(z.decompress(block)))
        fh.write(text.decode(z.flush(), final=True))

    def close(self) -> None:
        """Stop the thread and remove the file (after a failure, or once spliced)."""
        if not self.finished:
            self._error = self._error or RuntimeError("rows stream closed unfinished")
            self._queue.put(None)
            self._thread.join()
            self.finished = True
            self._out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class _RowsFile(io.RawIOBase):
    """A raw binary file over :class:`_DeflatedRows` for xlsxwriter's own text writes
    (through ``io.BufferedWriter``, whose buffers are reused: each write is copied)."""

    def __init__(self, rows: _DeflatedRows) -> None:
        super().__init__()
        self.rows = rows

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return self.rows.write(bytes(b))


def _stream_rows(ws: Any, first_row: int) -> _DeflatedRows | None:
    """The worksheet's :class:`_DeflatedRows`, set up on its first :func:`append_rows`
    (None when its workbook was not opened by :func:`open_workbook`): the rows written so
    far (the header) go first, then xlsxwriter's later writes and ours all go through it."""
    rows = getattr(ws, "_custtool_rows", None)
    if rows is not None:
        return rows
    spliced = getattr(ws, "_custtool_spliced", None)
    if spliced is None or not _CAN_SPLICE:
        return None
    ws._write_single_row(first_row)  # flush the rows above (the header) into the stream
    fh = ws.row_data_fh
    fh.flush()
    rows = _DeflatedRows(getattr(ws, "tmpdir", None))
    with open(ws.row_data_filename, "rb") as f:
        head = f.read()
    if head:
        rows.write(head)
    fh.close()
    os.unlink(ws.row_data_filename)
    text = io.TextIOWrapper(
        io.BufferedWriter(_RowsFile(rows), 1 << 16), encoding="utf-8", newline="\n"
    )
    ws.row_data_fh = ws.fh = text
    ws._custtool_rows = rows

    def write_sheet_data() -> None:
        ws._xml_start_tag("sheetData")
        ws.row_data_fh.flush()
        rows.finish()
        name = _sheet_file(ws.fh)
        if name is not None:
            ws.fh.write(_ROWS_MARK)  # the zip splices the deflated rows in here
            spliced[name] = rows
        else:  # a sheet not written to a file (in memory): the rows inflated into it
            rows.inflate_into(ws.fh)
            rows.close()
        ws._xml_end_tag("sheetData")

    ws._write_optimized_sheet_data = write_sheet_data
    return rows


def _sheet_file(fh: Any) -> str | None:
    """The path of the file a sheet's XML is written to (None: not a file)."""
    name = getattr(fh, "name", None)
    return os.path.realpath(name) if isinstance(name, str) and os.path.isfile(name) else None


def _zipfile_has_what_splicing_uses() -> bool:
    import zipfile

    return all(hasattr(zipfile.ZipFile, a) for a in ("_writecheck", "write")) and hasattr(
        zipfile.ZipInfo, "FileHeader"
    )


#: the zipfile internals :class:`_SplicingZipFile` writes a member with are there (else
#: the rows go through xlsxwriter's own row file and zip)
_CAN_SPLICE = _zipfile_has_what_splicing_uses()


def _splicing_zip_class() -> Any:
    import zipfile
    import zlib

    class SplicingZipFile(zipfile.ZipFile):
        """``zipfile.ZipFile`` whose ``write`` of a sheet XML file holding :data:`_ROWS_MARK`
        writes the member from the deflated head, the rows' stream and the deflated tail
        (one valid deflate stream; CRC-32 by :func:`crc32_combine`)."""

        def __init__(self, *args: Any, spliced: dict[str, _DeflatedRows], **kw: Any) -> None:
            super().__init__(*args, **kw)
            self._spliced = spliced

        def write(self, filename: Any, arcname: Any = None, *args: Any, **kw: Any) -> None:
            rows = self._spliced.get(os.path.realpath(filename))
            if rows is None:
                return super().write(filename, arcname, *args, **kw)
            with open(filename, "rb") as f:
                head, tail = f.read().split(_ROWS_MARK.encode(), 1)
            z = zlib.compressobj(ZIP_LEVEL, zlib.DEFLATED, -15)
            zhead = z.compress(head) + z.flush(zlib.Z_SYNC_FLUSH)
            z = zlib.compressobj(ZIP_LEVEL, zlib.DEFLATED, -15)
            ztail = z.compress(tail) + z.flush()
            zinfo = zipfile.ZipInfo.from_file(
                filename, arcname, strict_timestamps=self._strict_timestamps
            )
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            zinfo.flag_bits = 0
            crc = crc32_combine(zlib.crc32(head), rows.crc, rows.size)
            zinfo.CRC = crc32_combine(crc, zlib.crc32(tail), len(tail))
            zinfo.file_size = len(head) + rows.size + len(tail)
            zinfo.compress_size = len(zhead) + rows.csize + len(ztail)
            zip64 = (
                zinfo.file_size > zipfile.ZIP64_LIMIT or zinfo.compress_size > zipfile.ZIP64_LIMIT
            )
            if zip64 and not self._allowZip64:
                raise zipfile.LargeZipFile("Zipfile size would require ZIP64 extensions")
            with self._lock:
                if self._seekable:
                    self.fp.seek(self.start_dir)
                zinfo.header_offset = self.fp.tell()
                self._writecheck(zinfo)
                self._didModify = True
                self.fp.write(zinfo.FileHeader(zip64))
                self.fp.write(zhead)
                with open(rows.path, "rb") as src:
                    shutil.copyfileobj(src, self.fp, 1 << 20)
                self.fp.write(ztail)
                self.start_dir = self.fp.tell()
                self.filelist.append(zinfo)
                self.NameToInfo[zinfo.filename] = zinfo
            rows.close()
            del self._spliced[os.path.realpath(filename)]
            return None

    return SplicingZipFile


def _SplicingZipFile(*args: Any, **kw: Any) -> Any:  # noqa: N802 - stands for a class
    return _splicing_zip_class()(*args, **kw)


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


def join_lists(s: Any, sep: str = ";", *, null_items: bool = False) -> Any:
    """The one Arrow list join (flatten_lists for CSV/xlsx, the report's and the cards'
    tags as text): each cell of ``s`` (a Series or array of lists, tuples or arrays of
    text, or missing) as ``sep.join(items)``, in Arrow (no Python call per cell). Returns an
    Arrow string array, null where the cell is missing (and, with ``null_items``, where a
    list holds a missing item); None when a cell is not a list or an item is not text (or,
    without ``null_items``, is missing): the caller joins those value by value."""
    import pyarrow.compute as pc

    from custtool.arrow_text import text_lists

    arr = text_lists(s)
    if arr is None:
        return None
    if not null_items and pc.list_flatten(arr).null_count:  # str(None) items: value by value
        return None
    return pc.binary_join(arr, sep)


def _join_lists_arrow(s: pd.Series, sep: str) -> pd.Series | None:
    """``flatten_lists`` of one object column by :func:`join_lists`: each list cell joined,
    a missing cell kept as it is; None when :func:`join_lists` declines the column."""
    import numpy as np
    import pandas as pd

    arr = join_lists(s, sep)
    if arr is None:
        return None
    joined = arr.to_numpy(zero_copy_only=False)
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
            text = excel_text(str(value))
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


#: Excel's limit on a cell's text, in UTF-16 units
CELL_LIMIT = 32767


def excel_text(value: str) -> str:
    """``value`` as a cell can hold it: text over Excel's 32,767 UTF-16 units is cut, and says
    so at its end (``…〔已截断:原文 40,000 字〕``) rather than ending mid-sentence unmarked;
    the CSV and Parquet outputs keep the whole text."""
    if len(value) <= _SHORT_TEXT:
        return value
    from xlsxwriter.utility import _utf16_len, _utf16_truncate

    if _utf16_len(value) <= CELL_LIMIT:
        return value
    mark = f"…〔已截断:原文 {len(value):,} 字〕"
    return _utf16_truncate(value, CELL_LIMIT - _utf16_len(mark)) + mark


def _odd_text_cell(value: str) -> str:
    """The ``<is>`` part of one inline-string cell, escaped exactly as xlsxwriter does it."""
    from xlsxwriter.utility import _preserve_whitespace
    from xlsxwriter.xmlwriter import XMLwriter

    value = excel_text(value)
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
            text = excel_text(str(v))
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
    return append_row_chunks(ws, first_row, [columns], quote, threads=False)


def append_row_chunks(
    ws: Any, first_row: int, chunks: Any, quote: Any, *, threads: bool = True
) -> int:
    """:func:`append_rows` of each item of ``chunks`` (an iterable of ``columns`` lists, the
    rows one after another from ``first_row``). Returns the number of rows written.

    With ``threads``, the XML of one chunk is built in a second thread while ``chunks``
    produces the next one in this thread (Arrow's kernels release the GIL): a generator
    that masks and converts a chunk runs beside the building of the previous chunk's XML.
    The file is the same as written one chunk after the other.
    """
    if not getattr(ws, "constant_memory", False) or getattr(ws, "row_data_fh", None) is None:
        row = first_row
        for columns in chunks:
            n = min((len(v) for _k, v, _f in columns), default=0)
            if n:
                row += _append_rows_cell_by_cell(ws, row, columns, quote, n)
        return row - first_row
    # the rows above flushed (formats handed out in the order of a plain write) before any
    # chunk's XML is built: the building thread is then the only one handing out formats
    started = False
    row = first_row
    pool = None
    pending: tuple[Any, int, int, int] | None = None
    try:
        for columns in chunks:
            n = min((len(v) for _k, v, _f in columns), default=0)
            if n == 0:
                continue
            if not started:
                stream = _stream_rows(ws, first_row)
                ws._write_single_row(first_row)  # flush the rows above (the header)
                if stream is None:
                    _copy_rows_as_bytes(ws)
                started = True
            if not threads:
                _write_rows_xml(ws, row, _rows_xml(columns, row, quote, n), n, len(columns))
            else:
                if pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    pool = ThreadPoolExecutor(1, thread_name_prefix="custtool-xml")
                future = pool.submit(_rows_xml, columns, row, quote, n)
                if pending is not None:
                    _write_rows_xml(ws, pending[1], pending[0].result(), *pending[2:])
                pending = (future, row, n, len(columns))
            row += n
            del columns
        if pending is not None:
            _write_rows_xml(ws, pending[1], pending[0].result(), *pending[2:])
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return row - first_row


def _rows_xml(columns: list[tuple[str, Any, Any]], first_row: int, quote: Any, n: int) -> Any:
    """The ``<row>`` elements of ``n`` rows from ``first_row`` (an Arrow string array)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from xlsxwriter.utility import xl_col_to_name

    rows = pc.cast(pa.array(np.arange(first_row + 1, first_row + n + 1)), pa.string())
    parts: list[Any] = []
    for j, (kind, values, fmt) in enumerate(columns):
        letter = xl_col_to_name(j)
        if kind == "num":
            parts.append(_number_cells(values[:n], letter, rows, fmt))
        else:
            t = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
            t = pc.fill_null(t[:n].cast(pa.string()), "")
            parts.append(_text_cells(t, letter, rows, fmt, quote))
    return pc.binary_join_element_wise('<row r="', rows, '">', *parts, "</row>", "")


def _write_rows_xml(ws: Any, first_row: int, joined: Any, n: int, ncols: int) -> None:
    """Rows built by :func:`_rows_xml` into the worksheet's row stream."""
    from custtool.arrow_text import write_joined

    ws._write_single_row(first_row)  # anything pending above (nothing after the first chunk)
    fh = ws.row_data_fh
    fh.flush()
    stream = getattr(ws, "_custtool_rows", None)
    if stream is not None:
        write_joined(stream, joined)  # Arrow's buffers, deflated by the rows' thread
    else:
        write_joined(fh.buffer, joined)
        fh.buffer.flush()
    last = first_row + n - 1
    ws._check_dimensions(last, ncols - 1)
    ws.previous_row = last


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
                        text = excel_text(str(v))
                        ws.write_string(
                            r, j, text, quote if text.startswith(FORMULA_PREFIXES) else None
                        )
    return target


__all__ = [
    "join_lists",
    "EXCEL_MAX_ROWS",
    "FORMULA_PREFIXES",
    "safe_sheet_name",
    "flatten_lists",
    "WORKBOOK_OPTIONS",
    "open_workbook",
    "formula_like",
    "CellWriter",
    "excel_text",
    "write_sheets",
    "cap_sheets",
    "unique_sheet_names",
    "append_rows",
    "append_row_chunks",
]
