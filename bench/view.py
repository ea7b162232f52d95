"""The live view's cost: the same replay with its output piped and on a pseudo-terminal.

``run-job jobs/live.yaml --replay CAPTURE --speed max`` runs with stdout piped, on a 200x50
pseudo-terminal (the rich table, read as fast as a terminal reads), and on the terminal with
``--no-view``, alternately, ``--repeat`` times each; the table shows the best and median wall
time of each, the ratio to piped (goal: within 10%), and the job's own processing time
(its ``messages in X s``, without start-up). A short run first compiles the
kernels into numba's cache, so no timed run pays for it.

    python bench/view.py                    # 100K ticks, 3 runs each
    python bench/view.py --ticks 300000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kafka.terminal import run_job  # noqa: E402
from tickflow.connectors.simulator import write_simulated_parquet  # noqa: E402


def measure(ticks: int, symbols: int = 4, repeat: int = 3) -> list[str]:
    """The table: best and median wall time per output mode, ratio to piped, job seconds."""
    work = Path(tempfile.mkdtemp(prefix="tickflow-view-"))
    capture, small = work / "capture.parquet", work / "small.parquet"
    write_simulated_parquet(capture, rows=ticks, symbols=symbols, seed=5)
    write_simulated_parquet(small, rows=2_000, symbols=symbols, seed=5)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "COLUMNS")}
    env["PYTHONPATH"] = str(ROOT)
    base = [sys.executable, "-m", "tickflow.engine.cli", str(ROOT / "jobs/live.yaml"),
            "--speed", "max", "--replay"]
    run_job([*base, str(small)], {**env, "OUT_DIR": str(work / "warm")}, terminal=False)
    modes = {"piped": ([], False), "terminal": ([], True), "terminal --no-view": (
        ["--no-view"], True)}
    times: dict[str, list[float]] = {m: [] for m in modes}
    job_s: dict[str, list[float]] = {m: [] for m in modes}  # the job's own "in X s"
    for i in range(repeat):
        for mode, (extra, terminal) in modes.items():
            out = str(work / f"{mode.replace(' ', '')}{i}")
            seconds, text = run_job([*base, str(capture), *extra], {**env, "OUT_DIR": out},
                                    terminal=terminal)
            times[mode].append(seconds)
            found = re.findall(r"messages in ([\d.]+) s", text)
            job_s[mode].append(float(found[-1]) if found else float("nan"))
    lines = [f"{ticks:,} ticks replayed at max speed, {repeat} runs each "
             f"(load average {os.getloadavg()[0]:.1f})",
             f"{'output':<20}{'best s':>8}{'median s':>10}{'best / piped':>14}"
             f"{'job best s':>12}{'job median s':>14}"]
    piped = min(times["piped"])
    for mode, values in times.items():
        lines.append(f"{mode:<20}{min(values):>8.2f}{statistics.median(values):>10.2f}"
                     f"{min(values) / piped:>14.2f}{min(job_s[mode]):>12.2f}"
                     f"{statistics.median(job_s[mode]):>14.2f}")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=100_000)
    p.add_argument("--symbols", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print("\n".join(measure(args.ticks, args.symbols, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
