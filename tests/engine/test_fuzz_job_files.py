"""Fuzz the loader and compiler: any bytes, any YAML or JSON shape, only tickflow's own errors.

Whatever a job file holds, ``load_job`` + ``compile_job`` either return a job or raise a
``JobSpecError``/``CompileError`` (both ``TickflowError``) whose every problem is located in the
file; never a ``KeyError``, ``TypeError``, ``RecursionError`` or a hang. ``plugins:`` is left
out of the generated shapes because its values are imported (that is its contract).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickflow.engine.compile import compile_job
from tickflow.engine.errors import JobSpecError, TickflowError
from tickflow.engine.loader import load_job

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

KERNELS = ["ewma", "sma", "rolling_zscore", "lag", "log_returns", "macd", "rsi", "vwap"]
OPERATORS = ["asof_join", "filter", "resample_ohlc"]
TOP_KEYS = ["name", "mode", "key", "sources", "steps", "signals", "state", "sinks", "executor",
            "report", "include", "description", "strategy", "model_paths"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True), st.text(max_size=12),
                    st.sampled_from(["timestamp", "price", "symbol", "30s", "1e12", "on",
                                     "${X:-5}", "-1", "0", "1000000000000"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(TOP_KEYS)), inner,
                    max_size=4)), max_leaves=12)


def block(kinds: list[str], role: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {role: st.one_of(st.sampled_from(kinds), st.text(max_size=6))},
        optional={"params": st.dictionaries(st.sampled_from(
                      ["alpha", "window", "span", "k", "on", "right", "rule", "interval"]),
                      values, max_size=3),
                  "input": values, "output": values, "id": values, "from": values})


steps = st.lists(st.one_of(block(KERNELS, "kernel"), block(OPERATORS, "operator"), values),
                 max_size=4)
sources = st.lists(
    st.fixed_dictionaries({"kind": st.sampled_from(["simulator", "simulator", "parquet", "nope"])},
                          optional={"rows": st.one_of(st.integers(0, 300), values),
                                    "path": values, "id": st.sampled_from(["a", "b"]),
                                    "symbols": values}),
    min_size=1, max_size=2)
jobs = st.fixed_dictionaries(
    {"name": st.one_of(st.just("fuzz"), st.text(max_size=6)),
     "mode": st.sampled_from(["research", "research", "live", "backtest", "arbitrage"]),
     "sources": sources},
    optional={"steps": steps, "signals": st.dictionaries(st.text(max_size=5), values,
                                                         max_size=2),
              "executor": values, "state": values, "sinks": values, "key": values,
              "extra": values})


def check(path: Path) -> None:
    try:
        compile_job(load_job(path, env={"X": "1"}))
    except JobSpecError as exc:  # CompileError is a JobSpecError
        assert isinstance(exc, TickflowError)
        assert exc.problems, "an error without a problem"
        for problem in exc.problems:
            assert problem.file and problem.message, problem


@FUZZ
@given(data=st.binary(max_size=400))
def test_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(data)
    check(path)


@settings(FUZZ, max_examples=50)
@given(job=jobs, as_json=st.booleans())
def test_any_job_shaped_document(tmp_path: Path, job: dict[str, Any], as_json: bool) -> None:
    path = tmp_path / "job.yaml"
    if as_json:  # JSON is YAML too
        path.write_text(json.dumps(job, allow_nan=True))
    else:
        path.write_text(yaml.safe_dump(job, allow_unicode=True, sort_keys=False))
    check(path)


@FUZZ
@given(document=values)
def test_any_yaml_value(tmp_path: Path, document: Any) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    check(path)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("{}[]&*!|>-:?,'\"#%@` \n\tab01")),
                    max_size=200))
def test_yaml_syntax_soup(tmp_path: Path, text: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    check(path)


@FUZZ
@given(overrides=st.lists(st.one_of(st.text(max_size=30), st.builds(
    "{}={}".format,
    st.sampled_from(["name", "steps[0].params.alpha", "steps[0]", "steps", "executor.workers",
                     "sources[0].rows", "sources[0]", "steps[3].x", "state", "a.b[2].c",
                     "steps[0].params", "signals.s", "executor"]),
    st.one_of(st.text(max_size=12), st.sampled_from(
        ["[1, 2]", "{a: 1}", "null", "0", "1e12", "!!python/name:os.system", "&a [*a]",
         "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"])))), max_size=3))
def test_any_set_override(tmp_path: Path, overrides: list[str]) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: t\nmode: research\nsources: [{kind: simulator, rows: 10}]\n"
                    "steps: [{kernel: ewma, params: {alpha: 0.1}}]\n")
    try:
        compile_job(load_job(path, overrides=overrides, env={}))
    except JobSpecError as exc:
        assert exc.problems and all(p.file and p.message for p in exc.problems)
