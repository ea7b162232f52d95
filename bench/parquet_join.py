"""The end of a checkpointed run: its output parts made one file, joined or decoded again.

A checkpointed run (an on-disk state backend) writes its output as one part per checkpoint and
makes them one file when it ends (``connectors/parquet_parts.py``). This writes a research
output (``--features``) again as parts of ``--batches-per-part`` 65,536-row morsels, through
the sink's own ``PartFiles``, then times, alternately, ``--repeats`` times each:

- ``join``: the parts' row groups copied as they are under one footer
  (``connectors/parquet_concat.py``, what the sink does; the parts were written by this
  process, so their sha256 taken as they were written holds while their identity does, and
  they are not read to be hashed again; ``--batches-per-part`` large enough for one part
  times the hard link the sink makes instead);
- ``rewrite``: every part checked by its sha256, read, decoded and encoded again (the sink
  before, and still its way for parts it cannot join).

Usage::

    PYTHONPATH=$PWD .venv/bin/python bench/parquet_join.py --features out/research_features.parquet
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True, help="a research output (Parquet)")
    ap.add_argument("--batches-per-part", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from tickflow.connectors.parquet_parts import PartFiles

    source = pq.ParquetFile(args.features)
    work = Path(tempfile.mkdtemp(prefix="tickflow-join-"))
    try:
        parts = PartFiles(str(work / "out.parquet"), compression="none",
                          row_group_rows=262_144, statistics=False)
        parts.seek(None)
        parts.schema = source.schema_arrow.remove_metadata()
        for i, batch in enumerate(source.iter_batches(batch_size=65_536)):
            parts.write(batch)
            if i % args.batches_per_part == args.batches_per_part - 1:
                parts.commit()
        parts.commit()
        size = sum(parts._part(k).stat().st_size for k in range(parts.count))
        print(f"{parts.count} parts, {parts.rows:,} rows, {size / 1e6:,.0f} MB")
        times: dict[str, list[float]] = {"join": [], "rewrite": []}
        for _ in range(args.repeats):
            for mode in times:
                start = time.perf_counter()
                out = parts.merge({}) if mode == "join" else parts._rewrite({})
                out.close()
                times[mode].append(time.perf_counter() - start)
        for mode, seconds in times.items():
            print(f"{mode:8s} " + "  ".join(f"{s:.2f}" for s in seconds) + " s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
