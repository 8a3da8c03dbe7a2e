"""The `clean` command.

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custtool.commands.options import JsonOpt, OutOpt, QuietOpt
from custtool.commands.render import emit_json, info, print_table, warn


# --------------------------------------------------------------------------- clean
# (section: clean — issue 3)
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
        warn(w, quiet or json_out)
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
