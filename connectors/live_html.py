"""The live summary page (:class:`live_report.LiveReportData` to a :class:`Page`).

Why these panels: after a live run the questions are whether every symbol kept flowing, when
the signals fired, whether the consumer kept up (lag, latency) and what was rejected and why
(dead letters, tick-quality flags). Every panel is drawn from bounded counts, so the page stays
small whatever the run's length.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tickflow.connectors.live_report import LiveReportData
from tickflow.connectors.reporting.page import Page
from tickflow.engine.errors import SinkError


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3_600:.1f} h"


def live_page(data: LiveReportData) -> Page:
    """The page model (``.render()`` gives the HTML)."""
    from tickflow.connectors.reporting.plots import COLORS, bars, hover, plain_figure, time_figure

    page = Page(f"{data.job_name}: live run summary")
    rate = data.ticks / data.seconds if data.seconds > 0 else 0.0
    dead = sum(data.dead_letters.values())
    page.facts = [("duration", _duration(data.seconds)), ("messages", f"{data.messages:,}"),
                  ("ticks", f"{data.ticks:,} ({rate:,.0f} ticks/s)"),
                  ("symbols", f"{len(data.ticks_per_symbol):,}"),
                  ("signals", ", ".join(f"{k} {v:,}" for k, v in data.signal_totals.items())
                   or "none"),
                  ("dead letters", f"{dead:,}")]
    if dead and data.messages:
        page.warnings.append(f"{dead:,} of {data.messages:,} messages "
                             f"({dead / data.messages:.2%}) went to the dead-letter topic.")

    sec = page.section("Ticks and signals per symbol")
    kinds = list(data.signal_totals) or sorted({k for v in data.signals_per_symbol.values()
                                                for k in v})
    if data.ticks_per_symbol:
        sec.table(["symbol", "ticks", *kinds],
                  [[sym, f"{n:,}", *(f"{data.signals_per_symbol.get(sym, {}).get(k, 0):,}"
                                     for k in kinds)]
                   for sym, n in data.ticks_per_symbol.items()])
        sec.plot("ticks_per_symbol", bars(list(data.ticks_per_symbol),
                                          {"ticks": list(data.ticks_per_symbol.values())},
                                          "ticks per symbol", "ticks", width=900))
    else:
        sec.text("No per-symbol counts were recorded.")

    sec = page.section("Signals over time")
    if data.bucket_start_us and data.signals_over_time:
        from bokeh.models import ColumnDataSource

        x = np.asarray(data.bucket_start_us, dtype=np.float64) / 1e3
        columns: dict[str, Any] = {"x": x}
        columns.update({f"s{i}": np.asarray(v, dtype=np.float64)
                        for i, v in enumerate(data.signals_over_time.values())})
        source = ColumnDataSource(columns, name="signals_over_time")
        fig = time_figure(f"signals per {_duration(data.bucket_s)} ({data.time_basis})",
                          "signals", height=320)
        renderers = [fig.step("x", f"s{i}", source=source, mode="after", line_width=1.6,
                              color=COLORS[i % len(COLORS)], legend_label=kind)
                     for i, kind in enumerate(data.signals_over_time)]
        hover(fig, [("bucket", "@x{%F %T}"),
                    *((kind, f"@s{i}{{0,0}}") for i, kind in enumerate(data.signals_over_time))],
              datetime_x=True, renderers=renderers[:1])
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        sec.plot("signals_over_time", fig)
    else:
        sec.text("No signal fired in this run.")

    sec = page.section("Latency and consumer lag")
    if data.latency_ms:
        sec.table(["tick-to-signal latency", *data.latency_ms],
                  [["ms", *(f"{v:,.2f}" for v in data.latency_ms.values())]])
    else:
        sec.text("Latency was not measured in this run.")
    if data.lag_messages:
        from bokeh.models import ColumnDataSource

        lag = ColumnDataSource({"x": np.asarray(data.lag_at_s, dtype=np.float64),
                                "lag": np.asarray(data.lag_messages, dtype=np.float64)},
                               name="consumer_lag")
        fig = plain_figure("consumer lag (messages behind the partitions' ends)",
                           "seconds since the run started", "messages", width=900)
        line = fig.line("x", "lag", source=lag, line_width=1.4, color=COLORS[0])
        hover(fig, [("at", "@x{0.0} s"), ("lag", "@lag{0,0}")], renderers=[line])
        sec.text(f"Peak lag {max(data.lag_messages):,} messages, "
                 f"last {data.lag_messages[-1]:,}.", css="note")
        sec.plot("consumer_lag", fig)
    else:
        sec.text("Consumer lag was not recorded.")

    sec = page.section("Dead letters and tick quality")
    for title, counts, name, empty in (
            ("dead letters by reason", data.dead_letters, "dead_letters",
             "No message went to the dead-letter topic."),
            ("ticks flagged by the quality stage", data.quality, "quality",
             "The quality stage flagged no tick.")):
        if not counts:
            sec.text(empty)
            continue
        rows = sorted(counts.items(), key=lambda kv: -kv[1])
        sec.table(["reason", "count"], [[k, f"{v:,}"] for k, v in rows])
        sec.plot(name, bars([k for k, _ in rows], {"count": [v for _, v in rows]}, title,
                            "count", width=700))
    return page


def write_live_report(path: str | os.PathLike[str], data: LiveReportData) -> Path:
    """Render ``data`` as one self-contained HTML page at ``path``; returns the path.

    Raises:
        SinkError: the file cannot be written (the message names it).
    """
    target = Path(os.path.expanduser(os.fspath(path)))
    text = live_page(data).render()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SinkError(f"live report: cannot write {str(target)!r}: {exc}") from None
    return target


__all__ = ["live_page", "write_live_report"]
