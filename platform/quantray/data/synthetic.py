"""A simulated market whose generative process, and so whose best achievable Sharpe, is known.

See docs/synthetic.md. Daily simple returns of asset a on day t:

    r[t, a] = beta[a] * F[t] + load[a] * S[t, k(a)] + e[t, a]            (factor structure)
              + gamma[a] * F[t-1]                                        (lead-lag: followers trail the market)
              + kappa * vol[a] * tanh(momentum[t-1, a])                  (the planted slow signal)

F (market), S (sectors) and e (idiosyncratic) are GARCH(1,1) processes with Student-t shocks
(volatility clustering, fat tails); the market factor's drift and volatility switch with a hidden
three-state Markov regime. Volume rises with |return| and with the regime's stress.

The oracle knows the state at t (regime, GARCH variances, momentum, yesterday's market factor) and
holds w[t] ∝ Σ[t+1]^-1 μ[t+1], the mean-variance optimal portfolio for tomorrow, clipped to [-1, 1]
after a scale fixed on the burn-in period. Its Sharpe is the yardstick: "the model reached x% of it".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantray.data.panel import FIELDS, Oracle, Panel

ETF_NAMES: tuple[str, ...] = (
    "SPY", "QQQ", "IWM", "DIA", "EFA", "EEM", "XLF", "XLE", "XLK", "XLV",
    "XLI", "XLU", "XLP", "XLY", "XLB", "VTI", "RSP", "TLT", "GLD", "XLRE",
)
# Small caps, foreign markets and energy follow the US market with a day's delay.
LAGGING: frozenset[str] = frozenset({"IWM", "EFA", "EEM", "XLE", "RSP"})
TRADING_DAYS = 252
START_DATE = np.datetime64("2010-01-04")
BURN_IN = 300


@dataclass(frozen=True)
class MarketParams:
    """The constants of the generative process (documented in docs/synthetic.md)."""

    n_sectors: int = 3
    market_vol: float = 0.010  # daily, unconditional
    sector_vol: float = 0.005
    idio_vol: float = 0.008
    garch_alpha: float = 0.08
    garch_beta: float = 0.90
    t_dof: float = 5.0
    # regimes: 0 stressed, 1 normal, 2 calm-bull
    regime_drift: tuple[float, float, float] = (-0.0012, 0.0003, 0.0007)
    regime_vol: tuple[float, float, float] = (2.0, 1.0, 0.75)
    regime_stay: tuple[float, float, float] = (0.97, 0.985, 0.985)
    lag_gamma: float = 0.05  # weight of yesterday's market factor in a follower's return
    signal_kappa: float = 0.04  # planted signal, in units of the asset's volatility
    signal_halflife: float = 20.0  # days, of the momentum behind the planted signal
    volume_beta: float = 0.5  # log volume per unit of |return| / vol


# the synthetic news stream (synthetic_news): informed days carry one of these, the others filler
BULLISH: tuple[str, ...] = ("rally", "upgrade", "beat", "surge", "optimism")
BEARISH: tuple[str, ...] = ("selloff", "downgrade", "miss", "plunge", "fear")
FILLER: tuple[str, ...] = (
    "market", "shares", "traders", "session", "index", "fund", "analysts", "report", "week", "investors",
    "volume", "sector", "earnings", "policy", "rates", "bond", "yields", "outlook", "data", "futures",
)


def synthetic_news(dates: np.ndarray, closes: np.ndarray, *, seed: int = 0, informed: float = 0.3
                   ) -> tuple[np.ndarray, tuple[str, ...]]:
    """One headline a day for a panel, with a planted, known information content.

    The headline stamped on bar s is written after its close, so (rule `next_bar`) it reaches the
    decision at bar s+1, whose position earns the return from close s+1 to close s+2. On a share
    `informed` of days the headline carries a bullish word when the equal-weight market return
    over (s+1, s+2] is positive and a bearish one otherwise: a model that reads the news knows the
    market's next sign on those days, and nothing else; every other word is filler drawn at
    random. Deterministic for `seed`; independent of the panel's own draws. Returns (stamps
    [T], texts [T])."""
    rng = np.random.default_rng((seed, 7919))
    T = len(dates)
    with np.errstate(divide="ignore", invalid="ignore"):
        market = np.nanmean(closes[1:] / closes[:-1] - 1.0, axis=1)  # market[i]: close i -> i+1
    texts = []
    for s in range(T):
        words = list(rng.choice(FILLER, size=6))
        known = s + 2 < T and np.isfinite(market[s + 1])
        if rng.random() < informed and known:
            words.insert(int(rng.integers(0, len(words) + 1)),
                         str(rng.choice(BULLISH if market[s + 1] > 0 else BEARISH)))
        texts.append(" ".join(words))
    return np.asarray(dates, dtype="datetime64[D]"), tuple(texts)


def default_names(n_assets: int) -> tuple[str, ...]:
    extra = tuple(f"SYN{i:03d}" for i in range(len(ETF_NAMES), n_assets))
    return (ETF_NAMES + extra)[:n_assets]


def simulate(seed: int = 0, assets: int = 8, days: int = 1500,
             params: MarketParams = MarketParams()) -> Panel:
    """Simulate `days` business days of OHLCV for `assets` assets; deterministic for `seed`."""
    names = default_names(assets)
    rng, structure, path = _start(seed, assets, days, params)
    oracle = _oracle(path, structure, params)
    closes, bars = _bars(rng, path, structure, params)
    keep = slice(BURN_IN, BURN_IN + days)
    values = np.stack([bars["open"], bars["high"], bars["low"], closes, bars["volume"]], axis=-1)[keep]
    dates = np.busday_offset(START_DATE, np.arange(days), roll="forward")
    positions = oracle.positions[keep]
    next_return = closes[keep][1:] / closes[keep][:-1] - 1.0
    pnl = (positions[:-1] * next_return).sum(axis=1)
    sharpe = float(pnl.mean() / pnl.std() * np.sqrt(TRADING_DAYS)) if pnl.std() > 0 else 0.0
    return Panel(
        dates=dates.astype("datetime64[D]"), assets=names, fields=FIELDS, values=values,
        mask=np.ones((days, assets), dtype=bool),
        oracle=Oracle(positions, sharpe, oracle.expected_return[keep]),
        origins=tuple(f"synthetic:seed={seed}" for _ in names),
    )


def expected_return_parts(seed: int = 0, assets: int = 8, days: int = 1500,
                          params: MarketParams = MarketParams()) -> dict[str, np.ndarray]:
    """The oracle's expected return of `simulate` with the same arguments, in its three parts
    ([days, A] each, summing to `Oracle.expected_return`): `regime` (β times the drift expected
    of tomorrow's regime: the market's direction), `lead_lag` (γ times today's market factor) and
    `momentum` (the planted signal). Which part a model misses says what it failed to learn."""
    _, structure, path = _start(seed, assets, days, params)
    return {name: part[BURN_IN:] for name, part in _mean_parts(path, structure, params).items()}


def _start(seed: int, assets: int, days: int, params: MarketParams
           ) -> tuple[np.random.Generator, _Structure, _Path]:
    """The structure and the latent path of a seed, and the generator the bars continue from."""
    rng = np.random.default_rng(seed)
    structure = _draw_structure(rng, default_names(assets), params)
    return rng, structure, _simulate_returns(rng, structure, BURN_IN + days, params)


@dataclass(frozen=True)
class _Structure:
    beta: np.ndarray  # [A] market loadings
    sector: np.ndarray  # [A] sector index
    load: np.ndarray  # [A] sector loadings
    gamma: np.ndarray  # [A] lead-lag weights
    vol: np.ndarray  # [A] unconditional daily volatility of each asset
    log_volume: np.ndarray  # [A] mean log volume


def _draw_structure(rng: np.random.Generator, names: tuple[str, ...], p: MarketParams) -> _Structure:
    A = len(names)
    beta = rng.uniform(0.7, 1.3, A)
    beta[0] = 1.0  # the first asset (SPY) is the market
    sector = np.arange(A) % p.n_sectors
    load = rng.uniform(0.4, 1.0, A)
    load[0] = 0.0
    gamma = np.array([p.lag_gamma if (n in LAGGING or (n.startswith("SYN") and i % 4 == 2)) else 0.0
                      for i, n in enumerate(names)])
    vol = np.sqrt((beta * p.market_vol) ** 2 + (load * p.sector_vol) ** 2 + p.idio_vol ** 2)
    return _Structure(beta, sector, load, gamma, vol, rng.uniform(13.0, 17.0, A))


@dataclass(frozen=True)
class _Path:
    returns: np.ndarray  # [N, A] simple returns r[t]
    market: np.ndarray  # [N] market factor return F[t]
    regime: np.ndarray  # [N] regime of day t
    h_next: np.ndarray  # [N, 1 + K + A] GARCH variances (unit scale) for day t+1, known at t
    momentum: np.ndarray  # [N, A] momentum after day t


def _transition_matrix(p: MarketParams) -> np.ndarray:
    stay = np.array(p.regime_stay)
    P = np.empty((3, 3))
    for i in range(3):
        P[i] = (1 - stay[i]) / 2
        P[i, i] = stay[i]
    return P


def _student_t(rng: np.random.Generator, dof: float, shape: tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance (fat tails, same volatility)."""
    return rng.standard_t(dof, size=shape) / np.sqrt(dof / (dof - 2))


def _simulate_returns(rng: np.random.Generator, s: _Structure, N: int, p: MarketParams) -> _Path:
    A, K = len(s.beta), p.n_sectors
    M = 1 + K + A  # GARCH components: market, sectors, idiosyncratic
    z = _student_t(rng, p.t_dof, (N, M))
    u_regime = rng.random(N)
    P = _transition_matrix(p)
    cum_P = np.cumsum(P, axis=1)
    drift, vmult = np.array(p.regime_drift), np.array(p.regime_vol)
    scale = np.concatenate([[p.market_vol], np.full(K, p.sector_vol), np.full(A, p.idio_vol)])
    omega = 1.0 - p.garch_alpha - p.garch_beta
    decay = 0.5 ** (1.0 / p.signal_halflife)
    mom_norm = np.sqrt((1 - decay ** 2))  # keeps momentum at unit variance for unit-variance input

    returns, market = np.empty((N, A)), np.empty(N)
    regime, h_next, momentum = np.empty(N, dtype=np.int64), np.empty((N, M)), np.empty((N, A))
    h, state, mom, prev_market = np.ones(M), 1, np.zeros(A), 0.0
    # The recursion is inherently sequential (GARCH, regime chain, momentum feed back into returns).
    for t in range(N):
        state = int(np.searchsorted(cum_P[state], u_regime[t] * cum_P[state, -1], side="right"))
        shock = np.sqrt(h) * z[t]
        F = drift[state] + vmult[state] * scale[0] * shock[0]
        S = scale[1:1 + K] * shock[1:1 + K]
        e = scale[1 + K:] * shock[1 + K:]
        mean = s.gamma * prev_market + p.signal_kappa * s.vol * np.tanh(mom)
        r = s.beta * F + s.load * S[s.sector] + e + mean
        h = omega + p.garch_alpha * shock ** 2 + p.garch_beta * h
        mom = decay * mom + mom_norm * (r / s.vol)
        returns[t], market[t], regime[t], h_next[t], momentum[t] = r, F, state, h, mom
        prev_market = F
    return _Path(np.maximum(returns, -0.5), market, regime, h_next, momentum)


@dataclass(frozen=True)
class _OracleRaw:
    positions: np.ndarray  # [N, A]
    expected_return: np.ndarray  # [N, A]


def _mean_parts(path: _Path, s: _Structure, p: MarketParams) -> dict[str, np.ndarray]:
    """E[r[t+1] | state at t] by term of the return equation, each [N, A]."""
    drift = _transition_matrix(p)[path.regime] @ np.array(p.regime_drift)
    return {
        "regime": s.beta[None] * drift[:, None],
        "lead_lag": s.gamma[None] * path.market[:, None],
        "momentum": p.signal_kappa * s.vol[None] * np.tanh(path.momentum),
    }


def _oracle(path: _Path, s: _Structure, p: MarketParams) -> _OracleRaw:
    """Mean-variance positions for day t+1 from the true conditional moments at the end of day t."""
    A, K = len(s.beta), p.n_sectors
    regime_next = _transition_matrix(p)[path.regime]  # [N, 3] distribution of tomorrow's regime
    drift = regime_next @ np.array(p.regime_drift)
    var_mult = regime_next @ np.array(p.regime_vol) ** 2
    parts = _mean_parts(path, s, p)
    mu = parts["regime"] + parts["lead_lag"] + parts["momentum"]
    var_market = var_mult * p.market_vol ** 2 * path.h_next[:, 0]
    var_sector = p.sector_vol ** 2 * path.h_next[:, 1:1 + K]  # [N, K]
    var_idio = p.idio_vol ** 2 * path.h_next[:, 1 + K:]  # [N, A]
    # Σ = β β' var_F + (sector block) + diag(idio), plus the market variance of the drift's uncertainty.
    drift_var = regime_next @ np.array(p.regime_drift) ** 2 - drift ** 2
    cov = (s.beta[None, :, None] * s.beta[None, None, :]) * (var_market + drift_var)[:, None, None]
    same = (s.sector[:, None] == s.sector[None, :]).astype(float)
    loads = s.load[:, None] * s.load[None, :] * same
    cov = cov + loads[None] * var_sector[:, s.sector][:, :, None]
    cov[:, np.arange(A), np.arange(A)] += var_idio
    raw = np.linalg.solve(cov, mu[:, :, None])[:, :, 0]
    # One scale for the whole path, set on the burn-in days, then clipped to the position bounds.
    scale = 1.0 / np.quantile(np.abs(raw[:BURN_IN]), 0.99)
    return _OracleRaw(np.clip(raw * scale, -1.0, 1.0), mu)


def _bars(rng: np.random.Generator, path: _Path, s: _Structure, p: MarketParams
          ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Closes from returns; opens, highs, lows and volumes consistent with them."""
    N, A = path.returns.shape
    start = 100.0 * np.exp(rng.normal(0.0, 0.5, A))
    log_ret = np.log1p(path.returns)
    closes = start * np.exp(np.cumsum(log_ret, axis=0))
    prev_close = np.vstack([start[None], closes[:-1]])
    # Part of each day's move happens overnight, the rest between open and close.
    overnight = 0.3 * log_ret + 0.2 * s.vol * rng.standard_normal((N, A))
    opens = prev_close * np.exp(overnight)
    # Intraday excursions scale with the day's market volatility (regime and GARCH state).
    h_market = np.concatenate([[1.0], path.h_next[:-1, 0]])  # the variance that drove day t
    day_vol = s.vol[None] * (np.array(p.regime_vol)[path.regime] * np.sqrt(h_market))[:, None]
    highs = np.maximum(opens, closes) * np.exp(np.abs(rng.normal(0.0, 0.5, (N, A))) * day_vol)
    lows = np.minimum(opens, closes) * np.exp(-np.abs(rng.normal(0.0, 0.5, (N, A))) * day_vol)
    stress = np.log(np.array(p.regime_vol))[path.regime][:, None]
    noise = _ar1(rng, (N, A), phi=0.7, sd=0.25)
    log_volume = s.log_volume + p.volume_beta * np.abs(path.returns) / s.vol + 0.5 * stress + noise
    return closes, {"open": opens, "high": highs, "low": lows, "volume": np.round(np.exp(log_volume))}


def _ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) along axis 0 (scipy-free: a short loop over days of a vectorized update)."""
    eps = rng.normal(0.0, sd * np.sqrt(1 - phi ** 2), shape)
    out = np.empty(shape)
    out[0] = rng.normal(0.0, sd, shape[1])
    for t in range(1, shape[0]):
        out[t] = phi * out[t - 1] + eps[t]
    return out
