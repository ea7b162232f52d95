"""The rule language: vectorised, NaN-safe, closed to anything outside its allow-list, and
with per-key memory (prev, crosses_above, crosses_below) that any batch split leaves alone."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.rules import RuleError, _Batch, parse_rule
from tickflow.engine.testing import run_pipeline

COLS = {"zscore": np.array([-3.0, -3.0, np.nan, 2.5, 0.0]),
        "rsi": np.array([20.0, 40.0, 10.0, 80.0, 50.0]),
        "cusum_alarm": np.array([0, 0, 0, 1, 0], dtype=np.int8)}


def test_seed_strategy_rule() -> None:
    rule = parse_rule("zscore < -2.0 and rsi < 30 and cusum_alarm == 0", set(COLS))
    assert rule.columns == {"zscore", "rsi", "cusum_alarm"}
    assert rule.mask(COLS).tolist() == [True, False, False, False, False]


def test_or_not_arithmetic_abs_and_chained_comparison() -> None:
    rule = parse_rule("abs(zscore) > 2 or not (rsi * 2 - 20 < 100)", set(COLS))
    assert rule.mask(COLS).tolist() == [True, True, False, True, False]
    assert parse_rule("20 < rsi <= 50", set(COLS)).mask(COLS).tolist() == [
        False, True, False, False, True]


def test_nan_compares_false_both_ways() -> None:
    assert not parse_rule("zscore < 1").mask(COLS)[2]
    assert not parse_rule("zscore >= 1").mask(COLS)[2]


def test_division_by_zero_does_not_warn_or_fire() -> None:
    mask = parse_rule("rsi / zscore > 1000").mask(COLS)
    assert not mask[4]


@pytest.mark.parametrize("text, why", [
    ("zscore.__class__ < 1", "attribute access not allowed"),
    ("__import__('os').system('x')", "attribute access not allowed"),
    ("open('f') == 1", "unknown function 'open'"),
    ("eval('1') == 1", "unknown function 'eval'"),
    ("zscore[0] < 1", "subscripts not allowed"),
    ("(lambda: 1)() == 1", "lambdas not allowed"),
    ("[x for x in zscore]", "comprehensions not allowed"),
    ("__builtins__ == 1", "dunder names not allowed"),
    ("zscore if rsi else 1", "if-expressions not allowed"),
    ("rsi == 'a'", "non-numeric constants not allowed"),
    ("rsi is 1", "'in' and 'is' not allowed"),
    ("rsi & 1", "bitwise operators not allowed"),
    ("abs(x=rsi) > 1", "keyword arguments not allowed"),
    ("import os", "cannot parse rule 'import os'"),
])
def test_rejects_everything_outside_the_allow_list(text: str, why: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rule(text, set(COLS))
    assert why in str(err.value)


def test_unknown_column_suggests_a_close_match() -> None:
    with pytest.raises(RuleError, match="did you mean 'zscore'"):
        parse_rule("zscroe < 1", set(COLS))


def test_unknown_function_suggests_a_close_match() -> None:
    with pytest.raises(RuleError, match="did you mean 'abs'"):
        parse_rule("abss(rsi) > 1", set(COLS))


@pytest.mark.parametrize(("text", "why"), [
    ("abs(rsi).real > 1", "attribute access"),
    ("rsi.__class__.__bases__ == 1", "attribute access"),
    ("getattr(rsi, '__class__') == 1", "unknown function 'getattr'"),
    ("globals() == 1", "unknown function 'globals'"),
    ("exec('x') == 1", "unknown function 'exec'"),
    ("__import__('os') == 1", "unknown function '__import__'"),
    ("prev(__builtins__, 1) > 0", "dunder names"),
    ("abs(*rsi) > 1", "starred arguments"),
    ("f'{rsi}' == 1", "strings"),
    ("rsi == b'x'", "non-numeric constants"),
    ("rsi == None", "non-numeric constants"),
    ("rsi == 1j", "non-numeric constants"),
    ("(yield) == 1", "yield"),
    ("rsi @ rsi > 1", "operator MatMult"),
    ("rsi // 2 > 1", "operator FloorDiv"),
    ("~rsi > 1", "bitwise"),
    ("{rsi: 1} == 1", "mappings"),
    ("(rsi, 1) == 1", "tuples"),
    ("prev(x=rsi, k=1) > 0", "keyword arguments"),
    ("rsi.__class__.__subclasses__()", "attribute access"),
])
def test_rejects_escape_attempts(text: str, why: str) -> None:
    with pytest.raises(RuleError, match=re.escape(why)):
        parse_rule(text, set(COLS))


def test_deep_nesting_and_huge_rules_are_rule_errors() -> None:
    for deep in ("not " * 2_400 + "rsi", "-" * 9_000 + "rsi", "rsi + " * 150 + "1 > 0"):
        with pytest.raises(RuleError, match="nested too deeply"):
            parse_rule(deep)
    with pytest.raises(RuleError, match="cannot parse"):
        parse_rule("(" * 3_000 + "rsi" + ")" * 3_000)
    with pytest.raises(RuleError, match="at most 10000 characters"):
        parse_rule("rsi + " * 5_000 + "1 > 0")
    assert parse_rule("rsi + " * 90 + "1 > 0").mask(COLS).all()


def test_power_towers_stay_floating_point() -> None:
    assert parse_rule("rsi < 10 ** 10 ** 10").mask(COLS).all()


# --------------------------------------------------------------------------- per-key memory


def prev_loop(keys: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """x k rows earlier for the same key, NaN before the key has k earlier rows."""
    seen: dict[int, list[float]] = {}
    out = np.full(len(x), np.nan)
    for i, (key, v) in enumerate(zip(keys, x, strict=True)):
        hist = seen.setdefault(int(key), [])
        if len(hist) >= k:
            out[i] = hist[-k]
        hist.append(v)
    return out


def crosses_loop(keys: np.ndarray, a: np.ndarray, b: np.ndarray, above: bool) -> np.ndarray:
    """a > b here and a <= b on the key's previous row (mirrored for below)."""
    last: dict[int, tuple[float, float]] = {}
    out = np.zeros(len(a), dtype=bool)
    for i, (key, x, y) in enumerate(zip(keys, a, b, strict=True)):
        if int(key) in last:
            px, py = last[int(key)]
            out[i] = (x > y and px <= py) if above else (x < y and px >= py)
        last[int(key)] = (x, y)
    return out


def make_stream(n: int = 500, seed: int = 4) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 4, n)
    x = np.round(rng.normal(0.0, 1.0, n), 1)  # ties, so a <= b and a >= b both matter
    y = np.round(rng.normal(0.0, 1.0, n), 1)
    x[rng.random(n) < 0.05] = np.nan
    return keys, {"x": x, "y": y}


KEYS, STREAM = make_stream()


def flags(text: str, keys: np.ndarray, cols: dict[str, np.ndarray],
          splits: list[int] | tuple[int, ...] = ()) -> np.ndarray:
    rule = parse_rule(text, set(cols))
    state = rule.new_state()
    bounds = [0, *sorted({s for s in splits if 0 < s < len(keys)}), len(keys)]
    return np.concatenate([rule.mask({c: v[a:b] for c, v in cols.items()}, keys=keys[a:b],
                                     state=state) for a, b in itertools.pairwise(bounds)])


@pytest.mark.parametrize("k", [1, 2, 5])
def test_prev_matches_a_loop_per_key(k: int) -> None:
    rule = parse_rule(f"prev(x * 2, {k})")
    assert rule.is_keyed and rule.columns == {"x"}
    got = rule.evaluate  # the raw values, not only the flags
    state = rule.new_state()
    state.ensure_keys(4)
    values = got(_Batch(STREAM, KEYS, state))
    np.testing.assert_array_equal(values, prev_loop(KEYS, STREAM["x"] * 2, k))
    expected = prev_loop(KEYS, STREAM["x"], k) < STREAM["x"]
    np.testing.assert_array_equal(flags(f"prev(x, {k}) < x", KEYS, STREAM), expected)


def test_prev_of_a_constant_and_of_prev() -> None:
    keys = np.array([0, 1, 0, 0, 1, 0])
    assert flags("prev(1, 2) == 1", keys, {}).tolist() == [False, False, False, True, False,
                                                           True]
    x = {"x": np.arange(6.0)}
    assert flags("prev(prev(x, 1), 1) == prev(x, 2)", keys, x).tolist() == [
        False, False, False, True, False, True]


@pytest.mark.parametrize("above", [True, False])
def test_crossings_match_a_loop_per_key(above: bool) -> None:
    name = "crosses_above" if above else "crosses_below"
    got = flags(f"{name}(x, y)", KEYS, STREAM)
    expected = crosses_loop(KEYS, STREAM["x"], STREAM["y"], above)
    assert expected.sum() > 20
    np.testing.assert_array_equal(got, expected)


def test_crossing_a_constant_and_the_first_row_of_a_key() -> None:
    keys = np.array([0, 0, 1, 0, 1])
    x = {"x": np.array([1.0, 3.0, 5.0, 1.0, 1.0])}
    assert flags("crosses_above(x, 2)", keys, x).tolist() == [False, True, False, False, False]
    assert flags("crosses_below(x, 2)", keys, x).tolist() == [False, False, False, True, True]


RULES = ["crosses_above(x, prev(y, 2)) or prev(x, 3) > 1",
         "crosses_below(x + y, 0) and not isnan(prev(x, 1))"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, len(KEYS) - 1), max_size=8), st.sampled_from(RULES))
def test_any_split_gives_the_same_flags(splits: list[int], text: str) -> None:
    np.testing.assert_array_equal(flags(text, KEYS, STREAM, splits), flags(text, KEYS, STREAM))


@pytest.mark.parametrize("at", [0, 1, 137, 499])
def test_state_snapshot_restore_continues_identically(at: int) -> None:
    text = RULES[0]
    rule = parse_rule(text)
    whole = flags(text, KEYS, STREAM)
    first = rule.new_state()
    head = rule.mask({c: v[:at] for c, v in STREAM.items()}, keys=KEYS[:at], state=first)
    ids = np.arange(first.n_keys)
    saved = first.snapshot(ids)
    assert set(saved) == {"prev0", "prev1", "prev2", "prev3"}
    second = rule.new_state()
    second.restore(ids, saved)
    tail = rule.mask({c: v[at:] for c, v in STREAM.items()}, keys=KEYS[at:], state=second)
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole)


@pytest.mark.parametrize("text", ["prev(x, 0) > 1", "prev(x, -1) > 1", "prev(x, 1.5) > 1",
                                  "prev(x, y) > 1", "prev(x, True) > 1", "prev(x, 10 ** 9) > 1",
                                  "prev(x, 1 + 1) > 1"])
def test_prev_needs_a_positive_integer_literal(text: str) -> None:
    with pytest.raises(RuleError, match="k must be a positive integer literal"):
        parse_rule(text, {"x", "y"})


@pytest.mark.parametrize(("text", "hint"), [("prv(x, 1) > 0", "did you mean 'prev'"),
                                            ("crosses_abov(x, y)", "did you mean 'crosses_above'"),
                                            ("crosses_above(x, yy)", "did you mean 'y'")])
def test_unknown_names_in_keyed_functions_suggest(text: str, hint: str) -> None:
    with pytest.raises(RuleError, match=hint):
        parse_rule(text, {"x", "y"})


def test_keyed_rule_needs_keys_and_state_but_plain_rules_do_not() -> None:
    with pytest.raises(TypeError, match="keys=key_ids"):
        parse_rule("prev(x, 1) > 0").mask(STREAM)
    assert not parse_rule("x > 0").is_keyed
    assert parse_rule("x > 0").new_state().fields == []
    plain = parse_rule("x > 0").mask(STREAM, keys=KEYS, state=None)
    np.testing.assert_array_equal(plain, STREAM["x"] > 0)
    keyed = parse_rule("crosses_above(x, y)")
    empty = {"x": np.empty(0), "y": np.empty(0)}
    assert keyed.mask(empty, keys=np.empty(0, np.int64), state=keyed.new_state()).size == 0


# --------------------------------------------------------------------------- in the executor


def signal_job(tmp_path: Path) -> object:
    text = """\
name: rules
mode: research
sources:
  - {kind: simulator, rows: 4000, symbols: 5, seed: 9}
steps:
  - {kernel: ema, params: {span: 5}}
  - {id: slow, kernel: ema, params: {span: 20}, output: ema_20}
signals:
  golden: crosses_above(ema, ema_20)
  dip: prev(price, 3) > price * 1.0001
"""
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return compile_job(load_job(path))



def test_signals_remember_each_key_across_batches_and_workers(tmp_path: Path) -> None:
    job = signal_job(tmp_path)
    whole = run_pipeline(job, 1, 100_000)
    _, keys = np.unique(whole.column("symbol").to_numpy(zero_copy_only=False),
                        return_inverse=True)
    col = {c: whole.column(c).to_numpy(zero_copy_only=False) for c in ("ema", "ema_20", "price")}
    golden = crosses_loop(keys, col["ema"], col["ema_20"], above=True)
    dip = prev_loop(keys, col["price"], 3) > col["price"] * 1.0001
    assert golden.sum() > 10 and dip.sum() > 10
    np.testing.assert_array_equal(whole.column("golden").to_numpy(), golden)
    np.testing.assert_array_equal(whole.column("dip").to_numpy(), dip)
    for workers, morsel in [(1, 333), (2, 1000), (3, 64)]:
        got = run_pipeline(job, workers, morsel)
        for name in ("golden", "dip"):
            np.testing.assert_array_equal(got.column(name).to_numpy(),
                                          whole.column(name).to_numpy(), err_msg=name)
