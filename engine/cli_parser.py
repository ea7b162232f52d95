"""The `run-job` argument parser: every command and flag, in one place.

Kept apart from engine/cli.py, which holds what each command does.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run-job", description="Run and inspect tickflow jobs.",
                                epilog="run-job JOB is short for run-job run JOB.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    from tickflow import __version__

    p.add_argument("--version", action="version", version=f"run-job (tickflow) {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def job_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("job", help="job YAML file")
        sp.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                        help="override a field, e.g. steps.zscore_fast.params.window=50 "
                             "(a step by id, or by index: steps[2])")
        sp.add_argument("--debug", action="store_true", help="show tracebacks")
        return sp

    run = job_cmd("run", "run a job")
    run.add_argument("--workers", type=int, default=None, help="worker threads")
    run.add_argument("--cluster", metavar="tcp://HOST:8786|local", default=None,
                     help="run on a Dask cluster (local: start a LocalCluster of --workers "
                          "processes); overrides executor.address")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    run.add_argument("--no-view", action="store_true",
                     help="live/export: no live table on a terminal; plain signal lines and "
                          "totals, as when the output is piped")
    run.add_argument("--parquet", metavar="FILE", default=None,
                     help="backtest: ticks or a research output to run on (features are "
                          "reused when the job that wrote it computes them the same way)")
    run.add_argument("--sweep", action="store_true",
                     help="backtest: run the job's `sweep:` block instead of one backtest")
    run.add_argument("--replay", metavar="FILE", default=None,
                     help="live/export: replay a Parquet or JSON Lines capture into the "
                          "source topic (embedded broker), end when it is consumed")
    run.add_argument("--speed", default="max", metavar="10x|max",
                     help="replay speed relative to the recorded timestamps (default max)")
    run.add_argument("--replay-linger-ms", type=int, default=5, metavar="MS",
                     help="with --replay: how long the replay's producer gathers ticks into "
                          "one record batch (default 5; raise it for long paced replays into "
                          "the embedded broker, which slows down as batches pile up)")
    run.add_argument("--follow", action="store_true",
                     help="with --replay: keep running after the capture is consumed")
    run.add_argument("--max-seconds", type=float, default=None, metavar="S",
                     help="live/export: end the run after S seconds")
    run.add_argument("--state-backend", metavar="memory|rocksdb|tiledb", default=None,
                     help="where kernel state is checkpointed; overrides state.backend")
    run.add_argument("--reset-state", action="store_true",
                     help="forget the job's checkpoints and start from empty state")
    run.add_argument("--brokers", metavar="HOST:PORT", default=None,
                     help="point every Kafka source and sink at these bootstrap servers "
                          "(e.g. the one `run-job broker` prints)")
    state = job_cmd("state", "list a job's checkpoints, keys and sizes; print one key's state")
    state.add_argument("--state-backend", metavar="memory|rocksdb|tiledb", default=None,
                       help="the backend the state was written with (default: the job's)")
    state.add_argument("--key", help="print this key's state (e.g. --key BTC-USD)")
    state.add_argument("--checkpoint", type=int, default=None,
                       help="checkpoint number (default: the newest good one)")
    state.add_argument("--keys", type=int, default=20, metavar="N",
                       help="list the first N keys (default 20; 0 for none)")
    job_cmd("validate", "check a job file; exit 2 with located problems when invalid")
    graph = job_cmd("graph", "print the job's operator DAG")
    graph.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    graph.add_argument("-o", "--output", help="write to a file instead of stdout")
    k = sub.add_parser("kernels", help="list registered kernels; `kernels NAME` shows one")
    k.add_argument("--json", action="store_true")
    k.add_argument("--plugins", action="append", metavar="MODULE",
                   help="import a plugin module first (repeatable)")
    k.add_argument("job", nargs="?", metavar="NAME|JOB",
                   help="a kernel or operator to show, or a job file whose plugins to load")
    tr = sub.add_parser("train", help="fit the next-return RandomForest (engine/train.py)")
    tr.add_argument("spec", help="training spec YAML")
    tr.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                    help="override a field, e.g. model.n_estimators=50")
    tr.add_argument("--debug", action="store_true", help="show tracebacks")
    sim = sub.add_parser("simulate", help="write simulated ticks to Parquet")
    sim.add_argument("-o", "--output", required=True)
    sim.add_argument("--rows", type=int, default=1_000_000)
    sim.add_argument("--symbols", type=int, default=14)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--ticks-per-second", type=float, default=200.0,
                     help="mean arrival rate, all symbols together (at 200, 2M ticks span "
                          "about 3 hours; at 5, several days)")
    part = sub.add_parser("partition", help="rewrite Parquet ticks as a dataset split by key "
                                             "hash, so each Dask task reads only its files")
    part.add_argument("input", help="a Parquet file, directory or glob")
    part.add_argument("output", help="the dataset directory to write (part-NNNNN.parquet and "
                                     "a manifest)")
    part.add_argument("--by", default="symbol", help="the key column (default symbol)")
    part.add_argument("--parts", type=int, default=8,
                      help="files to split the keys into (default 8); a multiple of the Dask "
                           "run's partitions gives every task whole files")
    part.add_argument("--compression", default="lz4",
                      choices=("none", "snappy", "lz4", "zstd", "gzip", "brotli"),
                      help="column compression (default lz4)")
    docs = sub.add_parser("docs", help="regenerate the job and kernel references")
    docs.add_argument("--out", default="docs")
    for name, help_text in (("collect", "collect exchange tickers into Kafka, Parquet or JSONL "
                             "(tickflow-collect -h lists the options)"),
                            ("serve", "serve an exchange's WebSocket protocol on loopback, "
                             "replaying recorded frames (offline demos and tests)")):
        sp = sub.add_parser(name, help=help_text, add_help=False)
        sp.add_argument("exchange", nargs="?", choices=("coinbase", "binance", "kraken"))
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    broker = sub.add_parser("broker", help="run the embedded Kafka broker on its own until "
                                           "stopped, for jobs and collectors in other terminals")
    broker.add_argument("--port", type=int, default=None, help="default: a free port")
    broker.add_argument("--max-seconds", type=float, default=None, metavar="S",
                        help="stop after S seconds (tests, demos)")
    comp = sub.add_parser("completion", help="print a shell completion script, e.g. "
                                             "`eval \"$(run-job completion bash)\"`")
    comp.add_argument("shell", choices=("bash", "zsh"))
    return p
