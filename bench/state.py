"""State backends side by side: throughput with checkpoints, checkpoint and restart times.

Three parts, all in one run so that the backends meet the same machine load:

1. **Research throughput per backend**: the same job (Parquet in, Parquet out) with ``memory``
   (no checkpoints) and with ``rocksdb``/``tiledb`` checkpointing every ``--every`` (1s), each
   run ``--repeat`` times interleaved; best rows/s and the ratio to memory (target: rocksdb
   >= 80% of memory).
2. **Checkpoint and restart** for 10K and 100K keys: a pipeline whose state holds that many
   keys is checkpointed (gather + backend write + manifest with sha256 of every file) and
   restored into a fresh pipeline (verify + read + scatter). Target: restart from 100K keys < 2 s.
3. **Research with 100K symbols**: a Parquet file of ``--big-rows`` ticks over 100,000 symbols,
   memory backend and each on-disk backend (target >= 1,000,000 ticks/s).
4. **Live path per backend**: ``--live-rows`` ticks replayed into an embedded broker once, then
   a live job (Kafka source -> features -> a Kafka signals sink and a Parquet sink) drains the
   topic with each backend, checkpointing every ``--every``; ticks/s from the first poll to
   the last batch written, best of ``--repeat``, and the ratio to memory.

Usage::

    .venv/bin/python bench/state.py                        # defaults below
    .venv/bin/python bench/state.py --rows 2000000 --big-rows 2000000 --repeat 1   # quick
    .venv/bin/python bench/state.py --features core        # the 41-column core feature set

``--features small`` (default) is five kernels (ewma, log_returns, rolling_zscore, rolling_std
on 30s, sma), ``core`` is ``jobs/features/core.yaml``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SMALL_STEPS = """\
steps:
  - {kernel: ewma, params: {span: 20}}
  - {kernel: log_returns}
  - {kernel: rolling_zscore, params: {window: 50}}
  - {kernel: rolling_std, params: {window: 30s}}
  - {kernel: sma, params: {window: 20}}
"""


def job_text(name: str, ticks: Path, out: Path, features: str, backend: str, every: str,
             state_dir: Path, workers: int) -> str:
    steps = SMALL_STEPS if features == "small" else \
        f"include:\n  - {ROOT / 'jobs' / 'features' / 'core.yaml'}\n"
    return f"""\
name: {name}
mode: research
sources:
  - kind: parquet
    path: {ticks}
{steps}
sinks:
  - kind: parquet
    path: {out}
state:
  backend: {backend}
  path: {state_dir}
  checkpoint: {{every: {every}}}
executor: {{workers: {workers}, morsel_rows: 65536, progress: false}}
"""


def compile_text(text: str, where: Path) -> Any:
    from tickflow.engine.compile import compile_job
    from tickflow.engine.loader import load_job

    path = where / "job.yaml"
    path.write_text(text)
    job = compile_job(load_job(path))
    job.context.quiet = True
    return job


def run_job(text: str, where: Path) -> tuple[float, float, int, int]:
    """(rows/s to the end of the input, rows/s including the sinks' close, rows, checkpoints).

    The first figure stops when the last batch is written and the final checkpoint is taken
    (``RunSummary.seconds``); the second also counts closing the sinks, which for a
    checkpointed Parquet sink means merging its part files into the output file.
    """
    from tickflow.engine.checkpoint import CheckpointStore, state_root
    from tickflow.engine.executors.local import run_local

    job = compile_text(text, where)
    store = CheckpointStore(state_root(job.spec.name, job.spec.state.path))
    store.reset()
    start = time.perf_counter()
    summary = run_local(job, reset_state=True)
    wall = time.perf_counter() - start
    seqs = [s for s, _ in store.list()]
    return (summary.rows_per_second, summary.rows / wall, summary.rows,
            (max(seqs) if seqs else 0))


def throughput(args: argparse.Namespace, ticks: Path, tmp: Path, label: str) -> None:
    backends = ["memory", "rocksdb", "tiledb"]
    best: dict[str, float] = dict.fromkeys(backends, 0.0)
    best_wall: dict[str, float] = dict.fromkeys(backends, 0.0)
    ckpts: dict[str, int] = dict.fromkeys(backends, 0)
    for _ in range(args.repeat):
        for b in backends:
            text = job_text(f"bench-{b}", ticks, tmp / f"out-{b}.parquet", args.features, b,
                            args.every, tmp / "state", args.workers)
            rate, wall_rate, rows, n_ckpt = run_job(text, tmp)
            best[b] = max(best[b], rate)
            best_wall[b] = max(best_wall[b], wall_rate)
            ckpts[b] = n_ckpt
    print(f"\n{label}: {rows:,} ticks, features={args.features}, checkpoint every "
          f"{args.every}, best of {args.repeat}")
    print(f"  {'backend':<8} {'ticks/s':>12} {'vs memory':>10} {'incl. close':>12} "
          f"{'vs memory':>10} {'checkpoints':>12}")
    for b in backends:
        print(f"  {b:<8} {best[b]:>12,.0f} {best[b] / best['memory']:>9.0%} "
              f"{best_wall[b]:>12,.0f} {best_wall[b] / best_wall['memory']:>9.0%} "
              f"{ckpts[b]:>12}")


def checkpoint_restart(args: argparse.Namespace, tmp: Path, n_keys: int) -> None:
    """Checkpoint time and restart time with ``n_keys`` keys in state, for each backend."""
    import pyarrow as pa

    from tickflow.connectors.simulator import symbol_names
    from tickflow.engine.executors.local import Pipeline
    from tickflow.engine.state.lanes import scatter
    from tickflow.engine.state.recovery import Checkpointer

    rows = n_keys * 30  # every key 30 ticks: windows partly filled, time rings grown once
    rng = np.random.default_rng(1)
    names = pa.array(symbol_names(n_keys))
    codes = rng.integers(0, n_keys, rows)
    ts = np.sort(rng.integers(0, 60_000_000, rows)) + 1_767_225_600_000_000
    price = 100 * np.exp(np.cumsum(rng.standard_normal(rows) * 1e-4))
    batch = pa.record_batch({"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                             "symbol": names.take(pa.array(codes)),
                             "price": price, "best_bid": price - 0.01, "best_ask": price + 0.01,
                             "best_bid_size": np.ones(rows), "best_ask_size": np.ones(rows),
                             "last_size": np.ones(rows), "volume_24h": np.ones(rows)})
    ticks = tmp / f"keys{n_keys}.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_batches([batch]), ticks)
    for b in ("rocksdb", "tiledb"):
        text = job_text(f"ckpt-{b}-{n_keys}", ticks, tmp / "unused.parquet", args.features, b,
                        "1000", tmp / "state", args.workers)
        job = compile_text(text, tmp)
        pipe = Pipeline(job, args.workers)
        for lo in range(0, rows, 65_536):
            pipe.process(batch.slice(lo, 65_536))
        cp = Checkpointer(job, reset=True, log=lambda m: None)
        t0 = time.perf_counter()
        manifest = cp.commit(pipe, [])
        t_ckpt = time.perf_counter() - t0
        pipe.close()
        fresh = Pipeline(job, args.workers)
        cp2 = Checkpointer(job, log=lambda m: None)
        t0 = time.perf_counter()
        found = cp2.store.latest_good(cp2.backend)
        assert found is not None
        scatter(fresh, found[1])
        t_restart = time.perf_counter() - t0
        fresh.close()
        print(f"  {n_keys:>7,} keys  {b:<8} state {manifest.state_bytes / 1e6:>7.1f} MB "
              f"(on disk {manifest.size_bytes() / 1e6:>6.1f} MB)  checkpoint "
              f"{t_ckpt:>6.2f} s  restart {t_restart:>6.2f} s")


LIVE_JOB = """\
name: {name}
mode: live
sources:
  - kind: kafka
    bootstrap: {bootstrap}
    topic: {topic}
    group_id: {name}-{run}
    batch_size: 20000
    linger_ms: 5
    dead_letter_path: {tmp}/dead_letters.jsonl
{steps}
signals:
  buy: zscore < -2.0
sinks:
  - kind: kafka
    bootstrap: {bootstrap}
    topic: {name}-signals-{run}
    key: symbol
    columns: [timestamp, symbol, price, zscore, buy]
    only_rows_with: [buy]
  - kind: parquet
    path: {tmp}/{name}-{run}.parquet
state:
  backend: {backend}
  path: {tmp}/state
  checkpoint: {{every: {every}}}
executor: {{kind: local, workers: {workers}}}
"""


def live_throughput(args: argparse.Namespace, tmp: Path) -> None:
    """The live path with each backend over the same topic (replayed once)."""
    from tickflow.connectors.embedded_broker import EmbeddedBroker
    from tickflow.connectors.replay import replay_to_kafka
    from tickflow.connectors.simulator import write_simulated_parquet
    from tickflow.engine.checkpoint import CheckpointStore, state_root
    from tickflow.engine.executors.live import LiveRunner

    ticks = tmp / "live_ticks.parquet"
    write_simulated_parquet(ticks, rows=args.live_rows, symbols=args.symbols, seed=5)
    steps = SMALL_STEPS if args.features == "small" else \
        f"include:\n  - {ROOT / 'jobs' / 'features' / 'core.yaml'}\n"
    backends = ["memory", "rocksdb", "tiledb"]
    best: dict[str, float] = dict.fromkeys(backends, 0.0)
    ckpts: dict[str, int] = dict.fromkeys(backends, 0)
    broker = EmbeddedBroker().start()
    try:
        t0 = time.perf_counter()
        n = replay_to_kafka(ticks, broker.bootstrap, "bench-ticks", "max")
        print(f"\nlive path: {n:,} ticks of {args.symbols} symbols replayed into the embedded "
              f"broker in {time.perf_counter() - t0:.1f} s; features={args.features}, "
              f"checkpoint every {args.every}, best of {args.repeat}")
        for run in range(args.repeat + 1):  # run 0 warms the kernels and the broker
            for b in backends:
                text = LIVE_JOB.format(name=f"live-{b}", run=run, bootstrap=broker.bootstrap,
                                       topic="bench-ticks", tmp=tmp, steps=steps, backend=b,
                                       every=args.every, workers=args.workers)
                job = compile_text(text, tmp)
                runner = LiveRunner(job, workers=args.workers, reset_state=True)
                runner.expected_messages = n
                summary = runner.run()
                assert summary.ticks == n, (b, summary.ticks)
                if run:
                    best[b] = max(best[b], summary.ticks_per_second)
                store = CheckpointStore(state_root(job.spec.name, job.spec.state.path))
                ckpts[b] = max((s for s, _ in store.list()), default=0)
    finally:
        broker.stop()
    print(f"  {'backend':<8} {'ticks/s':>12} {'vs memory':>10} {'checkpoints':>12}")
    for b in backends:
        print(f"  {b:<8} {best[b]:>12,.0f} {best[b] / best['memory']:>9.0%} {ckpts[b]:>12}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=5_000_000, help="ticks for part 1")
    p.add_argument("--symbols", type=int, default=14, help="symbols for part 1")
    p.add_argument("--big-rows", type=int, default=5_000_000, help="ticks for part 3")
    p.add_argument("--every", default="1s", help="checkpoint interval")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--features", choices=("small", "core"), default="small")
    p.add_argument("--live-rows", type=int, default=1_000_000, help="ticks for part 4")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=("throughput", "restart", "big", "live"))
    args = p.parse_args()

    from tickflow.connectors.simulator import write_simulated_parquet

    print(f"tickflow state backends -- {platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, workers={args.workers}")
    with tempfile.TemporaryDirectory(prefix="tickflow-state-bench-") as d:
        tmp = Path(d)
        if "throughput" not in args.skip:
            ticks = tmp / "ticks.parquet"
            write_simulated_parquet(ticks, rows=args.rows, symbols=args.symbols, seed=7)
            # warm the numba cache outside the timed runs
            run_job(job_text("warm", ticks, tmp / "warm.parquet", args.features, "memory",
                             args.every, tmp / "state", args.workers), tmp)
            throughput(args, ticks, tmp, f"research, {args.symbols} symbols")
        if "restart" not in args.skip:
            print(f"\ncheckpoint and restart (features={args.features}; restart = verify "
                  f"sha256 + read + load into a fresh pipeline)")
            for n in (10_000, 100_000):
                checkpoint_restart(args, tmp, n)
        if "big" not in args.skip:
            big = tmp / "big.parquet"
            t0 = time.perf_counter()
            write_simulated_parquet(big, rows=args.big_rows, symbols=100_000, seed=3,
                                    ticks_per_second=100_000.0)
            print(f"\n(simulated {args.big_rows:,} ticks of 100,000 symbols in "
                  f"{time.perf_counter() - t0:.1f} s)")
            throughput(args, big, tmp, "research, 100,000 symbols")
        if "live" not in args.skip:
            live_throughput(args, tmp)


if __name__ == "__main__":
    main()
