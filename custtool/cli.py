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


# --------------------------------------------------------------------------- segment
# (section: segment — issue 4)


# --------------------------------------------------------------------------- tag / rules
# (section: tag — issue 5)


# --------------------------------------------------------------------------- report / pivot / cards
# (section: report — issue 6)
LangOpt = Annotated[str, typer.Option("--lang", help="Labels: zh (default) or en.")]
RoleOpt = Annotated[
    str | None, typer.Option("--role", help="Role profile from rules/roles.yaml: admin (default), analyst, sales, service.")
]
OwnerOpt = Annotated[str | None, typer.Option("--owner", help="Only the customers of this owner (required for --role sales).")]
NoMaskOpt = Annotated[
    bool, typer.Option("--no-mask", help="Show names, phones, emails and ID numbers unmasked (admin only).")
]
StrategiesOpt = Annotated[
    Path | None, typer.Option("--strategies", help="Strategy YAML (default: the shipped rules/strategies.yaml).")
]


def _read_optional(path: Path | None) -> Any:
    from custtool.io import read_table

    return None if path is None else read_table(path)


def _check_lang(lang: str) -> None:
    from custtool.errors import InputError

    if lang not in {"zh", "en"}:
        raise InputError(f"unknown language {lang!r}", "use --lang zh or --lang en")


@app.command("report")
def report_cmd(
    segmented: Annotated[Path, typer.Argument(help="Segmented (and tagged) customers table.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Workbook to write (.xlsx).")] = Path("report.xlsx"),
    orders: Annotated[Path | None, typer.Option("--orders", help="Orders table: adds the monthly revenue chart.")] = None,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Rejects table from import/clean: 数据质量 sheet.")] = None,
    clean_report: Annotated[
        Path | None, typer.Option("--clean-report", help="Clean report (JSON or table): counts on the 数据质量 sheet.")
    ] = None,
    strategies: StrategiesOpt = None,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="An earlier segmented table: 迁移 sheet (migration matrix).")
    ] = None,
    role: RoleOpt = None,
    owner: OwnerOpt = None,
    no_mask: NoMaskOpt = False,
    lang: LangOpt = "zh",
    roles: Annotated[Path | None, typer.Option("--roles", help="Roles YAML (default: rules/roles.yaml).")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the tiered Excel report: summary with charts, one sheet per tier/RFM class, details, strategies.

    Personal data is masked by default (张*, 138****5678); --no-mask is for admins only.
    Text that would start a formula is written as text; the workbook has no formulas.

    Examples:

      $ custtool report segmented.parquet -o report.xlsx

      $ custtool report segmented.parquet --orders orders.parquet --previous last_month.parquet -o report.xlsx

      $ custtool report segmented.parquet --role service --lang en -o service.xlsx

      $ custtool report segmented.parquet --role sales --owner 王经理 -o wang.xlsx
    """
    import json as _json

    from custtool.errors import InputError
    from custtool.io import read_table
    from custtool.report import write_workbook

    _check_lang(lang)
    if output.suffix.lower() != ".xlsx":
        raise InputError(f"{output.name}: the report is an Excel workbook", "use -o report.xlsx")
    customers = read_table(segmented)
    report_data: Any = None
    if clean_report is not None:
        if clean_report.suffix.lower() == ".json":
            if not clean_report.exists():
                raise InputError(f"{clean_report}: file not found")
            try:
                report_data = _json.loads(clean_report.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InputError(f"{clean_report.name}: not valid JSON ({exc})") from None
        else:
            report_data = read_table(clean_report)
    with progress(quiet) as bar:
        task = bar.add_task("writing report", total=None)
        result = write_workbook(
            customers,
            output,
            orders=_read_optional(orders),
            rejects=_read_optional(rejects),
            clean_report=report_data,
            strategies=strategies,
            previous=_read_optional(previous),
            role=role,
            owner=owner,
            mask=not no_mask,
            lang=lang,
            roles_path=roles,
        )
        bar.update(task, completed=1, total=1)
    if json_out:
        emit_json(result.as_dict())
        return
    print_table(f"report → {output}", ["sheet", "rows"], [[k, v] for k, v in result.sheets.items()], quiet)
    info(
        f"{result.customers:,} customers, {result.charts} charts, role {result.role}, "
        + ("personal data masked" if result.masked else "[bold red]personal data NOT masked[/]"),
        quiet,
    )


@app.command("pivot")
def pivot_cmd(
    segmented: Annotated[Path, typer.Argument(help="Segmented (and tagged) customers table.")],
    rows: Annotated[str, typer.Option("--rows", help="Row column(s), comma-separated, e.g. tier.")],
    cols: Annotated[str | None, typer.Option("--cols", help="Column column(s), e.g. channel (the customers channels, one count per channel) or source_channel.")] = None,
    values: Annotated[
        str, typer.Option("--values", help="column:aggregate list (sum, count, mean, median, min, max, nunique).")
    ] = "customer_id:count",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to .xlsx or .csv instead of the terminal.")] = None,
    role: RoleOpt = None,
    owner: OwnerOpt = None,
    lang: LangOpt = "zh",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pivot table of the customers: rows × columns × aggregated values, to the terminal or a file.

    Examples:

      $ custtool pivot segmented.parquet --rows tier --cols channel --values monetary:sum,customer_id:count

      $ custtool pivot segmented.parquet --rows rfm_class --values monetary:mean -o pivot.xlsx

      $ custtool pivot segmented.parquet --rows tags --cols tier --json
    """
    from custtool.errors import ConfigError
    from custtool.io import read_table
    from custtool.report.masking import apply_role, get_role
    from custtool.report.pivot import flatten_pivot, parse_values, pivot, pivot_rows, write_pivot

    _check_lang(lang)
    role_obj = get_role(role)
    customers = read_table(segmented)
    view = apply_role(customers, role_obj, owner=owner, mask=True)
    for col, _agg in parse_values(values):
        if col in customers.columns and col not in view.columns:
            raise ConfigError(f"role {role_obj.name!r} may not see {col!r}", "choose other --values or another role")
    table = pivot(view, rows, cols, values)
    flat = flatten_pivot(table, lang)
    header, body = pivot_rows(flat)
    if output is not None:
        write_pivot(flat, output, lang)
        if json_out:
            emit_json({"output": str(output), "rows": len(flat), "columns": header})
        else:
            info(f"pivot → {output} ({len(flat)} rows)", quiet)
        return
    if json_out:
        records = flat.astype(object).where(flat.notna(), None).to_dict("records")
        emit_json({"columns": header, "rows": records})
        return
    grid = Table(title=f"{rows} × {cols or '-'}", title_justify="left")
    n_keys = len(flat.columns) - len(table.columns)
    for i, h in enumerate(header):
        grid.add_column(h.replace(" | ", "\n"), justify="left" if i < n_keys else "right", no_wrap=True)
    for rec in body:
        grid.add_row(*rec)
    widths = [max([len(p) * 2 for p in h.split(" | ")] + [len(v) for v in col]) + 3 for h, col in zip(header, zip(*body, strict=False) if body else [()] * len(header), strict=False)]
    out = stdout if stdout.is_terminal else Console(highlight=False, width=max(80, sum(widths) + 2))
    out.print(grid)


@app.command("cards")
def cards_cmd(
    segmented: Annotated[Path, typer.Argument(help="Segmented (and tagged) customers table.")],
    customer: Annotated[list[str] | None, typer.Option("--customer", help="Customer id for an individual card (repeatable).")] = None,
    segment: Annotated[
        list[str] | None, typer.Option("--segment", help="Segment for a group card, e.g. 重要价值客户, 高价值, 沉睡 (repeatable).")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Group cards for every segment of rfm_class, tier or lifecycle.")] = None,
    top: Annotated[int, typer.Option("--top", help="Individual cards for the N most valuable customers.")] = 0,
    fmt: Annotated[str | None, typer.Option("--format", help="md, html or xlsx (default: from -o, else html).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="File, or folder for cards.<format>.")] = Path("cards"),
    orders: Annotated[Path | None, typer.Option("--orders", help="Orders table: top categories per customer/segment.")] = None,
    strategies: StrategiesOpt = None,
    role: RoleOpt = None,
    owner: OwnerOpt = None,
    no_mask: NoMaskOpt = False,
    lang: LangOpt = "zh",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Customer profile cards (客户画像卡): individual and per-segment, as HTML, Markdown or Excel.

    Without --customer/--top/--segment: one group card per segment of --by (default rfm_class).

    Examples:

      $ custtool cards segmented.parquet --customer C00000001 --customer C00000002 -o cards.html

      $ custtool cards segmented.parquet --segment 重要价值客户 --segment 沉睡 --format md -o out/

      $ custtool cards segmented.parquet --by tier --top 10 -o cards.xlsx
    """
    from custtool.cards import group_cards, individual_cards, write_cards
    from custtool.io import read_table

    _check_lang(lang)
    customers = read_table(segmented)
    order_table = _read_optional(orders)
    ids = list(customer or [])
    individual = individual_cards(
        customers, ids, top=top, strategies=strategies, orders=order_table, role=role, owner=owner, mask=not no_mask, lang=lang
    )
    group = None
    if segment or by or not (ids or top):
        group = group_cards(customers, by=by, segments=list(segment or []), orders=order_table, role=role, owner=owner, lang=lang)
    path = write_cards(individual, group, output, fmt, lang)
    summary = {"output": str(path), "individual": len(individual), "group": 0 if group is None else len(group)}
    if json_out:
        emit_json(summary)
    else:
        info(f"cards → {path}: {summary['individual']} individual, {summary['group']} group", quiet)




# --------------------------------------------------------------------------- run / followups
# (section: run — issue 7)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
