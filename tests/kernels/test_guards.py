"""guard kernels against plain Python loops written from KERNELS.md: price_band_guard,
fat_finger_guard, throttle_check, circuit_breaker, stale_quote_detector."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.kernels.data import interleaved_keys, irregular_ts
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import (
    _bind,
    assert_split_invariant,
    assert_state_roundtrip,
    run_kernel,
)

N = 3000
NAMES = ("price_band_guard", "fat_finger_guard", "throttle_check", "circuit_breaker",
         "stale_quote_detector")
US = 1_000_000


def make_data(n: int = N, seed: int = 13) -> dict[str, np.ndarray]:
    """Interleaved keys (one seen once), ~3% NaN, irregular timestamps with bursts of equal
    stamps and a few long gaps; about 1.6 s between rows of a key on average."""
    rng = np.random.default_rng(seed)
    keys = interleaved_keys(rng, n)
    ts = irregular_ts(rng, n, repeated=0.15, long_gaps=0.01, long_gap_us=20 * US)
    price = np.empty(n)
    steps = rng.normal(0.0, 0.01, n)
    for k in np.unique(keys):
        m = keys == k
        price[m] = 100.0 * np.exp(np.cumsum(steps[m]))
    reference = price * (1.0 + rng.normal(0.0, 0.05, n))
    reference[rng.choice(n, 5, replace=False)] = 0.0
    order_price = price.copy()
    order_size = rng.lognormal(8.0, 1.5, n)
    for v in (price, reference, order_price, order_size):
        v[rng.random(n) < 0.03] = np.nan
    price[n // 2] = order_price[n // 2] = reference[n // 2] = 100.0
    order_size[n // 2] = 10.0
    return {"keys": keys, "ts": ts, "price": price, "reference": reference,
            "order_price": order_price, "order_size": order_size}


DATA = make_data()


def per_key(keys, fn, *cols) -> np.ndarray:
    out = np.zeros(len(keys), dtype=np.int64)
    for k in np.unique(keys):
        idx = np.flatnonzero(keys == k)
        out[idx] = fn(*[c[idx] for c in cols])
    return out


# --------------------------------------------------------------------------- references


def ref_band(pct):
    def f(p, ref):
        return [1 if r * (1 - pct) <= x <= r * (1 + pct) else 0
                for x, r in zip(p, ref, strict=True)]
    return f


def ref_fat_finger(pct, notional_max):
    def f(p, size, ref):
        return [1 if (r * (1 - pct) <= x <= r * (1 + pct) and x * s <= notional_max) else 0
                for x, s, r in zip(p, size, ref, strict=True)]
    return f


def ref_throttle(rate, per_us):
    def f(ts):
        tokens = None
        last = 0
        out = []
        for t in ts.tolist():
            if tokens is None:
                tokens, last = rate, t
            elif t > last:
                tokens = min(rate, tokens + (t - last) * rate / per_us)
                last = t
            if tokens >= 1.0:
                out.append(1)
                tokens -= 1.0
            else:
                out.append(0)
        return out
    return f


def ref_breaker(pct, window, min_periods=2):
    def f(p, ts):
        out = [0] * len(p)
        valid = [j for j in range(len(p)) if not np.isnan(p[j])]
        for n_seen, j in enumerate(valid, start=1):
            if isinstance(window, int):
                if n_seen < window:
                    continue
                first = p[valid[n_seen - window]]
            else:
                span = int(window[:-1]) * US
                win = [i for i in valid[:n_seen] if ts[i] > ts[j] - span]
                if len(win) < min_periods:
                    continue
                first = p[win[0]]
            if first != 0 and abs(p[j] / first - 1) > pct:
                out[j] = 1
        return out
    return f


def ref_stale(max_age_us):
    def f(ts):
        t = ts.tolist()
        return [0] + [1 if b - a > max_age_us else 0 for a, b in itertools.pairwise(t)]
    return f


CASES = [
    ("price_band_guard", {}, "price_band_ok", ("order_price", "reference"), ref_band(0.05)),
    ("price_band_guard", {"pct": 0.02}, "price_band_ok", ("order_price", "reference"),
     ref_band(0.02)),
    ("fat_finger_guard", {}, "fat_finger_ok", ("order_price", "order_size", "reference"),
     ref_fat_finger(0.10, 1e6)),
    ("fat_finger_guard", {"pct": 0.03, "notional_max": 2e5}, "fat_finger_ok",
     ("order_price", "order_size", "reference"), ref_fat_finger(0.03, 2e5)),
    ("throttle_check", {}, "throttle_ok", ("ts",), ref_throttle(100.0, US)),
    ("throttle_check", {"rate": 2, "per": "5s"}, "throttle_ok", ("ts",),
     ref_throttle(2.0, 5 * US)),
    ("throttle_check", {"rate": 1, "per": "1500ms"}, "throttle_ok", ("ts",),
     ref_throttle(1.0, 3 * US // 2)),
    ("circuit_breaker", {}, "circuit_break", ("price", "ts"), ref_breaker(0.05, "60s")),
    ("circuit_breaker", {"pct": 0.02, "window": "10s", "min_periods": 3}, "circuit_break",
     ("price", "ts"), ref_breaker(0.02, "10s", 3)),
    ("circuit_breaker", {"window": 10}, "circuit_break", ("price", "ts"), ref_breaker(0.05, 10)),
    ("circuit_breaker", {"window": 1}, "circuit_break", ("price", "ts"), ref_breaker(0.05, 1)),
    ("stale_quote_detector", {}, "stale", ("ts",), ref_stale(5 * US)),
    ("stale_quote_detector", {"max_age": "1s"}, "stale", ("ts",), ref_stale(US)),
]
IDS = [f"{c[0]}-{c[1]}" for c in CASES]
STATEFUL = [c for c in CASES if c[0] in ("throttle_check", "circuit_breaker",
                                         "stale_quote_detector")]
SIDS = [f"{c[0]}-{c[1]}" for c in STATEFUL]


def inputs_of(name, data):
    return {c: data[c] for c in KERNELS.get(name).inputs}


@pytest.mark.parametrize(("name", "params", "out", "ref_cols", "ref"), CASES, ids=IDS)
def test_matches_reference_multi_key(name, params, out, ref_cols, ref):
    got = run_kernel(name, inputs_of(name, DATA), keys=DATA["keys"], ts=DATA["ts"],
                     params=params)
    assert list(got) == [out]
    assert got[out].dtype == np.int8
    expected = per_key(DATA["keys"], ref, *[DATA[c] for c in ref_cols])
    np.testing.assert_array_equal(got[out], expected)
    if (name, params) == ("throttle_check", {}):
        assert (got[out] == 1).all()  # 100 per second never binds here
    elif params.get("window") == 1:
        assert (got[out] == 0).all()  # the first price of the window is the row's own
    else:  # the flag is informative on this data: both values occur
        assert 0 < got[out].sum() < N
    for c in KERNELS.get(name).inputs:
        assert (got[out][np.isnan(DATA[c])] == 0).all()


@pytest.mark.parametrize(("name", "params", "out", "ref_cols", "ref"), CASES, ids=IDS)
def test_keys_interleaved_row_by_row(name, params, out, ref_cols, ref):
    n = 600
    keys = np.array(["A", "B", "C"] * (n // 3))
    data = {c: v[:n] for c, v in DATA.items()}
    data["ts"] = 1_700_000_000_000_000 + np.repeat(np.arange(n // 3), 3) * 700_000
    data["ts"][300:] += 10 * US  # one long gap for every key
    got = run_kernel(name, inputs_of(name, data), keys=keys, ts=data["ts"], params=params)[out]
    np.testing.assert_array_equal(got, per_key(keys, ref, *[data[c] for c in ref_cols]))


def test_key_seen_once_and_single_row():
    once = DATA["keys"] == "ONCE"
    for name, params, out, _, _ in CASES:
        got = run_kernel(name, inputs_of(name, DATA), keys=DATA["keys"], ts=DATA["ts"],
                         params=params)[out][once]
        alone = run_kernel(name, {c: v[once] for c, v in inputs_of(name, DATA).items()},
                           ts=DATA["ts"][once], params=params)[out]
        assert got.shape == (1,)
        assert got[0] == alone[0]
        expected = {"price_band_ok": 1, "fat_finger_ok": 1, "throttle_ok": 1,
                    "circuit_break": 0, "stale": 0}[out]
        assert got[0] == expected, (name, params)


def test_known_values():
    band = run_kernel("price_band_guard", {"order_price": [105.0, 105.01, 95.0, 94.99, np.nan],
                                           "reference": [100.0] * 5})["price_band_ok"]
    np.testing.assert_array_equal(band, [1, 0, 1, 0, 0])
    ff = run_kernel("fat_finger_guard", {"order_price": [101.0, 101.0, 111.0],
                                         "order_size": [20_000.0, 9_000.0, 1.0],
                                         "reference": [100.0] * 3})["fat_finger_ok"]
    np.testing.assert_array_equal(ff, [0, 1, 0])
    th = run_kernel("throttle_check", {}, ts=np.array([0, 0, 0, 500_000, 500_000, 1_500_000]),
                    params={"rate": 2})["throttle_ok"]
    np.testing.assert_array_equal(th, [1, 1, 0, 1, 0, 1])
    st_ = run_kernel("stale_quote_detector", {},
                     ts=np.array([0, 5 * US, 10 * US + 1, 10 * US + 2]))["stale"]
    np.testing.assert_array_equal(st_, [0, 0, 1, 0])
    cb = run_kernel("circuit_breaker", {"price": [100.0, 101.0, 106.0, 104.0]},
                    params={"window": 3})["circuit_break"]
    np.testing.assert_array_equal(cb, [0, 0, 1, 0])
    cb = run_kernel("circuit_breaker", {"price": [100.0, 94.0, np.nan, 99.0, 104.0]},
                    ts=np.array([0, 30, 50, 61, 90]) * US)["circuit_break"]
    # 94 / 100; NaN; 99 / 94 (100 has left the 60 s window); 104 / 94
    np.testing.assert_array_equal(cb, [0, 1, 0, 1, 1])


def test_zero_reference_and_zero_first_price():
    band = run_kernel("price_band_guard", {"order_price": [0.0, 1.0], "reference": [0.0, 0.0]})
    np.testing.assert_array_equal(band["price_band_ok"], [1, 0])
    cb = run_kernel("circuit_breaker", {"price": [0.0, 1.0, 2.0]}, params={"window": 2})
    np.testing.assert_array_equal(cb["circuit_break"], [0, 0, 1])


def test_constant_prices():
    p = np.full(100, 50.0)
    assert (run_kernel("circuit_breaker", {"price": p})["circuit_break"] == 0).all()
    assert (run_kernel("price_band_guard", {"order_price": p, "reference": p})
            ["price_band_ok"] == 1).all()


def test_throttle_refill_is_capped():
    # a long pause refills at most `rate` tokens
    ts = np.array([0] * 3 + [100 * US] * 5, dtype=np.int64)
    got = run_kernel("throttle_check", {}, ts=ts, params={"rate": 3})["throttle_ok"]
    np.testing.assert_array_equal(got, [1, 1, 1, 1, 1, 1, 0, 0])


BREAKERS = [c[1] for c in CASES if c[0] == "circuit_breaker"]


@pytest.mark.parametrize("params", BREAKERS, ids=str)
def test_nan_input_leaves_state_unchanged(params):
    name, out = "circuit_breaker", "circuit_break"
    x = DATA["price"]
    ok = ~np.isnan(x)
    full = run_kernel(name, {"price": x}, keys=DATA["keys"], ts=DATA["ts"], params=params)[out]
    dropped = run_kernel(name, {"price": x[ok]}, keys=DATA["keys"][ok], ts=DATA["ts"][ok],
                         params=params)[out]
    np.testing.assert_array_equal(full[ok], dropped)
    assert (full[~ok] == 0).all()


@pytest.mark.parametrize(("name", "bad"), [
    ("price_band_guard", {"pct": -0.01}), ("price_band_guard", {"pct": 1.0}),
    ("price_band_guard", {"window": 3}), ("fat_finger_guard", {"notional_max": 0}),
    ("fat_finger_guard", {"pct": "wide"}), ("throttle_check", {"rate": 0}),
    ("throttle_check", {"rate": 0.5}),
    ("throttle_check", {"per": "1 fortnight"}), ("throttle_check", {"per": 5}),
    ("throttle_check", {"per": "0s"}), ("circuit_breaker", {"pct": 0}),
    ("circuit_breaker", {"window": 0}), ("circuit_breaker", {"window": "soon"}),
    ("circuit_breaker", {"min_periods": 0}), ("stale_quote_detector", {"max_age": 5}),
    ("stale_quote_detector", {"max_age": "-5s"}),
])
def test_params_rejected(name, bad):
    with pytest.raises(ValidationError):
        KERNELS.get(name).params(**bad)


def test_defaults():
    assert KERNELS.get("price_band_guard").params().pct == 0.05
    p = KERNELS.get("fat_finger_guard").params()
    assert (p.pct, p.notional_max) == (0.10, 1e6)
    p = KERNELS.get("throttle_check").params()
    assert (p.rate, p.per) == (100, "1s")
    p = KERNELS.get("circuit_breaker").params()
    assert (p.pct, p.window, p.min_periods) == (0.05, "60s", 2)
    assert KERNELS.get("stale_quote_detector").params().max_age == "5s"


@pytest.mark.parametrize(("name", "params"), [(c[0], c[1]) for c in CASES], ids=IDS)
@settings(max_examples=20, deadline=None)
@given(splits=st.lists(st.integers(1, N - 1), max_size=6))
def test_split_invariant(name, params, splits):
    assert_split_invariant(name, inputs_of(name, DATA), splits=splits, keys=DATA["keys"],
                           ts=DATA["ts"], params=params)


@pytest.mark.parametrize(("name", "params"), [(c[0], c[1]) for c in STATEFUL], ids=SIDS)
@pytest.mark.parametrize("at", [1, 9, N // 2, N - 1])
def test_state_roundtrip(name, params, at):
    if KERNELS.get(name).inputs:
        assert_state_roundtrip(name, inputs_of(name, DATA), at=at, keys=DATA["keys"],
                               ts=DATA["ts"], params=params)
    else:  # engine.testing.assert_state_roundtrip needs an input column; same steps here
        roundtrip_without_inputs(name, params, at)


def roundtrip_without_inputs(name, params, at):
    whole = run_kernel(name, {}, keys=DATA["keys"], ts=DATA["ts"], params=params)
    bound = _bind(name, params, None)
    _, key = np.unique(DATA["keys"], return_inverse=True)
    key = key.astype(np.int64)
    ts = DATA["ts"]
    first = bound.new_state()
    head = bound.run(key[:at], ts[:at], [], first)
    ids = np.arange(first.n_keys, dtype=np.int64)
    second = bound.new_state()
    second.restore(ids, first.snapshot(ids))
    tail = bound.run(key[at:], ts[at:], [], second)
    for j, col in enumerate(bound.output_columns):
        np.testing.assert_array_equal(np.concatenate([head[j], tail[j]]), whole[col])


def test_kernels_are_documented_numba_dispatchers():
    for name in NAMES:
        d = KERNELS.get(name)
        assert d.doc
        assert d.family == "guards"
        assert hasattr(d.fn, "py_func")
        assert d.output_dtypes == (np.int8,)
