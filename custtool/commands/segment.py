"""The `segment` command.

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custtool.commands.options import AsOfOpt, JsonOpt, OutOpt, QuietOpt
from custtool.commands.render import emit_json, info, print_table, progress, stage_progress


# --------------------------------------------------------------------------- segment
# (section: segment — issue 4)
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
        info(f"{ltv.bgnbd_reason}; LTV = historical value", quiet, label="No BG/NBD fit:")
    if ltv.gamma_gamma:
        g = ltv.gamma_gamma
        info(
            f"Gamma-Gamma: p={g.p:.4g} q={g.q:.4g} v={g.v:.4g} ({len(g.excluded):,} customers outside the spend model)",
            quiet,
        )
    else:
        info(str(ltv.gamma_gamma_reason), quiet, label="No Gamma-Gamma fit:")
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
