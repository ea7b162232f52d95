"""The arbitrage report page: statistics, an episode timeline and net edge distributions.

Why interactive: episodes last milliseconds to minutes over hours of capture, so the timeline
must zoom; the distribution per venue pair and threshold says how much of the edge is above
each threshold at a glance. Data are bounded: episodes are drawn one bar each (the longest
ones when there are too many) and distributions are fixed-size histograms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tickflow.connectors.reporting.page import Page

MAX_EPISODE_BARS = 5_000
_BINS = 80


def arbitrage_page(job_name: str, stats: list[Any],  # arbitrage_report.EpisodeStats rows
                   series: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]],
                   thresholds: list[float],
                   intervals: dict[tuple[str, str, float], tuple[np.ndarray, np.ndarray]]
                   ) -> Page:
    """The page model (``.render()`` gives the HTML) from the sink's statistics, series and
    episode (start, end) times per (pair, symbol, threshold)."""
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, Span

    from tickflow.connectors.reporting.plots import (
        COLORS,
        hover,
        plain_figure,
        selector,
        time_figure,
    )

    page = Page(f"{job_name}: arbitrage report")
    rows = sum(len(v[0]) for v in series.values())
    page.facts = [("series", f"{len(series)} (venue pair, symbol)"), ("rows", f"{rows:,}"),
                  ("thresholds (bps)", ", ".join(f"{t:g}" for t in thresholds))]
    sec = page.section("Episodes above each threshold")
    sec.table(["pair", "symbol", "> bps", "episodes", "total", "longest", "share of time",
               "rows"],
              [[s.pair, s.symbol, f"{s.threshold_bps:g}", f"{s.episodes:,}",
                f"{s.total_s:,.1f} s", f"{s.longest_s:,.2f} s", f"{s.share:.2%}",
                f"{s.rows:,}"] for s in stats])

    sec = page.section("Episode timeline")
    labels = [f"{pair} {symbol}" for pair, symbol in series]
    data: dict[str, list[Any]] = {k: [] for k in ("y", "left", "right", "threshold", "color",
                                                  "seconds")}
    for pair, symbol in series:
        for k, threshold in enumerate(thresholds):
            start, end = intervals[(pair, symbol, threshold)]
            data["y"] += [f"{pair} {symbol}"] * len(start)
            data["left"] += (start / 1e3).tolist()
            data["right"] += (np.maximum(end, start + 1_000) / 1e3).tolist()  # >= 1 ms wide
            data["threshold"] += [f"> {threshold:g} bps"] * len(start)
            data["color"] += [COLORS[k % len(COLORS)]] * len(start)
            data["seconds"] += ((end - start) / 1e6).tolist()
    shown = len(data["y"])
    if shown > MAX_EPISODE_BARS:  # keep the longest ones
        keep = np.sort(np.argsort(data["seconds"])[-MAX_EPISODE_BARS:])
        data = {k: [v[i] for i in keep] for k, v in data.items()}
        sec.text(f"{shown:,} episodes: the {MAX_EPISODE_BARS:,} longest are drawn.",
                 css="note")
    from bokeh.models import FactorRange

    fig = time_figure("episodes (net edge above the threshold, fresh quotes)", "",
                      height=max(220, 60 + 40 * len(labels)), y_range=FactorRange(*labels))
    bars = fig.hbar(y="y", left="left", right="right", height=0.6, color="color",
                    alpha=0.6, source=ColumnDataSource(data), legend_field="threshold")
    hover(fig, [("series", "@y"), ("threshold", "@threshold"), ("start", "@left{%F %T.%3N}"),
                ("seconds", "@seconds{0.000}")], renderers=[bars])
    fig.hover.formatters = {"@left": "datetime"}
    sec.text("Deeper thresholds are drawn over shallower ones; zoom into a stretch to see "
             "single episodes.", css="note")
    sec.plot("episode_timeline", fig)

    sec = page.section("Net edge distribution per pair and threshold")
    choices = {}
    for (pair, symbol), (_ts, edge, stale) in series.items():
        v = edge[(stale == 0) & np.isfinite(edge)]
        if not len(v):
            continue
        lo, hi = np.quantile(v, [0.001, 0.999])
        lo, hi = min(lo, min(thresholds)) - 1.0, max(hi, max(thresholds)) + 1.0
        counts, bin_edges = np.histogram(np.clip(v, lo, hi), bins=_BINS, range=(lo, hi))
        choices[f"{pair} {symbol}"] = {"bins": {"left": bin_edges[:-1],
                                                "right": bin_edges[1:],
                                                "count": counts.astype(np.float64)}}
    if not choices:
        sec.text("No fresh rows to draw.")
        return page
    first = next(iter(choices))
    src = ColumnDataSource(dict(choices[first]["bins"]))
    dist = plain_figure(f"net edge, {first}", "net edge (bps)", "fresh rows", width=900,
                        height=320)
    dist.quad(left="left", right="right", bottom=0, top="count", source=src,
              color="#1f6fb4", alpha=0.75, line_color="white")
    for k, threshold in enumerate(thresholds):
        dist.add_layout(Span(location=threshold, dimension="height", line_dash="dashed",
                             line_color=COLORS[k % len(COLORS)], line_width=1.5))
    hover(dist, [("from", "@left{0.00}"), ("to", "@right{0.00}"), ("rows", "@count{0,0}")])
    pick = selector("venue pair and symbol", {"bins": src}, choices, dist.title,
                    "net edge, {}")
    share = {f"> {t:g} bps": [s.share * 100 for s in stats if s.threshold_bps == t]
             for t in thresholds}
    from tickflow.connectors.reporting.plots import bars as bar_chart

    sec.text("Dashed lines are the thresholds; the bars below give the share of time above "
             "each one.", css="note")
    sec.plot("net_edge_distribution", column(pick, dist))
    sec.plot("share_above_threshold", bar_chart(
        [f"{s.pair} {s.symbol}" for s in stats if s.threshold_bps == thresholds[0]], share,
        "share of time above each threshold (%)", "% of covered time", width=900))
    return page
