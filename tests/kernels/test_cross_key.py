"""hayashi_yoshida_cov / _corr against a brute-force loop over interval pairs (KERNELS.md),
and the executor's cross-key stage (unsharded, global key ids, between sharded steps)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import interleaved_keys, irregular_ts
from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import (
    assert_split_invariant,
    assert_state_roundtrip,
    run_kernel,
    run_pipeline,
)

US = 1_000_000
PAIR = {"a": "BTC", "b": "ETH"}


def make_data(n: int = 1200, seed: int = 17) -> dict[str, np.ndarray]:
    """Four interleaved keys, ~3% NaN returns, repeated stamps (10%), about 19 rows of a key
    per 30 s, so 60 s rings grow past their initial 16 intervals."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    common = rng.normal(0.0, 0.001, n)
    r = 0.7 * common + rng.normal(0.0, 0.001, n)
    r[rng.random(n) < 0.03] = np.nan
    return {"keys": keys, "log_return": r, "ts": irregular_ts(rng, n)}


DATA = make_data()


def hy_reference(keys, ts, r, a, b, span_us, corr=False) -> np.ndarray:
    """From the definition: every pair of overlapping intervals in the window, by brute force.

    A key's interval runs from its previous valid row's time to this row's time; rows at the
    same time share the interval; the first valid row only marks a start.
    """
    out = np.full(len(keys), np.nan)
    intervals: dict[str, list[tuple[int, int, float]]] = {a: [], b: []}
    last: dict[str, int] = {}
    start: dict[str, int] = {}
    for i, (k, t, v) in enumerate(zip(keys, ts, r, strict=True)):
        if k not in intervals or math.isnan(v):
            continue
        if k not in last:
            last[k] = t
        elif t > last[k]:
            intervals[k].append((last[k], t, v))
            start[k], last[k] = last[k], t
        elif k in start:
            intervals[k].append((start[k], last[k], v))
        win_a = [x for x in intervals[a] if t - span_us < x[1] <= t]
        win_b = [x for x in intervals[b] if t - span_us < x[1] <= t]
        if not win_a or not win_b:
            continue
        (sa, ea, ra), (sb, eb, rb) = np.array(win_a).T, np.array(win_b).T
        overlap = np.maximum(sa[:, None], sb[None, :]) < np.minimum(ea[:, None], eb[None, :])
        cov = float(np.sum(np.outer(ra, rb)[overlap]))
        if corr:
            rv_a, rv_b = float(np.sum(ra * ra)), float(np.sum(rb * rb))
            cov = cov / math.sqrt(rv_a * rv_b) if rv_a > 0 and rv_b > 0 else np.nan
        out[i] = cov
    return out


def hy(name: str, data: dict, **params) -> np.ndarray:
    out = run_kernel(name, {"log_return": data["log_return"]}, keys=data["keys"],
                     ts=data["ts"], params={**PAIR, **params})
    return next(iter(out.values()))


@pytest.mark.parametrize("name", ["hayashi_yoshida_cov", "hayashi_yoshida_corr"])
@pytest.mark.parametrize("window", ["60s", "5s", "500ms"])
def test_matches_brute_force_over_interval_pairs(name: str, window: str) -> None:
    span = {"60s": 60 * US, "5s": 5 * US, "500ms": US // 2}[window]
    expected = hy_reference(DATA["keys"], DATA["ts"], DATA["log_return"], "BTC", "ETH", span,
                            corr=name.endswith("corr"))
    got = hy(name, DATA, window=window)
    assert np.isfinite(expected).sum() > 150
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


def test_hand_computed_pair() -> None:
    """a: first row at 0, 0.01 on (0, 2]; b: first row at 1, 0.02 on (1, 3]: they overlap."""
    data = {"keys": np.array(["BTC", "ETH", "BTC", "ETH", "SOL"]),
            "ts": np.array([0, 1, 2, 3, 4]) * US,
            "log_return": np.array([0.5, 0.7, 0.01, 0.02, 0.3])}
    got = hy("hayashi_yoshida_cov", data)
    np.testing.assert_allclose(got, [np.nan, np.nan, np.nan, 0.0002, np.nan])


def test_synchronous_ticks_give_realized_covariance_and_correlation() -> None:
    rng = np.random.default_rng(3)
    ra, rb = rng.normal(0, 0.01, 50), rng.normal(0, 0.01, 50)
    keys = np.tile(["BTC", "ETH"], 50)
    data = {"keys": keys, "ts": np.repeat(np.arange(50), 2) * US,
            "log_return": np.ravel(np.column_stack([ra, rb]))}
    cov = hy("hayashi_yoshida_cov", data, window="1h")
    corr = hy("hayashi_yoshida_corr", data, window="1h")
    # the first row of each key only marks a start; intervals 1..49 coincide pairwise
    assert cov[-1] == pytest.approx(np.dot(ra[1:], rb[1:]), rel=1e-12)
    assert corr[-1] == pytest.approx(np.dot(ra[1:], rb[1:]) / math.sqrt(
        np.dot(ra[1:], ra[1:]) * np.dot(rb[1:], rb[1:])), rel=1e-12)
    same = dict(data, log_return=np.repeat(ra, 2))
    assert hy("hayashi_yoshida_corr", same, window="1h")[-1] == pytest.approx(1.0, rel=1e-12)


def test_one_symbol_only_or_unknown_symbol_is_all_nan() -> None:
    only_a = {k: v[DATA["keys"] != "ETH"] for k, v in DATA.items()}
    assert np.isnan(hy("hayashi_yoshida_cov", only_a)).all()
    out = run_kernel("hayashi_yoshida_cov", {"log_return": DATA["log_return"]},
                     keys=DATA["keys"], ts=DATA["ts"], params={"a": "BTC", "b": "NOPE"})
    assert np.isnan(out["hy_cov"]).all()


def test_no_overlap_gives_zero_covariance_and_correlation() -> None:
    """a moves on (0, 1], b on (1, 2] and (2, 3]: all in the window, no pair overlaps
    (b's (1, 2] only touches a's (0, 1], which does not count)."""
    data = {"keys": np.array(["BTC", "BTC", "ETH", "ETH", "ETH"]),
            "ts": np.array([0, 1, 1, 2, 3]) * US,
            "log_return": np.array([0.5, 0.01, 0.5, 0.05, 0.02])}
    np.testing.assert_array_equal(hy("hayashi_yoshida_cov", data), [np.nan] * 3 + [0.0, 0.0])
    np.testing.assert_array_equal(hy("hayashi_yoshida_corr", data), [np.nan] * 3 + [0.0, 0.0])


def test_other_keys_and_nan_returns_output_nan_and_change_nothing() -> None:
    got = hy("hayashi_yoshida_cov", DATA)
    mine = np.isin(DATA["keys"], ["BTC", "ETH"])
    bad = np.isnan(DATA["log_return"])
    assert np.isnan(got[~mine | bad]).all()
    keep = mine & ~bad
    without = hy("hayashi_yoshida_cov", {k: v[keep] for k, v in DATA.items()})
    np.testing.assert_array_equal(got[keep], without)


def test_window_evicts_pairs_with_their_earlier_interval() -> None:
    """After a long gap the window holds only new intervals: old pairs leave with them."""
    data = {"keys": np.array(["BTC", "ETH", "BTC", "ETH", "BTC", "ETH", "BTC", "ETH"]),
            "ts": np.array([0, 0, 1, 1, 100, 100, 101, 101]) * US,
            "log_return": np.array([0.5, 0.5, 0.1, 0.1, 0.01, 0.02, 0.03, 0.04])}
    got = hy("hayashi_yoshida_cov", data, window="10s")
    # at 100 the (0, 1] intervals have left, with their pair; (1, 100] are the only ones
    np.testing.assert_allclose(got, [np.nan, np.nan, np.nan, 0.01, np.nan, 0.0002, 0.0002,
                                     0.0002 + 0.0012], rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, len(DATA["keys"]) - 1), max_size=6),
       st.sampled_from(["hayashi_yoshida_cov", "hayashi_yoshida_corr"]))
def test_split_invariant(splits: list[int], name: str) -> None:
    assert_split_invariant(name, {"log_return": DATA["log_return"]}, splits=splits,
                           keys=DATA["keys"], ts=DATA["ts"], params={**PAIR, "window": "60s"})


@pytest.mark.parametrize("at", [1, 7, 300, 1100])
def test_state_roundtrip(at: int) -> None:
    assert_state_roundtrip("hayashi_yoshida_corr", {"log_return": DATA["log_return"]}, at=at,
                           keys=DATA["keys"], ts=DATA["ts"], params={**PAIR, "window": "60s"})


def test_params_are_checked() -> None:
    params = KERNELS.get("hayashi_yoshida_cov").params
    assert params(a="X", b="Y").window == "60s"
    with pytest.raises(ValidationError, match="two different keys"):
        params(a="X", b="X")
    with pytest.raises(ValidationError):
        params(a="X", b="Y", window=20)  # time only
    with pytest.raises(ValidationError):
        params(a="X")
    assert KERNELS.get("hayashi_yoshida_corr").extra["cross_key"] == ("a", "b")


# --------------------------------------------------------------------------- the executor


def pair_job(tmp_path: Path) -> object:
    text = """\
name: pair
mode: research
sources:
  - {kind: simulator, rows: 5000, symbols: 4, seed: 5, ticks_per_second: 10}
steps:
  - kernel: log_returns
  - kernel: hayashi_yoshida_corr
    params: {a: BTC-USD, b: ETH-USD, window: 30s}
  - id: smooth
    kernel: ewma
    params: {alpha: 0.5}
    input: hy_corr
    output: hy_corr_ewma
signals:
  decoupled: crosses_below(hy_corr, 0.2)
"""
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return compile_job(load_job(path))



def test_executor_runs_cross_key_steps_on_whole_batches(tmp_path: Path) -> None:
    job = pair_job(tmp_path)
    whole = run_pipeline(job, 1, 100_000)
    keys = whole.column("symbol").to_numpy(zero_copy_only=False)
    ts = whole.column("timestamp").cast(pa.int64()).to_numpy()
    r = whole.column("log_return").to_numpy(zero_copy_only=False)
    got = whole.column("hy_corr").to_numpy(zero_copy_only=False)
    expected = hy_reference(keys, ts, r, "BTC-USD", "ETH-USD", 30 * US, corr=True)
    assert np.isfinite(expected).sum() > 1000
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)
    flags = whole.column("decoupled").to_numpy()
    assert flags.sum() > 0
    for workers, morsel in [(2, 777), (3, 1500)]:
        other = run_pipeline(job, workers, morsel)
        for col in ("hy_corr", "hy_corr_ewma", "decoupled"):
            np.testing.assert_array_equal(other.column(col).to_numpy(zero_copy_only=False),
                                          whole.column(col).to_numpy(zero_copy_only=False),
                                          err_msg=f"{col} with {workers} workers")
