"""Rendering for the commands: stderr is for people, stdout for data.

``console`` (stderr) carries progress, summaries, warnings and errors; ``stdout`` the data a
command was asked for (``--json``, tables printed as output).
"""

from __future__ import annotations

import json
import numbers
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text


class LiteralTable(Table):
    """A rich Table whose title, headers and cells are shown as written: a value such as
    ``[/b]`` (an owner, a city, a column name) is text, not markup (rich raised MarkupError)."""

    def __init__(self, *columns: Any, title: Any = None, **kw: Any) -> None:
        super().__init__(*columns, title=Text(title) if isinstance(title, str) else title, **kw)

    def add_column(self, header: Any = "", *args: Any, **kw: Any) -> None:
        super().add_column(Text(header) if isinstance(header, str) else header, *args, **kw)

    def add_row(self, *renderables: Any, **kw: Any) -> None:
        super().add_row(*(Text(r) if isinstance(r, str) else r for r in renderables), **kw)


# stderr is for people; stdout for data (--json, tables asked for as output).
console = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def emit_json(obj: Any) -> None:
    """Write exactly one JSON object to stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(title: str, columns: list[str], rows: list[list[Any]], quiet: bool = False) -> None:
    """A rich summary table on stderr (plain text when stderr is not a terminal)."""
    if quiet:
        return
    from rich import box

    # boxes in a terminal; plain aligned columns when piped (cron mail, log files)
    table = LiteralTable(
        title=title, title_justify="left", box=box.HEAVY_HEAD if console.is_terminal else None
    )
    for i, col in enumerate(columns):
        numeric = all(
            isinstance(r[i], numbers.Real) and not isinstance(r[i], bool)
            for r in rows
            if i < len(r)
        )
        table.add_column(col, justify="right" if i and numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(
            *[
                f"{v:,}" if isinstance(v, numbers.Integral) and not isinstance(v, bool) else str(v)
                for v in row
            ]
        )
    console.print(table)


def data_table(title: str) -> LiteralTable:
    """A table of data for stdout (a pivot, the funnel, a query): boxes in a terminal, plain
    aligned columns when piped, as :func:`print_table` does on stderr."""
    from rich import box

    return LiteralTable(
        title=title, title_justify="left", box=box.HEAVY_HEAD if stdout.is_terminal else None
    )


def info(
    message: str, quiet: bool = False, *, style: str | None = None, label: str | None = None
) -> None:
    """A line on stderr. ``message`` (paths, sheet names, values) is shown as written, never
    read as rich markup (``-o 'o/[x]/m.parquet'`` printed ``o//m.parquet``); ``style`` colours
    it, or only ``label``, printed before it."""
    if quiet:
        return
    text = Text()
    if label is not None:
        text.append(label, style=style or "yellow")
        text.append(" ")
        text.append(message)
    else:
        text.append(message, style=style)
    console.print(text, soft_wrap=True)


def warn(message: str, quiet: bool = False) -> None:
    """A library warning on stderr. Its text (a rule name, a column, a sheet) is shown as
    written, never read as rich markup: ``--keys "[/x]"`` raised MarkupError (exit 3)."""
    info(message, quiet, label="Warning:")


def finish(result: Any, quiet: bool = False) -> None:
    """Exit with the result's code, saying why on stderr when it is not 0."""
    if result.exit_code:
        if result.problem:
            info(str(result.problem), quiet, style="red")
        raise typer.Exit(result.exit_code)


def progress(quiet: bool = False):  # noqa: ANN201 - rich Progress
    """A rich progress display on stderr; disabled when quiet or not a terminal."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
        transient=True,
    )


def stage_progress(bar: Any, description: str, total: int) -> tuple[Any, Any]:
    """A task on ``bar`` advanced by a library ``progress`` callback (one call per stage)."""
    task = bar.add_task(description, total=total)
    done = [0]

    def stage(name: str) -> None:
        bar.update(task, description=f"{description}: {name}", completed=done[0])
        done[0] += 1

    return task, stage
