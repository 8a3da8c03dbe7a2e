"""The segment step: attributed orders → metrics → RFM scores and classes → tiers →
lifecycle → LTV → NPS → summary, and the summary workbook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from custtool.attribution import CustomerIndex, MatchReport
from custtool.dates import age_at, parse_days
from custtool.errors import InputError
from custtool.metrics import customer_metrics, interaction_metrics, summary_metrics
from custtool.portrait import portrait_columns, repurchase_rate
from custtool.rfm import (
    NO_ORDERS,
    assign_contact_classes,
    assign_level,
    assign_lifecycle,
    has_orders,
    rfm_classes,
    rfm_scores,
    segment_order,
    value_tiers,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

RFM_FROM_ORDERS = "orders"
RFM_FROM_SUMMARY = "summary_columns"
RFM_SOURCE_NOTES = {
    RFM_FROM_ORDERS: "R, F and M from the orders (F and M in the metrics window)",
    RFM_FROM_SUMMARY: (
        "R, F and M from the member list's summary columns (最近消费时间, 累计消费次数, "
        "累计消费金额): the export's own totals, no window; tiers use the total spend"
    ),
}
SUMMARY_LTV_REASON = (
    "skipped: BG/NBD and Gamma-Gamma need purchase days, and the summary columns give only "
    "totals (pass --orders for LTV)"
)


def segment_summary(
    segmented: pd.DataFrame,
    by: tuple[str, ...] = ("rfm_class", "tier", "lifecycle", "level"),
    *,
    nps_responses: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per segment of each dimension: customers, share of customers (%), revenue (net spend
    in the window), share of revenue (%), average recency/frequency/monetary and NPS.

    ``nps_responses``: survey responses with ``score`` and the same segment columns (from
    :func:`custtool.nps.attach_responses`); without them the NPS column is empty (it is
    never derived from each customer's latest score, SPEC D6).
    """
    import numpy as np
    import pandas as pd

    from custtool.nps import nps as nps_fn

    frames = []
    n_total = len(segmented)
    rev_total = float(segmented["monetary"].sum())
    for dim in by:
        if dim not in segmented.columns:
            continue
        # the segment of each customer through its code: text work on the few distinct
        # values, not a Python string per customer (1M customers: ~100 MB a dimension)
        codes, uniques = pd.factorize(segmented[dim], use_na_sentinel=True)
        names = [NO_ORDERS if str(u) == "" else u for u in uniques]  # a handful of segments
        name_codes, labels = pd.factorize(pd.Series(names, dtype=object))
        seg_code = np.where(codes >= 0, np.append(name_codes, -1)[codes], -1)
        cols3 = segmented[["monetary", "recency", "frequency"]]
        g = cols3.assign(_seg=seg_code)[seg_code >= 0].groupby("_seg", sort=False)
        t = g.agg(
            customers=("monetary", "size"),
            revenue=("monetary", "sum"),
            avg_recency=("recency", "mean"),
            avg_frequency=("frequency", "mean"),
            avg_monetary=("monetary", "mean"),
        )
        t.index = pd.Index(np.asarray(labels, dtype=object)[t.index.to_numpy()], name="_seg")
        t["customer_share"] = t["customers"] / n_total * 100 if n_total else np.nan
        t["revenue_share"] = t["revenue"] / rev_total * 100 if rev_total else np.nan
        if nps_responses is not None and dim in nps_responses.columns and len(nps_responses):
            r = nps_responses.assign(
                _seg=nps_responses[dim]
                .astype(object)
                .where(nps_responses[dim].astype(str) != "", NO_ORDERS)
            )
            t["nps"] = nps_fn(r, by="_seg").set_index("_seg")["nps"].reindex(t.index)
        else:  # NPS comes from the responses only (SPEC D6), never from the latest score per customer
            t["nps"] = np.nan
        order = segment_order(dim)
        t = t.reindex(
            sorted(t.index, key=lambda s: (order.index(s) if s in order else len(order), str(s)))
        )
        t = t.reset_index().rename(columns={"_seg": "segment"})
        t.insert(0, "dimension", dim)
        frames.append(t)
    cols = [
        "dimension",
        "segment",
        "customers",
        "customer_share",
        "revenue",
        "revenue_share",
        "avg_recency",
        "avg_frequency",
        "avg_monetary",
        "nps",
    ]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    out["revenue"] = out["revenue"].round(2)
    return out


def load_segment_config(path: Any = None) -> dict[str, Any]:
    """The segment settings: the shipped ``rules/segments.yaml`` overlaid key by key with the
    user's file (``path``), checked by :class:`custtool.config.SegmentSettings`.

    The CLI, ``custtool run`` and :func:`segment_customers` all build it here, so they use
    the same thresholds (the defaults live only in ``rules/segments.yaml``).
    """
    from custtool.config import segment_settings

    return segment_settings(path)


@dataclass
class SegmentResult:
    """Everything the segment step produces."""

    customers: Any  # the segmented customers (DataFrame)
    summary: Any  # segment_summary DataFrame
    report: MatchReport
    ltv: Any  # custtool.ltv.LTVInfo
    nps: dict[str, Any]
    class_reference: dict[str, Any]
    config: dict[str, Any]
    #: the attributed orders: the order rows the metrics used (matched, on or before the
    #: as-of date, exact duplicates once), every column of the input, with ``customer_id`` =
    #: the customer's stable id, ``source_customer_id`` = the id the row carried,
    #: ``match_key`` (id/phone/email), ``order_time`` in the firm's time zone, ``amount`` =
    #: net amount rounded to cents (refunds negative) and ``in_window`` (inside the F/M
    #: window, so ``amount[in_window]`` per customer sums to ``monetary``). Cards, report,
    #: pivot and follow-ups take these, never the raw orders.
    orders: Any = None
    #: where R, F and M come from: ``orders`` or ``summary_columns`` (a member list's
    #: last_purchase_date, order_count and total_spend, SPEC D1b)
    rfm_source: str = "orders"

    def to_dict(self) -> dict[str, Any]:
        """The machine summary (what `segment --json` prints)."""
        seg = self.customers
        summ = self.summary

        def dim(name: str) -> dict[str, Any]:
            t = summ[summ["dimension"] == name]
            t = t.set_index(t["segment"].astype(str))
            t = (
                t[["customers", "customer_share", "revenue", "revenue_share"]]
                .astype(float)
                .round(4)
            )
            t = t.astype(object).where(t.notna(), None)  # JSON null for a share of nothing
            t["customers"] = t["customers"].map(int)
            return t.to_dict(orient="index")

        return {
            "as_of": str(self.report.as_of.date()),
            "customers": int(len(seg)),
            "customers_with_orders": int(has_orders(seg).sum()),
            "rfm_source": self.rfm_source,
            "rfm_source_note": RFM_SOURCE_NOTES[self.rfm_source],
            "orders_used": self.report.orders_used,
            "orders_unmatched": self.report.rows_unmatched,
            "orders": self.report.to_dict(),
            "class_reference": self.class_reference,
            "classes": dim("rfm_class"),
            "tiers": dim("tier"),
            "lifecycle": dim("lifecycle"),
            "potential": int(seg["potential"].sum()),
            "repurchase_rate": repurchase_rate(seg),
            "levels": dim("level"),
            "churn_risk": int(seg["churn_risk"].sum()),
            "nps": self.nps,
            "ltv": self.ltv.to_dict(),
        }


def segment_customers(
    orders: Any,
    customers: Any = None,
    *,
    surveys: Any = None,
    interactions: Any = None,
    as_of: Any = None,
    window: Any = None,
    config: dict[str, Any] | None = None,
    engine: str = "pandas",
    memory_limit: Any = None,
    spark_master: str | None = None,
    attributed_to: Any = None,
) -> SegmentResult:
    """The whole segment step: metrics → RFM scores and classes → tiers → lifecycle → LTV
    → NPS → summary. ``window`` overrides the config's ``metrics.window``.

    ``engine="duckdb"``/``"spark"`` runs the metrics as SQL (see
    :func:`custtool.metrics.customer_metrics`). With ``orders`` as a Parquet path that is out
    of core: ``SegmentResult.orders`` is then an empty frame (the engine writes the
    attributed orders to ``attributed_to`` instead) and the engine groups the portrait's
    inputs (top category, preferred channel, …) itself. With ``orders`` as a DataFrame (already in
    memory) the attributed orders come back from the engine, so everything is filled."""
    import pandas as pd

    from custtool.io import read_table
    from custtool.ltv import fit_ltv
    from custtool.nps import attach_responses, nps_overview

    cfg = config if config is not None else load_segment_config()
    tz = cfg["timezone"]
    if customers is not None and not isinstance(customers, pd.DataFrame):
        customers = read_table(customers)
    out_of_core = engine != "pandas" and orders is not None
    in_memory = isinstance(orders, pd.DataFrame)  # then the attributed orders come back
    if orders is not None and not in_memory and not out_of_core:
        orders = read_table(orders)
    if surveys is not None and not isinstance(surveys, pd.DataFrame):
        surveys = read_table(surveys)
    if interactions is not None and not isinstance(interactions, pd.DataFrame):
        interactions = read_table(interactions)
    mcfg = cfg["metrics"]
    attributed_from_engine = None
    if orders is None:  # a member list alone: R, F and M from its summary columns (SPEC D1b)
        if customers is None:
            raise InputError(
                "segment needs orders or a customers table with summary columns",
                "pass --orders orders.parquet, or a member list with 最近消费时间, "
                "累计消费次数 and 累计消费金额",
            )
        metrics, report = summary_metrics(customers, as_of=as_of, tz=tz)
        if interactions is not None:
            metrics = metrics.join(
                interaction_metrics(
                    interactions, CustomerIndex(metrics), report.as_of, tz
                ).set_axis(metrics.index)
            )
        source = RFM_FROM_SUMMARY
    else:
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="custtool-segment-")
        if out_of_core and in_memory and attributed_to is None:
            attributed_to = Path(scratch.name) / "attributed_orders.parquet"
        metrics, report = customer_metrics(
            orders,
            customers,
            as_of=as_of,
            window=window or mcfg["window"],
            interactions=interactions,
            tz=tz,
            engine=engine,
            growth_window=mcfg.get("growth_window"),
            memory_limit=memory_limit,
            spark_master=spark_master,
            attributed_to=attributed_to,
            # out of core the engine groups the portrait's inputs itself
            portrait=cfg["portrait"] if out_of_core and not in_memory else None,
        )
        if out_of_core and in_memory:  # the orders were in memory anyway: so are these
            attributed_from_engine = read_table(attributed_to)
        scratch.cleanup()
        source = RFM_FROM_ORDERS
    rc = cfg["rfm"]
    scores = rfm_scores(
        metrics, method=rc["method"], thresholds=rc.get("thresholds"), weights=rc.get("weights")
    )
    cc = cfg["classes"]
    classes = rfm_classes(metrics, reference=cc["reference"], thresholds=cc.get("thresholds"))
    tc = cfg["tiers"]
    tier = value_tiers(
        metrics,
        # the member list's totals have no 365-day window: its total spend is used
        column="monetary" if source == RFM_FROM_SUMMARY else "monetary_365d",
        method=tc["method"],
        high=float(tc["high"]),
        mid=float(tc["mid"]),
        top_high_pct=float(tc["top_high_pct"]),
        top_mid_pct=float(tc["top_mid_pct"]),
    )
    lc = cfg["lifecycle"]
    life = assign_lifecycle(
        metrics,
        new_days=parse_days(lc["new_days"], "new_days"),
        sleep_days=parse_days(lc["sleep_days"], "sleep_days"),
        lost_days=parse_days(lc["lost_days"], "lost_days"),
        mature_orders=int(lc["mature_orders"]),
        potential_growth=float(lc["potential_growth"]),
    )
    added: list[Any] = [
        c
        for part in (scores, classes[["rfm_class"]], tier, life)
        for c in (part.columns if hasattr(part, "columns") else [part.name])
    ] + ["nps_score", "level", "days_since_interaction"]
    # a segmented table segmented again: its old scores/classes are replaced, not duplicated
    seg = pd.concat(
        [
            metrics.drop(columns=[c for c in added if c in metrics.columns]),
            scores,
            classes[["rfm_class"]],
            tier,
            life,
        ],
        axis=1,
    )
    lt = cfg["ltv"]
    ltv_cols, ltv_info = fit_ltv(
        seg,
        horizon_days=parse_days(lt["horizon"], "ltv horizon"),
        unit=lt["unit"],
        churn_level=float(lt["churn_p_alive"]),
        min_customers=int(lt["min_customers"]),
        min_repeat=int(lt["min_repeat"]),
    )
    if source == RFM_FROM_SUMMARY:
        ltv_info.bgnbd_reason = ltv_info.gamma_gamma_reason = SUMMARY_LTV_REASON
    seg = pd.concat(
        [
            seg.drop(
                columns=[c for c in {"historical_value", *ltv_cols.columns} if c in seg.columns]
            ),
            ltv_cols,
        ],
        axis=1,
    )
    responses = None
    if surveys is not None:
        responses, latest = attach_responses(
            surveys, seg, as_of=report.as_of, tz=tz, index=report.customer_index
        )
        seg["nps_score"] = latest  # a customer's own latest score (cards); not the NPS
    else:
        seg["nps_score"] = float("nan")
    nps_info = nps_overview(responses)
    if "birth_date" in seg.columns:
        derived = age_at(seg["birth_date"], report.as_of)
        if "age" in seg.columns:
            # the birth date is exact at any as-of date; an age column (e.g. from an earlier
            # run) only fills in where there is none
            seg["age"] = derived.fillna(pd.to_numeric(seg["age"], errors="coerce").astype("Int64"))
        else:
            # column names are unique here, so get_loc gives an int
            seg.insert(cast(int, seg.columns.get_loc("birth_date")) + 1, "age", derived)
    ct = cfg["contact"]
    contact = assign_contact_classes(
        seg,
        sleep_days=parse_days(ct["sleep_days"], "contact sleep_days"),
        new_deal_days=parse_days(ct["new_deal_days"], "contact new_deal_days"),
    )
    seg = pd.concat(
        [seg.drop(columns=[c for c in contact.columns if c in seg.columns]), contact], axis=1
    )
    # the portrait (SPEC D8): 客户等级 and the behaviour columns from the attributed orders
    lv = cfg["levels"]
    seg["level"] = assign_level(
        seg,
        core_min_score=lv["core_min_score"],
        high_min_score=lv["high_min_score"],
        potential_growth=lv["potential_growth"],
        potential_new=lv["potential_new"],
    )
    has_rows = orders is not None and report.used_rows is not None
    attributed = attributed_orders(orders, report) if has_rows else pd.DataFrame()
    if attributed_from_engine is not None:
        attributed = attributed_from_engine
    portrait = portrait_columns(
        attributed,
        seg,
        positions=report.used_customers if has_rows else None,
        settings=cfg["portrait"],
        groups=getattr(report, "portrait_groups", None),
    )
    if getattr(report, "portrait_groups", None) is not None:
        report.portrait_groups = None  # used: not kept in the result
    seg = pd.concat(
        [seg.drop(columns=[c for c in portrait.columns if c in seg.columns]), portrait], axis=1
    )
    if "days_since_last_interaction" in seg.columns:  # the portrait's name, the same figure
        seg["days_since_interaction"] = seg["days_since_last_interaction"]
    seg["as_of"] = report.as_of
    front = [c for c in seg.columns if c != "as_of"]
    seg = seg[front + ["as_of"]]
    summary = segment_summary(
        seg, nps_responses=None if responses is None else responses[responses["_customer"] >= 0]
    )
    return SegmentResult(
        seg,
        summary,
        report,
        ltv_info,
        nps_info,
        classes.attrs.get("reference", {}),
        cfg,
        attributed,
        source,
    )


def attributed_orders(orders: pd.DataFrame, report: MatchReport) -> pd.DataFrame:
    """The order rows :func:`custtool.metrics.customer_metrics` used, attributed (see
    :attr:`SegmentResult.orders`)."""
    import numpy as np
    import pandas as pd

    from custtool.attribution import MATCH_KEYS

    rows = report.used_rows
    if rows is None:
        return pd.DataFrame()
    out = orders.iloc[rows].reset_index(drop=True)
    ids = report.customer_ids
    ids = (
        ids.astype("string").fillna("").to_numpy(dtype=object)
        if ids is not None
        else np.array([], dtype=object)
    )
    own = (
        out["customer_id"]
        .astype(object)
        .where(out["customer_id"].notna(), "")
        .astype(str)
        .str.strip()
        if "customer_id" in out.columns
        else ""
    )
    out["customer_id"] = ids[report.used_customers] if len(ids) else ""
    out["source_customer_id"] = own
    out["match_key"] = np.array([MATCH_KEYS[k] for k in range(4)], dtype=object)[report.used_how]
    out["order_time"] = report.used_times
    out["amount"] = report.used_amounts
    out["in_window"] = report.used_in_window
    return out


def summary_sheets(result: SegmentResult, lang: str = "zh") -> dict[str, Any]:
    """The sheets of the summary workbook: one per dimension, model notes, unmatched orders."""
    import pandas as pd

    from custtool.labels import label

    sheets: dict[str, Any] = {}
    names = {
        "rfm_class": ("RFM分类", "RFM class"),
        "tier": ("价值等级", "Tier"),
        "lifecycle": ("生命周期", "Lifecycle"),
        "level": ("客户等级", "Level"),
    }
    for dim, pair in names.items():
        t = result.summary[result.summary["dimension"] == dim].drop(columns=["dimension"])
        # shares here are percentages (0–100); the label table's share labels are unit-free
        pct = {"customer_share", "revenue_share"}
        sheets[pair[0] if lang == "zh" else pair[1]] = t.rename(
            columns={c: label(c, lang) + ("(%)" if c in pct else "") for c in t.columns}
        )
    ltv = result.ltv.to_dict()
    rep = result.report
    items = [
        ("as_of", str(rep.as_of.date())),
        ("rfm_source", result.rfm_source),
        ("repurchase_rate", repurchase_rate(result.customers)),
        ("rfm_source_note", RFM_SOURCE_NOTES[result.rfm_source]),
        ("ltv.unit", ltv["unit"]),
        ("ltv.horizon_days", ltv["horizon_days"]),
        ("ltv.churn_p_alive_below", ltv["churn_p_alive_below"]),
    ]
    items += [(f"bgnbd.{k}", v) for k, v in ltv["bgnbd"].items()]
    items += [(f"gamma_gamma.{k}", v) for k, v in ltv["gamma_gamma"].items()]
    items += [(f"class_reference.{k}", v) for k, v in result.class_reference.items()]
    items += [(f"nps.{k}", v) for k, v in result.nps.items() if not isinstance(v, dict)]
    items += [(f"orders.{k}", v) for k, v in rep.to_dict().items() if not isinstance(v, dict)]
    items += [(f"orders.matched_by.{k}", v) for k, v in rep.matched_by.items()]
    sheets["模型与说明" if lang == "zh" else "Notes"] = pd.DataFrame(
        {"item": [i[0] for i in items], "value": [str(i[1]) for i in items]}
    )
    if rep.rows_unmatched:
        sheets["未匹配订单" if lang == "zh" else "Unmatched orders"] = rep.unmatched
    return sheets


def write_summary_workbook(
    result: SegmentResult, path: Any, lang: str = "zh", *, mask: bool = True
) -> None:
    """Write the segment summary workbook atomically (the formula-safe factory: text is never
    a formula, numbers stay numbers, missing values are empty cells); personal data in it
    (the unmatched orders' phones) is masked by the one policy."""
    import pandas as pd

    from custtool.report.masking import mask_sheets
    from custtool.xlsx import CellWriter, open_workbook, safe_sheet_name

    sheets = mask_sheets(summary_sheets(result, lang), mask=mask)  # 未匹配订单 holds phones
    with open_workbook(path) as wb:
        cw = CellWriter(wb)
        head = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
        num = wb.add_format({"num_format": "#,##0.00"})
        date = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        for name, df in sheets.items():
            ws = wb.add_worksheet(safe_sheet_name(name))
            for j, c in enumerate(df.columns):
                ws.write_string(0, j, str(c), head)
                ws.set_column(j, j, max(10, min(2 * len(str(c)) + 2, 40)))
            ws.freeze_panes(1, 0)
            for j, c in enumerate(df.columns):  # summary sheets: a few dozen rows
                s = df[c]
                is_num = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
                cw.column(
                    ws,
                    1,
                    j,
                    s,
                    date if pd.api.types.is_datetime64_any_dtype(s) else num if is_num else None,
                )
            if len(df.columns):
                ws.autofilter(0, 0, max(len(df), 1), len(df.columns) - 1)
