"""Regenerate the report screenshots in docs/img/ (not part of ``make test``).

``python docs/report_screenshots.py --write`` builds one report of each mode from simulated
data in a temporary folder and screenshots each page in headless Chromium (Debian package
``chromium``). Without ``--write`` the PNGs stay in the temporary folder, whose path is printed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

DOCS = Path(__file__).resolve().parent
CHROMIUM = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--hide-scrollbars",
            "--virtual-time-budget=15000", "--window-size=1400,2000")


def build(folder: Path) -> dict[str, Path]:
    """One HTML report per mode, from simulated data."""
    from tickflow.connectors.arbitrage_report import ArbitrageReportConfig, ArbitrageReportSink
    from tickflow.connectors.base import RunContext
    from tickflow.connectors.simulator import write_simulated_parquet
    from tickflow.engine.backtest.report import backtest_html
    from tickflow.engine.backtest.run import load_backtest_job, run_backtest
    from tickflow.engine.backtest.spec import SweepSpec
    from tickflow.engine.backtest.sweep_report import sweep_html

    ticks = folder / "ticks.parquet"
    write_simulated_parquet(ticks, rows=200_000, symbols=5, seed=3)
    job = load_backtest_job(str(DOCS.parent / "jobs" / "backtest.yaml"), [], str(ticks))
    out = {"backtest": folder / "backtest.html"}
    out["backtest"].write_text(backtest_html(run_backtest(job, str(ticks), 1, write=False)))
    rng = np.random.default_rng(1)
    rows = [{"entry_z": z, "exit_z": x, "train.sharpe": rng.normal(), "test.sharpe":
             rng.normal(), "train.elapsed_s": 5e6, "test.elapsed_s": 2e6}
            for z in (1.0, 1.5, 2.0, 2.5) for x in (0.0, 0.25, 0.5)]
    spec = SweepSpec(parameters={"entry_z": [1.0, 1.5, 2.0, 2.5], "exit_z": [0.0, 0.25, 0.5]},
                     walk_forward={"train_fraction": 0.7})
    out["sweep"] = folder / "sweep.html"
    out["sweep"].write_text(sweep_html("demo: parameter sweep", rows, spec,
                                       "12 points were tried (illustrative figures)."))
    n = 20_000
    ts = 1_700_000_000_000_000 + np.arange(n, dtype=np.int64) * 50_000
    edge = np.convolve(rng.normal(0, 6, n), np.ones(40) / 8, "same")
    table = pa.table({"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                      "symbol": ["BTC-USD"] * n, "exchange": ["coinbase"] * n,
                      "exchange_b": ["kraken"] * n, "net_edge_bps": edge,
                      "is_stale": np.zeros(n, np.int8)})
    config = ArbitrageReportConfig(path=str(folder / "arbitrage.csv"), plot=False)
    sink = ArbitrageReportSink(config, RunContext(job_name="demo-arbitrage", quiet=True))
    sink.write(table.to_batches()[0])
    sink.close()
    out["arbitrage"] = folder / "arbitrage.html"
    research = folder / "research.html"
    subprocess.run(["python", "-m", "tickflow.engine.cli", str(DOCS.parent / "jobs" /
                                                                  "research.yaml"),
                    "--set", f"report.path={research}", "--quiet"], check=True,
                   env={**__import__("os").environ, "TICKS": str(ticks),
                        "OUT_DIR": str(folder / "out")})
    out["research"] = research
    out["live"] = live_page(folder, ticks)
    return out


def live_page(folder: Path, ticks: Path) -> Path:
    """jobs/live.yaml replayed through its embedded broker, its view also feeding the live
    page's recorder (what the live executor does when the job has ``live_report:``)."""
    import os

    from tickflow.connectors.live_html import write_live_report
    from tickflow.connectors.live_report import LiveReportRecorder
    from tickflow.engine.compile import compile_job
    from tickflow.engine.executors.live import LiveRunner, replay_then_end
    from tickflow.engine.live_view import LiveView
    from tickflow.engine.loader import load_job

    os.environ["OUT_DIR"] = str(folder / "live")
    job = compile_job(load_job(DOCS.parent / "jobs" / "live.yaml"))
    recorder = LiveReportRecorder(job.spec.name, list(job.signals), job.key, bucket_s=60)

    class RecordingView(LiveView):
        def update(self, result, latency_us, lag):  # type: ignore[no-untyped-def]
            super().update(result, latency_us, lag)
            recorder.update(result, latency_us, lag)

    runner = LiveRunner(job, view=RecordingView(list(job.signals), job.key, quiet=True))
    runner.on_open = replay_then_end(runner, str(ticks), "max", False)
    summary = runner.run()
    return write_live_report(folder / "live.html", recorder.data(summary))


def screenshot(page: Path, png: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    subprocess.run([browser, *CHROMIUM, f"--screenshot={png}", page.as_uri()], check=True,
                   capture_output=True, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="copy the PNGs to docs/img/")
    parser.add_argument("--only", help="copy only this mode's PNG (e.g. live)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tickflow-shots-"))
    for mode, page in build(folder).items():
        png = folder / f"report_{mode}.png"
        screenshot(page, png)
        if args.write and args.only in (None, mode):
            (DOCS / "img").mkdir(exist_ok=True)
            shutil.copyfile(png, DOCS / "img" / png.name)
        print(png)
    print(f"reports and screenshots in {folder}" + ("; copied to docs/img/" if args.write
                                                     else "; --write copies them to docs/img/"))


if __name__ == "__main__":
    main()
