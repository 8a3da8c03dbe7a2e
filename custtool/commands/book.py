"""The customer book's commands: `trend`, `compare`, `query`, `book import`.

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from custtool.commands.options import JsonOpt, NoMaskOpt, QuietOpt, RoleOpt
from custtool.commands.render import data_table, emit_json, info, stdout

# --------------------------------------------------------------------------- the customer book (issue 16)
BookOpt = Annotated[
    Path | None,
    typer.Option("--book", help="The book file (default: out/custtool.duckdb)."),
]


def _print_frame(title: str, frame: Any, quiet: bool = False) -> None:
    """A small DataFrame as a table on stdout (data, asked for)."""
    grid = data_table(title)
    for c in frame.columns:
        grid.add_column(str(c), overflow="fold")
    for row in frame.astype(object).where(frame.notna(), "").to_numpy().tolist():
        grid.add_row(*[str(v) for v in row])
    stdout.print(grid)


def trend_cmd(
    book: BookOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the trend to .xlsx or .csv.")
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """KPIs per run of the customer book: customers, active, revenue, 复购率, 客单价, NPS, shares.

    Examples:

      $ custtool trend

      $ custtool trend --book /data/custtool/custtool.duckdb -o trend.xlsx

      $ custtool trend --json
    """
    from custtool.steps import run_trend

    result = run_trend(book, output=output)
    if json_out:
        emit_json(result.to_dict())
        return
    if output is not None:
        info(f"trend → {output} ({len(result.data['runs'])} runs)", quiet)
        return
    frame = result.value.frame()
    keep = ["as_of", "customers", "active", "revenue", "aov", "repurchase", "nps", "satisfaction"]
    _print_frame("trend", frame[[c for c in keep if c in frame.columns]])


def compare_cmd(
    a: Annotated[str, typer.Argument(help="The earlier run's as-of date (YYYY-MM-DD).")],
    b: Annotated[str, typer.Argument(help="The later run's as-of date (YYYY-MM-DD).")],
    book: BookOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write who moved (up/down) to .csv, .xlsx or .parquet."
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare two runs of the book: who moved between RFM classes, tiers, lifecycle stages, statuses.

    Examples:

      $ custtool compare 2026-09-30 2026-10-31

      $ custtool compare 2026-06-30 2026-10-31 --book out/custtool.duckdb --json

      $ custtool compare 2026-09-30 2026-10-31 -o moves.xlsx
    """
    from custtool.steps import run_compare

    result = run_compare(a, b, book=book, output=output)
    if json_out:
        emit_json(result.to_dict())
        return
    cmp = result.value
    if output is not None:  # the data went to the file (as trend and query)
        info(f"new {cmp.new:,}, lost {cmp.lost:,}", quiet)
        info(f"moves → {output} ({len(cmp.moves):,} rows)", quiet)
        return
    for dim, m in cmp.matrices.items():
        _print_frame(f"{dim}: {cmp.from_} \\ {cmp.to}", m.reset_index())
    info(f"new {cmp.new:,}, lost {cmp.lost:,}", quiet)


def query_cmd(
    sql: Annotated[str, typer.Argument(help="A SQL query (DuckDB) on the book's tables.")],
    book: BookOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the result to .csv, .xlsx or .parquet."),
    ] = None,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout.")] = False,
    role: RoleOpt = None,
    no_mask: NoMaskOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a read-only SQL query on the customer book; writes are refused (exit 2).

    Tables: runs, customers, segments, tags, kpis, followups (docs/DATA.md). What it shows
    or writes is masked as every export (names, phones, e-mails by column, phones and e-mails
    inside other text); --no-mask for a role that may unmask.

    Examples:

      $ custtool query "SELECT as_of, tier, count(*) FROM segments GROUP BY ALL ORDER BY ALL"

      $ custtool query "SELECT * FROM kpis WHERE name = 'nps'" --json

      $ custtool query "SELECT * FROM customers WHERE valid_to IS NULL" -o current.csv

      $ custtool query "SELECT customer_id, name, phone FROM customers" --no-mask --csv
    """
    from custtool.steps import run_query

    result = run_query(sql, book=book, output=output, mask=not no_mask, role=role)
    if json_out:
        emit_json(result.to_dict())
        return
    if output is not None:
        info(f"query → {output} ({len(result.value.frame)} rows)", quiet)
        return
    if csv_out:
        sys.stdout.write(result.value.frame.to_csv(index=False))
        return
    _print_frame(f"{len(result.value.frame):,} rows", result.value.frame)


def book_import_cmd(
    out: Annotated[Path, typer.Argument(help="The out/ folder holding run folders.")],
    book: BookOpt = None,
    wait: Annotated[
        float | None,
        typer.Option("--wait", help="Seconds to wait for another writer (default 30)."),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Record earlier run folders (out/YYYY-MM-DD/) in the customer book, oldest first.

    Examples:

      $ custtool book import out/

      $ custtool book import /data/custtool --book /data/custtool/custtool.duckdb --json
    """
    from custtool.steps import run_book_import

    result = run_book_import(out, book=book, wait=wait)
    if json_out:
        emit_json(result.to_dict())
        return
    for r in result.data["runs"]:
        info(
            f"{r['as_of']}: {r['customers']:,} customers"
            + (" (replaced)" if r["replaced"] else ""),
            quiet,
        )
    info(f"book → {result.data['book']}", quiet)
