"""Draw the cookbook's figures from the example jobs' outputs (run the jobs first).

    OUT_DIR=out run-job jobs/examples/funding_carry.yaml
    OUT_DIR=out run-job jobs/examples/portfolio_risk.yaml
    python examples/cookbook_plots.py --out-dir out --docs docs/cookbook
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


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="out", type=Path)
    parser.add_argument("--docs", default="docs/cookbook", type=Path)
    args = parser.parse_args()
    for draw in (funding_carry, portfolio_risk):
        print(f"wrote {draw(args.out_dir, args.docs)}")


if __name__ == "__main__":
    main()
