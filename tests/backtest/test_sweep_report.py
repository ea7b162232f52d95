"""The sweep page: heatmap over two parameters, in-sample against out-of-sample, offline."""

from __future__ import annotations

import numpy as np

from tests.report_html import external_references, plots, sections, sources
from tickflow.engine.backtest.spec import SweepSpec
from tickflow.engine.backtest.sweep_report import sweep_html

DAY_S = 86_400.0


def rows(days: float) -> list[dict]:
    out = []
    for a in (1, 2, 3):
        for b in (10, 20):
            for c in (0.1, 0.2):  # a third parameter: the heatmap keeps the best
                out.append({"a": a, "b": b, "c": c, "train.sharpe": a * b * c,
                            "train.period_sharpe": a * b * c / 10, "train.elapsed_s":
                            days * DAY_S, "test.sharpe": -a, "test.period_sharpe": -a / 10,
                            "test.elapsed_s": days * DAY_S / 3, "train.trade_count": 5,
                            "test.trade_count": 2})
    out.append({"a": 9, "b": 99, "c": 0.1, "error": "boom"})
    return out


def spec() -> SweepSpec:
    return SweepSpec(parameters={"a": [1, 2, 3], "b": [10, 20], "c": [0.1, 0.2]},
                     walk_forward={"train_fraction": 0.7})


def test_heatmap_and_in_vs_out_carry_the_rows():
    page = sweep_html("s: parameter sweep", rows(120), spec(), "a warning")
    assert not external_references(page)
    assert sections(page) == ["train.sharpe over a and b", "In-sample against out-of-sample",
                              "Ranked points"]
    items = plots(page)
    heat = sources(items["sweep_heatmap"])[0]["data"]
    cells = dict(zip(zip(heat["x"], heat["y"], strict=True), heat["value"], strict=True))
    assert cells[("3", "20")] == 3 * 20 * 0.2  # best over c
    assert len(cells) == 6
    scatter = sources(items["in_vs_out"])[0]["data"]
    assert len(scatter["train"]) == 12  # the failed point is left out
    np.testing.assert_allclose(sorted(scatter["test"]), sorted(-r["a"] for r in rows(120)[:12]))
    assert "a warning" in page and "failed" in page


def test_short_samples_show_period_figures():
    page = sweep_html("s", rows(0.1), spec(), "w")
    assert "train.period_sharpe over a and b" in sections(page)
    assert "n/a" not in page.split("Ranked points")[1].split("failed")[0]
