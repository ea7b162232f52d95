"""Parameter sweeps: expand ``sweep:`` into points, rank the results, warn about overfitting.

Running the points is :mod:`tickflow.engine.backtest.sweep_run`; this module stays free of
the backtest runner so that the runner can use it. Each point is one call of the pure
function :func:`tickflow.engine.backtest.run.run_point` (job path and overrides in, metrics
out), so the same points can later be submitted as Dask tasks. Locally
they run on threads by default: the simulator (numba, ``nogil``) and numpy's rule evaluation
release the GIL, and every thread shares one feature computation per kernel setting. A process
pool (``pool: processes``) isolates points instead; its chunks keep points that share kernel
parameters together, so each process computes a feature set once per setting. Measured with
bench/backtest.py: at 2M ticks and 100 points, starting two interpreters costs more than the
second core gives back, which is why threads are the default.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from tickflow.engine.backtest.spec import RangeSpec, StrategySpec, SweepSpec
from tickflow.engine.backtest.summary import is_annualisable, span_text
from tickflow.engine.errors import JobSpecError, Problem

LOWER_IS_BETTER = {"volatility", "max_drawdown_duration_s", "fees_paid", "turnover"}
_EULER_GAMMA = 0.5772156649015329


def _stepped(r: RangeSpec) -> list[float]:
    assert r.step is not None
    count = math.floor((r.max - r.min) / r.step + 1e-9) + 1
    return [round(r.min + k * r.step, 12) for k in range(count)]


def expand_points(sweep: SweepSpec) -> list[dict[str, Any]]:
    """Every grid combination, or ``samples`` random draws (reproducible with ``seed``)."""
    names = list(sweep.parameters)
    if sweep.method == "grid":
        axes = []
        for name in names:
            values = sweep.parameters[name]
            if isinstance(values, RangeSpec):
                if values.step is None:
                    raise JobSpecError([Problem("sweep", None, None, f"parameters.{name}",
                                                "a grid needs `step` in a range")])
                values = _stepped(values)
            axes.append(list(values))
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
    rng = np.random.default_rng(sweep.seed)
    points = []
    for _ in range(sweep.samples):
        point: dict[str, Any] = {}
        for name in names:
            values = sweep.parameters[name]
            if isinstance(values, RangeSpec) and values.step is None:
                point[name] = float(f"{rng.uniform(values.min, values.max):.4g}")
            else:
                choices = _stepped(values) if isinstance(values, RangeSpec) else list(values)
                point[name] = choices[int(rng.integers(len(choices)))]
        points.append(point)
    return points


@functools.lru_cache(maxsize=8)
def _step_index(job_path: str, mtime: float) -> dict[str, int]:
    from tickflow.engine.loader import load_job

    steps = load_job(job_path).data.get("steps") or []
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        if isinstance(step, dict):
            index.setdefault(str(step.get("id") or step.get("kernel")), i)
    return index


def overrides_to_sets(job_path: str, overrides: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Sweep values as ``--set`` strings: (those of the strategy, those of kernel steps)."""
    strategy_sets, step_sets = [], []
    for name, value in overrides.items():
        text = repr(value) if isinstance(value, float) else str(value)
        if name.startswith(("steps.", "steps[")):  # by id, as in --set; an index works too
            from tickflow.engine.field_paths import format_path, parse_override

            path, _ = parse_override(f"{name}=0")
            step_ref, rest = path[1], format_path(path[2:])
            if isinstance(step_ref, int) or step_ref.isdigit():
                step_sets.append(f"steps[{int(step_ref)}].{rest}={text}")
                continue
            index = _step_index(os.path.abspath(job_path), os.path.getmtime(job_path))
            if step_ref not in index:
                raise JobSpecError([Problem(job_path, None, None, f"sweep.parameters.{name}",
                                            f"no step with id {step_ref!r}")])
            step_sets.append(f"steps[{index[step_ref]}].{rest}={text}")
        elif name.startswith("strategy."):
            strategy_sets.append(f"{name}={text}")
        else:
            strategy_sets.append(f"strategy.params.{name}={text}")
    return strategy_sets, step_sets


def apply_strategy_sets(strategy: StrategySpec, sets: Sequence[str]) -> StrategySpec:
    """``strategy.params.entry_z=1.5``-style overrides applied to a validated strategy."""
    from pydantic import ValidationError

    from tickflow.engine.field_paths import format_path, parse_override

    if not sets:
        return strategy
    data = strategy.model_dump()
    for text in sets:
        path, value = parse_override(text)
        node: Any = data
        for part in path[1:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
            if node is None:
                raise JobSpecError([Problem("sweep", None, None, format_path(path),
                                            "cannot set a field inside an empty block")])
        node[path[-1]] = value
    try:
        return StrategySpec.model_validate(data)
    except ValidationError as exc:
        raise JobSpecError([Problem("sweep", None, None, ", ".join(sets),
                                    f"invalid strategy after the sweep's overrides: "
                                    f"{exc.errors()[0]['msg']}")]) from None


def ordered_points(sweep: SweepSpec) -> list[dict[str, Any]]:
    """The points, those sharing kernel parameters (one feature computation) next to each other.

    Every runner (threads, processes, Dask) builds its rows in this order, so ties rank alike.
    """
    points = expand_points(sweep)
    steps_first = sorted(range(len(points)), key=lambda i: str(
        sorted((k, v) for k, v in points[i].items() if k.startswith("steps."))))
    return [points[i] for i in steps_first]


def ranked_rows(sweep: SweepSpec, ordered: Sequence[dict[str, Any]],
                results: Sequence[dict[str, dict[str, float]] | str]) -> list[dict[str, Any]]:
    """One row per point (its parameters, then ``split.metric`` columns), ranked.

    A result that is a string is the error of a failed point: its row holds the parameters and
    ``error``, and ranks last.
    """
    rows = []
    for point, res in zip(ordered, results, strict=True):
        row: dict[str, Any] = dict(point)
        if isinstance(res, str):
            row["error"] = res
        else:
            for split, metrics in res.items():
                for k, v in metrics.items():
                    row[f"{split}.{k}"] = v
        rows.append(row)
    return rank(rows, sweep.metric, "train" if sweep.walk_forward else "all")


def rank(rows: list[dict[str, Any]], metric: str, split: str) -> list[dict[str, Any]]:
    """Best first by ``split.metric``; NaN last."""
    key = f"{split}.{metric}"
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def order(row: dict[str, Any]) -> tuple[int, float]:
        v = row.get(key, math.nan)
        return (1, 0.0) if v is None or v != v else (0, sign * v)

    return sorted(rows, key=order)


def expected_max_zscore(trials: int) -> float:
    """Expected largest of ``trials`` independent standard normal draws (Bailey and Lopez de
    Prado (2014), "The Deflated Sharpe Ratio"); 0 for fewer than 2 trials."""
    if trials < 2:
        return 0.0
    nd = NormalDist()
    return ((1 - _EULER_GAMMA) * nd.inv_cdf(1 - 1 / trials)
            + _EULER_GAMMA * nd.inv_cdf(1 - 1 / (trials * math.e)))


def expected_max_sharpe(trials: int, years: float) -> float:
    """Expected best annualised Sharpe of ``trials`` skill-less strategies over ``years``.

    The annualised Sharpe estimate of a zero-mean strategy has a standard error of about
    1/sqrt(years), so the bar is :func:`expected_max_zscore` / sqrt(years).
    """
    if years <= 0:
        return 0.0
    return expected_max_zscore(trials) / math.sqrt(years)


def multiple_testing_warning(rows: list[dict[str, Any]], split: str) -> str:
    """The caveat every sweep result carries, with the selection bias put in numbers.

    On a sample too short to annualise (summary.py's rule) the bar is given for the Sharpe
    over the period (mean / std x sqrt(n) of the grid returns), which is what the tables show
    then: for a skill-less strategy it is about standard normal whatever the sample's length.
    """
    n = len(rows)
    elapsed = next((r.get(f"{split}.elapsed_s") for r in rows
                    if r.get(f"{split}.elapsed_s")), 0.0) or 0.0
    text = (f"{n} parameter points were tried: the best of them is selected, so its in-sample "
            f"figures are biased upward (multiple testing).")
    source = f"expected maximum of {n} trials, Bailey & Lopez de Prado 2014"
    if n >= 2 and elapsed > 0 and is_annualisable(elapsed):
        bar = expected_max_sharpe(n, elapsed / (365.0 * 86_400.0))
        text += (f" Pure noise over the same {span_text(elapsed)} would give a best "
                 f"annualised Sharpe of about {bar:.2f} ({source}); read in-sample Sharpe "
                 f"ratios against that.")
    elif n >= 2 and elapsed > 0:
        text += (f" Pure noise over the same {span_text(elapsed)} would give a best Sharpe "
                 f"(period) of about {expected_max_zscore(n):.2f} ({source}); the sample is "
                 f"too short to annualise, so read the period Sharpe ratios against that.")
    if split == "train":
        text += " Judge the choice by its out-of-sample (test) columns."
    else:
        text += " Add `walk_forward:` to see out-of-sample figures."
    return text
