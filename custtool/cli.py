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
@app.command("segment")
def segment(
    customers: Annotated[
        Path | None, typer.Argument(help="Customers table (the clean output, or an import output). Optional: without it customers come from the orders.")
    ] = None,
    orders: Annotated[Path | None, typer.Option("--orders", help="Orders table (import output: order_id, customer_id/phone/email, order_time, amount).")] = None,
    surveys: Annotated[Path | None, typer.Option("--surveys", help="Survey table (score 0-10, satisfaction) for NPS.")] = None,
    interactions: Annotated[Path | None, typer.Option("--interactions", help="Follow-up/interaction log (days since last interaction, complaints).")] = None,
    as_of: AsOfOpt = None,
    window: Annotated[str | None, typer.Option("--window", help="Window for F and M, e.g. 365d, 26w, 12m (default from the config: 365d).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="segments.yaml with the thresholds (default: the shipped rules/segments.yaml).")] = None,
    output: OutOpt = None,
    summary: Annotated[Path | None, typer.Option("--summary", help="Write the segment summary workbook (.xlsx, one sheet per dimension).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="Aggregation engine: pandas or duckdb.")] = "pandas",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """RFM scores and 8 classes, value tiers, lifecycle, LTV (BG/NBD + Gamma-Gamma) and NPS per customer.

    $ custtool segment clean.parquet --orders orders.parquet -o segments.parquet
    $ custtool segment clean.parquet --orders orders.parquet --surveys nps.parquet --summary summary.xlsx
    $ custtool segment --orders orders.parquet --as-of 2024-06-30 --window 180d --json
    $ custtool segment clean.parquet --orders orders.parquet --config my_segments.yaml --engine duckdb
    """
    import time

    from custtool.errors import InputError
    from custtool.io import read_table, write_table
    from custtool.labels import label
    from custtool.rfm import load_segment_config, segment_customers, write_summary_workbook

    if orders is None:
        raise InputError("segment needs an orders table", "pass --orders orders.parquet (from `custtool import`)")
    for path, what in ((output, "-o/--output"), (summary, "--summary")):
        if path is not None and path.suffix.lower() not in ({".xlsx"} if what == "--summary" else {".parquet", ".csv", ".tsv", ".xlsx"}):
            raise InputError(f"{what} {path.name}: unsupported file type", "use .xlsx for --summary; .parquet, .csv or .xlsx for -o")
    shipped = Path(__file__).parent / "rules" / "segments.yaml"
    cfg = load_segment_config(config if config is not None else (shipped if shipped.exists() else None))
    started = time.perf_counter()
    order_df = read_table(orders)
    cust_df = read_table(customers) if customers is not None else None
    result = segment_customers(
        order_df, cust_df, surveys=surveys, interactions=interactions, as_of=as_of, window=window, config=cfg, engine=engine
    )
    rep = result.report
    written: dict[str, str] = {}
    if output is not None:
        write_table(result.customers, output)
        written["output"] = str(output)
        if rep.rows_unmatched:
            um = output.with_name(f"{output.stem}_unmatched_orders.csv")
            write_table(rep.unmatched, um)
            written["unmatched_orders"] = str(um)
    if summary is not None:
        write_summary_workbook(result, summary)
        written["summary"] = str(summary)
    elapsed = time.perf_counter() - started
    if json_out:
        out = result.to_dict()
        out["written"] = written
        out["seconds"] = round(elapsed, 3)
        emit_json(out)
        return
    info(
        f"as of {rep.as_of.date()}: {len(result.customers):,} customers, {rep.orders_used:,} orders used, "
        f"{rep.rows_unmatched:,} order rows matched no customer, {rep.rows_after_as_of:,} after the as-of date, "
        f"{rep.rows_duplicate:,} duplicate rows",
        quiet,
    )
    summ = result.summary
    rows = [
        [r.dimension and label(r.dimension), r.segment, int(r.customers), f"{r.customer_share:.1f}%", f"{r.revenue:,.2f}",
         "" if r.revenue_share != r.revenue_share else f"{r.revenue_share:.1f}%", "" if r.nps != r.nps else f"{r.nps:.1f}"]
        for r in summ.itertuples(index=False)  # a few dozen segment rows
    ]
    print_table("客户分群 Segments", ["维度", "分群", "客户数", "客户占比", "营收", "营收占比", "NPS"], rows, quiet)
    ltv = result.ltv
    if ltv.bgnbd:
        b = ltv.bgnbd
        info(f"BG/NBD ({b.unit}): r={b.r:.4g} alpha={b.alpha:.4g} a={b.a:.4g} b={b.b:.4g}", quiet)
    else:
        info(f"[yellow]No BG/NBD fit:[/] {ltv.bgnbd_reason}; LTV = historical value", quiet)
    if ltv.gamma_gamma:
        g = ltv.gamma_gamma
        info(f"Gamma-Gamma: p={g.p:.4g} q={g.q:.4g} v={g.v:.4g} ({len(g.excluded):,} customers outside the spend model)", quiet)
    else:
        info(f"[yellow]No Gamma-Gamma fit:[/] {ltv.gamma_gamma_reason}", quiet)
    if result.nps.get("surveys"):
        info(f"NPS {result.nps['nps']} over {result.nps['valid']:,} valid scores ({result.nps['invalid']:,} invalid)", quiet)
    for k, v in written.items():
        info(f"wrote {k}: {v}", quiet)
    if not written:
        info("nothing written (pass -o segments.parquet and/or --summary summary.xlsx)", quiet)



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
