"""The sales funnel (销售漏斗, SPEC D9, seed 003): 潜在 → 意向 → 成交 with conversion rates,
overall, per owner and per channel.

Each customer reaches the furthest stage given by their status, any follow-up result
(attributed by :func:`custtool.attribution.attribute`, up to the as-of day when one is
given) and — with ``deals_from_orders`` — an order (``frequency`` > 0 or a last order).
Everyone is at least 潜在. The mappings live in ``rules/funnel.yaml``; a value maps to a
stage when it contains the key (longer keys first). 流失 is counted beside the funnel: the
customer's status, or their latest follow-up result, maps to 流失.

Conversion of a stage = customers who reached it / customers who reached the stage before
(潜在 → 意向 → 成交); ``overall`` = reached / customers in the group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

STAGES = ("潜在", "意向", "成交")
LOST = "流失"
_RANK = {"潜在": 0, "意向": 1, "成交": 2}
FUNNEL_COLUMNS = ["dimension", "group", "stage", "customers", "conversion", "overall"]


def stage_of(values: pd.Series, mapping: dict[str, str]) -> np.ndarray:
    """The stage each value maps to ("" for none): the first key (longest first) the value
    contains. Works on the distinct values only."""
    from custtool.portrait import kinds_by_keys

    return kinds_by_keys(values, mapping)


@dataclass
class FunnelResult:
    """``customers``: customer_id, owner, channel, ``funnel_stage`` (潜在/意向/成交) and
    ``lost`` per customer; ``table``: the funnel in long form (:data:`FUNNEL_COLUMNS`)."""

    customers: Any
    table: Any
    as_of: Any = None
    followups_used: int = 0

    def to_dict(self) -> dict[str, Any]:
        t = self.table

        def block(dim: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            part = t[t["dimension"] == dim]
            for group, g in part.groupby("group", sort=False):
                out[str(group)] = {
                    str(r["stage"]): {
                        "customers": int(r["customers"]),
                        "conversion": None
                        if r["conversion"] != r["conversion"]
                        else float(r["conversion"]),
                        "overall": None if r["overall"] != r["overall"] else float(r["overall"]),
                    }
                    for r in g.to_dict("records")
                }
            return out

        overall = block("all").get("全部", {})
        return {
            "as_of": None if self.as_of is None else str(self.as_of.date()),
            "customers": int(len(self.customers)),
            "followups_used": self.followups_used,
            "stages": overall,
            "by_owner": block("owner"),
            "by_channel": block("channel"),
        }


def _linked_positions(customers: pd.DataFrame, log: pd.DataFrame) -> Any:
    """Each record's customer position (-1 none) for a log linked already by the one matcher
    (:func:`custtool.followups.link_log`: it carries ``source_customer_id`` and
    ``match_key``, ``customer_id`` is the stable id): looked up by that id, not matched
    again (the run links its log once; 1M customers: ~2 s a match). None when the log is
    not linked or the ids are not unique."""
    import pandas as pd

    from custtool.arrow_text import text_column
    from custtool.attribution import is_attributed

    if not is_attributed(log) or "customer_id" not in log or "customer_id" not in customers:
        return None
    ids = pd.Index(text_column(customers, "customer_id"))
    if not ids.is_unique:
        return None
    return ids.get_indexer(text_column(log, "customer_id"))


def sales_funnel(
    customers: pd.DataFrame,
    interactions: pd.DataFrame | None = None,
    *,
    as_of: Any = None,
    settings: dict[str, Any] | None = None,
    tz: str | None = None,
) -> FunnelResult:
    """The funnel of ``customers`` (a segmented, clean or imported customers table)."""
    import numpy as np
    import pandas as pd

    from custtool.arrow_text import text_column
    from custtool.attribution import attribute
    from custtool.config import funnel_settings, segment_settings
    from custtool.dates import day_numbers, local_times, parse_as_of

    cfg = settings if settings is not None else funnel_settings()
    cust = customers.reset_index(drop=True)
    n = len(cust)
    rank = np.zeros(n, dtype=np.int64)  # everyone is at least 潜在
    lost = np.zeros(n, dtype=bool)
    if "status" in cust.columns:
        st = stage_of(text_column(cust, "status"), cfg["status"])
        for name, r in _RANK.items():
            rank = np.where(st == name, np.maximum(rank, r), rank)
        lost |= st == LOST
    if cfg["deals_from_orders"]:
        bought = np.zeros(n, dtype=bool)
        if "frequency" in cust.columns:
            bought |= pd.to_numeric(cust["frequency"], errors="coerce").fillna(0).to_numpy() > 0
        if "last_order" in cust.columns:
            bought |= cust["last_order"].notna().to_numpy()
        rank = np.where(bought, 2, rank)
    as_of_ts = parse_as_of(as_of)
    used = 0
    if interactions is not None and len(interactions):
        pos = _linked_positions(cust, interactions)
        if pos is None:
            pos = attribute(interactions, cust, kind="interactions").positions
        pos = np.asarray(pos, dtype=np.int64)
        ok = pos >= 0
        order_key = np.zeros(len(pos), dtype=np.int64)
        if "time" in interactions.columns:
            t = local_times(interactions["time"], tz or segment_settings()["timezone"])
            day = day_numbers(t)
            valid = t.notna().to_numpy()
            if as_of_ts is not None:
                as_of_day = int(np.datetime64(as_of_ts.date(), "D").astype(np.int64))
                ok &= ~valid | (day <= as_of_day)
            order_key = np.where(valid, t.to_numpy(dtype="datetime64[ns]").astype(np.int64), 0)
        res = stage_of(text_column(interactions, "result"), cfg["results"])
        ok &= res != ""
        used = int(ok.sum())
        p, s, k = pos[ok], res[ok], order_key[ok]
        reached = np.full(n, -1, dtype=np.int64)
        for name, rk in _RANK.items():  # three stages, not rows
            sel = s == name
            np.maximum.at(reached, p[sel], rk)
        rank = np.maximum(rank, reached)
        # the latest result per customer: 流失 there marks the customer lost
        if len(p):
            latest = np.lexsort((k, p))
            last_of = np.r_[p[latest][1:] != p[latest][:-1], True]
            lp, ls = p[latest][last_of], s[latest][last_of]
            lost[lp[ls == LOST]] = True
    stage = np.array(STAGES, dtype=object)[rank]
    owner = (
        text_column(cust, "owner") if "owner" in cust.columns else pd.Series("", index=cust.index)
    )
    chan_col = next(
        (c for c in ("source_channel", "_channel", "channels") if c in cust.columns), None
    )
    channel = text_column(cust, chan_col) if chan_col else pd.Series("", index=cust.index)
    per = pd.DataFrame(
        {
            "customer_id": text_column(cust, "customer_id")
            if "customer_id" in cust.columns
            else pd.Series("", index=cust.index),
            "owner": owner.replace("", "（未分配）"),
            "channel": channel.replace("", "（未知）"),
            "funnel_stage": stage,
            "lost": lost,
        }
    )
    frames = [
        funnel_table(per.assign(_g="全部"), "_g", "all"),
        funnel_table(per, "owner", "owner") if "owner" in cust.columns else None,
        funnel_table(per, "channel", "channel") if chan_col else None,
    ]
    table = pd.concat([f for f in frames if f is not None], ignore_index=True)
    return FunnelResult(per, table, as_of_ts, used)


def funnel_table(per: pd.DataFrame, by: str, dimension: str) -> pd.DataFrame:
    """The funnel of each group of ``by``: customers who reached each stage, conversion from
    the stage before, overall share of the group; plus the 流失 row (conversion empty)."""
    import numpy as np
    import pandas as pd

    rank = pd.Series(per["funnel_stage"]).map(_RANK).to_numpy()
    g = per[by].to_numpy()
    frame = pd.DataFrame({"g": g, "r": rank, "lost": per["lost"].to_numpy()})
    size = frame.groupby("g", sort=False).size()
    rows = []
    for name, rk in _RANK.items():  # three stages
        reached = (frame["r"] >= rk).groupby(frame["g"], sort=False).sum()
        rows.append(
            pd.DataFrame(
                {
                    "group": size.index,
                    "stage": name,
                    "customers": reached.reindex(size.index).to_numpy(),
                }
            )
        )
    lost = frame["lost"].groupby(frame["g"], sort=False).sum()
    rows.append(
        pd.DataFrame(
            {"group": size.index, "stage": LOST, "customers": lost.reindex(size.index).to_numpy()}
        )
    )
    out = pd.concat(rows, ignore_index=True)
    out["customers"] = out["customers"].astype(np.int64)
    total = out["group"].map(size).to_numpy(dtype=float)
    prev = np.full(len(out), np.nan)
    k = len(size)
    for i in range(1, len(STAGES)):  # the stage before, same group
        prev[i * k : (i + 1) * k] = out["customers"].to_numpy()[(i - 1) * k : i * k]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["conversion"] = np.round(np.where(prev > 0, out["customers"] / prev, np.nan), 4)
        out["overall"] = np.round(out["customers"] / total, 4)
    out.insert(0, "dimension", dimension)
    order = {s: i for i, s in enumerate((*STAGES, LOST))}
    out = out.assign(_o=out["stage"].map(order), _sz=-out["group"].map(size))
    out = out.sort_values(["_sz", "group", "_o"], kind="stable").drop(columns=["_o", "_sz"])
    return out[FUNNEL_COLUMNS].reset_index(drop=True)
