"""The `tag` and `rules check` commands.

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custtool.commands.options import AsOfOpt, JsonOpt, OutOpt, QuietOpt
from custtool.commands.render import console, emit_json, info, print_table, warn

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
        warn(w)
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
