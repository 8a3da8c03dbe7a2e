"""The `followups` and `funnel` commands.

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from custtool.commands.options import AsOfOpt, JsonOpt, OutOpt, QuietOpt
from custtool.commands.render import data_table, emit_json, info, print_table


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
    if output is not None:  # the data went to the file
        info(f"funnel → {output}", quiet)
        return
    t = result.value.table
    grid = data_table("销售漏斗 Sales funnel")
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
