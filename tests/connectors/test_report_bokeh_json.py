"""The research page's plots written without Bokeh equal Bokeh's own documents.

Why: the page builds its JSON by hand to skip Bokeh's import and object model; these tests
build the same figures with Bokeh and compare the ``json_item`` documents field by field
(ids renamed in order of appearance), so any difference in what a browser gets fails here.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tickflow.connectors.reporting import bokeh_json

pytestmark = pytest.mark.skipif(not bokeh_json.available(),
                                reason="needs the Bokeh version the JSON was checked against")


def canonical(item: dict[str, Any]) -> Any:
    """``item`` with every model id replaced by its order of first appearance."""
    names: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k in ("id", "root_id") and isinstance(v, str):
                    v = names.setdefault(v, f"id{len(names)}")
                out[k] = walk(v)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    text = json.dumps(item, allow_nan=False)  # what the page embeds
    return walk(json.loads(text))


def bokeh_item(model: Any) -> dict[str, Any]:
    from bokeh.embed import json_item

    return json_item(model, "tf-plot-1")


@pytest.mark.parametrize("n", [2, 9, 21])
def test_heatmap_equals_bokeh(n: int) -> None:
    from tickflow.connectors.reporting.plots import heatmap

    rng = np.random.default_rng(n)
    values = np.corrcoef(rng.normal(size=(n, 50)))
    values[0, n - 1] = values[n - 1, 0] = np.nan  # blank cells
    names = [f"S{i}" for i in range(n)]
    ours = bokeh_json.heatmap(names, names, values, "log-return correlation", "correlation",
                              width=500).item("tf-plot-1")
    theirs = bokeh_item(heatmap(names, names, values, "log-return correlation", "correlation",
                                width=500))
    assert canonical(ours) == canonical(theirs)
    assert json.dumps(canonical(ours)) == json.dumps(canonical(theirs))  # key order too


def test_histogram_selector_equals_bokeh() -> None:
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource

    from tickflow.connectors.reporting.plots import hover, plain_figure, selector

    rng = np.random.default_rng(1)
    choices = {}
    for name in ("alpha", "beta", "gamma"):
        counts, edges = np.histogram(rng.normal(size=500), bins=60)
        choices[name] = {"left": edges[:-1], "right": edges[1:],
                         "count": counts.astype(np.float64)}
    ours = bokeh_json.histogram_selector(choices, "feature", "distribution of {}", "value",
                                         "rows in the sample", 900, 320).item("tf-plot-1")
    shown = ColumnDataSource(dict(choices["alpha"]))
    fig = plain_figure("distribution of alpha", "value", "rows in the sample", width=900,
                       height=320)
    fig.quad(left="left", right="right", bottom=0, top="count", source=shown,
             color="#1f6fb4", alpha=0.75, line_color="white")
    hover(fig, [("from", "@left{0,0.0000}"), ("to", "@right{0,0.0000}"),
                ("count", "@count{0,0}")])
    pick = selector("feature", {"bins": shown}, {k: {"bins": v} for k, v in choices.items()},
                    fig.title, "distribution of {}")
    theirs = bokeh_item(column(pick, fig))
    assert json.dumps(canonical(ours)) == json.dumps(canonical(theirs))


def test_inline_js_equals_bokehs_inline_resources() -> None:
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.models import Select
    from bokeh.resources import INLINE

    from tickflow.connectors.reporting.page import _bokeh_js

    for widgets in (False, True):
        models = [Select(options=["a"])] if widgets else []
        if not widgets:
            from bokeh.plotting import figure
            models = [figure()]
        bundle = bundle_for_objs_and_resources(models, INLINE)
        assert bokeh_json.inline_js(widgets) == _bokeh_js(models)
        assert len(bundle.js_raw) == (3 if widgets else 2)


def test_research_page_equals_the_page_bokeh_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole research page, written without Bokeh and with it: the same HTML around the
    plots, the same documents in them (ids aside), the same inlined JavaScript."""
    import re

    import pyarrow as pa

    from tests.report_html import external_references, plots
    from tickflow.connectors import research_html
    from tickflow.connectors.base import RunContext
    from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink

    rng = np.random.default_rng(5)
    n = 40_000
    sym = np.array(["BTC-USD", "ETH-USD", "SOL-USD"])[rng.integers(0, 3, n)]
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    table = pa.table({
        "timestamp": pa.array(1_700_000_000_000_000 + np.arange(n) * 50_000,
                              pa.timestamp("us", tz="UTC")),
        "symbol": sym, "price": price, "log_return": rng.normal(0, 1e-3, n),
        "rsi": rng.uniform(0, 100, n), "zscore": rng.normal(size=n)})
    context = RunContext(job_name="same", quiet=True)
    config = ResearchReportConfig(kind="report", path="unused.html")
    sink = ResearchReportSink(config, context)
    for batch in table.to_batches(max_chunksize=8_192):
        sink.write(batch)
    res = sink.results()
    light = research_html.page(res, context, config).render()
    monkeypatch.setattr(bokeh_json, "available", lambda texts=(): False)
    heavy = research_html.page(res, context, config).render()
    ours, theirs = plots(light), plots(heavy)
    assert list(ours) == ["return_correlation", "feature_correlation", "feature_distributions"]
    assert list(ours) == list(theirs)
    for name in ours:
        assert json.dumps(canonical(ours[name])) == json.dumps(canonical(theirs[name])), name
    strip = re.compile(r"(class='tf-plot'[^>]*>).*?(</script>)", re.S)
    assert strip.sub(r"\1\2", light) == strip.sub(r"\1\2", heavy)
    assert not external_references(light)


def test_a_research_report_is_written_without_importing_bokeh(tmp_path) -> None:
    """In its own process (as a run): open, write, close, then Bokeh is still not loaded."""
    import subprocess
    import sys
    from pathlib import Path

    page = tmp_path / "r.html"
    code = f"""
import sys
import numpy as np, pyarrow as pa
from tickflow.connectors.base import RunContext
from tickflow.connectors.report import ResearchReportConfig, ResearchReportSink
n = 5_000
t = pa.table({{"timestamp": pa.array(np.arange(n) * 1_000_000, pa.timestamp("us", tz="UTC")),
               "symbol": np.where(np.arange(n) % 2, "A", "B"),
               "price": 100 + np.sin(np.arange(n)), "x": np.cos(np.arange(n))}})
sink = ResearchReportSink(ResearchReportConfig(kind="report", path={str(page)!r}),
                          RunContext(job_name="nobokeh", quiet=True))
sink.open(t.schema)
for b in t.to_batches(1_000):
    sink.write(b)
sink.close()
print(sorted(m for m in sys.modules if m.split(".")[0] == "bokeh"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2]).stdout
    assert out.strip() == "[]"
    assert "feature_distributions" in page.read_text()
