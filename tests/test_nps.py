"""custtool.nps: NPS and satisfaction on hand-checked examples."""

from __future__ import annotations

import numpy as np
import pandas as pd

from custtool.nps import attach_responses, nps, satisfaction


def test_nps_hand_example_with_invalid_scores():
    # valid: 10 10 9 9 (promoters) 8 7 (passives) 6 0 (detractors); invalid: 11, -1, blank, text
    scores = [10, 10, 9, 9, 8, 7, 6, 0, 11, -1, np.nan, "abc"]
    r = nps(pd.Series(scores, dtype=object)).iloc[0]
    assert (r["responses"], r["valid"], r["invalid"]) == (12, 8, 4)
    assert (r["promoters"], r["passives"], r["detractors"]) == (4, 2, 2)
    assert r["promoters_pct"] == 50.0 and r["detractors_pct"] == 25.0
    assert r["nps"] == 25.0


def test_nps_by_group_and_empty_group():
    df = pd.DataFrame(
        {
            "score": [10, 0, 9, 9, np.nan, 5],
            "tier": ["高价值", "高价值", "中价值", "中价值", "低价值", "低价值"],
        }
    )
    t = nps(df, by="tier").set_index("tier")
    assert t.loc["高价值", "nps"] == 0.0
    assert t.loc["中价值", "nps"] == 100.0
    assert t.loc["低价值", "nps"] == -100.0 and t.loc["低价值", "invalid"] == 1
    allbad = nps([np.nan, 12]).iloc[0]
    assert allbad["valid"] == 0 and np.isnan(allbad["nps"])


def test_satisfaction_mean():
    s = satisfaction(pd.DataFrame({"satisfaction": [5, 4, "", 3]}))
    assert s.loc[0, "answers"] == 3 and s.loc[0, "mean"] == 4.0
    g = satisfaction(
        pd.DataFrame({"satisfaction": [5, 4, 1], "k": ["a", "a", "b"]}), by="k"
    ).set_index("k")
    assert g.loc["a", "mean"] == 4.5 and g.loc["b", "answers"] == 1


def test_attach_responses_latest_score_per_customer():
    customers = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "phone": ["13800000001", "13800000002", ""],
            "email": ["", "", "c3@example.com"],
            "rfm_class": ["重要价值客户", "一般挽留客户", ""],
        }
    )
    surveys = pd.DataFrame(
        {
            "customer_id": ["", "", "", "", ""],
            "phone": ["13800000001", "13800000001", "13800000002", "", "13900000000"],
            "email": ["", "", "", "C3@Example.com", ""],
            "time": pd.to_datetime(
                ["2024-05-01", "2024-06-01", "2024-07-15", "2024-03-01", "2024-01-01"]
            ),
            "score": [3.0, 9.0, 10.0, 7.0, 8.0],
        }
    )
    resp, latest = attach_responses(surveys, customers, as_of="2024-06-30")
    assert latest.iloc[0] == 9.0 and np.isnan(latest.iloc[1]) and latest.iloc[2] == 7.0
    assert len(resp) == 4  # the 07-15 answer is after the as-of date
    assert (resp["_customer"] < 0).sum() == 1
    by = nps(resp[resp["_customer"] >= 0], by="rfm_class").set_index("rfm_class")
    assert by.loc["重要价值客户", "nps"] == 0.0  # one detractor (3), one promoter (9)
