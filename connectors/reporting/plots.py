"""Bokeh figure builders shared by the reports, and thinning of dense series.

Why thinning: a browser stays responsive with a few thousand glyphs per plot, and a mailed file
should stay small; a min/max per bucket keeps every spike visible where a stride would drop
them. Import this module only when a report is written (it imports Bokeh).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.models import (
    BasicTicker,
    ColorBar,
    ColumnDataSource,
    CustomJS,
    HoverTool,
    LinearColorMapper,
    Select,
)
from bokeh.palettes import Category10_10, RdBu11
from bokeh.plotting import figure

TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
COLORS = Category10_10
MAX_POINTS = 2_000


def thin_index(y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ~``max_points`` rows: first, last, and the min and max of each
    bucket (in time order), so the shape and every extreme survive."""
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    starts = edges[:-1][edges[:-1] < edges[1:]]
    filled = np.where(np.isfinite(y), y, np.nan)
    keep = [np.array([0, n - 1])]
    for lo, hi in zip(starts, np.append(starts[1:], n), strict=True):
        part = filled[lo:hi]
        if np.isnan(part).all():
            keep.append(np.array([lo]))
            continue
        keep.append(np.array([lo + np.nanargmin(part), lo + np.nanargmax(part)]))
    return np.unique(np.concatenate(keep))


def ms(ts_us: np.ndarray) -> np.ndarray:
    """Microseconds since the epoch as Bokeh's datetime unit (float milliseconds)."""
    return np.asarray(ts_us, dtype=np.float64) / 1e3


def finite(values: np.ndarray) -> np.ndarray:
    """``values`` as float64 with inf replaced by NaN (JSON and plots have no infinity)."""
    out = np.asarray(values, dtype=np.float64).copy()
    out[~np.isfinite(out)] = np.nan
    return out


def time_figure(title: str, y_label: str, height: int = 300, x_range: Any = None,
                y_axis_type: str = "linear", width: int = 1200, y_range: Any = None) -> Any:
    """A figure with a datetime x axis, the pan/zoom tools and no logo."""
    kwargs: dict[str, Any] = {"x_range": x_range} if x_range is not None else {}
    if y_range is not None:
        kwargs["y_range"] = y_range
    fig = figure(title=title, x_axis_type="datetime", y_axis_type=y_axis_type, height=height,
                 width=width, tools=TOOLS, active_scroll="wheel_zoom", **kwargs)
    fig.yaxis.axis_label = y_label
    fig.toolbar.logo = None
    return fig


def plain_figure(title: str, x_label: str, y_label: str, height: int = 300,
                 width: int = 600, **kwargs: Any) -> Any:
    fig = figure(title=title, height=height, width=width, tools=TOOLS, **kwargs)
    fig.xaxis.axis_label = x_label
    fig.yaxis.axis_label = y_label
    fig.toolbar.logo = None
    return fig


def hover(fig: Any, tooltips: list[tuple[str, str]], datetime_x: bool = False,
          renderers: Sequence[Any] | None = None) -> None:
    formatters = {"@x": "datetime"} if datetime_x else {}
    kwargs: dict[str, Any] = {"renderers": list(renderers)} if renderers else {}
    fig.add_tools(HoverTool(tooltips=tooltips, formatters=formatters, **kwargs))


def time_lines(title: str, y_label: str, ts_us: np.ndarray,
               series: dict[str, np.ndarray], height: int = 300, x_range: Any = None,
               y_axis_type: str = "linear", max_points: int = MAX_POINTS) -> Any:
    """Lines over time, each thinned on its own; hover shows time and value."""
    fig = time_figure(title, y_label, height, x_range, y_axis_type)
    renderers = []
    for i, (label, y) in enumerate(series.items()):
        y = finite(y)
        idx = thin_index(y, max_points)
        src = ColumnDataSource({"x": ms(ts_us[idx]), "y": y[idx]}, name=label)
        renderers.append(fig.line("x", "y", source=src, legend_label=label,
                                  color=COLORS[i % len(COLORS)], line_width=1.4))
    hover(fig, [("time", "@x{%F %T}"), ("value", "@y{0,0.0000}")], True, renderers)
    fig.legend.location = "top_left"
    fig.legend.click_policy = "hide"
    return fig


def histogram(values: np.ndarray, title: str, x_label: str, bins: int = 50,
              color: str = "#1f6fb4", width: int = 600) -> Any:
    """A histogram of the finite values (counts per bin, hover shows the bin)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    fig = plain_figure(title, x_label, "count", width=width)
    if not len(v):
        return fig
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    src = ColumnDataSource({"left": edges[:-1], "right": edges[1:], "count": counts})
    fig.quad(left="left", right="right", bottom=0, top="count", source=src, color=color,
             alpha=0.75, line_color="white")
    hover(fig, [("from", "@left{0,0.0000}"), ("to", "@right{0,0.0000}"), ("count", "@count")])
    return fig


def heatmap(x_labels: Sequence[str], y_labels: Sequence[str], values: np.ndarray, title: str,
            value_label: str, symmetric: bool = True, width: int = 800,
            height: int | None = None, text_format: str = "{:.2f}") -> Any:
    """A labelled grid of ``values[y, x]`` (NaN cells stay blank), values written in cells
    when there are few."""
    values = finite(values)
    xs, ys, vs, texts = [], [], [], []
    for i, yl in enumerate(y_labels):
        for j, xl in enumerate(x_labels):
            v = values[i, j]
            if np.isnan(v):
                continue
            xs.append(str(xl))
            ys.append(str(yl))
            vs.append(float(v))
            texts.append(text_format.format(v))
    fin = np.asarray(vs)
    bound = float(np.max(np.abs(fin))) if len(fin) else 1.0
    bound = bound or 1.0
    lo, hi = (-bound, bound) if symmetric else ((float(fin.min()), float(fin.max()))
                                                if len(fin) else (0.0, 1.0))
    if lo == hi:
        hi = lo + 1.0
    mapper = LinearColorMapper(palette=list(reversed(RdBu11)), low=lo, high=hi)
    height = height or max(250, 40 + 28 * len(y_labels))
    fig = figure(title=title, x_range=[str(x) for x in x_labels],
                 y_range=list(reversed([str(y) for y in y_labels])), width=width,
                 height=height, tools=TOOLS, toolbar_location="right")
    fig.toolbar.logo = None
    src = ColumnDataSource({"x": xs, "y": ys, "value": vs, "text": texts})
    fig.rect("x", "y", 1, 1, source=src, fill_color={"field": "value", "transform": mapper},
             line_color="white")
    if len(x_labels) * len(y_labels) <= 400:
        fig.text("x", "y", text="text", source=src, text_align="center",
                 text_baseline="middle", text_font_size="8pt")
    fig.add_layout(ColorBar(color_mapper=mapper, ticker=BasicTicker(), width=10), "right")
    fig.xaxis.major_label_orientation = 0.9 if len(x_labels) > 8 else 0.0
    hover(fig, [("x", "@x"), ("y", "@y"), (value_label, "@text")])
    return fig


def bars(categories: Sequence[str], series: dict[str, Sequence[float]], title: str,
         y_label: str, width: int = 800) -> Any:
    """Grouped vertical bars, one group per category."""
    from bokeh.transform import dodge

    cats = [str(c) for c in categories]
    fig = figure(title=title, x_range=cats, width=width, height=300, tools=TOOLS)
    fig.toolbar.logo = None
    data: dict[str, Any] = {"category": cats}
    k = len(series)
    step = 0.8 / max(k, 1)
    for i, (label, vals) in enumerate(series.items()):
        col = f"v{i}"
        data[col] = [float(v) if v is not None and np.isfinite(v) else np.nan for v in vals]
        fig.vbar(x=dodge("category", -0.4 + step * (i + 0.5), range=fig.x_range), top=col,
                 width=step * 0.9, source=ColumnDataSource(data), legend_label=label,
                 color=COLORS[i % len(COLORS)])
    fig.yaxis.axis_label = y_label
    fig.xaxis.major_label_orientation = 0.9 if len(cats) > 6 else 0.0
    hover(fig, [("", "@category"), *((lab, f"@v{i}{{0,0.0000}}")
                                     for i, lab in enumerate(series))])
    return fig


def selector(title: str, shown: dict[str, ColumnDataSource],
             choices: dict[str, dict[str, dict[str, Any]]], figure_title: Any = None,
             title_format: str = "{}") -> Any:
    """A Select that swaps the data of each ``shown`` source between ``choices``.

    ``choices`` maps an option to ``{shown key: data}``. They live in unrendered
    ColumnDataSources named ``choice:<option>:<key>``, so every option's data is in the
    embedded JSON and switching needs no server.
    """
    options = list(choices)
    sources = {opt: {key: ColumnDataSource(data, name=f"choice:{opt}:{key}")
                     for key, data in parts.items()} for opt, parts in choices.items()}
    select = Select(title=title, value=options[0], options=options)
    select.js_on_change("value", CustomJS(
        args={"shown": shown, "sources": sources, "fig_title": figure_title,
              "fmt": title_format},
        code="""const picked = sources[cb_obj.value];
for (const key of Object.keys(shown)) {
  shown[key].data = Object.assign({}, picked[key].data);
}
if (fig_title) { fig_title.text = fmt.replace('{}', cb_obj.value); }"""))
    return select
