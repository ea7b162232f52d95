"""The backtest tearsheet: :class:`TearsheetData` to one interactive, self-contained page.

Sections, in order: metrics (the same rows and warnings as the terminal), equity against buy
and hold (linear and log tabs) over the underwater curve, the worst drawdowns, rolling Sharpe
and volatility, a returns heatmap, exposure, trades on the price per symbol (a selector),
the trade return distribution, MAE/MFE, costs and the per-symbol table. Bokeh is imported
here, so import this module only to write a report.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, TabPanel, Tabs

from tickflow.connectors.reporting.page import Page
from tickflow.connectors.reporting.plots import (
    finite,
    heatmap,
    histogram,
    hover,
    ms,
    plain_figure,
    selector,
    time_figure,
    time_lines,
)
from tickflow.engine.backtest.summary import (
    LABELS,
    fmt,
    metric_text,
    shown_name,
    span_text,
    summarise,
)
from tickflow.engine.backtest.tearsheet_data import (
    TearsheetData,
    drawdown_periods,
    exposure_series,
    period_returns,
    rolling_stats,
)

MAX_MARKERS = 400  # trades per symbol drawn one by one; more are aggregated per time bucket
SECTIONS = ("Metrics", "Equity and drawdown", "Worst drawdowns", "Rolling Sharpe and volatility",
            "Returns heatmap", "Exposure", "Trades on the price", "Trade returns",
            "MAE and MFE", "Costs", "Per symbol")


def _when(us: int | None) -> str:
    if us is None:
        return "not recovered"
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def tearsheet_page(d: TearsheetData) -> Page:
    """The page model of a backtest report (render it with ``.render()``)."""
    summary = summarise(d.metrics, d.benchmark_metrics)
    page = Page(d.title, facts=list(d.facts), warnings=list(summary.warnings))
    sec = page.section("Metrics")
    sec.table(["metric", "strategy", "buy and hold"], [list(r) for r in summary.rows])
    sec.text(f"Returns and risk are measured on equity sampled every {d.grid or 'grid step'}. "
             + " ".join(d.notes), css="note")
    _equity(page, d)
    _drawdowns(page, d)
    _rolling(page, d)
    _heatmap(page, d)
    _exposure(page, d)
    _trades_on_price(page, d)
    _trade_returns(page, d)
    _costs(page, d)
    _per_symbol(page, d)
    return page


def tearsheet_html(d: TearsheetData) -> str:
    return tearsheet_page(d).render()


def _equity(page: Page, d: TearsheetData) -> None:
    sec = page.section("Equity and drawdown")
    series = {"strategy": d.equity}
    if d.benchmark_equity is not None:
        series["buy and hold"] = d.benchmark_equity
    linear = time_lines("equity", "equity", d.ts_us, series, height=350)
    positive = all((np.asarray(v) > 0).all() for v in series.values())
    tabs = [TabPanel(child=linear, title="linear")]
    if positive:
        log = time_lines("equity (log scale)", "equity", d.ts_us, series, height=350,
                         x_range=linear.x_range, y_axis_type="log")
        tabs.append(TabPanel(child=log, title="log scale"))
    peak = np.maximum.accumulate(d.equity)
    under = time_lines("underwater: drawdown from the running peak", "drawdown",
                       d.ts_us, {"drawdown": d.equity / peak - 1.0}, height=200,
                       x_range=linear.x_range)
    under.yaxis.formatter.use_scientific = False
    # plots sharing an x range are one embedded item (a model belongs to one document)
    sec.plot("equity", column(Tabs(tabs=tabs), under))


def _drawdowns(page: Page, d: TearsheetData) -> None:
    sec = page.section("Worst drawdowns")
    periods = drawdown_periods(d.ts_us, d.equity, 5)
    if not periods:
        sec.text("The equity never fell below a previous peak.")
        return
    sec.table(["#", "depth", "peak", "trough", "recovered", "duration"],
              [[str(i + 1), fmt(p["depth"], "pct"), _when(p["peak"]), _when(p["trough"]),
                _when(p["recovery"]), span_text(p["duration_s"])]
               for i, p in enumerate(periods)])


def _rolling(page: Page, d: TearsheetData) -> None:
    sec = page.section("Rolling Sharpe and volatility")
    ts, sharpe, vol, window, annual = rolling_stats(d.ts_us, d.equity)
    if not len(ts):
        sec.text(f"Too few grid points for a rolling window of {window}.")
        return
    basis = "annualised" if annual else f"over the window, not annualised (sample " \
                                        f"{span_text(float(d.metrics.get('elapsed_s') or 0))})"
    sec.text(f"Window: {window} grid steps of {d.grid or 'the grid'}; figures {basis}.",
             css="note")
    fig = time_lines(f"rolling Sharpe ({basis})", "Sharpe", ts, {"Sharpe": sharpe},
                     height=220)
    fig2 = time_lines(f"rolling volatility ({basis})", "volatility", ts,
                      {"volatility": vol}, height=220, x_range=fig.x_range)
    sec.plot("rolling", column(fig, fig2))


def _heatmap(page: Page, d: TearsheetData) -> None:
    sec = page.section("Returns heatmap")
    kind, rows, cols, grid = period_returns(d.ts_us, d.equity)
    sec.text(f"{kind.capitalize()} returns of the strategy's equity, compounded within each "
             f"bucket.", css="note")
    sec.plot("returns_heatmap", heatmap(cols, rows, grid * 100, f"{kind} returns (%)",
                                        "return %", width=1000))


def _exposure(page: Page, d: TearsheetData) -> None:
    sec = page.section("Exposure")
    gross, count = exposure_series(d.ts_us, d.equity, d.trades)
    fig = time_lines("gross exposure (entry value of open positions / equity)", "exposure",
                     d.ts_us, {"gross exposure": gross}, height=220)
    fig2 = time_lines("open positions", "positions", d.ts_us,
                      {"open positions": count.astype(np.float64)}, height=180,
                      x_range=fig.x_range)
    sec.plot("exposure", column(fig, fig2))


def _marks(d: TearsheetData, name: str) -> dict[str, list]:
    """Entry and exit markers of one symbol; aggregated per time bucket when dense."""
    t = d.trades
    mine = np.flatnonzero(t["symbol"] == name)
    xs, ys, kinds, markers, colors, sizes, counts, pnls = ([] for _ in range(8))
    if len(mine) <= MAX_MARKERS:
        for k in mine:
            side = t["side"][k]
            for when, px, label, marker, color in (
                    (t["entry_ts"][k], t["entry_price"][k],
                     "long entry" if side > 0 else "short entry",
                     "triangle" if side > 0 else "inverted_triangle",
                     "#27ae60" if side > 0 else "#8e44ad"),
                    (t["exit_ts"][k], t["exit_price"][k],
                     "long exit" if side > 0 else "short exit",
                     "inverted_triangle" if side > 0 else "triangle",
                     "#c0392b" if side > 0 else "#e67e22")):
                xs.append(float(when) / 1e3)
                ys.append(float(px))
                kinds.append(label)
                markers.append(marker)
                colors.append(color)
                sizes.append(9.0)
                counts.append(1)
                pnls.append(float(t["pnl"][k]))
    elif len(mine):
        entry = t["entry_ts"][mine].astype(np.int64)
        edges = np.linspace(entry.min(), entry.max() + 1, MAX_MARKERS // 2 + 1)
        which = np.clip(np.searchsorted(edges, entry, side="right") - 1, 0, len(edges) - 2)
        for b in np.unique(which):
            sel = mine[which == b]
            n = len(sel)
            pnl = float(t["pnl"][sel].sum())
            xs.append(float(t["entry_ts"][sel].mean()) / 1e3)
            ys.append(float(t["entry_price"][sel].mean()))
            kinds.append(f"{n} trades entered")
            markers.append("circle")
            colors.append("#27ae60" if pnl >= 0 else "#c0392b")
            sizes.append(float(6 + 3 * np.sqrt(n)))
            counts.append(n)
            pnls.append(pnl)
    return {"x": xs, "y": ys, "kind": kinds, "marker": markers, "color": colors,
            "size": sizes, "count": counts, "pnl": pnls}


def _trades_on_price(page: Page, d: TearsheetData) -> None:
    sec = page.section("Trades on the price")
    traded = [s for s in d.prices if (d.trades["symbol"] == s).any()]
    order = [*traded, *(s for s in d.prices if s not in traded)]
    if d.plot_symbol in order:
        order.remove(d.plot_symbol)
        order.insert(0, d.plot_symbol)
    if not order:
        sec.text("No prices to draw.")
        return
    choices = {}
    for s in order:
        ts, mid = d.prices[s]
        choices[s] = {"price": {"x": ms(ts), "y": finite(mid)}, "marks": _marks(d, s)}
    first = order[0]
    price_src = ColumnDataSource(dict(choices[first]["price"]))
    marks_src = ColumnDataSource(dict(choices[first]["marks"]))
    fig = time_figure(f"trades on {first}", "mid price", height=380)
    fig.line("x", "y", source=price_src, color="#555", line_width=1.0, legend_label="mid")
    glyph = fig.scatter("x", "y", source=marks_src, marker="marker", color="color",
                        size="size", alpha=0.85)
    hover(fig, [("time", "@x{%F %T}"), ("", "@kind"), ("price", "@y{0,0.0000}"),
                ("P&L", "@pnl{0,0.00}")], True, [glyph])
    pick = selector("symbol", {"price": price_src, "marks": marks_src}, choices, fig.title,
                    "trades on {}")
    sec.text(f"Markers are entries and exits; a symbol with more than {MAX_MARKERS} trades "
             f"shows them aggregated per time bucket (circle size ~ count, colour = net P&L). "
             f"The price line keeps the minimum and maximum of each bucket of ticks.",
             css="note")
    sec.plot("trades_on_price", column(pick, fig))


def _trade_returns(page: Page, d: TearsheetData) -> None:
    sec = page.section("Trade returns")
    ret = np.asarray(d.trades["return"], dtype=np.float64) * 1e4
    if not len(ret):
        sec.text("No trade was closed.")
        page.section("MAE and MFE").text("No trade was closed.")
        return
    sec.plot("trade_returns", histogram(ret, "trade return (bps, net of fees)", "bps",
                                        bins=int(min(60, max(10, len(ret) // 5))), width=900))
    mae = page.section("MAE and MFE")
    if "mae" not in d.trades:
        mae.text("The trade log carries no price path (MAE/MFE not computed).")
        return
    mae.text("Maximum adverse and favourable excursion of each trade's mid price from its "
             "entry fill until its exit fill, in bps of the entry price, against the trade's "
             "return.", css="note")
    win = ret > 0
    data = {"mae": finite(d.trades["mae"]) * 1e4, "mfe": finite(d.trades["mfe"]) * 1e4,
            "ret": ret, "symbol": [str(s) for s in d.trades["symbol"]],
            "color": np.where(win, "#27ae60", "#c0392b").tolist()}
    src = ColumnDataSource(data)
    figs = []
    for key, label in (("mae", "MAE (bps)"), ("mfe", "MFE (bps)")):
        fig = plain_figure(f"{label} against trade return", label, "trade return (bps)")
        fig.scatter(key, "ret", source=src, color="color", size=5, alpha=0.6)
        hover(fig, [("symbol", "@symbol"), (label, f"@{key}{{0.0}}"),
                    ("return", "@ret{0.0}")])
        figs.append(fig)
    from bokeh.layouts import row

    mae.plot("mae_mfe", row(*figs))


def _costs(page: Page, d: TearsheetData) -> None:
    sec = page.section("Costs")
    t = d.trades
    names = sorted({str(s) for s in t["symbol"]})
    if not names:
        sec.text("No trade was closed: no costs.")
        return
    parts = [("fees", t["fees"]), ("spread", t.get("spread_cost")),
             ("slippage", t.get("slippage_cost"))]
    rows, series = [], {label: [] for label, _ in parts}
    for s in [*names, "total"]:
        mask = np.ones(len(t["pnl"]), bool) if s == "total" else (t["symbol"] == s)
        cells = []
        for label, values in parts:
            v = float(np.nansum(values[mask])) if values is not None else float("nan")
            cells.append(fmt(v, "money"))
            if s != "total":
                series[label].append(v)
        rows.append([s, *cells, fmt(float(t["pnl"][mask].sum()), "money")])
    sec.text("Fees as charged; spread = what fills paid against the mid of their tick "
             "(negative when limit orders earned it); slippage = the fill's distance from the "
             "last price on ticks without quotes. Spread and slippage are already inside the "
             "fill prices, hence inside the P&L.", css="note")
    sec.table(["symbol", "fees", "spread", "slippage", "net P&L"], rows)
    from tickflow.connectors.reporting.plots import bars

    sec.plot("costs", bars(names, series, "costs per symbol", "currency", width=1000))


def _per_symbol(page: Page, d: TearsheetData) -> None:
    sec = page.section("Per symbol")
    first = next(iter(d.per_symbol.values()), {})
    sharpe = shown_name("sharpe", first)
    heads = ["symbol", "trades", "return", LABELS[sharpe][0], "max drawdown", "win rate",
             "profit factor", "fees", "exposure", "buy & hold return"]
    rows = [[s, *(metric_text(k, m) for k in ("trade_count", "total_return", sharpe,
                                              "max_drawdown", "win_rate", "profit_factor",
                                              "fees_paid", "exposure")),
             metric_text("total_return", d.benchmark_per_symbol[s])
             if s in d.benchmark_per_symbol else "-"]
            for s, m in d.per_symbol.items()]
    sec.table(heads, rows)
