"""A fused loop generated from per-kernel row templates (the measurement of bench/fusion.py).

Each template is one kernel's row step written against locals (``P_`` prefixes the step's
names, ``X`` its input, ``Y`` its output); the generator loads a key's scalar state into locals
when the key changes and stores it back, as the kernels do on their own, and runs every step's
row body before the next row. Row windows only (the subset's), rings as wide as their window.
The arithmetic is the kernels' own (kernels.averages, kernels.returns), so the outputs are the
same bits.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from numba import njit

from tickflow.engine.runtime.key_groups import key_order
from tickflow.kernels.window import PEAK_RATIO, RECENTRE_MIN, recentred_sums


@dataclass(frozen=True)
class Template:
    scalars: tuple[tuple[str, str, object], ...]  # (local, zero literal, fill)
    buffers: tuple[str, ...]  # (k, window) float64 arrays
    body: str


LOG_RETURNS = Template((("prev", "0.0", np.nan),), (), """
Y = np.nan
if not np.isnan(X):
    if not np.isnan(P_prev) and P_prev != 0.0:
        P_ratio = X / P_prev
        if P_ratio > 0.0 and np.isfinite(P_ratio):
            Y = np.log(P_ratio)
    P_prev = X
""")

EWMA = Template((("m", "0.0", np.nan),), (), """
Y = np.nan
if not np.isnan(X):
    if np.isnan(P_m):
        P_m = X
    else:
        P_m = ALPHA * X + (1.0 - ALPHA) * P_m
    Y = P_m
""")

SMA = Template((("c", "0", 0), ("h", "0", 0), ("sh", "0.0", 0.0), ("a", "0.0", 0.0),
                ("ns", "0", 0)), ("vals",), """
Y = np.nan
if not np.isnan(X):
    if ROWS > 1 and P_c == ROWS:
        P_old = P_vals[k, P_h] - P_sh
        P_vals[k, P_h] = X
        P_h = P_h + 1 if P_h + 1 < ROWS else 0
        P_d = X - P_sh
        P_a += P_d - P_old
    else:
        if P_c == 0:
            P_sh = X
            P_a = 0.0
        P_pos = P_h + P_c
        if P_pos >= ROWS:
            P_pos -= ROWS
        P_vals[k, P_pos] = X
        P_a += X - P_sh
        P_c += 1
    P_ns += 1
    if P_ns >= max(P_c, RECENTRE_MIN):
        P_t = 0.0
        P_j = P_h
        for _ in range(P_c):
            P_t += P_vals[k, P_j]
            P_j = P_j + 1 if P_j + 1 < ROWS else 0
        P_sh = P_t / P_c
        P_a = 0.0
        P_j = P_h
        for _ in range(P_c):
            P_a += P_vals[k, P_j] - P_sh
            P_j = P_j + 1 if P_j + 1 < ROWS else 0
        P_ns = 0
    if P_c >= ROWS:
        Y = P_sh + P_a / P_c
""")

_MOMENTS = """
P_mean = np.nan
P_std = np.nan
if not np.isnan(X):
    if ROWS > 1 and P_c == ROWS:
        P_old = P_vals[k, P_h] - P_sh
        P_vals[k, P_h] = X
        P_h = P_h + 1 if P_h + 1 < ROWS else 0
        P_d = X - P_sh
        P_a += P_d - P_old
        P_b += P_d * P_d - P_old * P_old
    else:
        if P_c == 0:
            P_sh = X
            P_a = 0.0
            P_b = 0.0
            P_pk = 0.0
        P_pos = P_h + P_c
        if P_pos >= ROWS:
            P_pos -= ROWS
        P_vals[k, P_pos] = X
        P_d = X - P_sh
        P_a += P_d
        P_b += P_d * P_d
        P_c += 1
    if P_b > P_pk:
        P_pk = P_b
    P_ns += 1
    P_r = P_r + 1 if X == P_lst else 1
    P_lst = X
    if P_ns >= max(P_c, RECENTRE_MIN):
        P_sh, P_a, P_b = recentred_sums(P_vals, k, P_h, P_c)
        P_pk = P_b
        P_ns = 0
    if P_c >= ROWS:
        P_mean = MEAN
        if P_r >= P_c:
            P_mean = CONST
        if P_c - 1 <= 0:
            P_std = np.nan
        elif P_r >= P_c:
            P_std = 0.0
        else:
            P_m2 = P_b - P_a * P_a / P_c
            if P_pk > PEAK_RATIO * P_m2:
                P_sh, P_a, P_b = recentred_sums(P_vals, k, P_h, P_c)
                P_pk = P_b
                P_ns = 0
                P_mean = MEAN
                P_m2 = P_b - P_a * P_a / P_c
            P_var = P_m2 / (P_c - 1)
            P_std = np.sqrt(P_var) if P_var > 0.0 else 0.0
"""
_MOMENT_STATE = (("c", "0", 0), ("h", "0", 0), ("sh", "0.0", 0.0), ("a", "0.0", 0.0),
                 ("b", "0.0", 0.0), ("ns", "0", 0), ("r", "0", 0), ("lst", "0.0", np.nan),
                 ("pk", "0.0", 0.0))
ROLLING_STD = Template(_MOMENT_STATE, ("vals",), _MOMENTS.replace(
    "MEAN", "P_sh + P_a / P_c").replace("CONST", "P_lst") + "Y = P_std\n")
ROLLING_ZSCORE = Template(_MOMENT_STATE, ("vals",), _MOMENTS.replace(
    "MEAN", "(X - P_sh) - P_a / P_c").replace("CONST", "0.0") + """
Y = np.nan if np.isnan(P_std) or P_std == 0.0 else P_mean / P_std
""")

TEMPLATES = {"log_returns": LOG_RETURNS, "ewma": EWMA, "sma": SMA, "rolling_std": ROLLING_STD,
             "rolling_zscore": ROLLING_ZSCORE}


def _constants(step) -> dict[str, str]:
    p = step.params
    if step.definition.name == "ewma":
        return {"ALPHA": repr(float(p.kernel_alpha()))}
    if hasattr(p, "window"):
        assert isinstance(p.window, int), "the prototype fuses row windows only"
        return {"ROWS": str(p.window)}
    return {}


def build_fused(steps):
    """Source of one numba loop running ``steps`` row by row; returns (fn, layout)."""
    produced: dict[str, str] = {}
    inputs: list[str] = []
    args: list[str] = []
    load: list[str] = []
    store: list[str] = []
    init: list[str] = []
    body: list[str] = []
    layout = []
    for j, step in enumerate(steps):
        tpl = TEMPLATES[step.definition.name]
        prefix = f"s{j}_"
        src = step.input_columns[0]
        if src not in produced:
            if src not in inputs:
                inputs.append(src)
            produced[src] = f"in_{src}[i]"
        text = tpl.body
        for name, value in _constants(step).items():
            text = text.replace(name, value)
        x_var = f"x{j}"
        text = text.replace("P_", prefix).replace("X", x_var).replace("Y", f"y{j}")
        body.append(f"{x_var} = {produced[src]}")
        body.append(text)
        out = step.output_columns[0]
        body.append(f"out{j}[i] = y{j}")
        produced[out] = f"y{j}"
        for local, zero, _ in tpl.scalars:
            args.append(f"{prefix}{local}_arr")
            init.append(f"{prefix}{local} = {zero}")
            load.append(f"{prefix}{local} = {prefix}{local}_arr[k]")
            store.append(f"{prefix}{local}_arr[k] = {prefix}{local}")
        args += [f"{prefix}{b}" for b in tpl.buffers]
        layout.append((step, tpl, out))
    outs = [f"out{j}" for j in range(len(steps))]
    ind = "        "
    src = "\n".join([
        f"def fused(key, {', '.join('in_' + c for c in inputs)}, {', '.join(args)}, "
        f"{', '.join(outs)}):",
        "    k = -1",
        *("    " + line for line in init),
        "    for i in range(key.shape[0]):",
        "        if key[i] != k:",
        "            if k >= 0:",
        *("                " + line for line in store),
        "            k = key[i]",
        *("            " + line for line in load),
        *(textwrap.indent(b.strip("\n"), ind) for b in body),
        "    if k >= 0:",
        *("        " + line for line in store),
        "    return key.shape[0]",
    ])
    scope = {"np": np, "recentred_sums": recentred_sums, "RECENTRE_MIN": RECENTRE_MIN,
             "PEAK_RATIO": PEAK_RATIO}
    exec(compile(src, "<fused>", "exec"), scope)  # the source generated from the templates
    return njit(nogil=True)(scope["fused"]), inputs, layout, src


def run_fused(fused, steps, morsels, grouped: bool):
    """The fused loop over the morsels with fresh state; (seconds, overhead, outputs)."""
    import time

    fn, inputs, layout, _ = fused
    n_keys = max(int(g.max()) for g, _, _ in morsels) + 1
    state: list[np.ndarray] = []
    for step, tpl, _ in layout:
        for _, _, fill in tpl.scalars:
            dtype = np.int64 if isinstance(fill, int) else np.float64
            state.append(np.full(n_keys, fill, dtype=dtype))
        for _ in tpl.buffers:
            state.append(np.full((n_keys, step.params.window), np.nan))
    total = overhead = 0.0
    results = []
    for gid, _ts, cols in morsels:
        t0 = time.thread_time()
        if grouped:
            order, where = key_order(gid, n_keys)
            g = gid[order]
            xs = [cols[c][order] for c in inputs]
        else:
            g, xs = gid, [cols[c] for c in inputs]
        t1 = time.thread_time()
        outs = [np.empty(g.shape[0]) for _ in layout]
        fn(g, *xs, *state, *outs)
        t2 = time.thread_time()
        if grouped:
            outs = [v[where] for v in outs]
        t3 = time.thread_time()
        overhead += (t1 - t0) + (t3 - t2)
        total += t3 - t0
        results.append({col: v for (_, _, col), v in zip(layout, outs, strict=True)})
    return total, overhead, results

