"""Net Promoter Score and satisfaction (SPEC D6).

NPS = % promoters (score 9–10) − % detractors (0–6) over the valid scores; blank and
out-of-range scores (outside 0–10, or not numbers) are counted as invalid and excluded.
The run's NPS is computed once, by the segment step (:func:`nps_overview` over every valid
response up to the as-of date — not each customer's latest score); the report, the
summary workbook, ``segment --json`` and the run manifest all read that one value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from custtool.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

NPS_COLUMNS = [
    "responses",
    "valid",
    "invalid",
    "promoters",
    "passives",
    "detractors",
    "promoters_pct",
    "detractors_pct",
    "nps",
]


def _as_frame(scores: Any, col: str) -> pd.DataFrame:
    import pandas as pd

    if isinstance(scores, pd.DataFrame):
        if col not in scores.columns:
            raise InputError(
                f"no {col!r} column in the survey table",
                "import surveys with `custtool import --kind surveys`",
            )
        return scores
    return pd.DataFrame({col: pd.Series(scores)})


def nps(
    scores: Any, by: str | list[str] | None = None, *, score_col: str = "score"
) -> pd.DataFrame:
    """NPS overall (``by=None``: one row) or per group of ``by`` column(s).

    ``scores``: a Series/list of scores, or a DataFrame with ``score_col`` (and ``by``).
    Columns: responses, valid, invalid, promoters, passives, detractors, promoters_pct,
    detractors_pct, nps (NaN when no valid score).
    """
    import numpy as np
    import pandas as pd

    df = _as_frame(scores, score_col)
    s = pd.to_numeric(df[score_col], errors="coerce")
    valid = s.between(0, 10)
    work = pd.DataFrame(
        {
            "responses": 1,
            "valid": valid.astype(int),
            "promoters": (valid & (s >= 9)).astype(int),
            "detractors": (valid & (s <= 6)).astype(int),
        },
        index=df.index,
    )
    if by is None:
        agg = work.sum().to_frame().T
    else:
        keys = [by] if isinstance(by, str) else list(by)
        agg = work.join(df[keys]).groupby(keys, sort=True, dropna=False).sum().reset_index()
    agg["invalid"] = agg["responses"] - agg["valid"]
    agg["passives"] = agg["valid"] - agg["promoters"] - agg["detractors"]
    with np.errstate(invalid="ignore", divide="ignore"):
        v = agg["valid"].where(agg["valid"] > 0)
        agg["promoters_pct"] = (agg["promoters"] / v * 100).round(2)
        agg["detractors_pct"] = (agg["detractors"] / v * 100).round(2)
        agg["nps"] = (agg["promoters"] / v * 100 - agg["detractors"] / v * 100).round(2)
    keys = [] if by is None else ([by] if isinstance(by, str) else list(by))
    return agg[keys + NPS_COLUMNS].reset_index(drop=True)


def satisfaction(
    values: Any, by: str | list[str] | None = None, *, col: str = "satisfaction"
) -> pd.DataFrame:
    """Mean satisfaction (``mean``) and number of numeric answers (``answers``), overall or per group."""
    import pandas as pd

    df = _as_frame(values, col)
    s = pd.to_numeric(df[col], errors="coerce")
    work = pd.DataFrame({"v": s}, index=df.index)
    if by is None:
        return pd.DataFrame(
            {
                "answers": [int(s.notna().sum())],
                "mean": [round(float(s.mean()), 3) if s.notna().any() else float("nan")],
            }
        )
    keys = [by] if isinstance(by, str) else list(by)
    g = work.join(df[keys]).groupby(keys, sort=True, dropna=False)["v"]
    out = pd.DataFrame({"answers": g.count(), "mean": g.mean().round(3)}).reset_index()
    return out


def attach_responses(
    surveys: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    as_of: Any = None,
    tz: str = "Asia/Shanghai",
    segment_cols: tuple[str, ...] = ("rfm_class", "tier", "lifecycle"),
    index: Any = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Survey responses attributed to customers (:func:`custtool.attribution.attribute`).

    Returns (responses up to ``as_of`` with ``_customer`` position (-1 unmatched) and the
    customers' segment columns, latest valid score per customer as a Series aligned with
    ``customers`` (``nps_score``, NaN when none)). ``index``: the matcher's index of these
    customers when there is one already (``attribute(index=)``).
    """
    import numpy as np
    import pandas as pd

    from custtool.attribution import attribute
    from custtool.dates import day_numbers, local_times, parse_as_of

    if "score" not in surveys.columns:
        raise InputError(
            "surveys have no 'score' column",
            "import surveys with `custtool import --kind surveys` (推荐意愿/NPS评分)",
        )
    att = attribute(surveys.reset_index(drop=True), customers, kind="surveys", index=index)
    resp = att.records.assign(_customer=att.positions)
    if "time" in surveys.columns:
        t = local_times(surveys["time"], tz).reset_index(drop=True)
        resp["time"] = t
        as_of_ts = parse_as_of(as_of)
        if as_of_ts is not None:
            d = day_numbers(t)
            resp = resp[
                ~(
                    t.notna().to_numpy()
                    & (d > int(np.datetime64(as_of_ts.date(), "D").astype(np.int64)))
                )
            ]
    for col in segment_cols:
        if col in customers.columns:
            vals = customers[col].to_numpy(dtype=object)
            p = resp["_customer"].to_numpy()
            # no customers: every response is unmatched (and vals has nothing to index)
            picked = vals[np.maximum(p, 0)] if len(vals) else np.full(len(p), "", dtype=object)
            resp[col] = np.where(p >= 0, picked, "")
    score = pd.to_numeric(resp["score"], errors="coerce")
    ok = (resp["_customer"] >= 0) & score.between(0, 10)
    latest = resp.loc[ok, ["_customer"]].assign(score=score[ok])
    if "time" in resp.columns:
        latest = latest.assign(_t=resp.loc[ok, "time"]).sort_values(
            "_t", kind="stable", na_position="first"
        )
    latest_score = latest.drop_duplicates("_customer", keep="last").set_index("_customer")["score"]
    nps_score = pd.Series(
        latest_score.reindex(np.arange(len(customers))).to_numpy(dtype=float),
        index=customers.index,
        name="nps_score",
    )
    return resp.reset_index(drop=True), nps_score


def nps_overview(responses: pd.DataFrame | None) -> dict[str, Any]:
    """The NPS figures of a run from the attributed responses (:func:`attach_responses`):
    overall over every valid response up to the as-of date (matched to a customer or not),
    per RFM class and per tier over the matched ones. ``{"surveys": False}`` without surveys.
    """
    import math

    if responses is None:
        return {"surveys": False}

    def num(v: Any) -> float | None:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)

    overall = nps(responses).iloc[0]
    matched = responses[responses["_customer"] >= 0]
    info: dict[str, Any] = {
        "surveys": True,
        "definition": "promoters (9-10) % - detractors (0-6) % over all valid responses up to the as-of date",
        "responses": int(overall["responses"]),
        "valid": int(overall["valid"]),
        "invalid": int(overall["invalid"]),
        "unmatched": int((responses["_customer"] < 0).sum()),
        "nps": num(overall["nps"]),
        "promoters_pct": num(overall["promoters_pct"]),
        "detractors_pct": num(overall["detractors_pct"]),
    }
    for key, col in (("by_class", "rfm_class"), ("by_tier", "tier")):
        if col in matched.columns:
            per = nps(matched, by=col).set_index(col)["nps"]
            info[key] = {(str(k) or "（无订单）"): num(v) for k, v in per.items()}
    if "satisfaction" in responses.columns:
        sat = satisfaction(responses)
        info["satisfaction_mean"] = num(sat["mean"].iloc[0])
        info["satisfaction_answers"] = int(sat["answers"].iloc[0])
    return info


def survey_nps(
    surveys: pd.DataFrame, customers: pd.DataFrame, *, as_of: Any = None, tz: str = "Asia/Shanghai"
) -> dict[str, Any]:
    """The run's NPS figures (:func:`nps_overview`) from raw survey rows and the segmented
    customers: what ``segment`` computed, for a report written from a segmented table.
    ``as_of`` defaults to the customers' ``as_of`` column (the segment's as-of date)."""
    import pandas as pd

    if as_of is None and "as_of" in customers.columns:
        latest = pd.to_datetime(customers["as_of"], errors="coerce").max()
        as_of = None if pd.isna(latest) else latest
    responses, _ = attach_responses(surveys, customers, as_of=as_of, tz=tz)
    return nps_overview(responses)
