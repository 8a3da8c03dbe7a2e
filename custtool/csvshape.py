"""The shape of a text export before it is parsed: bounded, vectorised checks on raw bytes.

Two jobs, both done with NumPy over the bytes in chunks (no Python loop over lines):

* **Bounds.** A field longer than ``max_field_bytes`` (default 1 MB) or a row with more than
  ``max_columns`` fields is refused with the line it is on, in seconds and bounded memory,
  before any parser sees the file (a 1 MB file with no newline used to take minutes).
* **Quotes.** A stray ``"`` makes a CSV parser swallow every following line up to the next
  quote into one record. Records are found by quote parity at each newline; a record whose
  later lines are, on their own, complete rows of the file's width is evidently broken
  quoting. Those lines are re-read one by one (each line its own row) and the warning names
  the rows (``rows 12–27: unbalanced quote``), so rows read match the lines a person counts.

Bytes are compared as bytes: in UTF-8, GBK and GB18030 no byte of a multi-byte character
equals ``"``, a newline or a separator, so the same scan serves every encoding but UTF-16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from custtool.errors import InputError

#: longest field custtool reads (bytes); past it the file is refused with the row
MAX_FIELD_BYTES = 1 << 20
#: most fields in one row (Excel's column limit)
MAX_COLUMNS = 16_384
#: bytes scanned at a time
CHUNK_BYTES = 1 << 23


def max_field_bytes(value: int | None = None) -> int:
    """The field limit: ``value``, else ``$CUSTTOOL_MAX_FIELD_BYTES``, else 1 MB."""
    if value is not None:
        return int(value)
    env = os.environ.get("CUSTTOOL_MAX_FIELD_BYTES", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise InputError(
                f"CUSTTOOL_MAX_FIELD_BYTES={env!r} is not a number of bytes",
                "set it to e.g. 1048576 (1 MB), or unset it",
            ) from None
    return MAX_FIELD_BYTES


@dataclass
class Shape:
    """Lines of a text file: where each ends, its quote and separator counts."""

    ends: object  # numpy int64: offset of each line's newline (or the file's end)
    quotes: object  # numpy int64: '"' per line
    seps: object  # numpy int64: separators per line
    broken: list[tuple[int, int]] = field(default_factory=list)  # 0-based line ranges


def scan_shape(data: bytes | memoryview, sep: str, name: str, *, limit: int | None = None) -> Shape:
    """Check bounds and find broken quoting in ``data`` (the file's bytes, BOM included).

    Raises :class:`InputError` naming the line when a field is longer than the limit or a
    row has more than :data:`MAX_COLUMNS` fields.
    """
    import numpy as np

    limit = max_field_bytes(limit)
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    n = len(buf)
    sep_b, nl, qt = ord(sep), ord("\n"), ord('"')
    ends_l, quotes_l, seps_l = [], [], []
    start, open_quote = 0, False
    while start < n:
        stop = min(n, start + CHUNK_BYTES)
        chunk = buf[start:stop]
        nls = np.flatnonzero(chunk == nl)
        if stop < n:
            if len(nls) == 0:
                # one line longer than a chunk: bounded by the limits, whatever it holds
                _check_long_line(buf, start, stop, sep_b, limit, name, _line_no(ends_l), True)
                nls = np.array([len(chunk) - 1])  # continue as if it ended here
            stop = start + int(nls[-1]) + 1
            chunk = buf[start:stop]
            nls = nls[nls < len(chunk)]
        else:
            nls = np.append(nls, len(chunk)) if len(chunk) and chunk[-1] != nl else nls
        bounds = np.concatenate(([0], nls[:-1] + 1)) if len(nls) else np.zeros(0, np.int64)
        q = np.add.reduceat(chunk == qt, bounds, dtype=np.int64) if len(nls) else bounds
        if len(nls) and (open_quote or q.any() or not seps_l):
            # separators matter where quotes are (and in the first chunk: the usual width)
            s = np.add.reduceat(chunk == sep_b, bounds, dtype=np.int64)
        else:
            s = np.full(len(nls), -1, dtype=np.int64)  # not counted: no quote can span here
        open_quote = bool((open_quote + int(q.sum())) % 2)
        ends_l.append(nls.astype(np.int64) + start)
        quotes_l.append(np.asarray(q, dtype=np.int64))
        seps_l.append(np.asarray(s, dtype=np.int64))
        # long lines: the fields inside them
        lengths = np.diff(np.concatenate(([-1], nls)))
        for i in np.flatnonzero(lengths > min(limit, MAX_COLUMNS)):  # rare: lines > 16 KB
            lo = start + (int(bounds[i]))
            hi = start + int(nls[i])
            _check_long_line(buf, lo, hi, sep_b, limit, name, _line_no(ends_l) - len(nls) + int(i))
        start = stop
    ends = np.concatenate(ends_l) if ends_l else np.zeros(0, np.int64)
    quotes = np.concatenate(quotes_l) if quotes_l else np.zeros(0, np.int64)
    seps = np.concatenate(seps_l) if seps_l else np.zeros(0, np.int64)
    shape = Shape(ends, quotes, seps)
    if quotes.any():
        shape.broken = _broken_records(quotes, seps)
    return shape


def _line_no(ends_l: list) -> int:
    """Lines counted so far (1-based number of the next line)."""
    return sum(len(e) for e in ends_l) + 1


def _check_long_line(  # noqa: ANN001
    buf, lo: int, hi: int, sep_b: int, limit: int, name: str, line: int, partial: bool = False
) -> None:
    """Refuse the line ``buf[lo:hi]`` (``partial``: its first chunk) when it has too many
    fields or a field past the limit."""
    import numpy as np

    seg = buf[lo:hi]
    cuts = np.flatnonzero(seg == sep_b)
    if len(cuts) + 1 > MAX_COLUMNS:
        raise InputError(
            f"{name}, line {line}: {len(cuts) + 1:,} fields in one row (at most {MAX_COLUMNS:,})",
            "this is not a table custtool can read: check the file is the right export",
            file=name,
            row=line,
        )
    gaps = np.diff(np.concatenate(([-1], cuts, [len(seg)]))) - 1
    if len(gaps) and int(gaps.max()) > limit:
        raise InputError(
            f"{name}, line {line}: a field of {'at least ' if partial else ''}"
            f"{int(gaps.max()):,} bytes "
            f"(longer than the limit of {limit:,})",
            "check the file is the right export; raise the limit with "
            "CUSTTOOL_MAX_FIELD_BYTES if the long value is real",
            file=name,
            row=line,
        )


def _broken_records(quotes, seps) -> list[tuple[int, int]]:  # noqa: ANN001
    """0-based (first, last) line ranges of records whose quoting is evidently broken: a
    record spanning lines where a later line is itself a balanced row of the file's width,
    or a quote left open at the end of the file."""
    import numpy as np

    odd_after = np.cumsum(quotes) % 2 == 1  # inside a quoted value after this line
    balanced = quotes % 2 == 0
    plain = seps[balanced & ~np.concatenate(([False], odd_after[:-1])) & (seps >= 0)]
    if len(plain) == 0:
        return []
    width_seps = int(np.bincount(plain).argmax())  # separators of a typical row
    # record starts: line 0 and every line after one that closes a record
    starts = np.concatenate(([0], np.flatnonzero(~odd_after[:-1]) + 1))
    lasts = np.concatenate((starts[1:] - 1, [len(quotes) - 1]))
    multi = lasts > starts
    out: list[tuple[int, int]] = []
    if not multi.any() and not odd_after[-1]:
        return out
    looks_like_row = balanced & (seps >= max(width_seps, 1))
    later_rows = np.concatenate(([0], np.cumsum(looks_like_row)))
    for a, b in zip(starts[multi], lasts[multi], strict=True):  # records spanning lines: few
        if later_rows[b + 1] - later_rows[a + 1] > 0 or (b == len(quotes) - 1 and odd_after[-1]):
            out.append((int(a), int(b)))
    if odd_after[-1] and not multi[-1]:
        out.append((int(starts[-1]), int(lasts[-1])))
    return out


def split_broken(data, shape: Shape, sep: str) -> bytes:  # noqa: ANN001 - bytes or uint8 array
    """``data`` with each line of a broken record made its own well-formed row (each line
    parsed alone, quotes balanced within it, and written back)."""
    import csv
    import io

    if not shape.broken:
        return data
    ends = shape.ends
    pieces: list[bytes] = []
    pos = 0
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, MAX_FIELD_BYTES * 4))
    try:
        for a, b in shape.broken:
            lo = 0 if a == 0 else int(ends[a - 1]) + 1
            hi = int(ends[b]) + 1
            pieces.append(bytes(data[pos:lo]))
            # latin-1 maps bytes 1:1, so UTF-8/GBK bytes pass through unchanged
            lines = bytes(data[lo:hi]).decode("latin-1").split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            out = io.StringIO()
            writer = csv.writer(out, delimiter=sep, lineterminator="\n")
            for line in lines:
                try:
                    row = next(csv.reader([line.rstrip("\r")], delimiter=sep, strict=False), [])
                except csv.Error:  # a lone CR inside the line: keep its text as it is
                    row = line.replace("\r", " ").split(sep)
                writer.writerow(row)
            pieces.append(out.getvalue().encode("latin-1"))
            pos = hi
    finally:
        csv.field_size_limit(old)
    pieces.append(bytes(data[pos:]))
    return b"".join(pieces)


def broken_note(shape: Shape, name: str) -> list[str]:
    """The warnings for broken quoting, with the rows (lines) each record spanned."""
    import numpy as np

    if not shape.broken:
        return []
    # rows as the reader numbers them once split: every record before counts once
    ends_row = np.cumsum(shape.quotes) % 2 == 0  # a line that ends a row once split
    for a, b in shape.broken:
        ends_row[a : b + 1] = True
    record_of_line = np.concatenate(([0], np.cumsum(ends_row[:-1])))
    notes = []
    for a, b in shape.broken:
        first = int(record_of_line[a]) + 1
        last = first + (b - a)
        span = f"row {first}" if first == last else f"rows {first}–{last}"
        notes.append(
            f"{name}, {span}: unbalanced quote; these lines were read one row each "
            "(a quote was left open), check them"
        )
    return notes
