"""The `import` and `template` commands.

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custtool.commands.options import JsonOpt, OutOpt, QuietOpt, SensitiveOpt
from custtool.commands.render import (
    emit_json,
    finish,
    info,
    print_table,
    progress,
    stage_progress,
    warn,
)

# --------------------------------------------------------------------------- import / template
# (section: import — issue 2)


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
        typer.Option("--max-rejects", min=0, help="Exit 1 when more rows than this are rejected."),
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
            warn(w, quiet)
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
