"""Value check of the research outputs of several engines against tickflow's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WARMUP_PER_SYMBOL = 200   # rows of each symbol left out of the NaN-position comparison


def _read_head(path: Path, rows: int, columns: list[str] | None = None) -> pa.Table:
    pf = pq.ParquetFile(path)
    parts, have = [], 0
    for b in pf.iter_batches(batch_size=min(rows, 65_536), columns=columns):
        parts.append(b)
        have += b.num_rows
        if have >= rows:
            break
    return pa.Table.from_batches(parts, schema=parts[0].schema if parts else None).slice(0, rows)


def _as_float(col: pa.ChunkedArray) -> np.ndarray:
    import pyarrow.compute as pc

    col = pc.cast(col, pa.float64())
    return np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def compare(outputs: dict[str, Path], input_path: Path, rows: int,
            rtol: float = 1e-6) -> tuple[list[tuple[str, str, str]], bool, list[str]]:
    """Per-column comparison of each engine with the reference (tickflow if present).

    Values: |a - b| <= atol + rtol |b|, where atol is the larger of 1e-9 x the largest |value|
    and rtol x the median non-zero |value| of the same symbol and column: an error is judged
    against the size of the quantity, so a rolling std that should be exactly 0 and comes out
    at 6e-11 (pandas' add/remove rolling variance drifts over millions of rows) or a
    difference of large numbers (macd_hist) is not a mismatch, while a wrong formula is.
    NaN positions must be equal outside each symbol's first WARMUP_PER_SYMBOL rows.
    """
    names = list(outputs)
    ref = names[0]
    tables = {e: _read_head(p, rows) for e, p in outputs.items()}
    src_cols = set(pq.read_schema(input_path).names)
    common = [c for c in tables[ref].column_names if c not in src_cols
              and all(c in t.column_names for t in tables.values())]
    missing = [c for c in tables[ref].column_names if c not in src_cols and c not in common]
    sym = tables[ref].column("symbol").to_numpy(zero_copy_only=False)
    for e, t in tables.items():
        if not np.array_equal(sym, t.column("symbol").to_numpy(zero_copy_only=False)):
            print(f"!! row order differs between {ref} and {e}: symbol columns do not match")
    _, codes = np.unique(sym, return_inverse=True)
    nth = np.zeros(len(codes), dtype=np.int64)
    seen = np.zeros(codes.max() + 1 if len(codes) else 1, dtype=np.int64)
    for i, c in enumerate(codes):  # row number within the symbol (cheap at check sizes)
        nth[i] = seen[c]
        seen[c] += 1
    settled = nth >= WARMUP_PER_SYMBOL
    rows_out: list[tuple[str, str, str]] = []
    all_ok = True
    for col in common:
        a = _as_float(tables[ref].column(col))
        floor = np.zeros(seen.shape[0])
        for c in range(seen.shape[0]):
            mag = np.abs(a[(codes == c) & np.isfinite(a) & (a != 0.0)])
            if mag.size:
                floor[c] = max(1e-9 * mag.max(), rtol * float(np.median(mag)))
        atol = floor[codes]
        verdicts = []
        for e in names[1:]:
            b = _as_float(tables[e].column(col))
            nan_a, nan_b = np.isnan(a), np.isnan(b)
            nan_bad = settled & (nan_a != nan_b)
            both = ~nan_a & ~nan_b
            close = np.abs(a - b) <= atol + rtol * np.abs(b)
            val_bad = both & ~close
            if nan_bad.any() or val_bad.any():
                all_ok = False
                first = int(np.flatnonzero(nan_bad | val_bad)[0])
                rel = np.abs(a - b)[val_bad] / np.maximum(np.abs(b[val_bad]), 1e-300)
                worst = f", max rel {rel.max():.2e}" if val_bad.any() else ""
                verdicts.append(f"MISMATCH vs {e}: {int(val_bad.sum())} values, "
                                f"{int(nan_bad.sum())} NaN positions{worst}; first row {first} "
                                f"({sym[first]}: {ref}={a[first]!r}, {e}={b[first]!r})")
            else:
                n_cmp = int(both.sum())
                verdicts.append(f"OK vs {e} ({n_cmp} values)")
        rows_out.append((col, "OK" if all(v[:2] == "OK" for v in verdicts) else "MISMATCH",
                         "; ".join(verdicts)))
    return rows_out, all_ok, missing
