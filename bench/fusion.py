"""What fusing the research job's keyed kernels into one loop, or grouping rows by key, could save.

Measures, on real inputs (the research job's steps, one lane, morsels of 65,536 rows), in ns
per input row (CPU time of this thread, best of ``--repeat``):

- **(a) separate passes**: the job's kernel steps as the pipeline runs them today, one numba
  call per step per morsel, rows in arrival order (keys interleaved).
- **(c) grouped by key**: the same passes on each morsel's rows grouped by key id
  (``engine.runtime.key_groups``: a counting sort, stable, so outputs are the same), plus
  the sort, the gather of the inputs and of every output back to arrival order.
- **(b) fused**: a representative subset (log_returns, ewma, sma 20, rolling_std 20 of the
  log return, rolling_zscore 100 and 20 of the price) as separate passes against one numba
  loop generated from per-kernel row templates (each kernel's row step, state kept in locals
  while consecutive rows share a key), on interleaved and on grouped rows. The fused loop's
  outputs are checked bit-identical to the separate passes'.

``--steps a,b`` times only those steps of the job (separate passes, arrival order) and
``--code DIR`` imports tickflow from another checkout, so that two versions of a kernel can
be paired in alternate processes; ``--save FILE.npz`` keeps their outputs to compare bits.

Usage::

    python bench/fusion.py ticks_s14.parquet      # run-job simulate --rows 2000000 --symbols 14
    python bench/fusion.py ticks_s100k.parquet --repeat 3
    for i in 1 2 3; do for c in ../old-checkout .; do  # A B A B, then compare the .npz bits
        python bench/fusion.py ticks_s14.parquet --code $c \
            --steps historical_var,historical_cvar --save var_$(basename $(realpath $c)).npz
    done; done
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if "--code" in sys.argv:  # the checkout whose tickflow is measured goes first
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--code") + 1]).resolve()))
if str(ROOT) not in sys.path:
    sys.path.insert(1 if "--code" in sys.argv else 0, str(ROOT))

MORSEL = 65_536
JOB = ROOT / "jobs" / "research.yaml"
SUBSET = ("log_returns", "ewma", "sma", "rolling_std", "rolling_zscore", "zscore_fast")


def load(path: str, rows: int | None):
    """The job's compiled kernel steps and the input as morsels (key ids, ts, float columns)."""
    import pyarrow.parquet as pq

    from tickflow.engine.columns import float_column
    from tickflow.engine.compile import compile_job
    from tickflow.engine.loader import load_job
    from tickflow.engine.ml.batch import kernel_steps
    from tickflow.engine.runtime.pipeline import Pipeline, timestamp_us

    os.environ["TICKS"] = path
    job = compile_job(load_job(JOB, ["report=null"]))
    pipe = Pipeline(job, workers=1)
    table = pq.read_table(path)
    if rows:
        table = table.slice(0, rows)
    morsels = []
    for batch in table.to_batches(max_chunksize=MORSEL):
        gid = pipe.keys.encode(batch.column(job.key))
        cols = {c: float_column(batch.column(c)) for c in pipe.source_inputs}
        morsels.append((gid, timestamp_us(batch), cols))
    return kernel_steps(job.steps), morsels, table.num_rows, len(pipe.keys)


def cpu() -> float:
    return time.thread_time()


def run_passes(steps, morsels, grouped: bool, per_step: dict[str, float] | None = None):
    """Every step as its own pass per morsel; returns (seconds, overhead seconds, outputs)."""
    from tickflow.engine.runtime.key_groups import key_order
    from tickflow.engine.runtime.pipeline import Lane

    n_keys = max(int(g.max()) for g, _, _ in morsels) + 1
    lane = Lane(steps)
    if per_step is not None:
        for s in steps:
            orig = s.run

            def timed(*a, _orig=orig, _id=s.step_id, **k):
                t = cpu()
                out = _orig(*a, **k)
                per_step[_id] = per_step.get(_id, 0.0) + cpu() - t
                return out
            s.run = timed
    total = overhead = 0.0
    results = []
    for gid, ts, cols in morsels:
        t0 = cpu()
        if grouped:
            order, where = key_order(gid, n_keys)  # as engine.runtime.key_groups.run_grouped
            g, t, c = gid[order], ts[order], {n: v[order] for n, v in cols.items()}
            t1 = cpu()
            part = lane.run(g, t, c)
            t2 = cpu()
            out = {name: v[where] for name, v in part.items()}
            t3 = cpu()
            overhead += (t1 - t0) + (t3 - t2)
        else:
            out = lane.run(gid, ts, cols)
            t3 = cpu()
        total += t3 - t0
        results.append(out)
    if per_step is not None:
        for s in steps:
            del s.run
    return total, overhead, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ticks", help="a Parquet file of ticks (run-job simulate writes one)")
    ap.add_argument("--rows", type=int, default=None, help="first N rows (default: all)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--code", default=str(ROOT), help="checkout whose tickflow is measured")
    ap.add_argument("--steps", default="",
                    help="time only these step ids (comma-separated, or all)")
    ap.add_argument("--save", default="", help="with --steps: write their outputs (.npz)")
    args = ap.parse_args()

    import tickflow

    steps, morsels, n, n_keys = load(args.ticks, args.rows)
    print(f"{args.ticks}: {n:,} rows, {n_keys:,} keys, {len(morsels)} morsels, "
          f"{len(steps)} kernel steps; load average {os.getloadavg()[0]:.1f}; "
          f"code {Path(tickflow.__path__[-1]).resolve()}")
    warm = [(g[:2000], t[:2000], {c: v[:2000] for c, v in cols.items()})
            for g, t, cols in morsels[:1]]
    run_passes(steps, warm, False)  # numba cache loads, not timed
    run_passes(steps[:1], warm, True)
    if args.steps:
        return only_steps(steps, morsels, n, args)

    from bench.fusion_loop import build_fused, run_fused

    subset = [s for s in steps if s.step_id in SUBSET]
    fused = build_fused(subset)
    run_fused(fused, subset, warm, False)

    def best(fn):
        runs = [fn() for _ in range(args.repeat)]
        return min(runs, key=lambda r: r[0])

    ns = 1e9 / n
    per_step: dict[str, float] = {}
    rows = []
    a = best(lambda: run_passes(steps, morsels, False))
    c = best(lambda: run_passes(steps, morsels, True))
    run_passes(steps, morsels, False, per_step)
    rows.append(("(a) whole job, separate passes", a[0] * ns, 0.0))
    rows.append(("(c) whole job, grouped by key", c[0] * ns, c[1] * ns))
    sa = best(lambda: run_passes(subset, morsels, False))
    sc = best(lambda: run_passes(subset, morsels, True))
    fa = best(lambda: run_fused(fused, subset, morsels, False))
    fc = best(lambda: run_fused(fused, subset, morsels, True))
    rows.append((f"subset ({len(subset)} steps), separate passes", sa[0] * ns, 0.0))
    rows.append(("subset, separate passes, grouped by key", sc[0] * ns, sc[1] * ns))
    rows.append(("(b) subset fused, one loop", fa[0] * ns, 0.0))
    rows.append(("(b+c) subset fused, grouped by key", fc[0] * ns, fc[1] * ns))
    for m_sep, m_fused in zip(sa[2], fa[2], strict=True):
        for col, v in m_sep.items():
            if col in m_fused and not np.array_equal(v, m_fused[col], equal_nan=True):
                raise SystemExit(f"fused output {col} differs from the separate passes'")
    for m_sep, m_grp in zip(a[2], c[2], strict=True):
        for col, v in m_sep.items():
            if v.dtype.kind == "f" and not np.array_equal(v.view(np.int64),
                                                          m_grp[col].view(np.int64)):
                raise SystemExit(f"grouped output {col} differs from arrival order's")
    print(f"\n{'':<44}{'ns/row':>9}{'of which sort/gather/scatter':>30}")
    for name, v, o in rows:
        print(f"{name:<44}{v:>9.1f}{o:>30.1f}")
    print("\n(fused and grouped outputs checked bit-identical to the separate passes)")
    print(f"\nper step, separate passes, arrival order (ns/row), {len(steps)} steps:")
    for sid, s in sorted(per_step.items(), key=lambda kv: -kv[1]):
        print(f"  {sid:<24}{s * ns:>8.1f}")
    return 0


def only_steps(steps, morsels, n: int, args) -> int:
    """Time the named steps (with the steps they read from, untimed) as separate passes."""
    wanted = [s.step_id for s in steps] if args.steps == "all" else args.steps.split(",")
    from tickflow.engine.runtime.pipeline import Lane

    # the steps' inputs computed once by the job's other steps (not timed)
    pre = run_passes(steps, morsels, False)[2]
    chosen = [s for s in steps if s.step_id in wanted]
    missing = set(wanted) - {s.step_id for s in chosen}
    if missing:
        raise SystemExit(f"no such step: {', '.join(sorted(missing))}")
    inputs = [(g, t, {**cols, **out}) for (g, t, cols), out in zip(morsels, pre, strict=True)]
    times = {s.step_id: [] for s in chosen}
    outs: dict[str, list[np.ndarray]] = {}
    for _ in range(args.repeat):
        for s in chosen:
            lane = Lane([s])
            t0 = cpu()
            parts = [lane.run(g, t, c) for g, t, c in inputs]
            times[s.step_id].append(cpu() - t0)
            for col in s.output_columns:
                outs[col] = [p[col] for p in parts]
    for sid, ts in times.items():
        print(f"  {sid:<24}{min(ts) * 1e9 / n:>8.1f} ns/row (best of {len(ts)})")
    total = sum(min(ts) for ts in times.values())
    print(f"  {'total':<24}{total * 1e9 / n:>8.1f} ns/row")
    if args.save:
        np.savez(args.save, **{c: np.concatenate(v) for c, v in outs.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
