"""Customer lifetime value: BG/NBD purchase model + Gamma-Gamma spend model.

Both models are fitted by maximum likelihood with vectorised log-likelihoods
(``scipy.special.gammaln``/``betaln``) and ``scipy.optimize.minimize`` on the log of the
parameters. The fits run on the *distinct* (x, t_x, T) or (x, mean spend) combinations with
their counts as weights, so their cost does not grow with the number of customers.

Inputs (SPEC): x = repeat purchase *days* (several orders on one day are one purchase day),
t_x = first to last purchase day, T = first purchase day to the as-of day, in one stated time
unit (``days`` or ``weeks``). Gamma-Gamma uses the average value of the repeat purchases of
customers with at least one repeat and a positive average; the others are excluded from the
spend model (and listed), not dropped.

References: Fader, Hardie & Lee (2005) "Counting your customers the easy way", Marketing
Science 24(2); Fader, Hardie & Lee (2005) "RFM and CLV: using iso-value curves", JMR 42(4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from custtool.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

UNITS = {"days": 1.0, "weeks": 7.0}


def _unit_days(unit: str) -> float:
    try:
        return UNITS[unit]
    except KeyError:
        raise ConfigError(f"unknown LTV time unit {unit!r}", "use days or weeks") from None


# --------------------------------------------------------------------------- summary
def bgnbd_summary(
    orders: pd.DataFrame,
    as_of: Any,
    unit: str = "days",
    *,
    customer_col: str = "customer_id",
    time_col: str = "order_time",
    amount_col: str = "amount",
    tz: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """Per customer: ``x`` (repeat purchase days), ``t_x``, ``T`` (in ``unit``) and
    ``monetary_value`` (net value after the first purchase day / x; NaN when x = 0).

    Orders after ``as_of`` are ignored; refund lines (negative amounts) are not purchase
    days but are netted into the repeat value when they fall after the first purchase day.
    """
    import numpy as np
    import pandas as pd

    from custtool.dates import day_numbers, local_times, parse_as_of

    scale = _unit_days(unit)
    as_of_ts = parse_as_of(as_of)
    if as_of_ts is None:
        raise InputError("bgnbd_summary needs an as-of date", "pass as_of=YYYY-MM-DD")
    for col in (customer_col, time_col, amount_col):
        if col not in orders.columns:
            raise InputError(
                f"orders have no {col!r} column",
                "import the orders with `custtool import --kind orders`",
            )
    as_of_day = int(np.datetime64(as_of_ts.date(), "D").astype(np.int64))
    t = local_times(orders[time_col], tz)
    day = day_numbers(t)
    amt = np.round(orders[amount_col].to_numpy(dtype=float, na_value=0.0) * 100) / 100
    ok = t.notna().to_numpy() & (day <= as_of_day)
    codes, uni = pd.factorize(orders[customer_col], sort=True)
    ok &= codes >= 0
    c, d, a = codes[ok], day[ok], amt[ok]
    n = len(uni)
    sale = a >= 0
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, c[sale], d[sale])
    np.maximum.at(last, c[sale], d[sale])
    pdays = pd.DataFrame({"c": c[sale], "d": d[sale]}).drop_duplicates()
    n_days = np.bincount(pdays["c"].to_numpy(), minlength=n)
    has = n_days > 0
    later = d > first[c]
    repeat_value = np.round(np.bincount(c[later], weights=a[later], minlength=n), 2)
    x = np.where(has, n_days - 1, 0)
    out = pd.DataFrame(
        {
            "x": x,
            "t_x": np.where(has, (last - first) / scale, np.nan),
            "T": np.where(has, (as_of_day - first) / scale, np.nan),
            "monetary_value": np.where(x > 0, repeat_value / np.maximum(x, 1), np.nan),
        },
        index=pd.Index(np.asarray(uni), name=customer_col),
    )
    return out[has]


# --------------------------------------------------------------------------- BG/NBD
@dataclass
class BGNBDFit:
    """Fitted BG/NBD parameters; ``alpha`` is in ``unit``."""

    r: float
    alpha: float
    a: float
    b: float
    loglik: float
    n: int
    unit: str = "days"
    converged: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "a": self.a,
            "b": self.b,
            "unit": self.unit,
            "loglik": self.loglik,
            "customers": self.n,
            "converged": self.converged,
        }


@dataclass
class GammaGammaFit:
    """Fitted Gamma-Gamma parameters; ``excluded`` lists customers outside the spend model."""

    p: float
    q: float
    v: float
    loglik: float
    n: int
    converged: bool = True
    excluded: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "p": self.p,
            "q": self.q,
            "v": self.v,
            "loglik": self.loglik,
            "customers": self.n,
            "excluded": len(self.excluded),
            "converged": self.converged,
        }

    @property
    def mean_spend(self) -> float:
        return self.p * self.v / (self.q - 1) if self.q > 1 else float("nan")


def _compress(
    cols: dict[str, np.ndarray], weights: np.ndarray | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Distinct rows of the given (finite) columns with summed weights, in order of first
    appearance: each column coded by its distinct values (hashing, no sort), the codes
    combined one column at a time into one integer key (re-coded after each, so it never
    overflows)."""
    import numpy as np
    import pandas as pd

    names = list(cols)
    n = len(cols[names[0]])
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if not n:
        return {k: np.asarray(cols[k], dtype=float) for k in names}, w
    key = np.zeros(n, dtype=np.int64)
    for k in names:
        code, uniq = pd.factorize(np.asarray(cols[k], dtype=float))
        key, _ = pd.factorize(key * len(uniq) + code)
    first = np.zeros(int(key.max()) + 1, dtype=np.int64)
    first[key[::-1]] = np.arange(n - 1, -1, -1)  # the first row of each key
    total = np.bincount(key, weights=w)
    return {k: np.asarray(cols[k], dtype=float)[first] for k in names}, total


def bgnbd_loglik(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-row BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
    import numpy as np
    from scipy.special import betaln, gammaln

    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    base = betaln(a, b)
    a1 = betaln(a, b + x) - base - (r + x) * np.log(alpha + T)
    rep = x > 0
    a2 = np.full_like(a1, -np.inf)
    xr = x[rep]
    a2[rep] = betaln(a + 1, b + xr - 1) - base - (r + xr) * np.log(alpha + t_x[rep])
    return common + np.logaddexp(a1, a2)


def _wsum(w: np.ndarray, v: np.ndarray) -> float:
    """Σ w·v without BLAS: numpy's ``dot`` hands long vectors to OpenBLAS threads, which on a
    loaded machine cost milliseconds a call (measured: 12 ms for 68k elements at load 7,
    15 µs on one thread); ``einsum`` sums in its own loop."""
    import numpy as np

    return float(np.einsum("i,i->", w, v))


class _BGData:
    """Distinct (x, t_x, T) rows with weights, coded by their distinct x, t_x and T values,
    so that every special function runs on the few distinct values only.

    The log-likelihood of a row is ``common(x) + a1 + softplus(a2 − a1)`` with
    ``a1 = b1(x) − (r + x)·log(α + T)`` (alive at T) and ``a2 − a1 = (b2 − b1)(x) −
    (r + x)·(log(α + t_x) − log(α + T))`` (dropped out after t_x; −∞ for x = 0). Everything
    but the softplus term is summed per distinct x and per distinct T from weights summed
    once (``Wx``, ``WT``, ``WxT``), so only the rows with x > 0 cost anything per row."""

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray) -> None:
        import numpy as np

        self.ux, self.xi = np.unique(x, return_inverse=True)
        self.ut, self.ti = np.unique(t_x, return_inverse=True)
        self.uT, self.Ti = np.unique(T, return_inverse=True)
        self.w = w
        self.rep = x > 0
        self.n = float(w.sum())
        # weights summed once: per distinct x, per distinct T, and Σ w·x per distinct T
        self.Wx = np.bincount(self.xi, weights=w, minlength=len(self.ux))
        self.WT = np.bincount(self.Ti, weights=w, minlength=len(self.uT))
        self.WxT = np.bincount(self.Ti, weights=w * x, minlength=len(self.uT))
        rep = self.rep
        self.r_xi, self.r_ti, self.r_Ti = self.xi[rep], self.ti[rep], self.Ti[rep]
        self.r_x, self.r_w = x[rep], w[rep]

    def loglik(self, params: np.ndarray) -> np.ndarray:
        import numpy as np
        from scipy.special import betaln, gammaln

        r, alpha, a, b = params
        ux = self.ux
        base = betaln(a, b)
        common = gammaln(r + ux) - gammaln(r) + r * np.log(alpha)
        b1 = betaln(a, b + ux) - base
        with np.errstate(invalid="ignore"):
            b2 = np.where(ux > 0, betaln(a + 1, b + np.maximum(ux, 1) - 1) - base, -np.inf)
        rx = (r + ux)[self.xi]
        a1 = b1[self.xi] - rx * np.log(alpha + self.uT)[self.Ti]
        a2 = np.where(self.rep, b2[self.xi] - rx * np.log(alpha + self.ut)[self.ti], -np.inf)
        return common[self.xi] + np.logaddexp(a1, a2)

    def nll_and_grad(self, logp: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean negative log-likelihood and its gradient w.r.t. the log-parameters."""
        import numpy as np
        from scipy.special import betaln, digamma, expit, gammaln

        r, alpha, a, b = np.exp(logp)
        ux, n = self.ux, self.n
        Wx, WT, WxT = self.Wx, self.WT, self.WxT
        base = betaln(a, b)
        uxp = np.maximum(ux, 1)
        common = gammaln(r + ux) - gammaln(r) + r * np.log(alpha)
        b1 = betaln(a, b + ux) - base
        b2 = betaln(a + 1, b + uxp - 1) - base  # used on rows with x > 0 only
        lT = np.log(alpha + self.uT)
        lt = np.log(alpha + self.ut)
        iT, it = 1.0 / (alpha + self.uT), 1.0 / (alpha + self.ut)
        # the rows with x > 0: d = a2 − a1, their share softplus(d) and weight w2 = σ(d)
        dl = lt[self.r_ti] - lT[self.r_Ti]
        rx = r + self.r_x
        d = (b2 - b1)[self.r_xi] - rx * dl
        ww2 = self.r_w * expit(d)
        ll = _wsum(Wx, common + b1) - r * _wsum(WT, lT) - _wsum(WxT, lT)
        ll += _wsum(self.r_w, np.logaddexp(0.0, d))
        # per distinct x: digamma parts of ∂a1 and ∂a2, and Σ w·w2 of its rows
        d_ab, d_a, d_b = digamma(a + b), digamma(a), digamma(b)
        d_abx = digamma(a + b + ux)
        da1 = d_ab - d_abx
        db1 = digamma(b + ux) - d_abx - d_b + d_ab
        da2 = digamma(a + 1) - d_abx - d_a + d_ab
        db2 = digamma(b + uxp - 1) - d_abx - d_b + d_ab
        sx = np.bincount(self.r_xi, weights=ww2, minlength=len(ux))
        g_r = _wsum(Wx, digamma(r + ux) - digamma(r)) + n * np.log(alpha) - _wsum(WT, lT)
        g_r -= _wsum(ww2, dl)
        g_alpha = n * r / alpha - _wsum(r * WT + WxT, iT)
        g_alpha -= _wsum(ww2, rx * (it[self.r_ti] - iT[self.r_Ti]))
        g_a = _wsum(Wx, da1) + _wsum(sx, da2 - da1)
        g_b = _wsum(Wx, db1) + _wsum(sx, db2 - db1)
        val = -ll / n
        grad = -np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b]) / n
        if not (np.isfinite(val) and np.all(np.isfinite(grad))):
            return 1e10, np.zeros(4)
        return val, grad


def _subsample(w: np.ndarray, size: int = 40_000) -> tuple[np.ndarray, np.ndarray] | None:
    """A deterministic weighted sample of the distinct rows (index, counts) when there are
    many; used only for the starting point, the final fit always uses all rows."""
    import numpy as np

    if len(w) <= 2 * size:
        return None
    rng = np.random.default_rng(0)
    draw = rng.choice(len(w), size=size, p=w / w.sum())
    i, counts = np.unique(draw, return_counts=True)
    return i, counts.astype(float)


def _gg_objective(x: np.ndarray, m: np.ndarray, w: np.ndarray):
    """Mean negative Gamma-Gamma log-likelihood and gradient w.r.t. log(p, q, v).

    Per row only ``log(x·m + v)`` and ``1/(x·m + v)`` depend on the parameters; the terms in
    p·x and q are summed per distinct x, the ones in log m and log x once."""
    import numpy as np
    from scipy.special import digamma, gammaln

    n = float(w.sum())
    ux, xi = np.unique(x, return_inverse=True)
    Wx = np.bincount(xi, weights=w, minlength=len(ux))
    log_m = np.log(m)
    xm = x * m
    wx = w * x
    log_ux = np.log(ux)
    s_wxlogm = _wsum(wx, log_m)  # Σ w·x·log m
    s_wlogm = _wsum(w, log_m)
    s_wxlogx = _wsum(Wx * ux, log_ux)  # Σ w·x·log x

    def nll(logp: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, v = np.exp(logp)
        pux = p * ux
        L = np.log(xm + v)
        R = 1.0 / (xm + v)
        s_wxL, s_wL = _wsum(wx, L), _wsum(w, L)
        ll = _wsum(Wx, gammaln(pux + q) - gammaln(pux) + pux * log_ux)
        ll += n * (q * np.log(v) - gammaln(q)) + p * s_wxlogm - s_wlogm - p * s_wxL - q * s_wL
        psi_pxq = digamma(pux + q)
        g_p = _wsum(Wx * ux, psi_pxq - digamma(pux)) + s_wxlogm + s_wxlogx - s_wxL
        g_q = _wsum(Wx, psi_pxq) - n * digamma(q) + n * np.log(v) - s_wL
        g_v = n * q / v - p * _wsum(wx, R) - q * _wsum(w, R)
        val = -float(ll) / n
        grad = -np.array([g_p * p, g_q * q, g_v * v]) / n
        if not (np.isfinite(val) and np.all(np.isfinite(grad))):
            return 1e10, np.zeros(3)
        return val, grad

    return nll


#: the optimiser stops when the largest gradient component of the mean negative
#: log-likelihood (w.r.t. the log-parameters) is below this
GTOL = 1e-7


@dataclass
class _Result:
    x: Any
    fun: float
    success: bool
    status: int
    nfev: int


def _bfgs(nll, start: np.ndarray, bounds: list[tuple[float, float]], maxiter: int = 200):
    """BFGS with a backtracking (Armijo) line search on the log-parameters, the iterate
    clipped to ``bounds``: converged when the largest gradient component is below
    :data:`GTOL` (scipy's L-BFGS-B here stopped at 1e-6, short of the optimum where the
    likelihood is flat) or the value stops changing (relative 1e-14) with the gradient
    below 1e-6. A few parameters only: no BLAS, no scipy.optimize import (slow to import,
    and its BLAS calls cost milliseconds each on a loaded machine). ``status`` 0
    converged, 1 not (the caller then polishes with scipy)."""
    import numpy as np

    lo = np.array([b[0] for b in bounds], dtype=float)
    hi = np.array([b[1] for b in bounds], dtype=float)
    x = np.clip(np.asarray(start, dtype=float), lo, hi)
    fx, g = nll(x)
    nfev, k = 1, len(x)
    H = np.eye(k)
    for _ in range(maxiter):
        free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
        if fx < 1e10 and np.max(np.abs(g[free]), initial=0.0) < GTOL:
            return _Result(x, fx, True, 0, nfev)
        p = -(H * g[None, :]).sum(axis=1)
        p[~free] = 0.0
        slope = float((p * g).sum())
        if not slope < 0:  # not a descent direction: restart from the gradient
            H = np.eye(k)
            p = np.where(free, -g, 0.0)
        step = min(1.0, 2.0 / max(float(np.max(np.abs(p))), 1e-300))  # at most 2 in log
        while True:
            xn = np.clip(x + step * p, lo, hi)
            fn, gn = nll(xn)
            nfev += 1
            if fn <= fx + 1e-4 * float(((xn - x) * g).sum()) or step < 1e-10:
                break
            step *= 0.5
        if not fn < fx - 1e-14 * max(abs(fx), 1.0):  # no progress: stop where it was best
            if fn < fx:
                x, fx, g = xn, fn, gn
            free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
            ok = fx < 1e10 and np.max(np.abs(g[free]), initial=0.0) < 1e-6
            return _Result(x, fx, bool(ok), 0 if ok else 1, nfev)
        s, y = xn - x, gn - g
        sy = float((s * y).sum())
        x, fx, g = xn, fn, gn
        if sy > 1e-12 * float((s * s).sum()) ** 0.5 * float((y * y).sum()) ** 0.5:
            rho = 1.0 / sy
            V = np.eye(k) - rho * s[:, None] * y[None, :]
            H = np.einsum("ij,jk,lk->il", V, H, V) + rho * s[:, None] * s[None, :]
    return _Result(x, fx, False, 1, nfev)


def _minimize(nll, start: np.ndarray, bounds: list[tuple[float, float]], jac: Any = None):
    """BFGS on log-parameters (:func:`_bfgs`; ``nll`` returns (value, gradient)); when it
    does not converge, scipy's L-BFGS-B from its end point and then Nelder-Mead when that
    runs out of iterations."""
    import numpy as np

    first = _bfgs(nll, start, bounds)
    if first.success:
        return first
    from scipy.optimize import minimize

    res = minimize(
        nll,
        first.x,
        method="L-BFGS-B",
        jac=jac,
        bounds=bounds,
        options={"ftol": 1e-10, "gtol": 1e-6, "maxiter": 2000},
    )
    # status 2 (line search cannot improve) means "at the optimum within precision"; only
    # running out of iterations or a non-finite value calls for the derivative-free polish
    if res.status == 1 or not np.isfinite(res.fun) or res.fun >= 1e10:
        f = (lambda z: nll(z)[0]) if jac is True else nll
        res2 = minimize(
            f,
            res.x,
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000, "maxfev": 6000},
        )
        if res2.fun <= res.fun:
            res2.success = bool(res2.success)
            return res2
    return res


def fit_bgnbd(
    summary: pd.DataFrame,
    *,
    unit: str = "days",
    weights: Any = None,
    x0: tuple[float, float, float, float] | None = None,
) -> BGNBDFit:
    """Maximum-likelihood BG/NBD fit on ``summary`` columns ``x``, ``t_x``, ``T``.

    Fitted on the distinct (x, t_x, T) rows with counts as weights; parameters optimised on
    the log scale. Raises :class:`ValueError` when the data cannot support a fit.
    """
    import numpy as np

    x = summary["x"].to_numpy(dtype=float)
    t_x = summary["t_x"].to_numpy(dtype=float)
    T = summary["T"].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(t_x) & np.isfinite(T) & (x >= 0) & (t_x >= 0) & (T >= t_x)
    w_all = None if weights is None else np.asarray(weights, dtype=float)[ok]
    cols, w = _compress({"x": x[ok], "t_x": t_x[ok], "T": T[ok]}, w_all)
    n = float(w.sum())
    if n < 2 or not (cols["x"] > 0).any():
        raise ValueError("too few customers with repeat purchases to fit BG/NBD")
    if not (cols["T"] > 0).any():
        raise ValueError("all customers bought first on the as-of day: no observation time")
    data = _BGData(cols["x"], cols["t_x"], cols["T"], w)
    scale = max(float(np.average(cols["T"], weights=w)), 1e-6)
    start = np.log(np.array(x0 if x0 else (1.0, scale, 1.0, 1.0)))
    bounds = [(-12.0, 12.0)] * 4
    sub = _subsample(w)
    if sub is not None and x0 is None:  # warm start from a fit on a weighted sample
        i, sw = sub
        small = _BGData(cols["x"][i], cols["t_x"][i], cols["T"][i], sw)
        start = _minimize(small.nll_and_grad, start, bounds, jac=True).x
    best = _minimize(data.nll_and_grad, start, bounds, jac=True)
    r, alpha, a, b = np.exp(best.x)
    if not np.all(np.isfinite([r, alpha, a, b])):
        raise ValueError("the BG/NBD fit did not converge to finite parameters")
    return BGNBDFit(
        float(r),
        float(alpha),
        float(a),
        float(b),
        float(-best.fun * n),
        int(round(n)),
        unit,
        bool(best.success),
    )


def p_alive(fit: BGNBDFit, x: Any, t_x: Any, T: Any) -> np.ndarray:
    """P(alive | x, t_x, T): 1 for x = 0."""
    import numpy as np

    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        log_ratio = (fit.r + x) * (np.log(fit.alpha + T) - np.log(fit.alpha + t_x))
        term = np.where(
            x > 0, np.log(fit.a) - np.log(np.maximum(fit.b + x - 1, 1e-300)) + log_ratio, -np.inf
        )
        return 1.0 / (1.0 + np.exp(term))


def predict_purchases(fit: BGNBDFit, t: float, x: Any, t_x: Any, T: Any) -> np.ndarray:
    """E[purchases in (T, T + t] | x, t_x, T] (eq. 10 of Fader, Hardie & Lee 2005)."""
    import numpy as np
    from scipy.special import hyp2f1

    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    # for a < 1 both (a+b+x-1)/(a-1) and the bracket are negative: the product is positive
    z = t / (alpha + T + t)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        head = (a + b + x - 1) / (a - 1)
        body = 1 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
        num = head * body
        den = 1 + np.where(
            x > 0,
            (a / (b + x - 1)) * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x))),
            0.0,
        )
    return num / den


# --------------------------------------------------------------------------- Gamma-Gamma
def gamma_gamma_loglik(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-row Gamma-Gamma log-likelihood of the mean spend ``m`` of ``x`` repeat purchases."""
    import numpy as np
    from scipy.special import gammaln

    p, q, v = params
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


def fit_gamma_gamma(
    summary: pd.DataFrame, *, value_col: str = "monetary_value", weights: Any = None
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma fit on customers with x ≥ 1 and a positive average
    repeat value; the others are listed in ``excluded``."""
    import numpy as np

    x = summary["x"].to_numpy(dtype=float)
    m = summary[value_col].to_numpy(dtype=float)
    use = np.isfinite(x) & np.isfinite(m) & (x > 0) & (m > 0)
    excluded = list(summary.index[~use])
    w_all = None if weights is None else np.asarray(weights, dtype=float)[use]
    cols, w = _compress({"x": x[use], "m": m[use]}, w_all)
    n = float(w.sum())
    if n < 3:
        raise ValueError("too few repeat buyers with positive spend to fit Gamma-Gamma")
    nll = _gg_objective(cols["x"], cols["m"], w)
    mbar = float(np.average(cols["m"], weights=w))
    start = np.log(np.array([1.0, 1.0, max(mbar, 1e-6)]))
    bounds = [(-12.0, 15.0)] * 3
    sub = _subsample(w)
    if sub is not None:  # warm start from a fit on a weighted sample
        i, sw = sub
        start = _minimize(_gg_objective(cols["x"][i], cols["m"][i], sw), start, bounds, jac=True).x
    best = _minimize(nll, start, bounds, jac=True)
    p, q, v = np.exp(best.x)
    if not np.all(np.isfinite([p, q, v])):
        raise ValueError("the Gamma-Gamma fit did not converge to finite parameters")
    return GammaGammaFit(
        float(p),
        float(q),
        float(v),
        float(-best.fun * n),
        int(round(n)),
        bool(best.success),
        excluded,
    )


def expected_spend(fit: GammaGammaFit, x: Any, m: Any) -> np.ndarray:
    """E[mean spend | x, m]: a weighted mix of the population mean and the customer's own
    average; the population mean for x = 0 or customers outside the spend model."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    m = np.asarray(m, dtype=float)
    use = np.isfinite(m) & (x > 0) & (m > 0)
    xs = np.where(use, x, 0.0)
    ms = np.where(use, m, 0.0)
    px = fit.p * xs
    return (fit.q - 1) / (px + fit.q - 1) * (fit.p * fit.v / (fit.q - 1)) + px / (
        px + fit.q - 1
    ) * ms


# --------------------------------------------------------------------------- LTV
@dataclass
class LTVInfo:
    """What the LTV step did: fitted models, or why it fell back to historical value."""

    bgnbd: BGNBDFit | None = None
    gamma_gamma: GammaGammaFit | None = None
    bgnbd_reason: str | None = None
    gamma_gamma_reason: str | None = None
    horizon_days: int = 365
    unit: str = "days"
    churn_level: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "horizon_days": self.horizon_days,
            "unit": self.unit,
            "churn_p_alive_below": self.churn_level,
        }
        out["bgnbd"] = (
            self.bgnbd.to_dict() if self.bgnbd else {"fitted": False, "reason": self.bgnbd_reason}
        )
        out["gamma_gamma"] = (
            self.gamma_gamma.to_dict()
            if self.gamma_gamma
            else {"fitted": False, "reason": self.gamma_gamma_reason}
        )
        return out


def _sane(fit: BGNBDFit) -> str | None:
    """Reason to distrust a fit, or None. Large a and b together are a legitimate limit (every
    customer has the same dropout probability a/(a+b)); r or alpha at the edge are not."""
    vals = {"r": fit.r, "alpha": fit.alpha}
    bad = [k for k, v in vals.items() if not (1e-5 < v < 1e5)]
    if bad:
        return f"BG/NBD parameters out of a sensible range ({', '.join(bad)}); the data do not identify the model"
    return None


def fit_ltv(
    metrics: pd.DataFrame,
    *,
    horizon_days: int | None = None,
    unit: str | None = None,
    churn_level: float | None = None,
    min_customers: int | None = None,
    min_repeat: int | None = None,
) -> tuple[pd.DataFrame, LTVInfo]:
    """LTV columns for the metrics frame of :func:`custtool.metrics.customer_metrics`.

    Returns (``historical_value``, ``p_alive``, ``predicted_purchases``, ``predicted_value``,
    ``ltv`` = historical + predicted, ``churn_risk``) and an :class:`LTVInfo`. When a model
    cannot be fitted the reason is recorded, the predictions are NaN and ``ltv`` falls back
    to the historical value; ``churn_risk`` then falls back to "no purchase for the lost
    period" (``lifecycle`` == 流失 when present). Arguments left out come from the ``ltv:``
    section of ``rules/segments.yaml``.
    """
    import numpy as np
    import pandas as pd

    from custtool.config import segment_settings
    from custtool.dates import parse_days

    shipped = segment_settings()["ltv"]
    horizon_days = (
        parse_days(shipped["horizon"], "ltv horizon") if horizon_days is None else horizon_days
    )
    unit = unit or shipped["unit"]
    churn_level = float(shipped["churn_p_alive"] if churn_level is None else churn_level)
    min_customers = int(shipped["min_customers"] if min_customers is None else min_customers)
    min_repeat = int(shipped["min_repeat"] if min_repeat is None else min_repeat)
    scale = _unit_days(unit)
    info = LTVInfo(horizon_days=int(horizon_days), unit=unit, churn_level=float(churn_level))
    has = metrics["first_order"].notna().to_numpy()
    x = metrics["bg_x"].to_numpy(dtype=float)
    t_x = metrics["bg_t_x"].to_numpy(dtype=float, na_value=np.nan) / scale
    T = metrics["bg_T"].to_numpy(dtype=float, na_value=np.nan) / scale
    zbar = metrics["bg_repeat_avg"].to_numpy(dtype=float, na_value=np.nan)
    hist = metrics["historical_value"].to_numpy(dtype=float)
    out = pd.DataFrame(index=metrics.index)
    out["historical_value"] = hist
    n_buyers = int(has.sum())
    n_repeat = int((x[has] > 0).sum())
    bg: BGNBDFit | None = None
    if n_buyers < min_customers:
        info.bgnbd_reason = f"only {n_buyers} customers with orders (need {min_customers})"
    elif n_repeat < min_repeat:
        info.bgnbd_reason = (
            f"only {n_repeat} customers with repeat purchase days (need {min_repeat})"
        )
    else:
        summ = pd.DataFrame({"x": x[has], "t_x": t_x[has], "T": T[has]})
        try:
            bg = fit_bgnbd(summ, unit=unit)
            info.bgnbd_reason = _sane(bg)
            if info.bgnbd_reason:
                bg = None
        except ValueError as exc:
            info.bgnbd_reason = str(exc)
    info.bgnbd = bg
    gg: GammaGammaFit | None = None
    if n_repeat < max(min_repeat, 3):
        info.gamma_gamma_reason = f"only {n_repeat} repeat buyers (need {max(min_repeat, 3)})"
    else:
        summ = pd.DataFrame({"x": x, "monetary_value": zbar}, index=metrics.index)[has]
        try:
            gg = fit_gamma_gamma(summ)
            if not gg.q > 1:
                info.gamma_gamma_reason = f"fitted q = {gg.q:.3f} ≤ 1: the mean spend is undefined"
                gg = None
        except ValueError as exc:
            info.gamma_gamma_reason = str(exc)
    info.gamma_gamma = gg
    if bg is not None:
        # evaluate on the distinct (x, t_x, T) rows (days are integers) and map back
        xd = np.nan_to_num(metrics["bg_x"].to_numpy(dtype=float)).astype(np.int64)
        txd = np.nan_to_num(metrics["bg_t_x"].to_numpy(dtype=float, na_value=np.nan)).astype(
            np.int64
        )
        Td = np.nan_to_num(metrics["bg_T"].to_numpy(dtype=float, na_value=np.nan)).astype(np.int64)
        k = int(max(Td.max(initial=0), txd.max(initial=0))) + 1
        codes, uniq = pd.factorize((xd * k + txd) * k + Td, sort=False)
        uniq = np.asarray(uniq)
        ux, utx, uT = uniq // (k * k), (uniq // k) % k, uniq % k
        pa = np.where(has, p_alive(bg, ux, utx / scale, uT / scale)[codes], np.nan)
        purchases = np.where(
            has,
            predict_purchases(bg, horizon_days / scale, ux, utx / scale, uT / scale)[codes],
            np.nan,
        )
        if gg is not None:
            spend = expected_spend(gg, x, zbar)
        else:  # the customer's own average order value, else the overall one
            aov = (
                metrics["aov"].to_numpy(dtype=float, na_value=np.nan)
                if "aov" in metrics
                else np.full(len(x), np.nan)
            )
            spend = np.where(
                np.isfinite(aov), aov, np.nanmean(aov) if np.isfinite(aov).any() else 0.0
            )
        value = np.round(purchases * spend, 2)
        if not (np.isfinite(purchases[has]).all() and np.isfinite(value[has]).all()):
            info.bgnbd_reason = "the fitted model gave non-finite predictions"
            info.bgnbd = None
            bg = None
    if bg is not None:
        out["p_alive"] = pa
        out["predicted_purchases"] = purchases
        out["predicted_value"] = np.where(has, value, 0.0)
        out["ltv"] = np.round(hist + out["predicted_value"].to_numpy(), 2)
        out["churn_risk"] = has & (np.nan_to_num(pa, nan=1.0) < churn_level)
    else:
        out["p_alive"] = np.nan
        out["predicted_purchases"] = np.nan
        out["predicted_value"] = np.nan
        out["ltv"] = hist
        lost = (
            metrics["lifecycle"].eq("流失").to_numpy()
            if "lifecycle" in metrics.columns
            else np.zeros(len(out), bool)
        )
        out["churn_risk"] = lost
    return out, info
