"""The `custtool` command line: parse options, call library functions, render.

Heavy libraries (pandas, pandera, openpyxl) are imported inside the commands so that
`--help` stays fast. Errors from the library (:class:`custtool.errors.CusttoolError`)
are caught once, in :class:`_Group.invoke`: one red line and a hint on stderr, exit 2.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any


import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from custtool import __version__
from custtool.errors import CusttoolError

# stderr is for people; stdout for data (--json, tables asked for as output).
console = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


class _Group(TyperGroup):
    """Typer group that turns CusttoolError into one line on stderr and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CusttoolError as exc:
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()  # plain traceback, no locals (they may hold personal data)
            console.print(f"[bold red]Error:[/] {exc.message}", soft_wrap=True, markup=True)
            if exc.hint:
                console.print(f"[yellow]Hint:[/] {exc.hint}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=_Group,
    name="custtool",
    help="Turn customer spreadsheets (CRM/shop exports, member lists, orders, follow-ups, "
    "surveys) into clean profiles, tags, RFM/LTV/NPS segments and Excel reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"custtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """custtool: customer spreadsheets in, profiles, segments and reports out."""
    ctx.obj = {"debug": debug}


# --------------------------------------------------------------------------- shared options
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (for machines).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Output file (.parquet, .csv or .xlsx).")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="As-of date YYYY-MM-DD (default: the latest order date).")
]


def emit_json(obj: Any) -> None:
    """Write exactly one JSON object to stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(title: str, columns: list[str], rows: list[list[Any]], quiet: bool = False) -> None:
    """A rich summary table on stderr (plain text when stderr is not a terminal)."""
    if quiet:
        return
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i else "left")
    for row in rows:
        table.add_row(*[f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v) for v in row])
    console.print(table)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message, soft_wrap=True)


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


# --------------------------------------------------------------------------- import / template
# (section: import — issue 2)


# --------------------------------------------------------------------------- clean
# (section: clean — issue 3)
@app.command("clean")
def clean(
    customers: Annotated[Path, typer.Argument(help="Customers table written by `custtool import` (.parquet, .csv, .xlsx).")],
    output: OutOpt = None,
    keys: Annotated[
        str | None, typer.Option("--keys", help="Link keys, comma-separated (default phone,email,customer_id).")
    ] = None,
    fuzzy_names: Annotated[
        bool, typer.Option("--fuzzy-names", help="Propose similar names within a block for review (never merged).")
    ] = False,
    survivorship: Annotated[
        str | None, typer.Option("--survivorship", help="Which value wins: newest or channel.")
    ] = None,
    channel_priority: Annotated[
        str | None, typer.Option("--channel-priority", help="Channels, best first, e.g. 门店,电商,公众号.")
    ] = None,
    id_format: Annotated[
        str | None, typer.Option("--id-format", help="Customer id format, e.g. 'C{seq:08d}' or '{region_code}-{industry_code}-{year}-{seq:03d}'.")
    ] = None,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="An earlier clean output: returning customers keep their ids.")
    ] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the clean report (.xlsx), one sheet per section.")] = None,
    rules: Annotated[Path | None, typer.Option("--rules", help="Clean settings YAML (default: the shipped rules/clean.yaml).")] = None,
    hub_max_names: Annotated[
        int | None, typer.Option("--hub-max-names", help="A phone/email shared by more names than this is not merged on.")
    ] = None,
    lang: Annotated[str, typer.Option("--lang", help="Report labels: zh or en.")] = "zh",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """One customer per person: collapse duplicates, merge across channels, keep lineage and stable ids.

    $ custtool clean customers.parquet -o clean.parquet --report clean_report.xlsx
    $ custtool clean customers.parquet -o 2024-06.parquet --previous 2024-05.parquet
    $ custtool clean customers.parquet --survivorship channel --channel-priority 门店,电商,公众号
    $ custtool clean customers.parquet --fuzzy-names --id-format '{region_code}-{industry_code}-{year}-{seq:03d}' --json
    """
    import contextlib
    import os

    from custtool.clean import dedupe, load_clean_rules
    from custtool.errors import InputError
    from custtool.io import atomic_path, read_table, write_table, write_xlsx_sheets

    if lang not in {"zh", "en"}:
        raise InputError(f"unknown --lang {lang!r}", "use zh or en")
    out = output or customers.with_name(f"{customers.stem}_clean.parquet")
    if out.suffix.lower() not in {".parquet", ".csv", ".tsv", ".xlsx"}:
        raise InputError(f"{out.name}: cannot write {out.suffix!r} files", "use .parquet, .csv or .xlsx")
    if report is not None and report.suffix.lower() != ".xlsx":
        raise InputError(f"{report.name}: the clean report is an Excel workbook", "name it e.g. clean_report.xlsx")
    lineage_path = out.with_name(f"{out.stem}_lineage{out.suffix}")
    inputs = {customers.resolve()} | ({previous.resolve()} if previous else set())
    for target in (out, lineage_path, report):
        if target is not None and target.resolve() in inputs:
            raise InputError(f"{target.name} is an input: custtool never overwrites its inputs", "choose another -o / --report")

    clean_rules = load_clean_rules(rules)
    table = read_table(customers)
    prev = read_table(previous) if previous is not None else None
    info(f"[bold]clean[/] {customers.name}: {len(table):,} rows", quiet or json_out)
    result, lineage, rep = dedupe(
        table,
        keys=keys,
        survivorship=survivorship,
        channel_priority=channel_priority,
        id_format=id_format,
        previous=prev,
        fuzzy_names=fuzzy_names,
        hub_max_names=hub_max_names,
        rules=clean_rules,
    )
    # all or nothing: every output is staged beside its target and renamed only when all are written
    with contextlib.ExitStack() as stack:
        for frame, target in ((result, out), (lineage, lineage_path)):
            tmp = stack.enter_context(atomic_path(target))
            staged = tmp.with_name(tmp.name + target.suffix)
            try:
                write_table(frame, staged)
                os.replace(staged, tmp)
            finally:
                staged.unlink(missing_ok=True)
        if report is not None:
            write_xlsx_sheets(rep.sheets(lang), stack.enter_context(atomic_path(report)))

    counts = rep.counts()
    paths = {"output": str(out), "lineage": str(lineage_path), "report": str(report) if report else None}
    if json_out:
        emit_json({**counts, **paths})
        return
    summary = rep.summary(lang)
    print_table(
        "清洗汇总 (clean)" if lang == "zh" else "Clean summary",
        ["项目" if lang == "zh" else "Item", "数量" if lang == "zh" else "Count"],
        [[item, int(v)] for item, v in zip(summary["metric_label"], summary["metric_value"], strict=True)],
        quiet,
    )
    print_table(
        "按键合并" if lang == "zh" else "Merges by key",
        ["键" if lang == "zh" else "Key", "行数" if lang == "zh" else "Rows", "客户数" if lang == "zh" else "Customers"],
        [
            [k, int(a), int(b)]
            for k, a, b in zip(
                rep.merges_by_key["merge_key"], rep.merges_by_key["linked_rows"], rep.merges_by_key["linked_customers"], strict=True
            )
        ],
        quiet,
    )
    info(f"customers → {out}\nlineage   → {lineage_path}" + (f"\nreport    → {report}" if report else ""), quiet)



# --------------------------------------------------------------------------- segment
# (section: segment — issue 4)


# --------------------------------------------------------------------------- tag / rules
# (section: tag — issue 5)


# --------------------------------------------------------------------------- report / pivot / cards
# (section: report — issue 6)


# --------------------------------------------------------------------------- run / followups
# (section: run — issue 7)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
