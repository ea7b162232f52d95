"""Draw the cookbook's figures from the example jobs' outputs (run the jobs first).

    OUT_DIR=out run-job jobs/examples/funding_carry.yaml
    OUT_DIR=out run-job jobs/examples/portfolio_risk.yaml
    OUT_DIR=out run-job jobs/examples/cross_asset_hy.yaml          # on data/sim_ticks.parquet
    run-job simulate -o out/days.parquet --rows 2000000 --ticks-per-second 5   # ~4.6 days
    TICKS=out/days.parquet OUT_DIR=out run-job jobs/examples/multi_timeframe.yaml
    python examples/cookbook_plots.py --out-dir out [--only NAME ...]   # -> out/figures/

The figures go to ``OUT_DIR/figures`` unless ``--docs DIR`` is given: the committed ones in
``docs/cookbook`` are replaced only when asked (``--docs docs/cookbook``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyarrow.parquet as pq


def _frame(path: Path, symbol: str, columns: list[str]) -> dict[str, np.ndarray]:
    t = pq.read_table(path, columns=["timestamp", "symbol", *columns])
    keep = np.array(t.column("symbol").to_pylist()) == symbol
    out = {c: t.column(c).to_numpy(zero_copy_only=False)[keep] for c in columns}
    ts = t.column("timestamp").to_numpy(zero_copy_only=False)[keep]
    out["minutes"] = (ts - ts[0]) / np.timedelta64(60, "s")
    return out


def funding_carry(out_dir: Path, docs: Path, symbol: str = "ETH-USD") -> Path:
    f = _frame(out_dir / "funding_carry.parquet", symbol,
               ["funding_apr", "basis_apr", "carry_edge_smooth_bps", "carry_alert"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    top.plot(f["minutes"], f["funding_apr"] * 100, lw=0.7, label="funding APR %")
    top.plot(f["minutes"], f["basis_apr"] * 100, lw=0.7, label="basis APR %")
    top.legend(loc="upper right")
    top.set_title(f"{symbol}: annualised funding and basis (simulated perp)")
    bottom.plot(f["minutes"], f["carry_edge_smooth_bps"], lw=0.7, color="k",
                label="carry edge after fees (bps/yr, smoothed)")
    bottom.axhline(2000, color="tab:red", ls="--", lw=0.8, label="alert threshold")
    alert = f["carry_alert"] == 1
    bottom.fill_between(f["minutes"], 0, 1, where=alert, color="tab:red", alpha=0.15,
                        transform=bottom.get_xaxis_transform(), label="carry_alert")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper right", fontsize=8)
    return _save(fig, docs / "funding-carry.png")


def portfolio_risk(out_dir: Path, docs: Path, symbol: str = "ETH-USD") -> Path:
    f = _frame(out_dir / "portfolio_risk.parquet", symbol,
               ["pnl", "drawdown", "var", "cvar", "kill_switch"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    top.plot(f["minutes"], f["pnl"] * 100, lw=0.7, label="P&L (log %, one unit)")
    top.plot(f["minutes"], f["drawdown"] * 100, lw=0.7, label="drawdown %")
    kill = f["kill_switch"] == 1
    top.fill_between(f["minutes"], 0, 1, where=kill, color="tab:red", alpha=0.2,
                     transform=top.get_xaxis_transform(), label="kill_switch")
    top.legend(loc="lower left", fontsize=8)
    top.set_title(f"{symbol}: P&L, drawdown and the kill switch")
    bottom.plot(f["minutes"], f["var"] * 1e4, lw=0.7, label="99% VaR (bps per tick)")
    bottom.plot(f["minutes"], f["cvar"] * 1e4, lw=0.7, label="99% CVaR (bps per tick)")
    bottom.axhline(20, color="tab:red", ls="--", lw=0.8, label="CVaR limit")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper left", fontsize=8)
    return _save(fig, docs / "portfolio-risk.png")


def multi_timeframe(out_dir: Path, docs: Path, symbol: str = "BTC-USD") -> Path:
    f = _frame(out_dir / "multi_timeframe.parquet", symbol,
               ["price", "close_1m", "close_1h", "close_1d", "vwap_1h", "trend_aligned",
                "above_hourly_vwap"])
    hours = f["minutes"] / 60
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6))
    every = max(1, len(hours) // 20_000)                # plenty of points for a 9-inch line
    top.plot(hours[::every], f["price"][::every], lw=0.4, color="0.6", label="tick price")
    top.plot(hours, f["close_1h"], lw=0.9, drawstyle="steps-post",
             label="close_1h (last closed hour)")
    top.plot(hours, f["close_1d"], lw=1.4, drawstyle="steps-post",
             label="close_1d (last closed day)")
    aligned = f["trend_aligned"] == 1
    top.fill_between(hours, 0, 1, where=aligned, color="tab:green", alpha=0.12, lw=0,
                     transform=top.get_xaxis_transform(), label="trend_aligned")
    top.set_title(f"{symbol}: hour and day bars joined back onto every tick")
    top.set_xlabel("hours")
    top.legend(loc="upper left", fontsize=8)
    zoom = (hours >= 30) & (hours < 32)
    bottom.plot(hours[zoom], f["price"][zoom], lw=0.4, color="0.6", label="tick price")
    bottom.plot(hours[zoom], f["close_1m"][zoom], lw=0.9, drawstyle="steps-post",
                label="close_1m")
    bottom.plot(hours[zoom], f["vwap_1h"][zoom], lw=1.2, drawstyle="steps-post",
                label="vwap_1h (last closed hour)")
    above = (f["above_hourly_vwap"] == 1)[zoom]
    bottom.fill_between(hours[zoom], 0, 1, where=above, color="tab:blue", alpha=0.1, lw=0,
                        transform=bottom.get_xaxis_transform(), label="above_hourly_vwap")
    bottom.set_title("hours 30 to 32: minute closes and the last hour's VWAP", fontsize=10)
    bottom.set_xlabel("hours")
    bottom.legend(loc="upper left", fontsize=8)
    return _save(fig, docs / "multi-timeframe.png")


def cross_asset_correlation(out_dir: Path, docs: Path) -> Path:
    t = pq.read_table(out_dir / "cross_asset_hy.parquet",
                      columns=["timestamp", "symbol", "midprice", "hy_corr", "hy_corr_5s",
                               "hy_corr_10m", "corr_breakdown"])
    c = {n: t.column(n).to_numpy(zero_copy_only=False) for n in t.column_names}
    minutes = (c["timestamp"] - c["timestamp"][0]) / np.timedelta64(60, "s")
    symbol = np.array(t.column("symbol").to_pylist())
    fired = np.flatnonzero(c["corr_breakdown"] == 1)
    fig, (full, prices, corr) = plt.subplots(3, 1, figsize=(9, 8))
    every = max(1, len(minutes) // 20_000)
    full.plot(minutes[::every], c["hy_corr"][::every], lw=0.5, label="hy_corr (60 s)")
    full.plot(minutes[::every], c["hy_corr_10m"][::every], lw=1.0, label="hy_corr_10m")
    full.axhline(0.2, color="tab:red", ls="--", lw=0.8, label="breakdown threshold")
    full.plot(minutes[fired], c["hy_corr_5s"][fired], "v", color="tab:red", ms=7,
              label="corr_breakdown")
    full.set_ylim(-0.2, 1.1)
    full.set_title("BTC-USD / ETH-USD Hayashi-Yoshida correlation on asynchronous ticks")
    full.legend(loc="lower left", fontsize=8, ncol=2)
    at = minutes[fired[0]] if len(fired) else minutes[len(minutes) // 2]
    zoom = (minutes >= at - 2) & (minutes < at + 2)
    for name in ("BTC-USD", "ETH-USD"):
        keep = zoom & (symbol == name)
        bps = (np.log(c["midprice"][keep]) - np.log(c["midprice"][keep][0])) * 1e4
        prices.plot(minutes[keep], bps, lw=0.7, label=f"{name} mid (bps)")
    prices.set_title(f"minutes {at - 2:.1f} to {at + 2:.1f}: one coin moves on its own",
                     fontsize=10)
    prices.legend(loc="lower left", fontsize=8)
    corr.plot(minutes[zoom], c["hy_corr"][zoom], lw=0.6, label="hy_corr (60 s)")
    corr.plot(minutes[zoom], c["hy_corr_5s"][zoom], lw=1.0, label="hy_corr_5s")
    corr.axhline(0.2, color="tab:red", ls="--", lw=0.8)
    in_zoom = fired[zoom[fired]]
    corr.plot(minutes[in_zoom], c["hy_corr_5s"][in_zoom], "v", color="tab:red", ms=7,
              label="corr_breakdown")
    corr.set_xlabel("minutes")
    corr.legend(loc="lower left", fontsize=8)
    return _save(fig, docs / "cross-asset-correlation.png")


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


FIGURES = {"funding-carry": funding_carry, "portfolio-risk": portfolio_risk,
           "multi-timeframe": multi_timeframe,
           "cross-asset-correlation": cross_asset_correlation}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="out", type=Path)
    parser.add_argument("--docs", default=None, type=Path, metavar="DIR",
                        help="where the figures go (default: OUT_DIR/figures; "
                             "docs/cookbook replaces the committed ones)")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES),
                        help="draw only these figures (default: all)")
    args = parser.parse_args(argv)
    target = args.docs if args.docs is not None else args.out_dir / "figures"
    for name in args.only or FIGURES:
        print(f"wrote {FIGURES[name](args.out_dir, target)}")


if __name__ == "__main__":
    main()
