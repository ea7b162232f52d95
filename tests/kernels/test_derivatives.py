"""derivatives kernels against plain Python loops written from KERNELS.md: funding_apr,
basis_annualized, cash_and_carry_edge, funding_cost, open_interest_delta, perp_fair_price,
forward_points, cip_basis, carry_signal, pairs_spread, kalman_hedge_ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import interleaved_keys, irregular_ts
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel

N = 2000
RTOL = 1e-12
ATOL = 1e-15
NAMES = ("funding_apr", "basis_annualized", "cash_and_carry_edge", "funding_cost",
         "open_interest_delta", "perp_fair_price", "forward_points", "cip_basis",
         "carry_signal", "pairs_spread", "kalman_hedge_ratio")


def walk(rng, n, start, sigma):
    return start * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))


def make_data(n: int = N, seed: int = 5) -> dict[str, np.ndarray]:
    """Interleaved keys (one seen once), every input column with ~3% NaN and a few zeros in
    the denominators, irregular timestamps."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    spot = walk(rng, n, 100.0, 0.002)
    cols = {
        "funding_rate": rng.normal(1e-4, 2e-4, n),
        "perp_price": spot * (1.0 + rng.normal(0.0005, 0.001, n)),
        "spot_price": spot,
        "basis_apr": rng.normal(0.05, 0.03, n),
        "funding_apr": rng.normal(0.08, 0.05, n),
        "position": rng.choice([-3.0, -1.0, 0.0, 0.5, 2.0], n),
        "price": spot,
        "open_interest": 1e6 + np.cumsum(rng.normal(0.0, 1e3, n)),
        "hours_to_funding": rng.uniform(0.0, 8.0, n),
        "spot": walk(rng, n, 1.1, 0.001),
        "r_dom": rng.normal(0.04, 0.01, n),
        "r_for": rng.normal(0.02, 0.01, n),
        "volatility": np.abs(rng.normal(0.1, 0.03, n)),
        "price_a": walk(rng, n, 200.0, 0.003),
        "price_b": walk(rng, n, 100.0, 0.003),
    }
    cols["forward"] = cols["spot"] * np.exp(0.02 + rng.normal(0.0, 0.002, n))
    clean = {c: v.copy() for c, v in cols.items()}
    for c, v in cols.items():
        if c != "price":  # "price" shares the spot_price array
            v[rng.random(n) < 0.03] = np.nan
            v[n // 2] = clean[c][n // 2]  # the key seen once has a valid row
    for c in ("spot_price", "spot", "price_b"):
        cols[c][rng.choice(n, 5, replace=False)] = 0.0
    cols["forward"][rng.choice(n, 3, replace=False)] = -1.0
    return {"keys": keys, "ts": irregular_ts(rng, n, repeated=0.0), **cols}


DATA = make_data()


def is_nan(*xs: float) -> bool:
    return any(math.isnan(x) for x in xs)


# --------------------------------------------------------------------------- references
# Each takes the per-row input values of one key, in order, and returns one tuple per row.


def ref_funding_apr(freq=8.0):
    def f(rows):
        return [(r * (24.0 / freq) * 365.0,) for (r,) in rows]
    return f


def ref_basis(t_days=90.0):
    def f(rows):
        return [(math.nan,) if is_nan(p, s) or s == 0 else ((p / s - 1.0) * 365.0 / t_days,)
                for p, s in rows]
    return f


def ref_carry_edge(fee=10.0):
    def f(rows):
        return [((b + fa) * 10_000.0 - 2.0 * fee,) for b, fa in rows]
    return f


def ref_funding_cost(rows):
    total = 0.0
    out = []
    for q, p, r in rows:
        if is_nan(q, p, r):
            out.append((math.nan, math.nan))
            continue
        c = q * p * r
        total += c
        out.append((c, total))
    return out


def ref_oi_delta(rows):
    prev = None
    out = []
    for (v,) in rows:
        if math.isnan(v):
            out.append((math.nan,))
            continue
        out.append((math.nan if prev is None else v - prev,))
        prev = v
    return out


def ref_perp_fair(freq=8.0):
    def f(rows):
        return [(s * (1.0 + r * h / freq),) for s, r, h in rows]
    return f


def ref_forward_points(t=1.0):
    def f(rows):
        return [(s * math.exp((rd - rf) * t) - s,) for s, rd, rf in rows]
    return f


def ref_cip(t=1.0):
    def f(rows):
        out = []
        for s, fw, rd, rf in rows:
            if is_nan(s, fw, rd, rf) or s == 0 or fw / s <= 0:
                out.append((math.nan,))
            else:
                out.append((math.log(fw / s) / t - (rd - rf),))
        return out
    return f


def ref_carry_signal(risk_adj=1.0):
    def f(rows):
        return [(rd - rf - risk_adj * v,) for rd, rf, v in rows]
    return f


def ref_pairs(beta):
    def f(rows):
        return [(a - beta * b,) for a, b in rows]
    return f


def ref_kalman(delta=1e-4, r=1e-3):
    """The docstring's recursion, a plain loop."""
    vw = delta / (1.0 - delta)

    def f(rows):
        beta = None
        p = 0.0
        out = []
        for y, x in rows:
            if is_nan(y, x) or (beta is None and x == 0):
                out.append((math.nan, math.nan))
                continue
            if beta is None:
                beta, p = y / x, 1.0
                out.append((beta, math.nan))
                continue
            p = p + vw
            e = y - beta * x
            q = x * x * p + r
            k = p * x / q
            beta = beta + k * e
            p = p - k * x * p
            out.append((beta, e))
        return out
    return f


CASES = [
    ("funding_apr", {}, ref_funding_apr()),
    ("funding_apr", {"funding_freq_hours": 1}, ref_funding_apr(1.0)),
    ("basis_annualized", {}, ref_basis()),
    ("basis_annualized", {"T_days": 30.5}, ref_basis(30.5)),
    ("cash_and_carry_edge", {}, ref_carry_edge()),
    ("cash_and_carry_edge", {"fee_bps": 2.5}, ref_carry_edge(2.5)),
    ("funding_cost", {}, ref_funding_cost),
    ("open_interest_delta", {}, ref_oi_delta),
    ("perp_fair_price", {}, ref_perp_fair()),
    ("perp_fair_price", {"funding_freq_hours": 4}, ref_perp_fair(4.0)),
    ("forward_points", {}, ref_forward_points()),
    ("forward_points", {"T_years": 0.25}, ref_forward_points(0.25)),
    ("cip_basis", {}, ref_cip()),
    ("cip_basis", {"T_years": 0.5}, ref_cip(0.5)),
    ("carry_signal", {}, ref_carry_signal()),
    ("carry_signal", {"risk_adj": 0.3}, ref_carry_signal(0.3)),
    ("pairs_spread", {"beta": 1.7}, ref_pairs(1.7)),
    ("kalman_hedge_ratio", {}, ref_kalman()),
    ("kalman_hedge_ratio", {"delta": 1e-2, "r": 0.5}, ref_kalman(1e-2, 0.5)),
]
IDS = [f"{c[0]}-{c[1]}" for c in CASES]
STATEFUL = ("funding_cost", "open_interest_delta", "kalman_hedge_ratio")


def inputs_of(name: str, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {c: data[c] for c in KERNELS.get(name).inputs}


def per_key(keys, cols: dict[str, np.ndarray], ref) -> list[np.ndarray]:
    """Apply ``ref`` to each key's rows in order; returns one array per output."""
    names = list(cols)
    n = len(keys)
    result: list[np.ndarray] | None = None
    for k in np.unique(keys):
        idx = np.flatnonzero(keys == k)
        rows = [tuple(float(cols[c][i]) for c in names) for i in idx]
        got = ref(rows)
        if result is None:
            result = [np.full(n, np.nan) for _ in got[0]]
        for j, i in enumerate(idx):
            for o, v in enumerate(got[j]):
                result[o][i] = v
    assert result is not None
    return result


def check(name, params, ref, data, keys, ts=None):
    cols = inputs_of(name, data)
    got = run_kernel(name, cols, keys=keys, ts=ts, params=params)
    expected = per_key(keys, cols, ref)
    assert list(got) == list(KERNELS.get(name).output_names(
        KERNELS.get(name).params(**params), list(cols)))
    for (col, values), exp in zip(got.items(), expected, strict=True):
        assert values.dtype == np.float64
        np.testing.assert_allclose(values, exp, rtol=RTOL, atol=ATOL, err_msg=col)
        assert not np.isinf(values).any(), col
    return got


@pytest.mark.parametrize(("name", "params", "ref"), CASES, ids=IDS)
def test_matches_reference_multi_key(name, params, ref):
    got = check(name, params, ref, DATA, DATA["keys"], DATA["ts"])
    any_nan = np.zeros(N, dtype=bool)
    for c in KERNELS.get(name).inputs:
        any_nan |= np.isnan(DATA[c])
    for values in got.values():
        assert np.isnan(values[any_nan]).all()
        assert np.isfinite(values).sum() > N // 2
    once = [v[DATA["keys"] == "ONCE"] for v in got.values()]
    assert all(v.shape == (1,) for v in once)
    if name == "open_interest_delta":
        assert np.isnan(once[0][0])  # the key seen once has no earlier row
    elif name == "kalman_hedge_ratio":
        assert once[0][0] == DATA["price_a"][N // 2] / DATA["price_b"][N // 2]
        assert np.isnan(once[1][0])
    else:
        assert np.isfinite(once[0][0])


@pytest.mark.parametrize(("name", "params", "ref"), CASES, ids=IDS)
def test_keys_interleaved_row_by_row(name, params, ref):
    n = 300
    keys = np.array(["A", "B", "C"] * (n // 3))
    data = {c: v[:n].copy() for c, v in DATA.items() if c not in ("keys", "ts")}
    data = {c: np.where(np.isnan(v), 1.0, v) for c, v in data.items()}
    check(name, params, ref, data, keys)


@pytest.mark.parametrize(("name", "params", "ref"), CASES, ids=IDS)
def test_single_row(name, params, ref):
    cols = {c: DATA[c][N // 2: N // 2 + 1] for c in KERNELS.get(name).inputs}
    got = run_kernel(name, cols, params=params)
    expected = ref([tuple(float(v[0]) for v in cols.values())])[0]
    for values, exp in zip(got.values(), expected, strict=True):
        assert values.shape == (1,)
        np.testing.assert_allclose(values, [exp], rtol=RTOL, atol=ATOL)


def test_known_values():
    assert run_kernel("funding_apr", {"funding_rate": [1e-4]})["funding_apr"][0] == \
        pytest.approx(0.1095, rel=1e-14)
    b = run_kernel("basis_annualized", {"perp_price": [101.0], "spot_price": [100.0]},
                   params={"T_days": 365})["basis_apr"]
    assert b[0] == pytest.approx(0.01, rel=1e-12)
    e = run_kernel("cash_and_carry_edge", {"basis_apr": [0.05, 0.05],
                                           "funding_apr": [0.01, np.nan]})["carry_edge_bps"]
    assert e[0] == pytest.approx(580.0, rel=1e-14)
    assert np.isnan(e[1])  # a NaN funding_apr is unknown, not 0
    fc = run_kernel("funding_cost", {"position": [2.0, 2.0], "price": [100.0, 110.0],
                                     "funding_rate": [0.001, -0.001]})
    np.testing.assert_allclose(fc["funding_cost"], [0.2, -0.22], rtol=1e-14)
    np.testing.assert_allclose(fc["funding_cost_cum"], [0.2, -0.02], rtol=1e-12)
    oi = run_kernel("open_interest_delta", {"open_interest": [1000.0, 1200.0, 1100.0]})
    np.testing.assert_array_equal(oi["oi_delta"], [np.nan, 200.0, -100.0])
    pf = run_kernel("perp_fair_price", {"spot_price": [100.0], "funding_rate": [0.001],
                                        "hours_to_funding": [4.0]})["perp_fair"]
    assert pf[0] == pytest.approx(100.05, rel=1e-14)
    fp = run_kernel("forward_points", {"spot": [1.1], "r_dom": [0.05], "r_for": [0.03]})
    assert fp["forward_points"][0] == pytest.approx(1.1 * math.expm1(0.02), rel=1e-12)
    cb = run_kernel("cip_basis", {"spot": [1.1], "forward": [1.1 * math.exp(0.02)],
                                  "r_dom": [0.05], "r_for": [0.03]})["cip_basis"]
    assert abs(cb[0]) < 1e-15
    cs = run_kernel("carry_signal", {"r_dom": [0.05], "r_for": [0.01], "volatility": [0.1]},
                    params={"risk_adj": 0.2})["carry_signal"]
    assert cs[0] == pytest.approx(0.02, rel=1e-12)
    ps = run_kernel("pairs_spread", {"price_a": [100.0], "price_b": [50.0]},
                    params={"beta": 1.5})["spread"]
    assert ps[0] == 25.0
    kh = run_kernel("kalman_hedge_ratio", {"price_a": [200.0, 202.0], "price_b": [100.0, 100.0]})
    assert kh["hedge_ratio"][0] == 2.0 and np.isnan(kh["spread"][0])
    assert kh["spread"][1] == pytest.approx(2.0, rel=1e-12)
    p = 1.0 + 1e-4 / (1 - 1e-4)
    assert kh["hedge_ratio"][1] == pytest.approx(2.0 + p * 100.0 / (1e4 * p + 1e-3) * 2.0,
                                                 rel=1e-14)


def test_zero_denominators_give_nan_not_inf():
    b = run_kernel("basis_annualized", {"perp_price": [100.0, 0.0], "spot_price": [0.0, 0.0]})
    assert np.isnan(b["basis_apr"]).all()
    c = run_kernel("cip_basis", {"spot": [0.0, 1.0, 1.0], "forward": [1.0, 0.0, -1.0],
                                 "r_dom": [0.0] * 3, "r_for": [0.0] * 3})["cip_basis"]
    assert np.isnan(c).all()
    # x = 0 cannot seed the slope; once seeded, x = 0 is a valid row with gain 0
    k = run_kernel("kalman_hedge_ratio", {"price_a": [5.0, 200.0, 7.0, 202.0],
                                          "price_b": [0.0, 100.0, 0.0, 100.0]})
    assert np.isnan(k["hedge_ratio"][0]) and np.isnan(k["spread"][0])
    assert k["hedge_ratio"][1] == 2.0
    assert k["hedge_ratio"][2] == 2.0 and k["spread"][2] == 7.0
    assert np.isfinite(k["hedge_ratio"][3])


def test_constant_prices():
    n = 200
    p = np.full(n, 123.0)
    oi = run_kernel("open_interest_delta", {"open_interest": p})["oi_delta"]
    assert np.isnan(oi[0]) and (oi[1:] == 0.0).all()
    b = run_kernel("basis_annualized", {"perp_price": p, "spot_price": p})["basis_apr"]
    assert (b == 0.0).all()
    k = run_kernel("kalman_hedge_ratio", {"price_a": 2.0 * p, "price_b": p})
    assert (k["hedge_ratio"] == 2.0).all()
    assert np.isnan(k["spread"][0]) and (k["spread"][1:] == 0.0).all()
    fc = run_kernel("funding_cost", {"position": np.ones(n), "price": p,
                                     "funding_rate": np.full(n, 1e-4)})
    np.testing.assert_allclose(fc["funding_cost_cum"], np.arange(1, n + 1) * 123.0 * 1e-4,
                               rtol=1e-12)


def test_kalman_tracks_a_drifting_ratio():
    rng = np.random.default_rng(3)
    n = 3000
    x = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    true_beta = 1.5 + np.linspace(0.0, 0.3, n)
    y = true_beta * x + rng.normal(0, 0.05, n)
    got = run_kernel("kalman_hedge_ratio", {"price_a": y, "price_b": x})["hedge_ratio"]
    assert np.abs(got[-500:] - true_beta[-500:]).max() < 0.01


@pytest.mark.parametrize("name", STATEFUL)
def test_nan_input_leaves_state_unchanged(name):
    cols = inputs_of(name, DATA)
    params = {}
    bad = np.zeros(N, dtype=bool)
    for v in cols.values():
        bad |= np.isnan(v)
    full = run_kernel(name, cols, keys=DATA["keys"], params=params)
    dropped = run_kernel(name, {c: v[~bad] for c, v in cols.items()}, keys=DATA["keys"][~bad],
                         params=params)
    for col, values in full.items():
        np.testing.assert_array_equal(values[~bad], dropped[col])
        assert np.isnan(values[bad]).all()


@pytest.mark.parametrize(("name", "bad"), [
    ("funding_apr", {"funding_freq_hours": 0}), ("funding_apr", {"funding_freq_hours": -8}),
    ("funding_apr", {"window": 3}), ("basis_annualized", {"T_days": 0}),
    ("basis_annualized", {"T_days": "long"}), ("cash_and_carry_edge", {"fee_bps": -1}),
    ("funding_cost", {"window": 3}), ("open_interest_delta", {"k": 1}),
    ("perp_fair_price", {"funding_freq_hours": 0}), ("forward_points", {"T_years": 0}),
    ("cip_basis", {"T_years": -1}), ("carry_signal", {"risk_adj": -0.5}),
    ("pairs_spread", {}), ("pairs_spread", {"beta": "x"}),
    ("pairs_spread", {"beta": float("nan")}), ("kalman_hedge_ratio", {"delta": 0}),
    ("kalman_hedge_ratio", {"delta": 1}), ("kalman_hedge_ratio", {"r": 0}),
    ("kalman_hedge_ratio", {"q": 1e-5}),
])
def test_params_rejected(name, bad):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(**bad)


def test_defaults_and_declarations():
    assert KERNELS.get("funding_apr").params().funding_freq_hours == 8
    assert KERNELS.get("basis_annualized").params().T_days == 90
    assert KERNELS.get("cash_and_carry_edge").params().fee_bps == 10
    assert KERNELS.get("cash_and_carry_edge").optional_inputs == ("funding_apr",)
    assert KERNELS.get("carry_signal").optional_inputs == ("volatility",)
    assert KERNELS.get("perp_fair_price").params().funding_freq_hours == 8
    assert KERNELS.get("forward_points").params().T_years == 1.0
    assert KERNELS.get("carry_signal").params().risk_adj == 1.0
    p = KERNELS.get("kalman_hedge_ratio").params()
    assert (p.delta, p.r) == (1e-4, 1e-3)


SPLIT_CASES = [(c[0], c[1]) for c in CASES]


@pytest.mark.parametrize(("name", "params"), SPLIT_CASES, ids=IDS)
@settings(max_examples=20, deadline=None)
@given(splits=st.lists(st.integers(1, N - 1), max_size=6))
def test_split_invariant(name, params, splits):
    assert_split_invariant(name, inputs_of(name, DATA), splits=splits, keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("at", [1, 9, N // 2, N - 1])
def test_state_roundtrip(name, at):
    assert_state_roundtrip(name, inputs_of(name, DATA), at=at, keys=DATA["keys"],
                           ts=DATA["ts"])


def test_kernels_are_documented_numba_dispatchers():
    for name in NAMES:
        d = KERNELS.get(name)
        assert d.doc
        assert d.family == "derivatives"
        assert hasattr(d.fn, "py_func")
