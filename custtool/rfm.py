"""RFM scores 1–5, the 8 RFM classes, value tiers and lifecycle stages (SPEC D2–D4).

They work on the per-customer metrics of :func:`custtool.metrics.customer_metrics`.
8 classes: R is high when the recency is *smaller* than the reference, F and M when strictly
above it; the reference is the mean unless configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from custtool.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


RFM_CLASSES = (
    "重要价值客户",
    "重要发展客户",
    "重要保持客户",
    "重要挽留客户",
    "一般价值客户",
    "一般发展客户",
    "一般保持客户",
    "一般挽留客户",
)


_CLASS_OF = {
    (True, True, True): "重要价值客户",
    (True, False, True): "重要发展客户",
    (False, True, True): "重要保持客户",
    (False, False, True): "重要挽留客户",
    (True, True, False): "一般价值客户",
    (True, False, False): "一般发展客户",
    (False, True, False): "一般保持客户",
    (False, False, False): "一般挽留客户",
}


TIERS = ("高价值", "中价值", "低价值")


LIFECYCLE_STAGES = ("潜在", "新客户", "成长", "成熟", "沉睡", "流失")


NO_ORDERS = "（无订单）"  # segment label of customers without orders (as the report names them)


def has_orders(metrics: pd.DataFrame) -> pd.Series:
    """Which customers bought: a last order day (from orders, or a member list's last
    purchase date), else a first order day, else a recency."""
    for col in ("last_order", "first_order", "recency"):
        if col in metrics.columns:
            return metrics[col].notna()
    raise ConfigError(
        "the metrics have no last_order, first_order or recency column",
        "compute them with customer_metrics (or custtool segment)",
    )


def _quantile_score(values: pd.Series, higher_is_better: bool = True, bins: int = 5) -> pd.Series:
    """Score 1..bins by rank: score = 1 + floor(bins · share of customers with a strictly
    worse value) (``rank(method="min")``).

    Equal values share a rank, hence a score; the worst value(s) always score 1; one
    customer or all-equal values score 1; n distinct values spread evenly over 1..bins.
    """
    import numpy as np
    import pandas as pd

    v = values if higher_is_better else -values
    n = int(v.notna().sum())
    below = v.rank(method="min") - 1
    score = np.floor(bins * below / max(n, 1)) + 1
    return pd.Series(np.clip(score, 1, bins), index=values.index).astype("Int64")


def _threshold_score(values: pd.Series, cuts: list[float], higher_is_better: bool) -> pd.Series:
    """Higher is better: score = 1 + number of cuts the value reaches (value ≥ cut).
    Recency: score = 5 − number of cuts the recency exceeds (recency > cut)."""
    import numpy as np
    import pandas as pd

    v = values.to_numpy(dtype="float64", na_value=np.nan)
    cuts_a = np.asarray(cuts, dtype=float)
    if higher_is_better:
        score = 1 + (v[:, None] >= cuts_a[None, :]).sum(axis=1)
    else:
        score = len(cuts_a) + 1 - (v[:, None] > cuts_a[None, :]).sum(axis=1)
    out = pd.Series(score, index=values.index).astype("Int64")
    return out.where(values.notna())


def _check_cuts(name: str, cuts: Any) -> list[float]:
    try:
        vals = [float(x) for x in cuts]
    except (TypeError, ValueError):
        raise ConfigError(
            f"rfm thresholds for {name}: {cuts!r} are not numbers",
            "write four ascending numbers, e.g. [30, 60, 90, 180]",
        ) from None
    if len(vals) != 4 or any(b <= a for a, b in zip(vals, vals[1:], strict=False)):
        raise ConfigError(
            f"rfm thresholds for {name}: need four strictly ascending numbers, got {cuts!r}",
            "e.g. recency: [30, 60, 90, 180]",
        )
    return vals


def _shipped(section: str) -> dict[str, Any]:
    """One section of the shipped ``rules/segments.yaml`` (the only home of the defaults)."""
    from custtool.config import segment_settings

    return segment_settings()[section]


def rfm_scores(
    metrics: pd.DataFrame,
    *,
    method: str | None = None,
    thresholds: dict[str, list[float]] | None = None,
    weights: dict[str, float] | None = None,
) -> pd.DataFrame:
    """R, F, M scores 1..5 (R: most recent = 5) and ``rfm_score`` (weighted sum).

    ``quantile``: 1 + floor(5 × share of customers with orders that have a strictly worse
    value) — ties share a score, the worst always scores 1.
    ``thresholds``: ``{"recency": [4 upper bounds in days for scores 5..2], "frequency": [4
    lower bounds for scores 2..5], "monetary": [...]}``. Customers without orders get NA.
    """
    import pandas as pd

    shipped = _shipped("rfm")  # arguments left out: rules/segments.yaml
    method = method or shipped["method"]
    thresholds = thresholds if thresholds is not None else shipped["thresholds"]
    weights = weights if weights is not None else shipped["weights"]
    has = has_orders(metrics)
    sub = metrics.loc[has]
    if method == "quantile":
        r = _quantile_score(sub["recency"], higher_is_better=False)
        f = _quantile_score(sub["frequency"].astype(float))
        m = _quantile_score(sub["monetary"].astype(float).round(2))
    elif method == "thresholds":
        th = thresholds or {}
        missing = [k for k in ("recency", "frequency", "monetary") if k not in th]
        if missing:
            raise ConfigError(
                f"rfm method 'thresholds' needs thresholds for {', '.join(missing)}",
                "add them under rfm.thresholds in segments.yaml",
            )
        r = _threshold_score(
            sub["recency"], _check_cuts("recency", th["recency"]), higher_is_better=False
        )
        f = _threshold_score(
            sub["frequency"].astype(float), _check_cuts("frequency", th["frequency"]), True
        )
        m = _threshold_score(
            sub["monetary"].astype(float).round(2), _check_cuts("monetary", th["monetary"]), True
        )
    else:
        raise ConfigError(f"unknown rfm method {method!r}", "use quantile or thresholds")
    w = {"r": 1.0, "f": 1.0, "m": 1.0, **(weights or {})}
    out = pd.DataFrame(index=metrics.index)
    out["r_score"] = r.reindex(metrics.index).astype("Int64")
    out["f_score"] = f.reindex(metrics.index).astype("Int64")
    out["m_score"] = m.reindex(metrics.index).astype("Int64")
    total = (
        out["r_score"].astype("Float64") * w["r"]
        + out["f_score"].astype("Float64") * w["f"]
        + out["m_score"].astype("Float64") * w["m"]
    )
    out["rfm_score"] = total
    return out


def rfm_classes(
    metrics: pd.DataFrame,
    *,
    reference: str | None = None,
    thresholds: dict[str, float] | None = None,
) -> pd.DataFrame:
    """The 8 RFM classes from recency, frequency and monetary against a reference.

    R is high when recency < reference (bought more recently); F and M high when strictly
    above. ``reference``: ``mean`` | ``median`` (over customers with orders) | ``thresholds``
    (``{"recency": days, "frequency": n, "monetary": amount}``). Customers without orders: "".
    Returns ``rfm_class`` plus ``r_high``, ``f_high``, ``m_high`` and the references used in
    ``.attrs["reference"]``.
    """
    import numpy as np
    import pandas as pd

    shipped = _shipped("classes")  # arguments left out: rules/segments.yaml
    reference = reference or shipped["reference"]
    thresholds = thresholds if thresholds is not None else shipped["thresholds"]
    has = has_orders(metrics)
    sub = metrics.loc[has, ["recency", "frequency", "monetary"]].astype(float)
    sub["monetary"] = sub["monetary"].round(2)
    if reference in {"mean", "median"}:
        ref = (
            sub.agg(reference)
            if len(sub)
            else pd.Series({"recency": np.nan, "frequency": np.nan, "monetary": np.nan})
        )
    elif reference == "thresholds":
        th = thresholds or {}
        missing = [k for k in ("recency", "frequency", "monetary") if k not in th]
        if missing:
            raise ConfigError(
                f"class reference 'thresholds' needs {', '.join(missing)}",
                "add them under classes.thresholds in segments.yaml",
            )
        try:
            ref = pd.Series({k: float(th[k]) for k in ("recency", "frequency", "monetary")})
        except (TypeError, ValueError):
            raise ConfigError(
                f"class thresholds must be numbers, got {th!r}",
                "fix classes: thresholds: in segments.yaml (see rules/segments.yaml)",
            ) from None
    else:
        raise ConfigError(
            f"unknown class reference {reference!r}", "use mean, median or thresholds"
        )
    r_high = sub["recency"] < ref["recency"]
    f_high = sub["frequency"] > ref["frequency"]
    m_high = sub["monetary"] > ref["monetary"]
    code = r_high.astype(int) * 4 + f_high.astype(int) * 2 + m_high.astype(int)
    names = np.array(
        [_CLASS_OF[(bool(i & 4), bool(i & 2), bool(i & 1))] for i in range(8)], dtype=object
    )
    out = pd.DataFrame(index=metrics.index)
    out["rfm_class"] = (
        pd.Series(names[code.to_numpy()], index=sub.index)
        .reindex(metrics.index)
        .fillna("")
        .astype(str)
    )
    for col, s in (("r_high", r_high), ("f_high", f_high), ("m_high", m_high)):
        out[col] = s.reindex(metrics.index).astype("boolean")
    out.attrs["reference"] = {
        k: (None if pd.isna(v) else round(float(v), 4)) for k, v in ref.items()
    }
    return out


def value_tiers(
    metrics: pd.DataFrame,
    *,
    method: str | None = None,
    high: float | None = None,
    mid: float | None = None,
    top_high_pct: float | None = None,
    top_mid_pct: float | None = None,
    column: str = "monetary_365d",
) -> pd.Series:
    """高价值/中价值/低价值 by annual spend (``column``): thresholds (≥ high, ≥ mid) or
    top-N% of customers (ties share a tier; only positive spend can be high or mid)."""
    import numpy as np
    import pandas as pd

    shipped = _shipped("tiers")  # arguments left out: rules/segments.yaml
    method = method or shipped["method"]
    high = float(shipped["high"] if high is None else high)
    mid = float(shipped["mid"] if mid is None else mid)
    top_high_pct = float(shipped["top_high_pct"] if top_high_pct is None else top_high_pct)
    top_mid_pct = float(shipped["top_mid_pct"] if top_mid_pct is None else top_mid_pct)
    spend = metrics[column].astype(float).round(2).fillna(0.0)
    if method == "thresholds":
        if mid > high:
            raise ConfigError(
                f"tier thresholds: mid ({mid}) is above high ({high})", "mid must be ≤ high"
            )
        tier = np.where(spend >= high, "高价值", np.where(spend >= mid, "中价值", "低价值"))
    elif method == "top":
        if not (0 <= top_high_pct <= top_mid_pct <= 100):
            raise ConfigError(
                f"tier top percentages must satisfy 0 ≤ high ({top_high_pct}) ≤ mid ({top_mid_pct}) ≤ 100",
                "fix tiers: in segments.yaml (see rules/segments.yaml)",
            )
        n = len(spend)
        rank = spend.rank(method="min", ascending=False).to_numpy()  # ties share the best rank
        pos = spend.to_numpy() > 0
        tier = np.where(
            pos & (rank <= np.ceil(n * top_high_pct / 100)),
            "高价值",
            np.where(pos & (rank <= np.ceil(n * top_mid_pct / 100)), "中价值", "低价值"),
        )
    else:
        raise ConfigError(f"unknown tier method {method!r}", "use thresholds or top")
    return pd.Series(tier, index=metrics.index, name="tier", dtype=object)


def assign_lifecycle(
    metrics: pd.DataFrame,
    *,
    new_days: int | None = None,
    sleep_days: int | None = None,
    lost_days: int | None = None,
    mature_orders: int | None = None,
    potential_growth: float | None = None,
) -> pd.DataFrame:
    """``lifecycle`` and ``potential``.

    In order: 潜在 no purchase; 流失 recency > lost_days; 沉睡 recency > sleep_days;
    新客户 first purchase within new_days; 成熟 frequency ≥ mature_orders; else 成长.
    ``potential`` (潜力): spend growth vs the previous window ≥ potential_growth.
    """
    import numpy as np
    import pandas as pd

    from custtool.dates import parse_days

    shipped = _shipped("lifecycle")  # arguments left out: rules/segments.yaml
    new_days = parse_days(shipped["new_days"] if new_days is None else new_days, "new_days")
    sleep_days = parse_days(
        shipped["sleep_days"] if sleep_days is None else sleep_days, "sleep_days"
    )
    lost_days = parse_days(shipped["lost_days"] if lost_days is None else lost_days, "lost_days")
    mature_orders = int(shipped["mature_orders"] if mature_orders is None else mature_orders)
    potential_growth = float(
        shipped["potential_growth"] if potential_growth is None else potential_growth
    )
    if not (0 < sleep_days <= lost_days):
        raise ConfigError(
            f"lifecycle: need 0 < sleep_days ({sleep_days}) ≤ lost_days ({lost_days})",
            "fix lifecycle: in segments.yaml (see rules/segments.yaml)",
        )
    has = has_orders(metrics).to_numpy()
    rec = metrics["recency"].to_numpy(dtype=float, na_value=np.nan)
    as_of = metrics["as_of"] if "as_of" in metrics.columns else None
    if as_of is not None:
        tenure = (as_of - metrics["first_order"]).dt.days.to_numpy(dtype=float, na_value=np.nan)
    else:
        tenure = metrics["bg_T"].to_numpy(dtype=float, na_value=np.nan)
    freq = metrics["frequency"].to_numpy()
    stage = np.select(
        [~has, rec > lost_days, rec > sleep_days, tenure <= new_days, freq >= mature_orders],
        ["潜在", "流失", "沉睡", "新客户", "成熟"],
        default="成长",
    )
    growth = metrics["growth"].to_numpy(dtype=float, na_value=np.nan)
    return pd.DataFrame(
        {
            "lifecycle": stage.astype(object),
            "potential": np.nan_to_num(growth, nan=-np.inf) >= potential_growth,
        },
        index=metrics.index,
    )


def assign_contact_classes(
    metrics: pd.DataFrame, *, sleep_days: int | None = None, new_deal_days: int | None = None
) -> pd.DataFrame:
    """Interaction-based classes (seed 002): ``contact_stage`` 沉睡 when the last interaction
    is more than ``sleep_days`` before the as-of day, else 活跃 ("" without interaction
    data; 沉睡 for a customer never contacted when the log is given); ``deal_stage`` 新成交
    when the first order is at most ``new_deal_days`` before the as-of day, else 老客户 (""
    without orders). Defaults: the ``contact:`` section of ``rules/segments.yaml``."""
    import numpy as np
    import pandas as pd

    from custtool.dates import parse_days

    shipped = _shipped("contact")
    sleep = parse_days(shipped["sleep_days"] if sleep_days is None else sleep_days, "sleep_days")
    new = parse_days(
        shipped["new_deal_days"] if new_deal_days is None else new_deal_days, "new_deal_days"
    )
    n = len(metrics)
    if "days_since_last_interaction" in metrics.columns:
        d = metrics["days_since_last_interaction"].to_numpy(dtype=float, na_value=np.nan)
        contact = np.where(np.isnan(d) | (d > sleep), "沉睡", "活跃").astype(object)
    else:
        contact = np.full(n, "", dtype=object)
    deal = np.full(n, "", dtype=object)
    if "first_order" in metrics.columns and "as_of" in metrics.columns:
        tenure = (metrics["as_of"] - metrics["first_order"]).dt.days.to_numpy(
            dtype=float, na_value=np.nan
        )
        deal = np.where(np.isnan(tenure), "", np.where(tenure <= new, "新成交", "老客户")).astype(
            object
        )
    return pd.DataFrame({"contact_stage": contact, "deal_stage": deal}, index=metrics.index)


LEVELS = ("核心客户", "高价值客户", "潜力客户", "普通客户")


def assign_level(
    segmented: pd.DataFrame,
    *,
    core_min_score: float | None = None,
    high_min_score: float | None = None,
    potential_growth: bool | None = None,
    potential_new: bool | None = None,
) -> pd.Series:
    """The 4-level 客户等级 (seed 000) of customers with ``rfm_score``, ``potential`` and
    ``lifecycle``. First match wins: rfm_score ≥ core_min_score → 核心客户; ≥ high_min_score →
    高价值客户; ``potential`` (when potential_growth) or 新客户 (when potential_new) → 潜力客户;
    else 普通客户. Customers without orders get "" (no level). Arguments left out come from
    the ``levels:`` section of ``rules/segments.yaml``."""
    import numpy as np
    import pandas as pd

    shipped = _shipped("levels")
    core = float(shipped["core_min_score"] if core_min_score is None else core_min_score)
    high = float(shipped["high_min_score"] if high_min_score is None else high_min_score)
    if high > core:
        raise ConfigError(
            f"levels: high_min_score ({high}) is above core_min_score ({core})",
            "high_min_score must be ≤ core_min_score",
        )
    by_growth = bool(shipped["potential_growth"] if potential_growth is None else potential_growth)
    by_new = bool(shipped["potential_new"] if potential_new is None else potential_new)
    n = len(segmented)
    score = segmented["rfm_score"].to_numpy(dtype=float, na_value=np.nan)
    grew = (
        segmented["potential"].fillna(False).to_numpy(dtype=bool)
        if by_growth and "potential" in segmented.columns
        else np.zeros(n, dtype=bool)
    )
    new = (
        segmented["lifecycle"].eq("新客户").to_numpy()
        if by_new and "lifecycle" in segmented.columns
        else np.zeros(n, dtype=bool)
    )
    level = np.select(
        [~has_orders(segmented).to_numpy(), score >= core, score >= high, grew | new],
        ["", "核心客户", "高价值客户", "潜力客户"],
        default="普通客户",
    )
    return pd.Series(level.astype(object), index=segmented.index, name="level")


def segment_order(dim: str) -> list[str]:
    return {
        "rfm_class": [*RFM_CLASSES, NO_ORDERS],
        "tier": list(TIERS),
        "lifecycle": list(LIFECYCLE_STAGES),
        "level": list(LEVELS),
    }.get(dim, [])
