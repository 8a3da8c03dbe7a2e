"""custtool.xlsx.append_rows (the detail sheet's column-at-a-time writer) writes the cells
xlsxwriter's own write_number / write_string write: same values, styles, quote prefixes,
escaping and whitespace handling (issue 12)."""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from custtool.xlsx import FORMULA_PREFIXES, append_rows, excel_text, open_workbook

TEXTS = [
    "张三",
    "",
    None,
    '=HYPERLINK("http://x")',
    "+8613800138000",
    "-20",
    "@SUM(A1)",
    "\tx",
    "\r\nx",
    " leading",
    "trailing ",
    "\u3000全角空格",
    "a&b<c>d\"e'",
    "<r>raw</r>",
    "ctl\x01\x1f",
    "_x0041_ literal",
    "emoji 😀",
    "x" * 40_000,
    "😀" * 20_000,
    "line\nbreak",
    "\ufffe",
]
#: xlsxwriter writes a value shaped like "<r>…</r>" as raw XML (its rich-string path);
#: append_rows escapes it like any text (read-back test below), so it is left out here
SAME_TEXTS = [t for t in TEXTS if t != "<r>raw</r>"]
NUMBERS = [0.1 + 0.2, 1e22, float("nan"), float("inf"), -0.0, 13800138000.0, 45473.5, 1e-7]


def _frame_columns(n: int, texts_in: list = TEXTS):
    texts = (texts_in * (n // len(texts_in) + 1))[:n]
    nums = (NUMBERS * (n // len(NUMBERS) + 1))[:n]
    return texts, np.array(nums, dtype=float)


def _data_sheet(wb: Any, n: int, texts_in: list) -> tuple:
    """The "data" sheet with its header, its formats and the columns' values."""
    texts, nums = _frame_columns(n, texts_in)
    quote = wb.add_format({"quote_prefix": True})
    money = wb.add_format({"num_format": "#,##0.00"})
    # xf indices are handed out in order of first use: fix them so both files agree
    money._get_xf_index()
    quote._get_xf_index()
    ws = wb.add_worksheet("data")
    ws.write_string(0, 0, "文本", None)
    ws.write_string(0, 1, "金额", None)
    plain = [["甲", "", "乙丙", None][i % 4] for i in range(n)]  # nothing to escape
    return ws, quote, money, texts, nums, plain


def _write(path: Path, fast: bool, n: int, texts_in: list = TEXTS) -> None:
    with open_workbook(path, constant_memory=True) as wb:
        ws, quote, money, texts, nums, plain = _data_sheet(wb, n, texts_in)
        if fast:
            append_rows(
                ws,
                1,
                [
                    ("text", pa.array(texts, pa.string()), None),
                    ("num", nums, money),
                    ("text", pa.array(plain, pa.string()), None),
                ],
                quote,
            )
        else:
            for i in range(n):
                t = texts[i]
                if t:  # what xlsxwriter writes of the text a cell can hold (marked when cut)
                    t = excel_text(t)
                    ws.write_string(i + 1, 0, t, quote if t.startswith(FORMULA_PREFIXES) else None)
                if math.isfinite(nums[i]):
                    ws.write_number(i + 1, 1, float(nums[i]), money)
                if plain[i]:
                    ws.write_string(i + 1, 2, plain[i])
        ws.write_string(n + 1, 0, "after", None)  # cells after the block still work


def _cells(path: Path, digits16: bool = False) -> list[tuple]:
    with zipfile.ZipFile(path) as z:
        xml = z.read("xl/worksheets/sheet1.xml").decode("utf-8")
    out = []
    for m in re.finditer(r"<c ([^>]*)>(.*?)</c>", xml, flags=re.S):
        attrs = dict(re.findall(r'(\w+(?::\w+)?)="([^"]*)"', m.group(1)))
        body = m.group(2)
        v = re.fullmatch(r"<v>(.*)</v>", body, flags=re.S)
        num = float(v.group(1)) if v else None
        if num is not None and digits16:  # xlsxwriter writes numbers with %.16G
            num = float(f"{num:.16G}")
        out.append((attrs, body if v is None else num))
    dim = re.search(r'<dimension ref="([^"]+)"', xml).group(1)
    return [dim, *out]


def test_append_rows_writes_what_xlsxwriter_writes(tmp_path: Path) -> None:
    n = 3 * len(TEXTS) + 1
    slow, fast = tmp_path / "slow.xlsx", tmp_path / "fast.xlsx"
    _write(slow, False, n, SAME_TEXTS)
    _write(fast, True, n, SAME_TEXTS)
    a, b = _cells(slow), _cells(fast, digits16=True)
    assert a[0] == b[0] == f"A1:C{n + 2}"
    assert len(a) == len(b)
    assert a == b


def test_append_rows_read_back(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    path = tmp_path / "fast.xlsx"
    n = len(TEXTS)
    _write(path, True, n)
    ws = openpyxl.load_workbook(path)["data"]
    texts, nums = _frame_columns(n)
    got = [ws.cell(i + 2, 1) for i in range(n)]
    assert got[0].value == "张三"
    assert got[1].value is None and got[2].value is None  # blank cells, not ""
    assert got[3].value == '=HYPERLINK("http://x")' and got[3].data_type == "s"
    assert got[3].quotePrefix and got[5].quotePrefix and not got[0].quotePrefix
    assert got[9].value == " leading" and got[10].value == "trailing "
    assert got[11].value == "\u3000全角空格"
    assert got[12].value == "a&b<c>d\"e'"
    assert got[13].value == "<r>raw</r>"  # escaped, never raw XML
    assert len(got[17].value) == 32767  # Excel's limit, as xlsxwriter cuts it
    money = [ws.cell(i + 2, 2) for i in range(len(NUMBERS))]
    assert money[0].value == 0.1 + 0.2  # the same double, not a 16-digit rounding
    assert money[2].value is None and money[3].value is None  # NaN / inf: blank
    assert money[5].value == 13800138000 and money[0].number_format == "#,##0.00"
    assert ws.cell(n + 2, 1).value == "after"


# --------------------------------------------------------------------------- customers.csv
def _pandas_csv(df, path: Path, sep: str = ",") -> bytes:
    df.to_csv(path, index=False, encoding="utf-8-sig", sep=sep, date_format="%Y-%m-%d %H:%M:%S")
    return path.read_bytes()


def test_csv_writer_matches_pandas_byte_for_byte(tmp_path: Path) -> None:
    import pandas as pd

    from custtool.io import write_csv_fast

    n = 7
    df = pd.DataFrame(
        {
            "文本": ["张三", "a,b", 'say "hi"', "two\nlines", "cr\rhere", None, " sp "],
            "str": pd.array(["x", None, "y,z", "", "q", "w", "e"], dtype="string"),
            "混合": [1, "a", 2.5, None, True, float("nan"), "b"],
            "金额": [0.1 + 0.2, float("nan"), 1e22, 100.0, -0.0, 13800138000.0, 1e-7],
            "次数": np.arange(n, dtype="int64"),
            "flag": [True, False, True, True, False, False, True],
            "Int": pd.array([1, None, 3, 4, 5, 6, 7], dtype="Int64"),
            "Float": pd.array([1.0, None, 0.1 + 0.2, 1e22, 2.5, 1e-7, 13800138000.0], "Float64"),
            # a NaN that is not missing (pandas writes "nan"), -0.0, inf, a missing cell
            "FloatNaN": pd.arrays.FloatingArray(
                np.array([np.nan, -0.0, np.inf, 5.0, 1.5, 0.25, 7.0]),
                np.array([False, False, False, True, False, False, False]),
            ),
            "Float-0": pd.array([-0.0, -np.inf, 1e16, 123456789.0, None, 0.5, 2.0], "Float64"),
            "masked": pd.Series(["=1+1", "-20", "+86", "@a", None, "x", "-1.5"], dtype=object),
            "bool?": pd.array([True, None, False, True, True, False, None], dtype="boolean"),
            "时间": pd.to_datetime(
                ["2024-01-01 10:00:05.5", None, "2024-02-02", "2024-03-03 23:59:59"] * 2,
                format="mixed",
            )[:n],
            "本地": pd.to_datetime(["2024-06-30 12:00"] * n).tz_localize("Asia/Shanghai"),
        }
    )
    for sep in (",", "\t"):
        want = _pandas_csv(df, tmp_path / "pandas.csv", sep)
        assert write_csv_fast(df, tmp_path / "fast.csv", sep=sep)
        assert (tmp_path / "fast.csv").read_bytes() == want
    # more rows than one block
    import custtool.io as cio

    big = pd.concat([df] * 5, ignore_index=True)
    old = cio.CSV_BLOCK_ROWS
    cio.CSV_BLOCK_ROWS = 4
    try:
        assert write_csv_fast(big, tmp_path / "fast.csv")
    finally:
        cio.CSV_BLOCK_ROWS = old
    assert (tmp_path / "fast.csv").read_bytes() == _pandas_csv(big, tmp_path / "p.csv")
    # what it does not format itself goes back to pandas (nothing written)
    cat = pd.DataFrame({"a": pd.Categorical(["x"]), "b": [1]})
    assert not write_csv_fast(cat, tmp_path / "cat.csv")
    assert not (tmp_path / "cat.csv").exists()


def test_customers_csv_of_the_example_run_matches_pandas(tmp_path: Path, example_run) -> None:
    """The run's customers.csv (written by write_table's Arrow writer) is what pandas writes
    for the same masked table."""
    import pandas as pd

    from custtool.io import write_table
    from custtool.report.masking import mask_for_output

    folder = Path(example_run[1]["folder"])
    final = pd.read_parquet(folder / "customers.parquet")
    shown = mask_for_output(final, role="analyst", mask=True)
    write_table(shown, tmp_path / "customers.csv")
    from custtool.io import _text_columns, neutralize_formula_text
    from custtool.xlsx import flatten_lists

    flat = flatten_lists(shown).copy()
    for c in _text_columns(flat):
        flat[c] = neutralize_formula_text(flat[c])
    assert (tmp_path / "customers.csv").read_bytes() == _pandas_csv(flat, tmp_path / "p.csv")
    assert (folder / "customers.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()


def test_float_text_is_pythons_repr() -> None:
    """CSV floats as pandas writes them (numpy's str of each value), over every magnitude."""
    from custtool.io import float_text

    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.gamma(2, 800, 20_000).round(2),
            rng.normal(0, 1, 20_000),
            10 ** rng.uniform(-8, 25, 40_000) * rng.choice([-1, 1], 40_000),
            rng.integers(-(10**6), 10**6, 5_000).astype(float),
            [0.0, -0.0, np.nan, np.inf, -np.inf, 1e16, 1e-4, 2.0**53, 2.0**53 + 2, 0.1 + 0.2],
            [1e-5, 123456789012345.6, 999999999.9999999, 0.00010000000000000002, 1e9],
        ]
    )
    want = [None if v != v else s for v, s in zip(x, x.astype(str), strict=True)]
    assert float_text(x).to_pylist() == want


# --------------------------------------------------------------------------- deflated rows
def test_crc32_combine_is_the_crc_of_the_concatenation() -> None:
    import os
    import zlib

    from custtool.xlsx import crc32_combine

    for a, b in (
        (b"", b"x"),
        (b"abc", b""),
        (os.urandom(999), os.urandom(12_345)),
        (b"q", b"\0" * (1 << 20)),
    ):
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def _plain_workbook_write(path: Path, n: int) -> None:
    """The same sheet as _write(fast=True) through a bare xlsxwriter workbook: its rows go
    through xlsxwriter's row file and zip (no deflating thread, no splice)."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    ws, quote, money, texts, nums, plain = _data_sheet(wb, n, SAME_TEXTS)
    cols = [
        ("text", pa.array(texts, pa.string()), None),
        ("num", nums, money),
        ("text", pa.array(plain, pa.string()), None),
    ]
    append_rows(ws, 1, cols, quote)
    ws.write_string(n + 1, 0, "after", None)
    wb.close()


def test_deflated_rows_give_the_same_sheet_as_xlsxwriters_own_zip(
    tmp_path: Path, monkeypatch
) -> None:
    """open_workbook deflates append_rows' XML in a second thread while it is written and
    splices it into the zip at close: every member's XML is byte for byte what the plain
    path (xlsxwriter's row file and zip) gives, the member's CRC and sizes check out, with
    the stream cut into many slices (small slices forced here) and a queue that fills."""
    import custtool.xlsx as X

    monkeypatch.setattr(X, "_DEFLATE_SLICE", 1000)
    monkeypatch.setattr(X, "_DEFLATE_QUEUE", 2)
    n = 5 * len(TEXTS) + 3
    streamed, plain = tmp_path / "streamed.xlsx", tmp_path / "plain.xlsx"
    _write(streamed, True, n, SAME_TEXTS)
    _plain_workbook_write(plain, n)
    with zipfile.ZipFile(streamed) as a, zipfile.ZipFile(plain) as b:
        assert a.testzip() is None  # every member's CRC-32 checks out
        assert sorted(a.namelist()) == sorted(b.namelist())
        for name in a.namelist():
            if name != "docProps/core.xml":  # holds the time of writing
                assert a.read(name) == b.read(name), name
        info = a.getinfo("xl/worksheets/sheet1.xml")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.file_size == len(a.read(info.filename)) > 40_000
        assert info.compress_size < info.file_size
    assert _cells(streamed, digits16=True) == _cells(plain, digits16=True)
    assert not list(tmp_path.glob("*.rows.deflate"))


def test_a_failed_workbook_leaves_no_thread_or_file(tmp_path: Path, monkeypatch) -> None:
    """An error while the rows are written: nothing at the target, no deflate file, no
    thread left running."""
    import tempfile
    import threading

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = tmp_path / "out.xlsx"
    with (
        pytest.raises(RuntimeError, match="boom"),
        open_workbook(target, constant_memory=True) as wb,
    ):
        ws = wb.add_worksheet("data")
        ws.write_string(0, 0, "head")
        append_rows(ws, 1, [("text", pa.array(["x"] * 1000), None)], wb.add_format())
        assert list(tmp_path.glob("*.rows.deflate"))
        raise RuntimeError("boom")
    assert not target.exists()
    assert not list(tmp_path.glob("*.rows.deflate"))
    assert not [t for t in threading.enumerate() if t.name == "custtool-deflate"]


def test_flatten_lists_arrow_join_equals_the_value_by_value_join(monkeypatch) -> None:
    """Tag lists (lists or numpy arrays of text, missing cells) joined by Arrow are what the
    value-by-value join gives; other cells (numbers, None items, mixed) take that path."""
    import pandas as pd

    import custtool.xlsx as X

    frames = [
        pd.DataFrame(
            {
                "tags": pd.Series(
                    [np.array(["高价值", "复购"]), None, np.array([], dtype=object), ["a"], np.nan],
                    dtype=object,
                ),
                "n": range(5),
            }
        ),
        pd.DataFrame({"t": pd.Series([["a", None], ["b"]], dtype=object), "n": [1, 2]}),
        pd.DataFrame({"t": pd.Series([[1, 2], [3]], dtype=object), "n": [1, 2]}),
        pd.DataFrame({"t": pd.Series(["x", ["a", "b"]], dtype=object), "n": [1, 2]}),
    ]
    fast = [X.flatten_lists(df) for df in frames]
    assert fast[0]["tags"].tolist()[:4] == ["高价值;复购", None, "", "a"]
    monkeypatch.setattr(X, "_join_lists_arrow", lambda s, sep: None)
    for df, got in zip(frames, fast, strict=True):
        pd.testing.assert_frame_equal(got, X.flatten_lists(df))


def test_list_items_split_like_pythons_split_and_strip() -> None:
    """The 概览 / 数据质量 item counts split ;-lists with Arrow: the same items, in the same
    order, stripped of the same whitespace (Python's), as str.split + explode + strip."""
    import pandas as pd

    from custtool.report.workbook import _counts, _text_series, list_items

    cells = [
        "a;b",
        " x ; y;",
        "",
        None,
        "高频; 价格敏感",
        "\x1cq\x1c;q",
        "b;a;;c ",
        "\u3000z",
        "\xa0w;a",
    ]
    s = pd.Series(cells * 3, dtype="str")
    old = _text_series(s).str.split(";").explode().str.strip()
    old = old[old != ""]
    assert list_items(s).tolist() == old.tolist()
    counts = _counts(list_items(s))
    assert counts.to_dict() == old.value_counts().to_dict()
    assert counts.index.tolist() == old.value_counts().index.tolist()
    assert counts["a"] == 9 and counts["q"] == 6 and counts.dtype == "int64"


def test_csv_blocks_written_once_equal_the_whole_table_write(tmp_path: Path) -> None:
    """write_csv_blocks writes each block straight into the file (the fast writer), or
    through pandas for a block it does not format (a categorical column): either way the
    file is the whole table's write_table, byte for byte, with one header and BOM."""
    import pandas as pd

    from custtool.io import write_csv_blocks, write_table

    df = pd.DataFrame(
        {
            "id": [f"C{i:03d}" for i in range(23)],
            "v": np.arange(23) / 4,
            "t": ["=1+1", "a,b", 'q"x', "", None, "+86 1", "甲", "-20"] * 2 + ["z"] * 7,
            "tags": [["a", "b"], [], None, ["c"]] * 5 + [["d"]] * 3,
        }
    )
    whole = write_table(df, tmp_path / "whole.csv").read_bytes()

    def some_categorical(block: pd.DataFrame) -> pd.DataFrame:
        out = block.copy()
        if block.index[0] % 2:  # blocks starting at an odd row: the pandas path
            out["v"] = out["v"].astype("category")
        return out

    for name, transform in (("fast", lambda b: b), ("mixed", some_categorical)):
        write_csv_blocks(df, tmp_path / f"{name}.csv", transform, rows=5)
        assert (tmp_path / f"{name}.csv").read_bytes() == whole, name
    assert whole.startswith(b"\xef\xbb\xbf") and whole.count(b"\xef\xbb\xbf") == 1
    assert whole.count(b"\n") == 24 and b"'=1+1" in whole and b"a;b" in whole
    assert not list(tmp_path.glob("*.block.csv"))


def _chunked_write(path: Path, threaded: bool, n: int, size: int) -> None:
    """The _write(fast=True) sheet in chunks of ``size`` rows, with formats first used by
    the chunks (their xf indices are handed out while the XML is built)."""
    from custtool.xlsx import append_row_chunks

    texts, nums = _frame_columns(n, SAME_TEXTS)
    plain = [["甲", "", "乙丙", None][i % 4] for i in range(n)]
    with open_workbook(path, constant_memory=True) as wb:
        quote = wb.add_format({"quote_prefix": True})
        money = wb.add_format({"num_format": "#,##0.00"})
        pct = wb.add_format({"num_format": "0.0%"})
        head = wb.add_format({"bold": True})
        ws = wb.add_worksheet("data")
        ws.write_string(0, 0, "文本", head)
        ws.write_string(0, 1, "金额", head)

        def chunk(a: int, b: int) -> list:
            return [
                ("text", pa.array(texts[a:b], pa.string()), None),
                ("num", nums[a:b], money),
                ("text", pa.array(plain[a:b], pa.string()), None),
                ("num", nums[a:b] / 7, pct),
            ]

        spans = [(a, min(a + size, n)) for a in range(0, n, size)]
        if threaded:
            assert append_row_chunks(ws, 1, (chunk(a, b) for a, b in spans), quote) == n
        else:
            for a, b in spans:
                append_rows(ws, 1 + a, chunk(a, b), quote)
        ws.write_string(n + 1, 0, "after", None)


def test_threaded_chunks_write_the_same_file_as_one_chunk_after_the_other(tmp_path: Path) -> None:
    """append_row_chunks builds a chunk's XML in a second thread while the next chunk is
    produced: the workbook (cells, styles, format numbering) is the serial one's."""
    n = 7 * len(SAME_TEXTS) + 5
    one, two = tmp_path / "serial.xlsx", tmp_path / "threaded.xlsx"
    _chunked_write(one, False, n, 11)
    _chunked_write(two, True, n, 11)
    with zipfile.ZipFile(one) as a, zipfile.ZipFile(two) as b:
        for name in a.namelist():
            if name != "docProps/core.xml":
                assert a.read(name) == b.read(name), name
    cells = _cells(two)
    assert cells[0] == f"A1:D{n + 2}" and len(cells) > 2 * n


def test_a_failing_chunk_stops_the_threads(tmp_path: Path) -> None:
    """A chunk that fails while it is produced: the error reaches the caller, no file is
    left at the target and no writer thread keeps running."""
    import threading

    from custtool.xlsx import append_row_chunks

    def chunks():
        yield [("text", pa.array(["a"] * 50), None)]
        raise ValueError("bad chunk")

    target = tmp_path / "x.xlsx"
    with (
        pytest.raises(ValueError, match="bad chunk"),
        open_workbook(target, constant_memory=True) as wb,
    ):
        ws = wb.add_worksheet("data")
        append_row_chunks(ws, 0, chunks(), wb.add_format({"quote_prefix": True}))
    assert not target.exists()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("custtool-")]
    assert not alive


def test_integer_columns_in_csv_are_numpys_text(tmp_path: Path) -> None:
    """Integers (numpy and nullable, signed and unsigned, extremes) are written by Arrow's
    cast as pandas writes them; flags stay True / False."""
    import pandas as pd

    from custtool.io import write_csv_fast

    ints = np.array([0, -1, 7, -(2**63), 2**63 - 1, 10**18, -(10**9)], dtype=np.int64)
    df = pd.DataFrame(
        {
            "a": ints,
            "b": np.array([0, 1, 2**64 - 1, 5, 10**19, 3, 9], dtype=np.uint64),
            "c": pd.array([1, None, -3, 2**40, 0, None, 5], dtype="Int64"),
            "d": np.array([-128, 127, 0, 1, -1, 5, 6], dtype=np.int8),
            "e": pd.array([None, 255, 0, 1, None, 2, 3], dtype="UInt8"),
            "f": [True, False, True, True, False, False, True],
        }
    )
    assert write_csv_fast(df, tmp_path / "fast.csv")
    assert (tmp_path / "fast.csv").read_bytes() == _pandas_csv(df, tmp_path / "p.csv")
    text = (tmp_path / "fast.csv").read_bytes()
    assert b"\n7,18446744073709551615,-3," in text and b"\n-9223372036854775808,5," in text


def test_a_sheet_not_in_a_file_gets_its_rows_inflated(tmp_path: Path, monkeypatch) -> None:
    """A sheet whose XML is not written to a file cannot be spliced in the zip: its
    deflated rows are inflated back into it (multi-byte characters cut across slices),
    with the same XML as the plain path."""
    import custtool.xlsx as X

    monkeypatch.setattr(X, "_sheet_file", lambda fh: None)
    monkeypatch.setattr(X, "_DEFLATE_SLICE", 777)
    n = 3 * len(SAME_TEXTS)
    _write(tmp_path / "inflated.xlsx", True, n, SAME_TEXTS)
    _plain_workbook_write(tmp_path / "plain.xlsx", n)
    with (
        zipfile.ZipFile(tmp_path / "inflated.xlsx") as a,
        zipfile.ZipFile(tmp_path / "plain.xlsx") as b,
    ):
        assert a.read("xl/worksheets/sheet1.xml") == b.read("xl/worksheets/sheet1.xml")


def test_quote_precheck_never_misses_a_field_to_quote(tmp_path: Path) -> None:
    """The CSV writer skips its per-value quote regex for a column whose text bytes hold no
    separator, quote or newline: never when one value has one (in a later chunk, in a
    slice's buffer, tab-separated), and Chinese text (UTF-8) never trips it."""
    import pandas as pd
    import pyarrow as pa

    from custtool.arrow_text import has_bytes as _has_bytes
    from custtool.io import write_csv_fast

    assert not _has_bytes(pa.array(["张三", "北京市朝阳区", None, ""]), b',"\n')
    assert _has_bytes(pa.chunked_array([["a"], ["b", "c,d"]]), b',"\n')
    assert _has_bytes(pa.array(["a", 'say "hi"']), b',"\n')
    assert _has_bytes(pa.array(["a", "x\ty"]), b'\t"\n') and not _has_bytes(
        pa.array(["a", "x\ty"]), b',"\n'
    )
    whole = pa.array(["a,b", "c", "d"])
    # a slice: its own rows' bytes, not its parent's buffer
    assert not _has_bytes(whole.slice(1), b',"\n') and _has_bytes(whole.slice(0, 1), b',"\n')
    assert _has_bytes(pa.array(["x", "y", "z,"]).slice(1), b',"\n')
    assert _has_bytes(pa.array(["x", "y", "z,"], pa.large_string()).slice(2), b',"\n')
    assert not _has_bytes(pa.array(["x,", "y", "z"], pa.large_string()).slice(1), b',"\n')
    assert not _has_bytes(pa.array([], pa.string()), b',"\n')
    import custtool.io as cio

    df = pd.DataFrame(
        {
            "名": pd.array(["张三"] * 9 + ["李,四"], dtype="string"),
            "城市": pd.array(["北京"] * 5 + ['上"海'] + ["深圳"] * 4, dtype="string"),
            "n": np.arange(10, dtype="int64"),
        }
    )
    old = cio.CSV_BLOCK_ROWS
    cio.CSV_BLOCK_ROWS = 3  # the quoted values in the last and the second block
    try:
        for sep in (",", "\t"):
            assert write_csv_fast(df, tmp_path / "fast.csv", sep=sep)
            assert (tmp_path / "fast.csv").read_bytes() == _pandas_csv(df, tmp_path / "p.csv", sep)
    finally:
        cio.CSV_BLOCK_ROWS = old


def test_isal_deflated_rows_read_back_as_zlibs(tmp_path: Path, monkeypatch) -> None:
    """The big sheets' rows are deflated by ISA-L (a dependency): the workbook holds the
    same XML, member by member, as with zlib's deflate (the fallback where isal has no
    wheel), and every CRC checks out."""
    import zlib

    import custtool.xlsx as X

    assert X.deflate_module().__name__ == "isal.isal_zlib"
    monkeypatch.setattr(X, "_DEFLATE_SLICE", 1000)
    n = 5 * len(TEXTS) + 3
    with_isal, with_zlib = tmp_path / "isal.xlsx", tmp_path / "zlib.xlsx"
    _write(with_isal, True, n, SAME_TEXTS)
    monkeypatch.setattr(X, "deflate_module", lambda: zlib)
    _write(with_zlib, True, n, SAME_TEXTS)
    with zipfile.ZipFile(with_isal) as a, zipfile.ZipFile(with_zlib) as b:
        assert a.testzip() is None and b.testzip() is None
        assert sorted(a.namelist()) == sorted(b.namelist())
        for name in a.namelist():
            if name != "docProps/core.xml":
                assert a.read(name) == b.read(name), name
        sheet = "xl/worksheets/sheet1.xml"
        assert a.getinfo(sheet).CRC == b.getinfo(sheet).CRC
    assert _cells(with_isal, digits16=True) == _cells(with_zlib, digits16=True)


def test_text_over_excels_cell_limit_is_cut_and_says_so(tmp_path: Path) -> None:
    # a 40,000-character note was cut at 32,767 units with nothing to show it was cut
    import openpyxl
    import pandas as pd

    from custtool.io import write_table
    from custtool.xlsx import CELL_LIMIT, CellWriter

    long_cn, long_emoji = "长" * 40_000, "😀" * 20_000  # 2 UTF-16 units each
    df = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "notes": [long_cn, long_emoji, "短"]})
    path = tmp_path / "x.xlsx"
    write_table(df, path)
    with open_workbook(tmp_path / "y.xlsx") as wb:
        ws = wb.add_worksheet("s")
        CellWriter(wb).cell(ws, 0, 0, "=" + long_cn)
    got = [r[1] for r in openpyxl.load_workbook(path).active.iter_rows(min_row=2, values_only=True)]
    got.append(openpyxl.load_workbook(tmp_path / "y.xlsx").active["A1"].value)
    for text, full in zip(got, [long_cn, long_emoji, "短", "=" + long_cn], strict=True):
        if len(full) < 100:
            assert text == full
            continue
        assert len(text.encode("utf-16-le")) // 2 <= CELL_LIMIT
        mark = f"…〔已截断:原文 {len(full):,} 字〕"
        assert text.endswith(mark) and full.startswith(text[: -len(mark)])
        assert text == excel_text(full)
