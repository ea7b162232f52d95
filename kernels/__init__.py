"""Built-in streaming kernels, known by name and imported when a job first names one.

Each kernel registers itself with its ``@kernel`` decorator beside its code; that stays the
source of truth. ``BUILTIN_KERNELS`` below only says which module holds which name, so that a
job loads the kernel families it uses and no others (about 0.1 s less start-up for every run
and every Dask worker). Listing the registry (``run-job kernels``, ``run-job docs``) imports
them all. ``tests/kernels/test_kernel_index.py`` checks this table against the decorators.

numba's on-disk cache (``cache=True``) checks only the file of the function it caches, not the
helpers it inlines from other files (``kernels/window.py``): an edited helper would leave stale
machine code in use. So the cache lives in a directory named by a hash of every kernel source,
and any change to any of them starts a fresh cache. ``NUMBA_CACHE_DIR`` still wins if set.
"""

import hashlib
import os
from importlib import import_module
from pathlib import Path

import numba

from tickflow.engine.registry import KERNELS


def _cache_dir() -> str:
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    digest.update(numba.__version__.encode())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return str(root / "tickflow" / "numba" / digest.hexdigest()[:16])


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = _cache_dir()

# module (under tickflow.kernels) -> the kernels its decorators register. A family may span
# modules (their kernels name it, e.g. trade_flow's are in the "liquidity" family).
BUILTIN_KERNELS: dict[str, tuple[str, ...]] = {
    "averages": ("ema", "ewma", "rolling_zscore", "sma"),
    "extremes": ("donchian_channel", "rolling_max", "rolling_min"),
    "returns": ("diff", "lag", "log_returns", "pnl", "simple_returns"),
    "volatility": ("bipower_var", "realized_var", "riskmetrics_vol", "rolling_std",
                   "welford_mean_var"),
    "medrv": ("medrv",),
    "higher_moments": ("cornish_fisher_var", "rolling_kurt", "rolling_skew"),
    "autocorrelation": ("autocorr",),
    "risk": ("cusum", "historical_cvar", "historical_var"),
    "microstructure": ("l1_imbalance", "microprice", "midprice", "ofi", "quoted_spread"),
    "indicators": ("bollinger_bands", "macd", "rsi"),
    "derivatives": ("basis_annualized", "carry_signal", "cash_and_carry_edge", "cip_basis",
                    "forward_points", "funding_apr", "funding_cost", "kalman_hedge_ratio",
                    "open_interest_delta", "pairs_spread", "perp_fair_price"),
    "execution": ("arrival_price_impact", "implementation_shortfall", "triangular_arbitrage"),
    "guards": ("circuit_breaker", "fat_finger_guard", "price_band_guard",
               "stale_quote_detector", "throttle_check"),
    "statistics": ("drawdown", "kalman_1d", "outlier_flag_mad", "stochastic_osc"),
    "trade_flow": ("signed_volume", "vpin", "vwap"),
    "liquidity": ("amihud_illiquidity", "corwin_schultz_spread", "effective_spread",
                  "kyle_lambda", "roll_spread"),
    "pair_windows": ("ewcov", "rolling_beta", "rolling_corr"),
    "lead_lag": ("xcorr_leadlag",),
    "cross_key": ("hayashi_yoshida_corr", "hayashi_yoshida_cov"),
    "arbitrage": ("cross_venue_spread", "quote_time"),
}

for _module, _names in BUILTIN_KERNELS.items():
    for _name in _names:
        KERNELS.add_lazy(_name, f"{__name__}.{_module}")


def load_all() -> None:
    """Import every built-in kernel module (what listing the registry does too)."""
    for module in BUILTIN_KERNELS:
        import_module(f"{__name__}.{module}")
