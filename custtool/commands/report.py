"""The `report`, `pivot` and `cards` commands.

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from custtool.commands.options import AsOfOpt, JsonOpt, NoMaskOpt, QuietOpt, RoleOpt
from custtool.commands.render import (
    data_table,
    emit_json,
    info,
    print_table,
    progress,
    stdout,
    warn,
)

# --------------------------------------------------------------------------- report / pivot / cards
# (section: report — issue 6)
LangOpt = Annotated[str, typer.Option("--lang", help="Labels: zh (default) or en.")]
OwnerOpt = Annotated[
    str | None,
    typer.Option("--owner", help="Only the customers of this owner (required for --role sales)."),
]
StrategiesOpt = Annotated[
    Path | None,
    typer.Option(
        "--strategies", help="Strategy YAML (default: the shipped rules/strategies.yaml)."
    ),
]


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
            + ("personal data masked" if rep.masked else "personal data NOT masked"),
            quiet,
            style=None if rep.masked else "bold red",
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
        warn(w, quiet)


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
    grid = data_table(f"{rows} × {cols or '-'}")
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
