"""Input data for ``bench/kernels.py``: the simulator's ticks as numpy columns, and a
plausible synthetic column for any kernel input outside the canonical tick set."""

from __future__ import annotations

import math

import numpy as np

MORSEL = 65_536
"""Rows per batch: the simulator's batches here and the kernels' morsels in the benchmark."""


def make_data(rows: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Simulated ticks as float64/int64 numpy columns plus dense key ids and log returns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from tickflow.connectors.base import RunContext
    from tickflow.connectors.simulator import SimulatorConfig, SimulatorSource

    cols = ["timestamp", "symbol", "price", "best_bid", "best_ask", "best_bid_size",
            "best_ask_size"]
    src = SimulatorSource(SimulatorConfig(rows=rows, seed=seed), RunContext(job_name="bench"))
    table = pa.Table.from_batches(list(src.batches(cols, MORSEL)))
    sym = pc.dictionary_encode(table.column("symbol")).combine_chunks()
    data: dict[str, np.ndarray] = {
        "key": sym.indices.to_numpy().astype(np.int64),
        "ts": table.column("timestamp").cast(pa.int64()).to_numpy(),
    }
    for c in cols[2:]:
        data[c] = np.ascontiguousarray(table.column(c).to_numpy(), dtype=np.float64)
    data["log_return"] = grouped_log_return(data["key"], data["price"])
    SYMBOLS[:] = sym.dictionary.to_pylist()
    return data


SYMBOLS: list[str] = []
"""Symbol of each dense key id of the last ``make_data`` (cross-key kernels name two)."""


def grouped_log_return(key: np.ndarray, price: np.ndarray) -> np.ndarray:
    order = np.argsort(key, kind="stable")
    k = key[order]
    lp = np.log(price[order])
    r = np.empty_like(lp)
    r[0] = np.nan
    r[1:] = lp[1:] - lp[:-1]
    r[1:][k[1:] != k[:-1]] = np.nan
    out = np.empty_like(r)
    out[order] = r
    return out


def synthetic(name: str, data: dict[str, np.ndarray]) -> np.ndarray:
    """A plausible column for an input name outside the canonical tick set."""
    n = data["key"].shape[0]
    rng = np.random.default_rng(abs(hash(name)) % (2**32))
    price, bid, ask = data["price"], data["best_bid"], data["best_ask"]
    low = name.lower()
    if low in data:
        return data[low]
    if low in ("x", "value", "close", "spot", "spot_price", "price_a", "exec_price",
               "arrival_price", "arrival_mid", "reference", "mid"):
        if low == "exec_price":
            return np.where(rng.random(n) < 0.5, bid, ask)
        if low in ("arrival_price", "arrival_mid", "mid"):
            return (bid + ask) * 0.5
        return price
    if low in ("y", "price_b", "perp_price", "forward"):
        return price * (1.0 + 1e-4 * np.cumsum(rng.standard_normal(n)) / math.sqrt(n)
                        + 5e-4)
    if low == "high":
        return np.maximum(ask, price)
    if low == "low":
        return np.minimum(bid, price)
    if low == "open":
        return (bid + ask) * 0.5
    if low in ("equity", "nav"):
        return 1e6 * np.exp(np.cumsum(np.nan_to_num(data["log_return"])) / 14.0)
    if "funding" in low or low.startswith("rate") or low in ("r_dom", "r_for"):
        if low.startswith("rate_"):  # FX-like cross rates
            base = {"rate_ab": 1.1, "rate_bc": 150.0, "rate_ac": 165.0}.get(low, 1.0)
            return base * (1.0 + 1e-4 * rng.standard_normal(n))
        if "apr" in low:
            return 0.1 + 0.02 * rng.standard_normal(n)
        return 1e-4 + 5e-5 * rng.standard_normal(n)
    if low in ("volatility", "vol", "sigma"):
        return 0.5 + 0.05 * rng.random(n)
    if low == "side":
        return np.where(rng.random(n) < 0.5, -1.0, 1.0)
    if "size" in low or low in ("volume", "qty", "quantity", "open_interest"):
        return rng.lognormal(2.0, 1.0, n) * (1e5 if low == "open_interest" else 1.0)
    if low == "position":
        return np.round(rng.standard_normal(n) * 10.0)
    if "hours" in low:
        return 8.0 * rng.random(n)
    if "basis" in low:
        return 0.05 + 0.01 * rng.standard_normal(n)
    return rng.standard_normal(n)
