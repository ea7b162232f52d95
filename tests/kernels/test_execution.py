"""execution kernels against plain Python loops written from KERNELS.md:
implementation_shortfall, arrival_price_impact, triangular_arbitrage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import interleaved_keys
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, run_kernel

N = 2000
RTOL = 1e-12
NAMES = ("implementation_shortfall", "arrival_price_impact", "triangular_arbitrage")


def make_data(n: int = N, seed: int = 11) -> dict[str, np.ndarray]:
    """Interleaved keys (one seen once), ~3% NaN per column, a few zero denominators; the
    triangle rates sit near no-arbitrage with mispricings of about 30 bps (sd) either way."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    arrival = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    ab = 2.0 * np.exp(rng.normal(0, 0.01, n))
    bc = 3.0 * np.exp(rng.normal(0, 0.01, n))
    cols = {
        "exec_price": arrival * (1.0 + rng.normal(0.0, 0.001, n)),
        "arrival_price": arrival,
        "arrival_mid": arrival * (1.0 + rng.normal(0.0, 0.0002, n)),
        "side": rng.choice([-1.0, 1.0], n),
        "rate_ab": ab,
        "rate_bc": bc,
        "rate_ac": ab * bc * np.exp(rng.normal(0.0, 0.003, n)),
    }
    for c, v in cols.items():
        v[rng.random(n) < 0.03] = np.nan
        v[n // 2] = {"side": 1.0, "rate_ab": 2.0, "rate_bc": 3.0, "rate_ac": 5.94}.get(c, 100.0)
    for c in ("arrival_price", "arrival_mid", "rate_ac", "rate_ab"):
        v = cols[c]
        v[rng.choice(n, 4, replace=False)] = 0.0
        v[n // 2] = {"rate_ab": 2.0, "rate_ac": 5.94}.get(c, 100.0)
    return {"keys": keys, **cols}


DATA = make_data()


def ref_bps(rows):
    out = []
    for e, a, s in rows:
        if math.isnan(e) or math.isnan(a) or math.isnan(s) or a == 0:
            out.append(math.nan)
        else:
            out.append(s * (e - a) / a * 10_000.0)
    return out


def ref_tri(fee):
    def f(rows):
        edges, routes = [], []
        for ab, bc, ac in rows:
            if any(math.isnan(v) for v in (ab, bc, ac)) or ac == 0 or ab * bc == 0:
                edges.append(math.nan)
                routes.append(0)
                continue
            fwd = ab * bc / ac - 1.0
            rev = ac / (ab * bc) - 1.0
            edge = max(fwd, rev) * 10_000.0 - 3.0 * fee
            edges.append(edge)
            routes.append(0 if edge <= 0 else (1 if fwd > rev else 2))
        return edges, routes
    return f


def cols_of(name, data):
    return {c: data[c] for c in KERNELS.get(name).inputs}


def rows_of(cols):
    return list(zip(*[v.tolist() for v in cols.values()], strict=True))


@pytest.mark.parametrize(("name", "out"), [("implementation_shortfall", "is_bps"),
                                           ("arrival_price_impact", "arrival_impact_bps")])
def test_bps_matches_reference(name, out):
    cols = cols_of(name, DATA)
    got = run_kernel(name, cols, keys=DATA["keys"])
    assert list(got) == [out]
    assert got[out].dtype == np.float64
    expected = np.array(ref_bps(rows_of(cols)))
    np.testing.assert_allclose(got[out], expected, rtol=RTOL, atol=1e-12)
    assert not np.isinf(got[out]).any()
    assert np.isfinite(got[out]).sum() > N * 0.8
    assert got[out][DATA["keys"] == "ONCE"][0] == 0.0


@pytest.mark.parametrize("fee", [10.0, 0.0, 3.5])
def test_triangular_matches_reference(fee):
    cols = cols_of("triangular_arbitrage", DATA)
    got = run_kernel("triangular_arbitrage", cols, keys=DATA["keys"], params={"fee_bps": fee})
    assert list(got) == ["tri_edge_bps", "tri_route"]
    assert got["tri_edge_bps"].dtype == np.float64
    assert got["tri_route"].dtype == np.int8
    edges, routes = ref_tri(fee)(rows_of(cols))
    np.testing.assert_allclose(got["tri_edge_bps"], edges, rtol=RTOL, atol=1e-9)
    np.testing.assert_array_equal(got["tri_route"], routes)
    assert not np.isinf(got["tri_edge_bps"]).any()
    # both loops and "none" occur
    assert {0, 1, 2} <= set(got["tri_route"].tolist())
    once = DATA["keys"] == "ONCE"
    assert got["tri_route"][once][0] == (1 if fee < 101.0 / 3 else 0)


def test_known_values():
    one = {"exec_price": [100.5], "arrival_price": [100.0], "side": [1.0]}
    assert run_kernel("implementation_shortfall", one)["is_bps"][0] == pytest.approx(50.0)
    one["side"] = [-1.0]
    assert run_kernel("implementation_shortfall", one)["is_bps"][0] == pytest.approx(-50.0)
    imp = run_kernel("arrival_price_impact", {"exec_price": [99.9], "arrival_mid": [100.0],
                                              "side": [-1.0]})["arrival_impact_bps"]
    assert imp[0] == pytest.approx(10.0)
    t = run_kernel("triangular_arbitrage",
                   {"rate_ab": [2.0, 2.0, 2.0, 2.0], "rate_bc": [3.0, 3.0, 3.0, 3.0],
                    "rate_ac": [5.94, 6.06, 6.0, 5.99]})
    # fwd 101.01 bps; rev 100 bps; flat; fwd 16.69 bps, below 30 bps of fees
    np.testing.assert_allclose(t["tri_edge_bps"], [10_000 / 99 - 30, 70.0, -30.0,
                                                   (6 / 5.99 - 1) * 10_000 - 30], rtol=1e-12)
    np.testing.assert_array_equal(t["tri_route"], [1, 2, 0, 0])


def test_categories_are_declared():
    d = KERNELS.get("triangular_arbitrage")
    assert d.extra == {"categories": {"tri_route": ["none", "A>B>C>A", "A>C>B>A"]}}
    assert d.output_dtypes == (np.float64, np.int8)


def test_zero_and_nan_inputs():
    is_ = run_kernel("implementation_shortfall", {"exec_price": [1.0, np.nan, 1.0],
                                                  "arrival_price": [0.0, 1.0, 1.0],
                                                  "side": [1.0, 1.0, np.nan]})["is_bps"]
    assert np.isnan(is_).all()
    t = run_kernel("triangular_arbitrage", {"rate_ab": [2.0, 0.0, np.nan, 1e200],
                                            "rate_bc": [3.0, 3.0, 3.0, 1e200],
                                            "rate_ac": [0.0, 6.0, 6.0, 1.0]})
    assert np.isnan(t["tri_edge_bps"]).all()
    assert (t["tri_route"] == 0).all()


def test_single_row_and_constant_prices():
    n = 50
    same = np.full(n, 100.0)
    for name, out in [("implementation_shortfall", "is_bps"),
                      ("arrival_price_impact", "arrival_impact_bps")]:
        cols = {c: same for c in KERNELS.get(name).inputs if c != "side"}
        got = run_kernel(name, {**cols, "side": np.ones(n)})[out]
        assert (got == 0.0).all()
        got = run_kernel(name, {c: v[:1] for c, v in {**cols, "side": np.ones(n)}.items()})[out]
        assert got.shape == (1,) and got[0] == 0.0
    t = run_kernel("triangular_arbitrage", {"rate_ab": np.full(n, 2.0),
                                            "rate_bc": np.full(n, 3.0),
                                            "rate_ac": np.full(n, 6.0)}, params={"fee_bps": 0})
    assert (t["tri_edge_bps"] == 0.0).all() and (t["tri_route"] == 0).all()


def test_keys_interleaved_row_by_row():
    keys = np.array(["A", "B"] * 100)
    cols = {c: DATA[c][:200] for c in KERNELS.get("triangular_arbitrage").inputs}
    whole = run_kernel("triangular_arbitrage", cols, keys=keys)
    for k in ("A", "B"):
        m = keys == k
        alone = run_kernel("triangular_arbitrage", {c: v[m] for c, v in cols.items()})
        for col, values in whole.items():
            np.testing.assert_array_equal(values[m], alone[col])


@pytest.mark.parametrize(("name", "bad"), [
    ("triangular_arbitrage", {"fee_bps": -1}), ("triangular_arbitrage", {"fee_bps": "ten"}),
    ("triangular_arbitrage", {"window": 3}), ("implementation_shortfall", {"side": 1}),
    ("arrival_price_impact", {"fee_bps": 1}),
])
def test_params_rejected(name, bad):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(**bad)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=20, deadline=None)
@given(splits=st.lists(st.integers(1, N - 1), max_size=6))
def test_split_invariant(name, splits):
    assert_split_invariant(name, cols_of(name, DATA), splits=splits, keys=DATA["keys"])


def test_kernels_are_documented_numba_dispatchers():
    for name in NAMES:
        d = KERNELS.get(name)
        assert d.doc
        assert d.family == "execution"
        assert hasattr(d.fn, "py_func")
