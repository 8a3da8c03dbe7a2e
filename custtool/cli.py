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
RulesOpt = Annotated[
    list[Path] | None,
    typer.Option("--rules", "-r", help="Tag rules YAML (repeatable; default: the shipped library rules/tags.yaml)."),
]


def _tagged_default_output(src: Path) -> Path:
    suffix = src.suffix.lower() if src.suffix.lower() in {".parquet", ".csv", ".xlsx"} else ".parquet"
    return src.with_name(f"{src.stem}_tagged{suffix}")


@app.command("tag")
def tag_command(
    customers: Annotated[Path, typer.Argument(help="Segmented (or clean) customers table: .parquet, .csv or .xlsx.")],
    rules: RulesOpt = None,
    manual: Annotated[
        Path | None,
        typer.Option("--manual", "-m", help="Manual tags file: customer_id, tag, optional op (add/remove)."),
    ] = None,
    max_tags: Annotated[int, typer.Option("--max-tags", min=1, help="At most this many tags per customer (highest priority wins).")] = 10,
    output: OutOpt = None,
    stats: Annotated[Path | None, typer.Option("--stats", help="Write tag statistics to this .xlsx workbook.")] = None,
    key: Annotated[str, typer.Option("--key", help="Customer key column for --manual.")] = "customer_id",
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Tag customers with YAML rules (levels, priorities, a cap) plus manual tags.

    Adds a `tags` list column and one `tag_<一级>` column per level-1 category. Rules whose
    column the table lacks are skipped with a warning. Manual tags come from a
    `manual_tags` column (`-tag` removes) or --manual (customer_id, tag, op add/remove).

    Examples:

      $ custtool tag segmented.parquet -o tagged.parquet

      $ custtool tag segmented.parquet --rules rules/tags.yaml --rules my_tags.yaml --max-tags 8

      $ custtool tag segmented.parquet --manual 手工标签.csv --stats 标签统计.xlsx

      $ custtool tag segmented.parquet -o tagged.csv --json
    """
    from custtool.errors import InputError
    from custtool.io import atomic_path, read_table, write_table, write_xlsx_sheets
    from custtool.tags import load_rules, tag_customers, tag_statistics

    if stats is not None and stats.suffix.lower() != ".xlsx":
        raise InputError(f"{stats.name}: --stats writes an .xlsx workbook", "name it e.g. 标签统计.xlsx")
    rule_list = load_rules(rules or None)
    df = read_table(customers)
    manual_df = read_table(manual) if manual is not None else None
    result = tag_customers(df, rule_list, max_tags=max_tags, manual=manual_df, key=key, as_of=as_of)
    st = tag_statistics(result.customers, rule_list, skipped=result.skipped["tag"])
    out = output or _tagged_default_output(customers)
    if stats is None:
        write_table(result.customers, out)
    else:  # both or neither: the workbook is renamed into place only after the table is written
        with atomic_path(stats) as tmp:
            write_xlsx_sheets(st.sheets(), tmp)
            write_table(result.customers, out)

    if as_json:
        emit_json(
            {
                "output": str(out),
                "stats": str(stats) if stats else None,
                "customers": st.customers,
                "rules": len(rule_list),
                "rules_applied": result.applied,
                "skipped": result.skipped.to_dict("records"),
                "max_tags": max_tags,
                "tags_dropped": result.dropped_total,
                "customers_capped": result.customers_capped,
                "manual_unmatched": result.manual_unmatched,
                "usage": st.usage[["tag", "level1", "level2", "source", "customers", "share"]].to_dict("records"),
                "unused": st.unused["tag"].tolist(),
                "broad": st.broad["tag"].tolist(),
            }
        )
        return
    if quiet:
        return
    for w in result.warnings:
        console.print(f"[yellow]Warning:[/] {w}", soft_wrap=True)
    top = st.usage[st.usage["customers"] > 0].head(20)
    print_table(
        f"标签使用 (top {len(top)} of {len(st.usage)} tags, {st.customers:,} customers)",
        ["标签", "一级", "二级", "客户数", "占比"],
        [[t, l1, l2, int(c), f"{s:.1%}"] for t, l1, l2, c, s in top[["tag", "level1", "level2", "customers", "share"]].itertuples(index=False)],
    )
    if len(st.unused):
        info(f"未使用标签 (no customer, candidates to prune): {', '.join(st.unused['tag'])}")
    if len(st.broad):
        info(f"覆盖过广 (>90% of customers): {', '.join(st.broad['tag'])}")
    info(
        f"{result.applied}/{len(rule_list)} rules applied; cap {max_tags}: {result.dropped_total:,} tag(s) dropped "
        f"for {result.customers_capped:,} customer(s). Wrote {out}" + (f" and {stats}" if stats else "")
    )


rules_app = typer.Typer(
    cls=_Group,
    help="Check rule files (tags).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(rules_app, name="rules")


@rules_app.command("check")
def rules_check_command(
    files: Annotated[list[Path], typer.Argument(help="Tag rules YAML file(s).")],
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Validate tag rules files: every problem at once (exit 2), or the table of tags.

    Examples:

      $ custtool rules check rules/tags.yaml

      $ custtool rules check rules/tags.yaml my_tags.yaml

      $ custtool rules check my_tags.yaml --json
    """
    from rich.markup import escape

    from custtool.tags import check_rules, load_rules, rules_table

    problems = check_rules(files)
    table = rules_table(load_rules(files)) if not problems else None
    if as_json:
        emit_json(
            {
                "files": [str(f) for f in files],
                "ok": not problems,
                "problems": [
                    {"file": p.file, "line": p.line, "rule": p.rule, "message": p.message, "hint": p.hint} for p in problems
                ],
                "tags": [] if table is None else table.drop(columns=["file"]).to_dict("records"),
            }
        )
    elif problems:
        console.print(f"[bold red]{len(problems)} problem(s):[/]")
        for p in problems:
            console.print(escape(f"  {p}") + (f"  [yellow]({escape(p.hint)})[/]" if p.hint else ""), soft_wrap=True, markup=True)
    elif table is not None:
        print_table(
            f"{len(table)} tags in {', '.join(f.name for f in files)}",
            ["标签", "一级", "二级", "优先级", "条件"],
            [[t, l1, l2, int(pr), c] for t, l1, l2, pr, c in table[["tag", "level1", "level2", "priority", "condition"]].itertuples(index=False)],
            quiet=quiet,
        )
    if problems:
        raise typer.Exit(2)


# --------------------------------------------------------------------------- report / pivot / cards
# (section: report — issue 6)


# --------------------------------------------------------------------------- run / followups
# (section: run — issue 7)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
