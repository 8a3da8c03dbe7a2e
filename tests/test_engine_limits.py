"""--memory-limit parsing and the bounded DuckDB connection (custtool.engines)."""

from __future__ import annotations

import pytest

from custtool.engines import (
    duckdb_connect,
    format_bytes,
    is_out_of_memory,
    memory_error,
    parse_memory_limit,
)
from custtool.errors import ConfigError


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1GB", 1_000_000_000),
        ("1gb", 1_000_000_000),
        ("1.5GB", 1_500_000_000),
        ("512MB", 512_000_000),
        ("512MiB", 512 * 1024**2),
        ("2GiB", 2 * 1024**3),
        (" 100 MB ", 100_000_000),
        ("70000000", 70_000_000),
        (None, None),
    ],
)
def test_parse_memory_limit(text, expected):
    assert parse_memory_limit(text) == expected


# "99999999999999999999GB" reached DuckDB, whose parser error was exit 3
@pytest.mark.parametrize(
    "text", ["lots", "1XB", "-1GB", "1 G B", "10MB", "1KB", "99999999999999999999GB", "2000TB"]
)
def test_bad_memory_limit_is_a_config_error(text):
    with pytest.raises(ConfigError) as err:
        parse_memory_limit(text)
    assert err.value.exit_code == 2 and repr(text) in str(err.value) and err.value.hint


def test_a_huge_memory_limit_on_the_command_line_is_exit_2(tmp_path):
    from typer.testing import CliRunner

    from custtool.cli import app

    orders = tmp_path / "orders.parquet"
    orders.write_bytes(b"")  # refused before it is read
    r = CliRunner().invoke(
        app,
        ["segment", "--orders", str(orders), "--engine", "duckdb"]
        + ["--memory-limit", "99999999999999999999GB", "-o", str(tmp_path / "s.parquet")],
    )
    assert r.exit_code == 2, r.output
    assert "above the 1 PB maximum" in r.output


def test_connection_carries_the_limit_and_spill_folder(tmp_path):
    con = duckdb_connect(parse_memory_limit("256MB"), tmp_path / "spill", threads=1)
    try:
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        temp = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    finally:
        con.close()
    assert limit.replace(" ", "") in {"244.1MiB", "256.0MB", "244.1MB"}
    assert temp == str(tmp_path / "spill") and int(threads) == 1


def test_out_of_memory_message_names_the_limit():
    exc = RuntimeError("Out of Memory Error: could not allocate block of size 256.0 KiB")
    assert is_out_of_memory(exc) and not is_out_of_memory(RuntimeError("Binder Error"))
    err = memory_error(exc, 1_000_000_000, "segment")
    assert err.exit_code == 2 and "1.0GB" in str(err) and "segment" in str(err)
    assert format_bytes(1_500_000_000) == "1.5GB" and format_bytes(999) == "999B"
