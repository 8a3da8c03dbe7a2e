"""custtool.ltv against the published CDNOW results (Fader, Hardie & Lee 2005), 1% tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custtool.ltv import (
    bgnbd_loglik,
    bgnbd_summary,
    expected_spend,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_ltv,
    p_alive,
    predict_purchases,
)
from custtool.metrics import customer_metrics

DATA = (
    Path(__file__).parent / "data"
)  # copies of the shared CDNOW reference files (see data/README.md)

PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATA / "cdnow_summary.csv").set_index("ID")


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    tx = pd.read_csv(
        DATA / "cdnow_sample_transactions.txt",
        sep=r"\s+",
        header=None,
        names=["customer_id", "sample_id", "date", "cds", "amount"],
        dtype={"customer_id": str, "sample_id": str, "date": str},
    )
    tx["order_time"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    return tx


@pytest.fixture(scope="module")
def bg_fit(cdnow):
    return fit_bgnbd(cdnow, unit="weeks")


def test_bgnbd_reproduces_published_cdnow_parameters(bg_fit):
    for k, v in PUBLISHED_BGNBD.items():
        assert getattr(bg_fit, k) == pytest.approx(v, rel=0.01), k
    assert bg_fit.loglik == pytest.approx(-9582.4, abs=0.5)
    assert bg_fit.n == 2357 and bg_fit.unit == "weeks"


def test_gamma_gamma_reproduces_published_cdnow_parameters(cdnow):
    gg = fit_gamma_gamma(cdnow, value_col="zbar")
    assert gg.p == pytest.approx(PUBLISHED_GG["p"], rel=0.01)
    assert gg.q == pytest.approx(PUBLISHED_GG["q"], rel=0.01)
    assert gg.v == pytest.approx(PUBLISHED_GG["v"], rel=0.01)
    assert gg.n == 946 and len(gg.excluded) == 2357 - 946


def test_summary_from_raw_transactions_matches_published_summary(transactions, cdnow):
    s = bgnbd_summary(transactions, "1997-09-30", "weeks", customer_col="sample_id")
    s.index = s.index.astype(int)
    s = s.reindex(cdnow.index)
    assert (s["x"] == cdnow["x"]).all()
    assert np.allclose(s["t_x"], cdnow["t_x"], atol=0.005 + 1e-9)
    assert np.allclose(s["T"], cdnow["T"], atol=0.005 + 1e-9)
    assert np.allclose(s["monetary_value"].fillna(0), cdnow["zbar"], atol=0.005 + 1e-9)
    # customer 1: purchases 1997-01-01, 01-18, 08-02 → x=2, t_x=213/7, T=272/7, zbar=(29.73+14.96)/2
    row = s.loc[1]
    assert (
        row["x"] == 2
        and row["t_x"] == pytest.approx(213 / 7)
        and row["T"] == pytest.approx(272 / 7)
    )
    assert row["monetary_value"] == pytest.approx(22.345)


def test_whole_pipeline_on_cdnow_transactions(transactions):
    """customer_metrics → fit_ltv on the raw CDNOW purchases gives the published fits."""
    m, rep = customer_metrics(
        transactions[["customer_id", "order_time", "amount"]], None, as_of="1997-09-30"
    )
    assert len(m) == 2357 and rep.rows_after_as_of > 0
    out, info = fit_ltv(m, unit="weeks", horizon_days=273)
    for k, v in PUBLISHED_BGNBD.items():
        assert getattr(info.bgnbd, k) == pytest.approx(v, rel=0.01), k
    assert info.gamma_gamma.p == pytest.approx(6.25, rel=0.01)
    assert info.gamma_gamma.q == pytest.approx(3.74, rel=0.01)
    assert info.gamma_gamma.v == pytest.approx(15.44, rel=0.01)
    assert out["p_alive"].between(0, 1).all()
    assert (out["predicted_purchases"] >= 0).all()
    assert (out["ltv"] >= out["historical_value"] - 1e-9).all()
    d = info.to_dict()
    assert d["bgnbd"]["unit"] == "weeks" and set(d["gamma_gamma"]) >= {"p", "q", "v"}


def test_predictions_and_p_alive_hand_checked(bg_fit):
    # the paper's worked example: x=2, t_x=30.43, T=38.86 → 1.226 purchases in the next 39 weeks
    assert predict_purchases(bg_fit, 39, 2, 30.43, 38.86) == pytest.approx(1.226, rel=0.01)
    # P(alive) = 1 / (1 + a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)), by hand with the published values: 0.7266
    assert p_alive(bg_fit, 2, 30.43, 38.86) == pytest.approx(0.7266, abs=0.002)
    assert p_alive(bg_fit, 0, 0, 38.86) == 1.0
    assert predict_purchases(bg_fit, 0, 3, 20, 30) == pytest.approx(0.0)


def test_weighted_fit_on_distinct_rows_equals_full_fit(cdnow, bg_fit):
    g = cdnow.groupby(["x", "t_x", "T"]).size().rename("w").reset_index()
    assert len(g) < len(cdnow)
    f2 = fit_bgnbd(g, weights=g["w"], unit="weeks")
    for k in ("r", "alpha", "a", "b"):
        assert getattr(f2, k) == pytest.approx(getattr(bg_fit, k), rel=1e-4)
    ll = bgnbd_loglik(
        np.array([bg_fit.r, bg_fit.alpha, bg_fit.a, bg_fit.b]),
        cdnow["x"].to_numpy(float),
        cdnow["t_x"].to_numpy(float),
        cdnow["T"].to_numpy(float),
    )
    assert ll.sum() == pytest.approx(bg_fit.loglik, rel=1e-9)


def test_expected_spend_shrinks_towards_population_mean(cdnow):
    gg = fit_gamma_gamma(cdnow, value_col="zbar")
    mean = gg.p * gg.v / (gg.q - 1)
    assert gg.mean_spend == pytest.approx(mean)
    e = expected_spend(gg, [0, 1, 1, 1000, 2], [np.nan, 10.0, 100.0, 50.0, -5.0])
    assert e[0] == pytest.approx(mean) and e[4] == pytest.approx(mean)  # excluded → population mean
    assert 10 < e[1] < mean < e[2] < 100
    assert e[3] == pytest.approx(50, rel=0.01)


def _metrics(rows):
    """Minimal metrics frame for fit_ltv: (x, t_x days, T days, repeat avg, historical)."""
    df = pd.DataFrame(rows, columns=["bg_x", "bg_t_x", "bg_T", "bg_repeat_avg", "historical_value"])
    df["first_order"] = pd.Timestamp("2024-01-01")
    df["aov"] = 100.0
    return df


def test_fallback_when_too_small_and_when_no_repeat():
    small = _metrics([(1, 10, 20, 50.0, 100.0)] * 5)
    out, info = fit_ltv(small)
    assert info.bgnbd is None and "only 5 customers" in info.bgnbd_reason
    assert out["ltv"].tolist() == [100.0] * 5 and out["p_alive"].isna().all()
    assert info.to_dict()["bgnbd"] == {"fitted": False, "reason": info.bgnbd_reason}
    norepeat = _metrics([(0, 0, 30, np.nan, 80.0)] * 50)
    out, info = fit_ltv(norepeat.assign(lifecycle="流失"))
    assert "repeat" in info.bgnbd_reason and "repeat" in info.gamma_gamma_reason
    assert out["churn_risk"].all()  # falls back to lifecycle 流失
    with pytest.raises(ValueError):
        fit_bgnbd(pd.DataFrame({"x": [0, 0], "t_x": [0, 0], "T": [5, 6]}))


def test_churn_flag_follows_p_alive_level(cdnow):
    m = pd.DataFrame(
        {
            "bg_x": cdnow["x"],
            "bg_t_x": cdnow["t_x"] * 7,
            "bg_T": cdnow["T"] * 7,
            "bg_repeat_avg": cdnow["zbar"].where(cdnow["x"] > 0),
            "historical_value": 0.0,
            "first_order": pd.Timestamp("1997-01-01"),
        }
    )
    out, info = fit_ltv(m, unit="weeks", churn_level=0.5)
    assert info.bgnbd is not None
    assert (out["churn_risk"] == (out["p_alive"] < 0.5)).all()
    assert out["churn_risk"].any() and not out["churn_risk"].all()
    # in days the same data give the same r, a, b and alpha ×7
    _, info_d = fit_ltv(m, unit="days")
    assert info_d.bgnbd.alpha == pytest.approx(info.bgnbd.alpha * 7, rel=0.01)
    assert info_d.bgnbd.r == pytest.approx(info.bgnbd.r, rel=0.01)


def test_analytic_gradient_matches_finite_differences(cdnow):
    from custtool.ltv import _BGData

    d = _BGData(
        cdnow["x"].to_numpy(float),
        cdnow["t_x"].to_numpy(float),
        cdnow["T"].to_numpy(float),
        np.ones(len(cdnow)),
    )
    z = np.log([0.3, 5.0, 0.9, 2.0])
    f0, g = d.nll_and_grad(z)
    h = 1e-6
    num = [
        (d.nll_and_grad(z + h * e)[0] - d.nll_and_grad(z - h * e)[0]) / (2 * h) for e in np.eye(4)
    ]
    assert np.allclose(g, num, rtol=1e-5, atol=1e-8)
    assert f0 == pytest.approx(-d.loglik(np.exp(z)).mean())


def _simulated_bgnbd(n: int, seed: int = 7) -> pd.DataFrame:
    """(x, t_x, T) in whole days drawn from a BG/NBD process (r 0.5, α 10 days, a 0.8,
    b 2.5): exponential gaps at a gamma-distributed rate, a beta-distributed chance to drop
    out after each purchase. Whole days make many customers share a triple."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.5, 1 / 10.0, n)
    p = rng.beta(0.8, 2.5, n)
    T = rng.integers(30, 400, n).astype(float)
    k = 60
    times = np.cumsum(rng.exponential(1.0, (n, k)) / lam[:, None], axis=1)
    alive = np.arange(k)[None, :] < (rng.geometric(p) - 1)[:, None]
    seen = alive & (np.floor(times) <= T[:, None])
    x = seen.sum(axis=1).astype(float)
    t_x = np.where(x > 0, np.floor(np.where(seen, times, 0.0).max(axis=1)), 0.0)
    return pd.DataFrame({"x": x, "t_x": t_x, "T": T})


def test_weighted_fit_equals_unweighted_fit_on_generated_data():
    """The fit on distinct (x, t_x, T) rows with counts as weights is the same likelihood
    as the fit on one row per customer: the same parameters (~1e-6 relative), the same
    log-likelihood, and both equal an independent fit of the textbook per-row likelihood."""
    from scipy.optimize import minimize

    df = _simulated_bgnbd(4000)
    g = df.groupby(["x", "t_x", "T"]).size().rename("w").reset_index()
    assert len(g) < 0.7 * len(df)  # the weights do compress
    full = fit_bgnbd(df)
    weighted = fit_bgnbd(g, weights=g["w"])
    for k in ("r", "alpha", "a", "b"):
        assert getattr(weighted, k) == pytest.approx(getattr(full, k), rel=1e-6), k
    assert weighted.n == full.n == 4000
    assert weighted.loglik == pytest.approx(full.loglik, rel=1e-12)
    cols = [df[c].to_numpy(float) for c in ("x", "t_x", "T")]
    per_row = bgnbd_loglik(np.array([full.r, full.alpha, full.a, full.b]), *cols).sum()
    assert per_row == pytest.approx(full.loglik, rel=1e-12)
    # the textbook per-row likelihood maximised directly (Nelder-Mead, no gradient, no
    # compression) lands on the same parameters
    ref = minimize(
        lambda z: -bgnbd_loglik(np.exp(z), *cols).mean(),
        np.log([1.0, 50.0, 1.0, 1.0]),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000, "maxfev": 20000},
    )
    for k, v in zip(("r", "alpha", "a", "b"), np.exp(ref.x), strict=True):
        assert getattr(full, k) == pytest.approx(v, rel=1e-5), k
    assert full.loglik >= -ref.fun * 4000 - 1e-6 and full.converged


def test_weighted_gamma_gamma_equals_per_row_likelihood():
    """Gamma-Gamma on distinct (x, mean spend) rows with weights = the per-row fit, and its
    log-likelihood is the sum of the textbook per-row terms."""
    from custtool.ltv import gamma_gamma_loglik

    rng = np.random.default_rng(3)
    x = rng.integers(1, 6, 3000).astype(float)
    nu = rng.gamma(4.0, 1 / 40.0, 3000)
    m = np.round(rng.gamma(3.0 * x, 1 / (nu * x)), 0)  # whole yuan: many rows share a value
    df = pd.DataFrame({"x": x, "monetary_value": m})
    g = df.groupby(["x", "monetary_value"]).size().rename("w").reset_index()
    assert len(g) < len(df)
    full = fit_gamma_gamma(df)
    weighted = fit_gamma_gamma(g, weights=g["w"])
    for k in ("p", "q", "v"):
        assert getattr(weighted, k) == pytest.approx(getattr(full, k), rel=1e-6), k
    per_row = gamma_gamma_loglik(np.array([full.p, full.q, full.v]), x, m).sum()
    assert per_row == pytest.approx(full.loglik, rel=1e-12)
    assert full.p == pytest.approx(3.0, rel=0.3) and full.q == pytest.approx(4.0, rel=0.3)


def test_optimiser_falls_back_to_scipy_when_bfgs_does_not_converge(cdnow, bg_fit, monkeypatch):
    """When the BFGS loop stops short (here: two iterations allowed), scipy's L-BFGS-B
    polishes from where it stopped and lands on the same fit."""
    import custtool.ltv as ltv

    real = ltv._bfgs
    calls = []

    def short(nll, start, bounds, maxiter=200):
        res = real(nll, start, bounds, maxiter=2)
        calls.append(res.success)
        return res

    monkeypatch.setattr(ltv, "_bfgs", short)
    f = fit_bgnbd(cdnow, unit="weeks")
    assert calls and not any(calls)  # every BFGS run stopped short: scipy finished them
    for k in ("r", "alpha", "a", "b"):
        assert getattr(f, k) == pytest.approx(getattr(bg_fit, k), rel=1e-4), k
    assert f.converged and f.loglik == pytest.approx(bg_fit.loglik, abs=1e-4)
