"""The research report's outputs: the interactive HTML page, Markdown, the terminal tables.

Why separate from the sink: the sink accumulates; this module only renders its ``results()``.
The HTML page shows the per-symbol statistics (columns present only), the feature statistics,
the cross-symbol correlation of log returns, the correlation between features and a feature
distribution panel (a selector over histograms), all drawn from bounded data: a correlation
matrix, a row sample and fixed-size histograms, never the run's rows. The plots are written as
JSON without importing Bokeh (:mod:`reporting.bokeh_json`, the same documents), unless the
installed Bokeh is not the version that JSON was checked against.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from tickflow.connectors.base import RunContext
from tickflow.connectors.reporting import bokeh_json
from tickflow.connectors.reporting.page import Page
from tickflow.connectors.research_math import (
    STAT_LABELS,
    labels,
    mean_offdiag,
    pairwise_corr,
    stat_cells,
)
from tickflow.engine.errors import SinkError

_MAX_FEATURES_CORR = 60
_MAX_TABLE_SYMBOLS = 24  # larger correlation matrices are not printed to the terminal
_BINS = 60


def needs_bokeh() -> bool:
    """Whether :func:`page` will import Bokeh (the installed version is not the one whose
    documents :mod:`reporting.bokeh_json` writes)."""
    return not bokeh_json.available()


def import_page_modules() -> None:
    """Import what :func:`page` needs when it uses Bokeh; the report sink runs it on a thread
    while the run computes. Any failure is left for the real import in :func:`page` to raise."""
    try:
        import bokeh.embed  # noqa: F401

        import tickflow.connectors.reporting.plots  # noqa: F401
    except Exception:
        return


def render_page(res: dict[str, Any], context: RunContext, config: Any) -> str | None:
    """The HTML page :func:`write_report` would write, as text; None for a Markdown report
    (whose heatmap is a file written beside it)."""
    if Path(os.path.expanduser(config.path)).suffix.lower() == ".md":
        return None
    return page(res, context, config).render()


def write_report(res: dict[str, Any], context: RunContext, config: Any,
                 rendered: str | None = None) -> Path:
    """Write the report at ``config.path`` (HTML page, or Markdown with a PNG heatmap);
    ``rendered``: the HTML page already rendered from ``res`` (:func:`render_page`).

    Raises:
        SinkError: the file cannot be written (the message names it).
    """
    path = Path(os.path.expanduser(config.path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".md":
            text = markdown(res, context, config, path)
        else:
            text = rendered if rendered is not None else render_page(res, context, config)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SinkError(f"report sink: cannot write {str(path)!r}: {exc}") from None
    return path


def header_facts(res: dict[str, Any], context: RunContext) -> list[tuple[str, str]]:
    facts = [("job", context.job_name or "-")]
    for label, value in (("job file", context.job_path), ("job sha256", context.job_sha256),
                         ("tickflow", context.tickflow_version),
                         ("git commit", context.git_commit)):
        if value:
            facts.append((label, value))
    facts.append(("rows", f"{res['rows']:,}"))
    if res["start"] is not None:
        facts.append(("time range", f"{res['start'].isoformat()} .. {res['end'].isoformat()}"))
    facts.append(("correlation grid", f"{res['grid']} ({res['grid_points']:,} points)"))
    facts.append(("features", f"{len(res['features'])} numeric columns; distributions and "
                              f"feature correlations from a uniform sample of "
                              f"{len(next(iter(res['sample'].values()), [])):,} rows"))
    return facts


def _num(v: Any, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def feature_rows(res: dict[str, Any]) -> list[list[str]]:
    return [[name, f"{st['count']:,}", _num(st["missing"] * 100, ".1f") + "%"
             if math.isfinite(st["missing"]) else "n/a", _num(st["mean"]), _num(st["std"]),
             _num(st["min"]), _num(st["p1"]), _num(st["median"]), _num(st["p99"]),
             _num(st["max"])] for name, st in res["features"].items()]


FEATURE_HEADS = ["feature", "count", "missing", "mean", "std", "min", "p1", "median", "p99",
                 "max"]


def feature_correlation(res: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """Pearson correlation between features over the sampled rows (pairwise complete)."""
    names = [n for n, st in res["features"].items()
             if st["count"] and st["std"] == st["std"] and st["std"] > 0][:_MAX_FEATURES_CORR]
    if len(names) < 2:
        return names, np.zeros((len(names), len(names)))
    x = np.column_stack([res["sample"][n] for n in names])
    return names, pairwise_corr(x)


def page(res: dict[str, Any], context: RunContext, config: Any) -> Page:
    """The research report as a page model (``.render()`` gives the HTML)."""
    light = bokeh_json.available(list(res["features"]))
    if light:
        heatmap: Any = bokeh_json.heatmap
    else:
        from tickflow.connectors.reporting.plots import heatmap
    title = f"{context.job_name or 'tickflow'}: research report"
    pg = Page(title, facts=header_facts(res, context))
    sec = pg.section("Per-symbol statistics")
    shown = res["shown_stats"]
    sec.table(["symbol", *(STAT_LABELS[s] for s in shown)],
              [[s, *stat_cells(res["stats"][s], shown)] for s in res["symbols"]])
    if "mean_return" in shown:
        sec.text(f"Returns: column {config.returns}; volatility is their sample standard "
                 f"deviation.", css="note")
    sec = pg.section("Feature statistics")
    if res["features"]:
        sec.table(FEATURE_HEADS, feature_rows(res))
        sec.text("Every figure is computed on the uniform row sample (see the facts above): "
                 "count is the sampled rows with a value.", css="note")
    else:
        sec.text("The output has no numeric column besides the symbol and timestamp.")
    sec = pg.section(f"Correlation of log returns ({res['grid']} grid)")
    if res["note"]:
        sec.text(res["note"])
    corr = res["correlation"]
    if corr is not None:
        names = labels(res["symbols"])
        sec.plot("return_correlation", heatmap(names, names, corr,
                                               "log-return correlation", "correlation",
                                               width=min(1100, 250 + 45 * len(names))))
    names, fcorr = feature_correlation(res)
    sec = pg.section("Feature correlations")
    if len(names) >= 2:
        sec.text("Pearson correlation between features over the sampled rows.", css="note")
        sec.plot("feature_correlation", heatmap(names, names, fcorr, "feature correlation",
                                                "correlation",
                                                width=min(1100, 300 + 40 * len(names))))
    else:
        sec.text("Fewer than two varying features: no correlations.")
    _distributions(pg, res, light)
    return pg


def _distributions(pg: Page, res: dict[str, Any], light: bool) -> None:
    sec = pg.section("Feature distributions")
    choices = {}
    for name in res["features"]:
        v = res["sample"][name]
        v = v[np.isfinite(v)]
        if not len(v):
            continue
        lo, hi = np.quantile(v, [0.001, 0.999])  # the far tails would squash the shape
        if lo == hi:
            lo, hi = float(v.min()) - 0.5, float(v.max()) + 0.5
        counts, edges = np.histogram(np.clip(v, lo, hi), bins=_BINS, range=(lo, hi))
        choices[name] = {"bins": {"left": edges[:-1], "right": edges[1:],
                                  "count": counts.astype(np.float64)}}
    if not choices:
        sec.text("No feature has values to draw.")
        return
    sec.text("Histograms of the sampled rows, the extreme 0.1% on each side folded into the "
             "end bins.", css="note")
    if light:
        sec.plot("feature_distributions", bokeh_json.histogram_selector(
            {k: v["bins"] for k, v in choices.items()}, "feature", "distribution of {}",
            "value", "rows in the sample", width=900, height=320))
        return
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource

    from tickflow.connectors.reporting.plots import hover, plain_figure, selector

    first = next(iter(choices))
    shown = ColumnDataSource(dict(choices[first]["bins"]))
    fig = plain_figure(f"distribution of {first}", "value", "rows in the sample",
                       width=900, height=320)
    fig.quad(left="left", right="right", bottom=0, top="count", source=shown,
             color="#1f6fb4", alpha=0.75, line_color="white")
    hover(fig, [("from", "@left{0,0.0000}"), ("to", "@right{0,0.0000}"),
                ("count", "@count{0,0}")])
    pick = selector("feature", {"bins": shown}, choices, fig.title, "distribution of {}")
    sec.plot("feature_distributions", column(pick, fig))


def markdown(res: dict[str, Any], context: RunContext, config: Any, path: Path) -> str:
    """The Markdown report; writes the PNG correlation heatmap beside ``path``."""
    png_path = None
    if res["correlation"] is not None:
        png_path = path.with_name(f"{path.stem}_correlation.png")
        png_path.write_bytes(heatmap_png(res))
    title = f"{context.job_name or 'tickflow'}: research report"
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in header_facts(res, context)]
    shown = res["shown_stats"]
    lines += ["", "## Per-symbol statistics", "",
              "| symbol | " + " | ".join(STAT_LABELS[s] for s in shown) + " |",
              "|---|" + "---:|" * len(shown)]
    for s in res["symbols"]:
        lines.append(f"| {s} | " + " | ".join(stat_cells(res["stats"][s], shown)) + " |")
    if res["features"]:
        lines += ["", "## Feature statistics", "", "| " + " | ".join(FEATURE_HEADS) + " |",
                  "|---|" + "---:|" * (len(FEATURE_HEADS) - 1)]
        lines += ["| " + " | ".join(r) + " |" for r in feature_rows(res)]
    lines += ["", f"## Correlation of log returns ({res['grid']} grid)", ""]
    if res["note"]:
        lines += [res["note"], ""]
    corr = res["correlation"]
    if corr is not None:
        syms = res["symbols"]
        lines.append("| | " + " | ".join(syms) + " |")
        lines.append("|---|" + "---:|" * len(syms))
        for i, s in enumerate(syms):
            lines.append(f"| **{s}** | " + " | ".join(
                "-" if math.isnan(v) else f"{v:.2f}" for v in corr[i]) + " |")
        lines.append("")
    if png_path is not None:
        lines += [f"![correlation heatmap]({png_path.name})", ""]
    return "\n".join(lines)


def heatmap_png(res: dict[str, Any]) -> bytes:
    """The correlation matrix as a PNG (matplotlib's object API on Agg: no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    corr = res["correlation"]
    syms = res["symbols"]
    n = len(syms)
    side = min(max(4.0, 0.55 * n + 2.0), 30.0)
    fig = Figure(figsize=(side + 1.2, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(corr), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    names = labels(syms)
    if n <= 60:
        ax.set_xticks(range(n), labels=names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels=names, fontsize=8)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                v = corr[i, j]
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(v) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(f"log-return correlation ({res['grid']} grid)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def print_tables(res: dict[str, Any], context: RunContext) -> None:
    """The per-symbol statistics and the correlation matrix on the terminal (rich)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze to 80 columns
        console = Console(width=max(console.width, 120))
    t = Table(title=f"{context.job_name or 'tickflow'}: per-symbol statistics",
              box=box.SIMPLE_HEAD)
    t.add_column("symbol", no_wrap=True)
    for name in res["shown_stats"]:
        t.add_column(STAT_LABELS[name], justify="right", no_wrap=True)
    for sym in res["symbols"]:
        t.add_row(sym, *stat_cells(res["stats"][sym], res["shown_stats"]))
    console.print(t)
    corr = res["correlation"]
    if corr is None:
        if res["note"]:
            console.print(res["note"])
        return
    syms = res["symbols"]
    if len(syms) > _MAX_TABLE_SYMBOLS:
        console.print(f"correlation matrix: {len(syms)} symbols, see the report file "
                      f"(mean pairwise {mean_offdiag(corr):.2f})")
        return
    ct = Table(title=f"log-return correlations on a {res['grid']} grid",
               box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    ct.add_column("", no_wrap=True)
    for label in labels(syms):
        ct.add_column(label, justify="right", no_wrap=True)
    for i, s in enumerate(syms):
        cells = []
        for j in range(len(syms)):
            v = corr[i, j]
            if math.isnan(v):
                cells.append("[dim]-[/dim]")
            else:
                style = "bold green" if v >= 0.5 else "green" if v >= 0.2 else \
                    "red" if v < -0.2 else ""
                cells.append(f"[{style}]{v:.2f}[/{style}]" if style else f"{v:.2f}")
        ct.add_row(s, *cells)
    console.print(ct)
