"""The one place backtest metrics become text, for the terminal and the HTML alike.

Why: the same numbers and the same warnings must reach both, and no ``inf``/``nan`` or absurd
annualised figure may be printed as a result. A sample shorter than :data:`MIN_ANNUAL_SPAN_S`
is never annualised: its annual figures read ``n/a (sample 2.8 h)`` and the figure for the
period is shown beside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MIN_ANNUAL_SPAN_S = 30 * 86_400.0
MIN_TRADES = 30  # fewer closed trades than this: trade statistics get a warning

# annualised metric -> its figure over the period
PERIOD_OF = {"annual_return": "total_return", "volatility": "period_volatility",
             "sharpe": "period_sharpe", "sortino": "period_sortino",
             "calmar": "return_over_drawdown"}

# metric: (label, format); percentages are fractions shown as %
LABELS: dict[str, tuple[str, str]] = {
    "total_return": ("total return", "pct"), "annual_return": ("annualised return", "pct"),
    "period_volatility": ("volatility (period)", "pct"),
    "volatility": ("volatility (ann.)", "pct"),
    "period_sharpe": ("Sharpe (period)", "num"), "sharpe": ("Sharpe (ann.)", "num"),
    "period_sortino": ("Sortino (period)", "num"), "sortino": ("Sortino (ann.)", "num"),
    "return_over_drawdown": ("return / max drawdown", "num"), "calmar": ("Calmar", "num"),
    "max_drawdown": ("max drawdown", "pct"),
    "max_drawdown_duration_s": ("max DD duration", "dur"),
    "trade_count": ("trades", "int"), "win_rate": ("win rate", "pct"),
    "profit_factor": ("profit factor", "num"), "avg_trade": ("average trade", "money"),
    "avg_trade_return": ("average trade return", "pct"), "turnover": ("turnover", "num"),
    "exposure": ("exposure", "pct"), "fees_paid": ("fees paid", "money"),
}
_LONG_ORDER = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar")
_SHORT_ORDER = ("total_return", "annual_return", "period_volatility", "volatility",
                "period_sharpe", "sharpe", "period_sortino", "sortino",
                "return_over_drawdown", "calmar")
_REST = ("max_drawdown", "max_drawdown_duration_s", "trade_count", "win_rate",
         "profit_factor", "avg_trade", "avg_trade_return", "turnover", "exposure",
         "fees_paid")


def span_text(seconds: float) -> str:
    """A sample's length for people: 45 s, 10.0 min, 2.8 h, 12.5 d."""
    if not math.isfinite(seconds) or seconds < 0:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def is_annualisable(elapsed_s: float | None) -> bool:
    return elapsed_s is not None and math.isfinite(elapsed_s) and \
        elapsed_s >= MIN_ANNUAL_SPAN_S


def fmt(value: Any, kind: str, compact: bool = False) -> str:
    """A number for people: 12.3%, 1.42, 2h05m, 1,234.56; ``n/a`` for NaN or infinity."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "pct":
        if abs(value) >= 1e4:
            return f"{value + 1:,.3g}x"  # a growth multiple reads better than 1e+08%
        return f"{value * 100:,.1f}%" if compact else f"{value * 100:,.2f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "dur":
        s = int(value)
        if s >= 86_400:
            return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"
        return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    return f"{value:,.0f}" if compact and abs(value) >= 100 else f"{value:,.2f}"


def _why_missing(name: str, m: Mapping[str, Any]) -> str:
    """Why a metric has no finite value, in a few words."""
    trades = m.get("trade_count") or 0
    if name in ("win_rate", "avg_trade", "avg_trade_return", "profit_factor") and not trades:
        return "no trades"
    if name == "profit_factor":
        value = m.get(name)
        if value is not None and value == math.inf:
            return "no losing trades"
        return "no P&L"
    if name in ("calmar", "return_over_drawdown") and m.get("max_drawdown") == 0:
        return "no drawdown"
    if name in ("sharpe", "sortino", "volatility", "period_sharpe", "period_sortino",
                "period_volatility"):
        if m.get("period_volatility") == 0:
            return "flat equity"
        if name.endswith("sortino"):
            return "no losing periods"
        return "too few points"
    return ""


def shown_name(name: str, m: Mapping[str, Any]) -> str:
    """``name``, or its figure for the period when ``m``'s sample is too short to annualise
    (for tables with one column per metric, such as the per-symbol and sweep tables)."""
    if name in PERIOD_OF and not is_annualisable(m.get("elapsed_s")):
        return PERIOD_OF[name]
    return name


def metric_text(name: str, m: Mapping[str, Any], compact: bool = False) -> str:
    """One metric of ``m`` (a metrics dict with ``elapsed_s``) as shown in every report."""
    kind = LABELS.get(name, ("", "num"))[1]
    if name in PERIOD_OF and not is_annualisable(m.get("elapsed_s")):
        return f"n/a (sample {span_text(float(m.get('elapsed_s') or 0.0))})"
    value = m.get(name)
    text = fmt(value, kind, compact)
    if text == "n/a":
        why = _why_missing(name, m)
        return f"n/a ({why})" if why and not compact else text
    return text


@dataclass
class MetricSummary:
    """The metrics table (label, strategy, benchmark) and the warnings that go with it."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def summarise(metrics: Mapping[str, Any],
              benchmark: Mapping[str, Any] | None = None) -> MetricSummary:
    """Rows and warnings for a strategy's metrics and its benchmark's (if any)."""
    elapsed = float(metrics.get("elapsed_s") or 0.0)
    short = not is_annualisable(elapsed)
    names = [*(_SHORT_ORDER if short else _LONG_ORDER), *_REST]
    rows = [(LABELS[n][0], metric_text(n, metrics),
             metric_text(n, benchmark) if benchmark else "-") for n in names]
    return MetricSummary(rows, sample_warnings(metrics))


def sample_warnings(m: Mapping[str, Any]) -> list[str]:
    """What a reader must know before trusting the figures."""
    out = []
    elapsed = float(m.get("elapsed_s") or 0.0)
    if not is_annualisable(elapsed):
        out.append(f"The sample covers {span_text(elapsed)}, less than "
                   f"{MIN_ANNUAL_SPAN_S / 86_400:.0f} days: annualised figures are not shown "
                   f"(they would extrapolate noise); the figures for the period are shown "
                   f"instead, not annualised.")
    trades = int(m.get("trade_count") or 0)
    if trades == 0:
        out.append("No trade was closed: trade statistics are not available.")
    elif trades < MIN_TRADES:
        out.append(f"Only {trades} trade{'s' if trades > 1 else ''} closed: trade statistics "
                   f"(win rate, profit factor, averages) are noise at this count.")
    if m.get("period_volatility") == 0:
        out.append("The equity never changed: risk-adjusted figures are not available.")
    return out
