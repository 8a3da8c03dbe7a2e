"""The segment step: attributed orders → metrics → RFM scores and classes → tiers →
lifecycle → LTV → NPS → summary, and the summary workbook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from custtool.attribution import MatchReport
from custtool.dates import age_at, parse_days
from custtool.errors import ConfigError
from custtool.metrics import customer_metrics
from custtool.rfm import (
    NO_ORDERS,
    assign_lifecycle,
    rfm_classes,
    rfm_scores,
    segment_order,
    value_tiers,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def segment_summary(segmented: pd.DataFrame, by: tuple[str, ...] = ("rfm_class", "tier", "lifecycle"), *, nps_responses: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per segment of each dimension: customers, share of customers (%), revenue (net spend
    in the window), share of revenue (%), average recency/frequency/monetary and NPS.

    ``nps_responses``: survey responses with ``score`` and the same segment columns (from
    :func:`custtool.nps.attach_responses`); without it NPS comes from ``nps_score``.
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
        seg = segmented[dim].astype(object).where(segmented[dim].astype(object).astype(str) != "", NO_ORDERS)
        g = segmented.assign(_seg=seg).groupby("_seg", sort=False)
        t = g.agg(
            customers=("monetary", "size"),
            revenue=("monetary", "sum"),
            avg_recency=("recency", "mean"),
            avg_frequency=("frequency", "mean"),
            avg_monetary=("monetary", "mean"),
        )
        t["customer_share"] = t["customers"] / n_total * 100 if n_total else np.nan
        t["revenue_share"] = t["revenue"] / rev_total * 100 if rev_total else np.nan
        if nps_responses is not None and dim in nps_responses.columns and len(nps_responses):
            r = nps_responses.assign(_seg=nps_responses[dim].astype(object).where(nps_responses[dim].astype(str) != "", NO_ORDERS))
            t["nps"] = nps_fn(r, by="_seg").set_index("_seg")["nps"].reindex(t.index)
        elif "nps_score" in segmented.columns:
            t["nps"] = nps_fn(segmented.assign(_seg=seg).rename(columns={"nps_score": "score"})[["_seg", "score"]], by="_seg").set_index("_seg")["nps"].reindex(t.index)
        else:
            t["nps"] = np.nan
        order = segment_order(dim)
        t = t.reindex(sorted(t.index, key=lambda s: (order.index(s) if s in order else len(order), str(s))))
        t = t.reset_index().rename(columns={"_seg": "segment"})
        t.insert(0, "dimension", dim)
        frames.append(t)
    cols = ["dimension", "segment", "customers", "customer_share", "revenue", "revenue_share", "avg_recency", "avg_frequency", "avg_monetary", "nps"]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    out["revenue"] = out["revenue"].round(2)
    return out


DEFAULT_CONFIG: dict[str, Any] = {
    "timezone": "Asia/Shanghai",
    "metrics": {"window": "365d", "growth_window": None},
    "rfm": {"method": "quantile", "thresholds": None, "weights": {"r": 1, "f": 1, "m": 1}},
    "classes": {"reference": "mean", "thresholds": None},
    "tiers": {"method": "thresholds", "high": 10000, "mid": 3000, "top_high_pct": 10, "top_mid_pct": 30},
    "lifecycle": {"new_days": 90, "sleep_days": 30, "lost_days": 90, "mature_orders": 3, "potential_growth": 0.30},
    "ltv": {"horizon": "12m", "unit": "days", "churn_p_alive": 0.3, "min_customers": 20, "min_repeat": 5},
}


def load_segment_config(path: Any = None) -> dict[str, Any]:
    """The segment settings: defaults overlaid with a YAML file (``yaml.safe_load``)."""
    import copy
    from pathlib import Path


    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if path is None:
        return cfg
    from custtool.config import load_yaml

    p = Path(path)
    user = load_yaml(p, what="config file", hint="pass the path of a segments.yaml (see rules/segments.yaml)", empty={})
    if not isinstance(user, dict):
        raise ConfigError(f"{p.name}: expected a mapping of sections (rfm:, tiers:, …)")
    for key, val in user.items():
        if key not in cfg:
            raise ConfigError(f"{p.name}: unknown section {key!r}", f"known sections: {', '.join(cfg)}")
        if isinstance(cfg[key], dict):
            if not isinstance(val, dict):
                raise ConfigError(f"{p.name}: section {key!r} must be a mapping")
            unknown = set(val) - set(cfg[key])
            if unknown:
                raise ConfigError(f"{p.name}: unknown key(s) {', '.join(sorted(unknown))} in {key!r}", f"known keys: {', '.join(cfg[key])}")
            cfg[key].update(val)
        else:
            cfg[key] = val
    return cfg


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

    def to_dict(self) -> dict[str, Any]:
        """The machine summary (what `segment --json` prints)."""
        seg = self.customers
        summ = self.summary

        def dim(name: str) -> dict[str, Any]:
            t = summ[summ["dimension"] == name]
            t = t.set_index(t["segment"].astype(str))
            t = t[["customers", "customer_share", "revenue", "revenue_share"]].astype(float).round(4)
            t = t.astype(object).where(t.notna(), None)  # JSON null for a share of nothing
            t["customers"] = t["customers"].map(int)
            return t.to_dict(orient="index")

        return {
            "as_of": str(self.report.as_of.date()),
            "customers": int(len(seg)),
            "customers_with_orders": int(seg["first_order"].notna().sum()),
            "orders_used": self.report.orders_used,
            "orders_unmatched": self.report.rows_unmatched,
            "orders": self.report.to_dict(),
            "class_reference": self.class_reference,
            "classes": dim("rfm_class"),
            "tiers": dim("tier"),
            "lifecycle": dim("lifecycle"),
            "potential": int(seg["potential"].sum()),
            "churn_risk": int(seg["churn_risk"].sum()),
            "nps": self.nps,
            "ltv": self.ltv.to_dict(),
        }


def _num(v: Any) -> float | None:
    import math

    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)


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
) -> SegmentResult:
    """The whole segment step: metrics → RFM scores and classes → tiers → lifecycle → LTV
    → NPS → summary. ``window`` overrides the config's ``metrics.window``."""
    import pandas as pd

    from custtool.io import read_table
    from custtool.ltv import fit_ltv
    from custtool.nps import attach_responses, nps, satisfaction

    cfg = config or load_segment_config()
    tz = cfg["timezone"]
    if surveys is not None and not isinstance(surveys, pd.DataFrame):
        surveys = read_table(surveys)
    if interactions is not None and not isinstance(interactions, pd.DataFrame):
        interactions = read_table(interactions)
    mcfg = cfg["metrics"]
    metrics, report = customer_metrics(
        orders, customers, as_of=as_of, window=window or mcfg["window"], interactions=interactions, tz=tz,
        engine=engine, growth_window=mcfg.get("growth_window"),
    )
    rc = cfg["rfm"]
    scores = rfm_scores(metrics, method=rc["method"], thresholds=rc.get("thresholds"), weights=rc.get("weights"))
    cc = cfg["classes"]
    classes = rfm_classes(metrics, reference=cc["reference"], thresholds=cc.get("thresholds"))
    tc = cfg["tiers"]
    tier = value_tiers(metrics, method=tc["method"], high=float(tc["high"]), mid=float(tc["mid"]),
                       top_high_pct=float(tc["top_high_pct"]), top_mid_pct=float(tc["top_mid_pct"]))
    lc = cfg["lifecycle"]
    life = assign_lifecycle(metrics, new_days=parse_days(lc["new_days"], "new_days"), sleep_days=parse_days(lc["sleep_days"], "sleep_days"),
                            lost_days=parse_days(lc["lost_days"], "lost_days"), mature_orders=int(lc["mature_orders"]),
                            potential_growth=float(lc["potential_growth"]))
    added: list[Any] = [c for part in (scores, classes[["rfm_class"]], tier, life) for c in (part.columns if hasattr(part, "columns") else [part.name])] + ["nps_score"]
    # a segmented table segmented again: its old scores/classes are replaced, not duplicated
    seg = pd.concat([metrics.drop(columns=[c for c in added if c in metrics.columns]), scores, classes[["rfm_class"]], tier, life], axis=1)
    lt = cfg["ltv"]
    ltv_cols, ltv_info = fit_ltv(seg, horizon_days=parse_days(lt["horizon"], "ltv horizon"), unit=lt["unit"],
                                 churn_level=float(lt["churn_p_alive"]), min_customers=int(lt["min_customers"]),
                                 min_repeat=int(lt["min_repeat"]))
    seg = pd.concat([seg.drop(columns=[c for c in {"historical_value", *ltv_cols.columns} if c in seg.columns]), ltv_cols], axis=1)
    nps_info: dict[str, Any] = {"surveys": False}
    responses = None
    if surveys is not None:
        responses, latest = attach_responses(surveys, seg, as_of=report.as_of, tz=tz)
        seg["nps_score"] = latest
        overall = nps(responses).iloc[0]
        matched = responses[responses["_customer"] >= 0]
        nps_info = {
            "surveys": True,
            "responses": int(overall["responses"]),
            "valid": int(overall["valid"]),
            "invalid": int(overall["invalid"]),
            "unmatched": int((responses["_customer"] < 0).sum()),
            "nps": _num(overall["nps"]),
            "promoters_pct": _num(overall["promoters_pct"]),
            "detractors_pct": _num(overall["detractors_pct"]),
            "by_class": {str(k) or NO_ORDERS: _num(v) for k, v in nps(matched, by="rfm_class").set_index("rfm_class")["nps"].items()},
            "by_tier": {str(k): _num(v) for k, v in nps(matched, by="tier").set_index("tier")["nps"].items()},
        }
        if "satisfaction" in responses.columns:
            sat = satisfaction(responses)
            nps_info["satisfaction_mean"] = _num(sat["mean"].iloc[0])
            nps_info["satisfaction_answers"] = int(sat["answers"].iloc[0])
    else:
        seg["nps_score"] = float("nan")
    if "birth_date" in seg.columns:
        derived = age_at(seg["birth_date"], report.as_of)
        if "age" in seg.columns:
            # the birth date is exact at any as-of date; an age column (e.g. from an earlier
            # run) only fills in where there is none
            seg["age"] = derived.fillna(pd.to_numeric(seg["age"], errors="coerce").astype("Int64"))
        else:
            # column names are unique here, so get_loc gives an int
            seg.insert(cast(int, seg.columns.get_loc("birth_date")) + 1, "age", derived)
    seg["as_of"] = report.as_of
    front = [c for c in seg.columns if c != "as_of"]
    seg = seg[front + ["as_of"]]
    summary = segment_summary(seg, nps_responses=None if responses is None else responses[responses["_customer"] >= 0])
    return SegmentResult(seg, summary, report, ltv_info, nps_info, classes.attrs.get("reference", {}), cfg)


def summary_sheets(result: SegmentResult, lang: str = "zh") -> dict[str, Any]:
    """The sheets of the summary workbook: one per dimension, model notes, unmatched orders."""
    import pandas as pd

    from custtool.labels import label

    sheets: dict[str, Any] = {}
    names = {"rfm_class": ("RFM分类", "RFM class"), "tier": ("价值等级", "Tier"), "lifecycle": ("生命周期", "Lifecycle")}
    for dim, pair in names.items():
        t = result.summary[result.summary["dimension"] == dim].drop(columns=["dimension"])
        # shares here are percentages (0–100); the label table's share labels are unit-free
        pct = {"customer_share", "revenue_share"}
        sheets[pair[0] if lang == "zh" else pair[1]] = t.rename(
            columns={c: label(c, lang) + ("(%)" if c in pct else "") for c in t.columns}
        )
    ltv = result.ltv.to_dict()
    rep = result.report
    items = [("as_of", str(rep.as_of.date())), ("ltv.unit", ltv["unit"]), ("ltv.horizon_days", ltv["horizon_days"]),
             ("ltv.churn_p_alive_below", ltv["churn_p_alive_below"])]
    items += [(f"bgnbd.{k}", v) for k, v in ltv["bgnbd"].items()]
    items += [(f"gamma_gamma.{k}", v) for k, v in ltv["gamma_gamma"].items()]
    items += [(f"class_reference.{k}", v) for k, v in result.class_reference.items()]
    items += [(f"nps.{k}", v) for k, v in result.nps.items() if not isinstance(v, dict)]
    items += [(f"orders.{k}", v) for k, v in rep.to_dict().items() if not isinstance(v, dict)]
    items += [(f"orders.matched_by.{k}", v) for k, v in rep.matched_by.items()]
    sheets["模型与说明" if lang == "zh" else "Notes"] = pd.DataFrame({"item": [i[0] for i in items], "value": [str(i[1]) for i in items]})
    if rep.rows_unmatched:
        sheets["未匹配订单" if lang == "zh" else "Unmatched orders"] = rep.unmatched
    return sheets


def write_summary_workbook(result: SegmentResult, path: Any, lang: str = "zh", *, mask: bool = True) -> None:
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
                cw.column(ws, 1, j, s, date if pd.api.types.is_datetime64_any_dtype(s) else num if is_num else None)
            if len(df.columns):
                ws.autofilter(0, 0, max(len(df), 1), len(df.columns) - 1)
