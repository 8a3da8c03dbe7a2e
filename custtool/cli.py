"""The `custtool` command line: parse options, call one library function, render.

Every command calls one function of :mod:`custtool.steps` (``run`` calls
:func:`custtool.pipeline.run_pipeline`); it returns a result whose ``to_dict()`` is what
``--json`` prints and whose ``exit_code`` is what the command exits with. Policy (output
checks, staging, defaults, optional inputs) lives in the library, not here.

Heavy libraries (pandas, pandera, openpyxl) are imported inside the commands so that
`--help` stays fast. Errors from the library (:class:`custtool.errors.CusttoolError`)
are caught once, in :class:`_Group.invoke`: one red line and a hint on stderr, exit 2;
with ``--json`` stdout still gets one object, ``{"error": {...}}``.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
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


try:  # typer ≥ 0.20 vendors click; older versions use the click package
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _ClickException  # type: ignore[no-redef]


class _Group(TyperGroup):
    """Typer group with the error edge: a CusttoolError becomes one line (plus hint) on stderr
    and exit 2; with --json, stdout still gets one JSON object, ``{"error": {...}}``."""

    def invoke(self, ctx: Any) -> Any:
        wants_json = "--json" in [*ctx._protected_args, *ctx.args]
        try:
            try:
                return super().invoke(ctx)
            except OSError as exc:  # the environment, not a bug: permission, disk, missing path
                if isinstance(exc, BrokenPipeError):
                    raise
                from custtool.errors import environment_error

                raise environment_error(exc) from exc
            except MemoryError as exc:
                raise CusttoolError(
                    "out of memory",
                    "the input is too large for this machine: split it, or run on a larger one",
                ) from exc
        except CusttoolError as exc:
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()  # plain traceback, no locals (they may hold personal data)
            if wants_json:
                _emit_error(
                    type(exc).__name__,
                    exc.message,
                    exc.hint,
                    exc.exit_code,
                    getattr(exc, "file", None),
                    getattr(exc, "row", None),
                )
            from rich.markup import escape

            console.print(f"[bold red]Error:[/] {escape(exc.message)}", soft_wrap=True)
            if exc.hint:
                console.print(f"[yellow]Hint:[/] {escape(exc.hint)}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except _ClickException as exc:  # usage errors: one line plus a hint, on stderr
            if wants_json:
                _emit_error("UsageError", exc.format_message(), _usage_hint(exc), exc.exit_code)
            console.print(f"Error: {exc.format_message()}", soft_wrap=True, markup=False)
            console.print(f"Hint: {_usage_hint(exc)}", soft_wrap=True, markup=False)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:  # `custtool … | head`: the reader left; not an error of ours
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes at exit
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except (
            Exception
        ) as exc:  # a bug, not bad input: exit 3 so cron can tell it from 1 (rejects)
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()
            hint = "nothing was written; run again with --debug for the traceback and report it"
            if wants_json:
                _emit_error("InternalError", f"{type(exc).__name__}: {str(exc)[:200]}", hint, 3)
            console.print(
                f"[bold red]Internal error:[/] {type(exc).__name__}: {str(exc)[:200]}",
                soft_wrap=True,
            )
            console.print(f"[yellow]Hint:[/] {hint}", soft_wrap=True)
            raise typer.Exit(3) from None


def _usage_hint(exc: Any) -> str:
    """The hint under a usage error: the help of the command that was being called."""
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "custtool"
    return f"see `{path} --help`"


def _emit_error(
    kind: str,
    message: str,
    hint: str | None,
    exit_code: int,
    file: str | None = None,
    row: int | None = None,
) -> None:
    """The --json form of an error: one object on stdout, so a pipe always gets JSON."""
    emit_json(
        {
            "error": {
                "code": exit_code,
                "type": kind,
                "message": message,
                "hint": hint,
                "file": file,
                "row": row,
                "exit_code": exit_code,
            }
        }
    )


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
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """custtool: customer spreadsheets in, profiles, segments and reports out."""
    ctx.obj = {"debug": debug}


# --------------------------------------------------------------------------- shared options
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (for machines).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
OutOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Output file (.parquet, .csv or .xlsx).")
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="As-of date YYYY-MM-DD (default: the latest order date)."),
]


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
    table = Table(
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


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        console.print(message, soft_wrap=True)


def finish(result: Any, quiet: bool = False) -> None:
    """Exit with the result's code, saying why on stderr when it is not 0."""
    if result.exit_code:
        if result.problem:
            info(f"[red]{result.problem}[/]", quiet)
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


# --------------------------------------------------------------------------- import / template
# (section: import — issue 2)
SensitiveOpt = Annotated[
    str | None,
    typer.Option(
        "--sensitive",
        help="ID numbers, bank cards and fields marked sensitive: encrypt (default, needs "
        "CUSTTOOL_KEY), drop, mask, or clear (kept readable; stated in the output).",
    ),
]


@app.command("import")
def import_(
    files: Annotated[
        list[Path],
        typer.Argument(help="CSV/TSV/xlsx files to import (one kind of data).", show_default=False),
    ],
    output: OutOpt = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", "-k", help="customers, orders, interactions or surveys (default: detected)."
        ),
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            "-c",
            help="Channel name for every row (default: file name); repeat it to give one per file.",
        ),
    ] = None,
    sheet: Annotated[
        str | None, typer.Option("--sheet", help="Only this sheet of each workbook.")
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option("--encoding", help="Text encoding of CSV files (default: detected)."),
    ] = None,
    fields: Annotated[
        Path | None,
        typer.Option(
            "--fields", help="Your own header aliases (YAML), added to rules/fields.yaml."
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="Rejects file (.csv or .xlsx; default: beside the output)."),
    ] = None,
    max_rejects: Annotated[
        int | None,
        typer.Option("--max-rejects", help="Exit 1 when more rows than this are rejected."),
    ] = None,
    mask_rejects: Annotated[
        bool,
        typer.Option(
            "--mask-rejects",
            help="Mask names, phones and emails in the rejects file (ID numbers and bank cards always are).",
        ),
    ] = False,
    sensitive: SensitiveOpt = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="pandas (whole file in memory) or duckdb (orders streamed in batches to "
            "Parquet, e.g. --kind orders --engine duckdb --memory-limit 1GB -o orders.parquet; "
            "other kinds stay on pandas).",
        ),
    ] = "pandas",
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            help="Memory to stay within, e.g. 1GB or 512MB: bounds DuckDB and sizes the "
            "batches; with --engine pandas, CSV files are read in batches sized from it.",
        ),
    ] = None,
    temp_dir: Annotated[
        Path | None,
        typer.Option(
            "--temp-dir", help="Spill folder of the batched import (default: beside the output)."
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import customer, order, follow-up or survey exports and account for every row.

    Finds the header below title rows, maps Chinese/English headers to canonical fields,
    normalises phones, emails, dates, amounts, names and cities, and rejects only rows
    that cannot be used, with the reason. Without -o it only checks and reports.

    Examples:

      $ custtool import 电商客户.xlsx 门店会员.csv -o customers.parquet

      $ custtool import orders.csv --kind orders -o orders.parquet --rejects orders_rejects.xlsx

      $ custtool import leads.csv --channel 公众号 --encoding gbk --max-rejects 0 --json

      $ custtool import 会员.xlsx -o customers.parquet --sensitive drop   # no CUSTTOOL_KEY

      $ custtool import orders.csv --kind orders --engine duckdb --memory-limit 1GB -o orders.parquet
    """
    from custtool.steps import run_import

    with progress(quiet or json_out) as bar:
        task, stage = stage_progress(bar, "import", 3 if output or rejects else 1)
        result = run_import(
            files,
            output=output,
            kind=kind,
            channel=channel,
            sheet=sheet,
            encoding=encoding,
            fields=fields,
            rejects=rejects,
            max_rejects=max_rejects,
            mask_rejects=mask_rejects,
            sensitive=sensitive,
            progress=stage,
            engine=engine,
            memory_limit=memory_limit,
            temp_dir=temp_dir,
        )
        bar.update(task, completed=bar.tasks[0].total)
    if json_out:
        emit_json(result.to_dict())
    else:
        imp = result.value
        totals = imp.totals
        for w in result.warnings:
            info(f"[yellow]Warning:[/] {w}", quiet)
        rows = [
            [
                f.file + (f" [{f.sheet}]" if f.sheet else ""),
                f.encoding or "xlsx",
                f.rows_read,
                f.accepted,
                f.rejected,
                f.skipped,
                f.flagged,
            ]
            for f in imp.files
        ]
        rows.append(
            [
                "TOTAL",
                "",
                totals["rows_read"],
                totals["accepted"],
                totals["rejected"],
                totals["skipped"],
                totals["flagged"],
            ]
        )
        print_table(
            f"Imported {imp.kind}: rows read = accepted + rejected + skipped",
            ["file", "encoding", "read", "accepted", "rejected", "skipped", "flagged"],
            rows,
            quiet,
        )
        info(
            f"Skipped: {totals['skipped_blank']} blank rows, {totals['skipped_total']} totals rows.",
            quiet,
        )
        problems = result.data["problems"]
        if problems:
            info("Kept with a flag: " + ", ".join(f"{k} {v}" for k, v in problems.items()), quiet)
        if output:
            rejects_path = result.data["rejects"]
            info(
                f"Wrote {output}"
                + (f"; rejects and flagged values: {rejects_path}" if rejects_path else ""),
                quiet,
            )
    finish(result, quiet and not json_out)


@app.command("template")
def template(
    kind: Annotated[str, typer.Argument(help="customers, orders, interactions or surveys.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The .xlsx template to write.")
    ] = Path("客户信息导入模板.xlsx"),
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write an Excel import template: headers, required markers, drop-downs, example, instructions.

    Examples:

      $ custtool template customers -o 客户信息导入模板.xlsx

      $ custtool template orders -o 订单导入模板.xlsx
    """
    from custtool.steps import run_template

    result = run_template(kind, output)
    if json_out:
        emit_json(result.to_dict())
    else:
        info(f"Wrote {result.value}", quiet)


# --------------------------------------------------------------------------- clean
# (section: clean — issue 3)
@app.command("clean")
def clean(
    customers: Annotated[
        Path,
        typer.Argument(
            help="Customers table written by `custtool import` (.parquet, .csv, .xlsx)."
        ),
    ],
    output: OutOpt = None,
    keys: Annotated[
        str | None,
        typer.Option(
            "--keys", help="Link keys, comma-separated (default phone,email,customer_id)."
        ),
    ] = None,
    fuzzy_names: Annotated[
        bool,
        typer.Option(
            "--fuzzy-names", help="Propose similar names within a block for review (never merged)."
        ),
    ] = False,
    survivorship: Annotated[
        str | None, typer.Option("--survivorship", help="Which value wins: newest or channel.")
    ] = None,
    channel_priority: Annotated[
        str | None,
        typer.Option("--channel-priority", help="Channels, best first, e.g. 门店,电商,公众号."),
    ] = None,
    id_format: Annotated[
        str | None,
        typer.Option(
            "--id-format",
            help="Customer id format, e.g. 'C{seq:08d}' or '{region_code}-{industry_code}-{year}-{seq:03d}'.",
        ),
    ] = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous", help="An earlier clean output: returning customers keep their ids."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write the clean report (.xlsx), one sheet per section."),
    ] = None,
    mask: Annotated[
        bool,
        typer.Option(
            "--mask/--no-mask",
            help="Mask personal data in the clean report (--no-mask: roles that allow it).",
        ),
    ] = True,
    role: Annotated[
        str | None,
        typer.Option("--role", help="Role profile from rules/roles.yaml (default admin)."),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules", help="Clean settings YAML (default: the shipped rules/clean.yaml)."
        ),
    ] = None,
    hub_max_names: Annotated[
        int | None,
        typer.Option(
            "--hub-max-names", help="A phone/email shared by more names than this is not merged on."
        ),
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
    from custtool.steps import run_clean

    result = run_clean(
        customers,
        output=output,
        keys=keys,
        fuzzy_names=fuzzy_names,
        survivorship=survivorship,
        channel_priority=channel_priority,
        id_format=id_format,
        previous=previous,
        report=report,
        rules=rules,
        hub_max_names=hub_max_names,
        lang=lang,
        mask=mask,
        role=role,
    )
    for w in result.warnings:
        info(f"[yellow]Warning:[/] {w}", quiet or json_out)
    if json_out:
        emit_json(result.to_dict())
        return
    rep = result.value
    summary = rep.summary(lang)
    print_table(
        "清洗汇总 (clean)" if lang == "zh" else "Clean summary",
        ["项目" if lang == "zh" else "Item", "数量" if lang == "zh" else "Count"],
        [
            [item, int(v)]
            for item, v in zip(summary["metric_label"], summary["metric_value"], strict=True)
        ],
        quiet,
    )
    print_table(
        "按键合并" if lang == "zh" else "Merges by key",
        [
            "键" if lang == "zh" else "Key",
            "行数" if lang == "zh" else "Rows",
            "客户数" if lang == "zh" else "Customers",
        ],
        [
            [k, int(a), int(b)]
            for k, a, b in zip(
                rep.merges_by_key["merge_key"],
                rep.merges_by_key["linked_rows"],
                rep.merges_by_key["linked_customers"],
                strict=True,
            )
        ],
        quiet,
    )
    d = result.data
    info(
        f"customers → {d['output']}\nlineage   → {d['lineage']}"
        + (f"\nreport    → {d['report']}" if d["report"] else ""),
        quiet,
    )


# --------------------------------------------------------------------------- segment
# (section: segment — issue 4)
@app.command("segment")
def segment(
    customers: Annotated[
        Path | None,
        typer.Argument(
            help="Customers table (the clean output, or an import output). Optional: without it customers come from the orders."
        ),
    ] = None,
    orders: Annotated[
        Path | None,
        typer.Option(
            "--orders",
            help="Orders table (import output: order_id, customer_id/phone/email, order_time, amount).",
        ),
    ] = None,
    surveys: Annotated[
        Path | None,
        typer.Option("--surveys", help="Survey table (score 0-10, satisfaction) for NPS."),
    ] = None,
    interactions: Annotated[
        Path | None,
        typer.Option(
            "--interactions",
            help="Follow-up/interaction log (days since last interaction, complaints).",
        ),
    ] = None,
    as_of: AsOfOpt = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Window for F and M, e.g. 365d, 26w, 12m (default from the config: 365d).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="segments.yaml with the thresholds (default: the shipped rules/segments.yaml).",
        ),
    ] = None,
    output: OutOpt = None,
    summary: Annotated[
        Path | None,
        typer.Option(
            "--summary", help="Write the segment summary workbook (.xlsx, one sheet per dimension)."
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Metrics engine: pandas (in memory), duckdb (out of core over the orders "
            "Parquet, bounded by --memory-limit) or spark (Spark SQL via pyspark, "
            "pip install 'custtool[spark]').",
        ),
    ] = "pandas",
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            help="Memory bound of --engine duckdb, e.g. 1GB, 512MB, 2GiB (it spills to a "
            "temporary folder beyond it; too small to finish is exit 2).",
        ),
    ] = None,
    spark_master: Annotated[
        str,
        typer.Option(
            "--spark-master",
            help="Spark master of --engine spark: local[*] (default), local[2], "
            "spark://host:7077 (unreachable: exit 2 within about a minute).",
        ),
    ] = "local[*]",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """RFM scores and 8 classes, value tiers, lifecycle, LTV (BG/NBD + Gamma-Gamma) and NPS per customer.

    With -o, the attributed orders (stable customer ids) go beside it as <name>_orders.parquet,
    for report/cards/pivot --orders. Without --orders, R, F and M come from a member list's
    summary columns (最近消费时间, 累计消费次数, 累计消费金额) and LTV is skipped.

    $ custtool segment clean.parquet --orders orders.parquet -o segments.parquet
    $ custtool segment clean.parquet --orders orders.parquet --surveys nps.parquet --summary summary.xlsx
    $ custtool segment --orders orders.parquet --as-of 2024-06-30 --window 180d --json
    $ custtool segment clean.parquet --orders orders.parquet --engine duckdb --memory-limit 1GB -o seg.parquet
    $ custtool segment clean.parquet --orders orders.parquet --engine spark --spark-master local[2]
    $ custtool segment members.parquet --json
    """
    import pandas as pd

    from custtool.labels import label
    from custtool.steps import run_segment

    with progress(quiet or json_out) as bar:
        task, stage = stage_progress(bar, "segment", 2 + bool(output) + bool(summary))
        result = run_segment(
            customers,
            orders=orders,
            surveys=surveys,
            interactions=interactions,
            as_of=as_of,
            window=window,
            config=config,
            output=output,
            summary=summary,
            engine=engine,
            memory_limit=memory_limit,
            spark_master=spark_master,
            progress=stage,
        )
        bar.update(task, completed=bar.tasks[0].total)
    if json_out:
        emit_json(result.to_dict())
        return
    seg = result.value
    rep = seg.report
    if seg.rfm_source != "orders":
        info(
            f"as of {rep.as_of.date()}: {len(seg.customers):,} customers; "
            + result.data["rfm_source_note"]
            + f"; LTV {seg.ltv.bgnbd_reason}",
            quiet,
        )
    else:
        info(
            f"as of {rep.as_of.date()}: {len(seg.customers):,} customers; order rows {rep.rows:,} = "
            f"{rep.rows_used:,} used ({rep.orders_used:,} orders) + {rep.rows_unmatched:,} matched no customer + "
            f"{rep.rows_duplicate:,} duplicate + {rep.rows_after_as_of:,} after the as-of date + "
            f"{rep.rows_invalid_time:,} without a valid time",
            quiet,
        )
    summ = seg.summary
    shown = pd.DataFrame(
        {
            "dimension": summ["dimension"].map(lambda d: d and label(d)),
            "segment": summ["segment"],
            "customers": summ["customers"].astype(int),
            "customer_share": summ["customer_share"].map("{:.1f}%".format),
            "revenue": summ["revenue"].map("{:,.2f}".format),
            "revenue_share": summ["revenue_share"]
            .map("{:.1f}%".format, na_action="ignore")
            .astype(object)
            .fillna(""),
            "nps": summ["nps"].map("{:.1f}".format, na_action="ignore").astype(object).fillna(""),
        }
    )
    rows = shown.to_numpy().tolist()
    print_table(
        "客户分群 Segments",
        ["维度", "分群", "客户数", "客户占比", "营收", "营收占比", "NPS"],
        rows,
        quiet,
    )
    ltv = seg.ltv
    if ltv.bgnbd:
        b = ltv.bgnbd
        info(f"BG/NBD ({b.unit}): r={b.r:.4g} alpha={b.alpha:.4g} a={b.a:.4g} b={b.b:.4g}", quiet)
    else:
        info(f"[yellow]No BG/NBD fit:[/] {ltv.bgnbd_reason}; LTV = historical value", quiet)
    if ltv.gamma_gamma:
        g = ltv.gamma_gamma
        info(
            f"Gamma-Gamma: p={g.p:.4g} q={g.q:.4g} v={g.v:.4g} ({len(g.excluded):,} customers outside the spend model)",
            quiet,
        )
    else:
        info(f"[yellow]No Gamma-Gamma fit:[/] {ltv.gamma_gamma_reason}", quiet)
    if seg.nps.get("surveys"):
        info(
            f"NPS {seg.nps['nps']} over {seg.nps['valid']:,} valid scores ({seg.nps['invalid']:,} invalid)",
            quiet,
        )
    written = result.data["written"]
    for k, v in written.items():
        info(f"wrote {k}: {v}", quiet)
    if not written:
        info("nothing written (pass -o segments.parquet and/or --summary summary.xlsx)", quiet)


# --------------------------------------------------------------------------- tag / rules
# (section: tag — issue 5)
RulesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        "-r",
        help="Tag rules YAML (repeatable; default: the shipped library rules/tags.yaml).",
    ),
]


@app.command("tag")
def tag_command(
    customers: Annotated[
        Path, typer.Argument(help="Segmented (or clean) customers table: .parquet, .csv or .xlsx.")
    ],
    rules: RulesOpt = None,
    manual: Annotated[
        Path | None,
        typer.Option(
            "--manual", "-m", help="Manual tags file: customer_id, tag, optional op (add/remove)."
        ),
    ] = None,
    max_tags: Annotated[
        int,
        typer.Option(
            "--max-tags", min=1, help="At most this many tags per customer (highest priority wins)."
        ),
    ] = 10,
    output: OutOpt = None,
    stats: Annotated[
        Path | None, typer.Option("--stats", help="Write tag statistics to this .xlsx workbook.")
    ] = None,
    key: Annotated[
        str, typer.Option("--key", help="Customer key column for --manual.")
    ] = "customer_id",
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
    from custtool.steps import run_tag

    result = run_tag(
        customers,
        rules=rules,
        manual=manual,
        max_tags=max_tags,
        output=output,
        stats=stats,
        key=key,
        as_of=as_of,
    )
    if as_json:
        emit_json(result.to_dict())
        return
    if quiet:
        return
    tagging, d = result.value, result.data
    st = tagging.stats
    for w in result.warnings:
        console.print(f"[yellow]Warning:[/] {w}", soft_wrap=True)
    top = st.usage[st.usage["customers"] > 0].head(20)
    print_table(
        f"标签使用 (top {len(top)} of {len(st.usage)} tags, {st.customers:,} customers)",
        ["标签", "一级", "二级", "客户数", "占比"],
        top[["tag", "level1", "level2", "customers"]]
        .assign(share=top["share"].map("{:.1%}".format))
        .to_numpy()
        .tolist(),
    )
    if len(st.unused):
        info(f"未使用标签 (no customer, candidates to prune): {', '.join(st.unused['tag'])}")
    if len(st.broad):
        info(f"覆盖过广 (>90% of customers): {', '.join(st.broad['tag'])}")
    info(
        f"{d['rules_applied']}/{d['rules']} rules applied; cap {max_tags}: {d['tags_dropped']:,} tag(s) dropped "
        f"for {d['customers_capped']:,} customer(s). Wrote {d['output']}"
        + (f" and {stats}" if stats else "")
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

    from custtool.steps import run_rules_check

    result = run_rules_check(files)
    if as_json:
        emit_json(result.to_dict())
    elif result.exit_code:
        problems = result.value
        console.print(f"[bold red]{len(problems)} problem(s):[/]")
        for p in problems:
            console.print(
                escape(f"  {p}") + (f"  [yellow]({escape(p.hint)})[/]" if p.hint else ""),
                soft_wrap=True,
                markup=True,
            )
    else:
        table = result.value
        print_table(
            f"{len(table)} tags in {', '.join(f.name for f in files)}",
            ["标签", "一级", "二级", "优先级", "条件"],
            table[["tag", "level1", "level2", "priority", "condition"]].to_numpy().tolist(),
            quiet=quiet,
        )
    if result.exit_code:
        raise typer.Exit(result.exit_code)


# --------------------------------------------------------------------------- report / pivot / cards
# (section: report — issue 6)
LangOpt = Annotated[str, typer.Option("--lang", help="Labels: zh (default) or en.")]
RoleOpt = Annotated[
    str | None,
    typer.Option(
        "--role",
        help="Role profile from rules/roles.yaml: admin (default), analyst, sales, service.",
    ),
]
OwnerOpt = Annotated[
    str | None,
    typer.Option("--owner", help="Only the customers of this owner (required for --role sales)."),
]
NoMaskOpt = Annotated[
    bool,
    typer.Option(
        "--no-mask",
        help="Show names, phones and emails unmasked (admin only; ID numbers and bank cards stay masked).",
    ),
]
StrategiesOpt = Annotated[
    Path | None,
    typer.Option(
        "--strategies", help="Strategy YAML (default: the shipped rules/strategies.yaml)."
    ),
]


@app.command("report")
def report_cmd(
    segmented: Annotated[Path, typer.Argument(help="Segmented (and tagged) customers table.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Workbook to write (.xlsx).")
    ] = Path("report.xlsx"),
    orders: Annotated[
        Path | None,
        typer.Option(
            "--orders",
            help="Orders (segment's *_orders.parquet, or raw orders: attributed to the customers first): monthly revenue chart.",
        ),
    ] = None,
    surveys: Annotated[
        Path | None,
        typer.Option(
            "--surveys",
            help="Survey table: the NPS on 概览 (all valid responses up to the as-of date, as `segment` computes it).",
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="Rejects table from import/clean: 数据质量 sheet."),
    ] = None,
    clean_report: Annotated[
        Path | None,
        typer.Option(
            "--clean-report", help="Clean report (JSON or table): counts on the 数据质量 sheet."
        ),
    ] = None,
    strategies: StrategiesOpt = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous", help="An earlier segmented table: 迁移 sheet (migration matrix)."
        ),
    ] = None,
    role: RoleOpt = None,
    owner: OwnerOpt = None,
    no_mask: NoMaskOpt = False,
    lang: LangOpt = "zh",
    roles: Annotated[
        Path | None, typer.Option("--roles", help="Roles YAML (default: rules/roles.yaml).")
    ] = None,
    followups: Annotated[
        Path | None,
        typer.Option(
            "--followups", help="Follow-up log for the 销售漏斗 sheet (results move stages)."
        ),
    ] = None,
    as_of: AsOfOpt = None,
    book: Annotated[
        Path | None,
        typer.Option("--book", help="Customer book: adds the 趋势 sheet when it holds ≥2 runs."),
    ] = None,
    sheet_rows: Annotated[
        int | None,
        typer.Option(
            "--sheet-rows",
            min=1,
            help="Top customers listed on each tier/class sheet (default: rules/report.yaml, 1000); the rest: 客户明细 and <report>_customers.csv.",
        ),
    ] = None,
    formats: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Files to write, comma-separated: xlsx, html (self-contained, offline), pdf (needs custtool[pdf]); named by -o's stem (default: rules/report.yaml, xlsx).",
        ),
    ] = None,
    split_by: Annotated[
        str | None,
        typer.Option(
            "--split-by",
            help="owner: also one masked workbook per 负责人 in owners/ beside -o (owners/未分配.xlsx: no owner), in the sales role's view.",
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the tiered Excel report: summary with charts, tier/RFM-class sheets, details, strategies.

    --format html,pdf also writes report.html / report.pdf beside it: the KPIs, segment
    tables with shares, charts (inline SVG), strategies and NPS of 概览, for a browser
    (offline) or the printer. --split-by owner writes owners/<负责人>.xlsx per owner.

    Each customer is written once, in 客户明细; a tier/class sheet shows the segment's summary,
    traits and top customers (--sheet-rows, default 1000) with a note naming the rest.

    Personal data is masked by default (张*, 138****5678); --no-mask is for admins only.
    Text that would start a formula is written as text; the workbook has no formulas.

    Examples:

      $ custtool report segmented.parquet -o report.xlsx

      $ custtool report segmented.parquet --orders orders.parquet --previous last_month.parquet -o report.xlsx

      $ custtool report segmented.parquet --surveys surveys.parquet -o report.xlsx

      $ custtool report segmented.parquet --role service --lang en -o service.xlsx

      $ custtool report segmented.parquet --role sales --owner 王经理 -o wang.xlsx

      $ custtool report segmented.parquet --surveys surveys.parquet --format xlsx,html,pdf --split-by owner -o out/report.xlsx
    """
    from custtool.steps import run_report

    with progress(quiet or json_out) as bar:
        task = bar.add_task("writing report", total=None)
        result = run_report(
            segmented,
            output,
            orders=orders,
            surveys=surveys,
            rejects=rejects,
            clean_report=clean_report,
            strategies=strategies,
            previous=previous,
            role=role,
            owner=owner,
            mask=not no_mask,
            lang=lang,
            roles=roles,
            followups=followups,
            as_of=as_of,
            book=book,
            sheet_rows=sheet_rows,
            formats=formats,
            split_by=split_by,
        )
        bar.update(task, completed=1, total=1)
    if json_out:
        emit_json(result.to_dict())
        return
    rep = result.value
    if rep is not None:
        print_table(
            f"report → {rep.path}",
            ["sheet", "rows"],
            [[k, v] for k, v in rep.sheets.items()],
            quiet,
        )
        info(
            f"{rep.customers:,} customers, {rep.charts} charts, role {rep.role}, "
            + ("personal data masked" if rep.masked else "[bold red]personal data NOT masked[/]"),
            quiet,
        )
    for fmt in ("html", "pdf"):
        if fmt in result.data:
            info(f"{fmt} → {result.data[fmt]['path']}", quiet)
    if result.data.get("owners"):
        own = result.data["owners"]
        print_table(
            f"owner workbooks → {own['folder']} (role {own['role']}, masked)",
            ["owner", "customers", "file"],
            [[w["owner"], w["customers"], Path(w["path"]).name] for w in own["workbooks"]],
            quiet,
        )
    if result.data.get("full_list"):
        info(f"every customer: {result.data['full_list']}", quiet)
    for w in result.warnings:
        info(f"[yellow]Warning:[/] {w}", quiet)


@app.command("pivot")
def pivot_cmd(
    segmented: Annotated[Path, typer.Argument(help="Segmented (and tagged) customers table.")],
    rows: Annotated[str, typer.Option("--rows", help="Row column(s), comma-separated, e.g. tier.")],
    cols: Annotated[
        str | None,
        typer.Option(
            "--cols",
            help="Column column(s), e.g. channel (the customers channels, one count per channel) or source_channel.",
        ),
    ] = None,
    values: Annotated[
        str,
        typer.Option(
            "--values", help="column:aggregate list (sum, count, mean, median, min, max, nunique)."
        ),
    ] = "customer_id:count",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to .xlsx or .csv instead of the terminal."),
    ] = None,
    orders: Annotated[
        Path | None,
        typer.Option(
            "--orders",
            help="Orders (a run's orders_attributed.parquet, or raw orders): a channel pivot counts each order in its own channel.",
        ),
    ] = None,
    role: RoleOpt = None,
    owner: OwnerOpt = None,
    lang: LangOpt = "zh",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pivot table of the customers: rows × columns × aggregated values, to the terminal or a file.

    A totals row and column always show the true totals. Without --orders a customer with
    several channels (or tags) counts once per value, and the output says so.

    Examples:

      $ custtool pivot segmented.parquet --rows tier --cols channel --values monetary:sum --orders orders_attributed.parquet

      $ custtool pivot segmented.parquet --rows tier --cols channel --values monetary:sum,customer_id:count

      $ custtool pivot segmented.parquet --rows rfm_class --values monetary:mean -o pivot.xlsx

      $ custtool pivot segmented.parquet --rows tags --cols tier --json
    """
    from custtool.steps import run_pivot

    result = run_pivot(
        segmented,
        rows,
        cols,
        values,
        output=output,
        orders=orders,
        role=role,
        owner=owner,
        lang=lang,
    )
    if json_out:
        emit_json(result.to_dict())
        return
    for note in result.data["notes"]:
        info(note, quiet)
    if output is not None:
        info(f"pivot → {output} ({result.data['rows']} rows)", quiet)
        return
    pv = result.value
    header, body = pv.header, pv.body
    grid = Table(title=f"{rows} × {cols or '-'}", title_justify="left")
    n_keys = len(pv.flat.columns) - len(pv.table.columns)
    for i, h in enumerate(header):
        grid.add_column(
            h.replace(" | ", "\n"), justify="left" if i < n_keys else "right", no_wrap=True
        )
    for rec in body:
        grid.add_row(*rec)
    widths = [
        max([len(p) * 2 for p in h.split(" | ")] + [len(v) for v in col]) + 3
        for h, col in zip(
            header, zip(*body, strict=False) if body else [()] * len(header), strict=False
        )
    ]
    out = stdout if stdout.is_terminal else Console(highlight=False, width=max(80, sum(widths) + 2))
    out.print(grid)


@app.command("cards")
def cards_cmd(
    segmented: Annotated[Path, typer.Argument(help="Segmented (and tagged) customers table.")],
    customer: Annotated[
        list[str] | None,
        typer.Option("--customer", help="Customer id for an individual card (repeatable)."),
    ] = None,
    segment: Annotated[
        list[str] | None,
        typer.Option(
            "--segment",
            help="Segment for a group card, e.g. 重要价值客户, 高价值, 沉睡 (repeatable).",
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="Group cards for every segment of rfm_class, tier or lifecycle."),
    ] = None,
    top: Annotated[
        int,
        typer.Option("--top", min=0, help="Individual cards for the N most valuable customers."),
    ] = 0,
    fmt: Annotated[
        str | None, typer.Option("--format", help="md, html or xlsx (default: from -o, else html).")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File, or folder for cards.<format>.")
    ] = Path("cards"),
    orders: Annotated[
        Path | None,
        typer.Option(
            "--orders",
            help="Orders (segment's *_orders.parquet, or raw orders: attributed to the customers first): top categories.",
        ),
    ] = None,
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
    from custtool.steps import run_cards

    result = run_cards(
        segmented,
        customer=customer,
        segment=segment,
        by=by,
        top=top,
        fmt=fmt,
        output=output,
        orders=orders,
        strategies=strategies,
        role=role,
        owner=owner,
        mask=not no_mask,
        lang=lang,
    )
    d = result.to_dict()
    if json_out:
        emit_json(d)
    else:
        info(f"cards → {d['output']}: {d['individual']} individual, {d['group']} group", quiet)


# --------------------------------------------------------------------------- run / followups
# (section: run — issue 7)
@app.command("run")
def run(
    pipeline: Annotated[
        Path, typer.Argument(help="The pipeline YAML (see examples/pipeline.yaml).")
    ],
    as_of: AsOfOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for run folders (default: the pipeline's out:)."),
    ] = None,
    fail_on_rejects: Annotated[
        int | None,
        typer.Option(
            "--fail-on-rejects", help="Exit 1 when more input rows than this are rejected."
        ),
    ] = None,
    sensitive: SensitiveOpt = None,
    no_send: Annotated[
        bool,
        typer.Option("--no-send", help="Do not mail the pipeline's deliver: subscriptions."),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole job: import → clean → segment → tag → follow-ups → report → cards.

    Everything goes into one folder per as-of date (out/2026-10-31/), written atomically,
    with manifest.json recording inputs, hashes, row counts, outputs and timings. Made for
    cron: no prompts, plain output when not a terminal, exit 0 ok / 1 too many rejects /
    2 bad input or config. With a deliver: section the due subscriptions are mailed after a
    successful run (not after one over --fail-on-rejects); a mail that cannot be sent is
    exit 1 with the run folder complete (see `custtool send`).

    Examples:

      $ custtool run examples/pipeline.yaml

      $ custtool run pipeline.yaml --as-of 2026-10-31 --out /data/custtool --quiet

      $ custtool run pipeline.yaml --fail-on-rejects 0 --json

      $ custtool run pipeline.yaml --no-send
    """
    from custtool.pipeline import load_pipeline, run_pipeline

    pl = load_pipeline(pipeline)
    with progress(quiet or json_out) as bar:
        task = bar.add_task("pipeline", total=7)

        def step(name: str) -> None:
            bar.update(task, description=name, advance=1)

        result = run_pipeline(
            pl,
            as_of=as_of,
            out=out,
            fail_on_rejects=fail_on_rejects,
            progress=step,
            sensitive=sensitive,
            send=not no_send,
        )
    m = result.manifest
    if json_out:
        emit_json(result.to_dict())
    else:
        rows = []
        for rec in m["steps"]:
            counts = rec.get("rows") or {}
            if rec["step"] == "import":
                text = "; ".join(
                    f"{k}: {v['accepted']:,}/{v['rows_read']:,} accepted, {v['rejected']:,} rejected, {v['skipped']:,} skipped"
                    for k, v in counts.items()
                )
            else:
                text = ", ".join(
                    f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items()
                )
            rows.append([rec["step"], f"{rec['seconds']:.1f}s", text])
        print_table(
            f"custtool run {pl.name} — as of {m['as_of']}", ["step", "time", "rows"], rows, quiet
        )
        for w in m["warnings"]:
            info(f"[yellow]Warning:[/] {w}", quiet)
        # the one-line result cron mails show
        status = "REJECTS OVER LIMIT" if result.over_reject_limit else "OK"
        typer.echo(
            f"custtool run: {status} as_of={m['as_of']} customers={m['rows']['segment']['customers']} "
            f"rejected={m['rejected_rows']} report={result.folder / 'report.xlsx'}"
            + (
                f" mailed={result.delivery.count('sent')} mail_failed={result.delivery.count('failed')}"
                if result.delivery is not None
                else ""
            )
        )
        if result.over_reject_limit and pl.deliver is not None and not no_send:
            info(
                f"[yellow]Not mailed:[/] rejects over the limit; check rejects.csv, then "
                f"`custtool send {result.folder}`",
                quiet,
            )
        if result.delivery is not None:
            _print_delivery(result.delivery.to_dict(), quiet)
            if result.delivery.problem:
                info(f"[red]{result.delivery.problem}[/]")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _print_delivery(d: dict[str, Any], quiet: bool = False) -> None:
    """The mails of a delivery, one row each, on stderr."""
    rows = [
        [
            m["status"],
            m["subscription"],
            m["to"],
            m["subject"],
            ", ".join(f"{a['name']} ({a['bytes']:,} B)" for a in m["attachments"]),
        ]
        for m in d["mails"]
    ]
    rows += [[f"not due ({n['cycle']})", n["subscription"], "", "", ""] for n in d["not_due"]]
    what = "e-mail (dry run: nothing sent)" if d["dry_run"] else "e-mail"
    print_table(
        f"{what} — as of {d['as_of']}",
        ["status", "subscription", "to", "subject", "attachments"],
        rows,
        quiet,
    )


@app.command("send")
def send_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder, e.g. out/2026-10-31.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="The pipeline file with deliver: (default: the run's pipeline)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List recipients, subjects and files; send nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send again what was already sent from this run.")
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Mail a finished run folder to the pipeline's deliver: subscriptions (SMTP).

    The password comes from the environment variable named by password_env only. What was
    sent (to whom, when, which files with their SHA-256) and what failed is recorded in the
    run's manifest.json; what already went out is skipped unless --force. Exit 0 sent,
    1 a mail could not be sent (the run folder is intact), 2 bad folder or config, or a
    subscription that may not have the files (nothing sent).

    Examples:

      $ custtool send out/2026-10-31 --config pipeline.yaml --dry-run

      $ custtool send out/2026-10-31 --config pipeline.yaml

      $ custtool send out/2026-10-31 --force --json
    """
    from custtool.steps import run_send

    result = run_send(run_dir, config=config, dry_run=dry_run, force=force)
    if json_out:
        emit_json(result.to_dict())
    else:
        _print_delivery(result.data, quiet)
        d = result.data
        typer.echo(
            f"custtool send: {'DRY RUN ' if d['dry_run'] else ''}as_of={d['as_of']} "
            f"sent={d['sent']} failed={d['failed']} skipped={d['skipped']} planned={d['planned']}"
        )
    finish(result)  # the failure line even with --quiet: cron mails stderr


@app.command("followups")
def followups(
    customers: Annotated[
        Path, typer.Argument(help="Customers (segmented/tagged output, or clean output).")
    ],
    log: Annotated[
        Path,
        typer.Option("--log", help="The follow-up log (imported interactions, or a raw export)."),
    ],
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Follow-up rules (default rules/followups.yaml).")
    ] = None,
    as_of: AsOfOpt = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Only this owner's follow-ups.")
    ] = None,
    output: OutOpt = None,
    statuses: Annotated[
        Path | None, typer.Option("--statuses", help="Write customers with updated status here.")
    ] = None,
    no_mask: Annotated[
        bool,
        typer.Option(
            "--no-mask",
            help="Show personal data in the task list unmasked (roles that allow it; ID numbers stay masked).",
        ),
    ] = False,
    role: Annotated[
        str | None,
        typer.Option("--role", help="Role profile from rules/roles.yaml (default admin)."),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List due and overdue follow-ups per owner, and apply status changes from results.

    Tasks come from the log's next-follow-up dates and from rules (流失风险 within 30
    days, 高价值 visited every quarter, 投诉 called back within a week). Results such as
    合同签订 move a customer's status (→ 成交客户) by the YAML mapping.

    Examples:

      $ custtool followups out/2026-10-31/customers.parquet --log 跟进记录.xlsx -o 跟进任务.xlsx

      $ custtool followups customers.parquet --log interactions.parquet --owner 王五 --as-of 2026-10-31

      $ custtool followups customers.parquet --log 跟进记录.xlsx --statuses customers_status.parquet --json
    """
    from custtool.steps import run_followups

    result = run_followups(
        customers,
        log,
        rules=rules,
        as_of=as_of,
        owner=owner,
        output=output,
        statuses=statuses,
        mask=not no_mask,
        role=role,
    )
    if json_out:
        emit_json(result.to_dict())
        return
    fu = result.value
    if fu.per_owner is not None:
        counts = fu.per_owner.reindex(columns=["逾期", "即将到期"], fill_value=0).astype(int)
        rows = counts.reset_index().to_numpy().tolist()
        print_table(
            "Follow-ups per owner", ["owner", "overdue 逾期", "due soon 即将到期"], rows, quiet
        )
    else:
        info("No follow-ups due.", quiet)
    info(f"Status changes from follow-up results: {fu.status_changes}", quiet)
    if output:
        info(f"Wrote {output}", quiet)


# --------------------------------------------------------------------------- key / reveal
# (section: privacy — issue 14)
key_app = typer.Typer(
    cls=_Group,
    help="Keys for sensitive columns at rest (CUSTTOOL_KEY).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(key_app, name="key")


@key_app.command("new")
def key_new_command(json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Print a fresh key for CUSTTOOL_KEY (stdout only; custtool never stores it).

    Examples:

      $ custtool key new --quiet > /secure/custtool.key

      $ custtool key new --json

    Then: export CUSTTOOL_KEY=$(cat /secure/custtool.key)
    """
    from custtool.steps import run_key_new

    result = run_key_new()
    if json_out:
        emit_json(result.to_dict())  # the key id only
        return
    typer.echo(result.value)
    info(
        f"Key id {result.data['key_id']}. Keep the key in a secret store: without it "
        "encrypted columns cannot be read.",
        quiet,
    )


@key_app.command("rotate")
def key_rotate_command(
    folder: Annotated[Path, typer.Argument(help="A run folder (or any folder of tables).")],
    old_env: Annotated[
        str, typer.Option("--old-env", help="Environment variable holding the old key.")
    ] = "CUSTTOOL_KEY",
    new_env: Annotated[
        str, typer.Option("--new-env", help="Environment variable holding the new key.")
    ] = "CUSTTOOL_NEW_KEY",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-encrypt the tables of a run folder from the old key to the new one.

    Examples:

      $ custtool key rotate out/2026-10-31 --old-env CUSTTOOL_KEY --new-env CUSTTOOL_NEW_KEY

      $ custtool key rotate out/2026-10-31 --json
    """
    from custtool.steps import run_key_rotate

    result = run_key_rotate(folder, old_env=old_env, new_env=new_env)
    if json_out:
        emit_json(result.to_dict())
        return
    d = result.data
    for f in d["files"]:
        info(f"{f['file']}: {f['cells']} cells re-encrypted", quiet)
    if d["files"]:
        info(
            f"Key id {d['old_key_id']} → {d['new_key_id']}. Set CUSTTOOL_KEY to the new key.", quiet
        )
    else:
        info("Nothing encrypted to rotate.", quiet)


@app.command("reveal")
def reveal_command(
    file: Annotated[Path, typer.Argument(help="A table custtool wrote (.parquet/.csv/.xlsx).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the clear table (0600).")
    ],
    role: RoleOpt = None,
    roles: Annotated[
        Path | None, typer.Option("--roles", help="Your role profiles (YAML).")
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decrypt the encrypted columns of a table with CUSTTOOL_KEY (admin only).

    Examples:

      $ custtool reveal out/2026-10-31/customers.parquet -o customers_clear.csv

      $ custtool reveal customers.parquet -o clear.xlsx --role admin --json
    """
    from custtool.steps import run_reveal

    result = run_reveal(file, output=output, role=role, roles=roles)
    if json_out:
        emit_json(result.to_dict())
        return
    cols = ", ".join(result.data["columns"]) or "none"
    info(f"Decrypted columns: {cols}. Wrote {output} (owner-only; delete it when done).", quiet)


@app.command("funnel")
def funnel(
    customers: Annotated[
        Path, typer.Argument(help="Customers (segmented/tagged, clean or imported) with status.")
    ],
    followups: Annotated[
        Path | None,
        typer.Option(
            "--followups", help="The follow-up log: results such as 有意向 move customers on."
        ),
    ] = None,
    as_of: AsOfOpt = None,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="Stage mapping (default rules/funnel.yaml)."),
    ] = None,
    output: OutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Sales funnel 潜在 → 意向 → 成交 with conversion rates, overall, per owner and per channel.

    Stages come from the status, follow-up results and orders (rules/funnel.yaml);
    流失 is counted beside the funnel.

    $ custtool funnel segmented.parquet --followups 跟进记录.xlsx
    $ custtool funnel clean.parquet --followups interactions.parquet --as-of 2024-06-30 --json
    $ custtool funnel segmented.parquet -o 销售漏斗.xlsx
    """
    from custtool.labels import label
    from custtool.steps import run_funnel

    result = run_funnel(customers, followups=followups, as_of=as_of, rules=rules, output=output)
    if json_out:
        emit_json(result.to_dict())
        return
    t = result.value.table
    grid = Table(title="销售漏斗 Sales funnel", title_justify="left")
    for c in t.columns:
        grid.add_column(
            label(c), justify="right" if c in {"customers", "conversion", "overall"} else "left"
        )
    for r in t.to_dict("records"):
        grid.add_row(
            label(r["dimension"]),
            str(r["group"]),
            str(r["stage"]),
            f"{r['customers']:,}",
            "" if r["conversion"] != r["conversion"] else f"{r['conversion']:.1%}",
            "" if r["overall"] != r["overall"] else f"{r['overall']:.1%}",
        )
    Console().print(grid)
    if output is not None:
        info(f"funnel → {output}", quiet)


# --------------------------------------------------------------------------- the customer book (issue 16)
BookOpt = Annotated[
    Path | None,
    typer.Option("--book", help="The book file (default: out/custtool.duckdb)."),
]


def _print_frame(title: str, frame: Any, quiet: bool = False) -> None:
    """A small DataFrame as a table on stdout (data, asked for)."""
    grid = Table(title=title, title_justify="left")
    for c in frame.columns:
        grid.add_column(str(c), overflow="fold")
    for row in frame.astype(object).where(frame.notna(), "").to_numpy().tolist():
        grid.add_row(*[str(v) for v in row])
    stdout.print(grid)


@app.command("trend")
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


@app.command("compare")
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
    for dim, m in cmp.matrices.items():
        _print_frame(f"{dim}: {cmp.from_} \\ {cmp.to}", m.reset_index())
    info(f"new {cmp.new:,}, lost {cmp.lost:,}", quiet)
    if output is not None:
        info(f"moves → {output} ({len(cmp.moves):,} rows)", quiet)


@app.command("query")
def query_cmd(
    sql: Annotated[str, typer.Argument(help="A SQL query (DuckDB) on the book's tables.")],
    book: BookOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the result to .csv, .xlsx or .parquet."),
    ] = None,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a read-only SQL query on the customer book; writes are refused (exit 2).

    Tables: runs, customers, segments, tags, kpis, followups (docs/DATA.md).

    Examples:

      $ custtool query "SELECT as_of, tier, count(*) FROM segments GROUP BY ALL ORDER BY ALL"

      $ custtool query "SELECT * FROM kpis WHERE name = 'nps'" --json

      $ custtool query "SELECT * FROM customers WHERE valid_to IS NULL" -o current.csv
    """
    from custtool.steps import run_query

    result = run_query(sql, book=book, output=output)
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


book_app = typer.Typer(
    cls=_Group,
    help="The customer book (custtool.duckdb): import earlier run folders.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(book_app, name="book")


@book_app.command("import")
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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
