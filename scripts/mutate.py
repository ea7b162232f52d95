"""Planted-bug check of the test suite: apply each small deliberate bug, one at a time, to a
scratch copy of the repository, run the tests that should notice, and report killed/survived.

A survivor is a gap: a change of behaviour no test can see. ``make mutate`` runs the mutants
of the non-kernel modules; ``--kernels`` runs the kernel mutants (the windows' edge). The
working tree is never touched: mutants go into a copy under a temporary directory.

Usage: python scripts/mutate.py [--kernels] [--only SUBSTRING] [--list]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "out", "data", ".hypothesis", ".pytest_cache", "__pycache__"}


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


DEAD_LETTER_TESTS = ("tests/collector/test_dead_letter_counts.py",
                     "tests/kafka/test_dead_letter_counts.py",
                     "tests/arbitrage/test_dead_letter_counts.py")
FILLS_TESTS = ("tests/backtest/test_fills.py",)
EDGE_TESTS = ("tests/kernels/test_time_window_edge.py",)

MUTANTS = [
    Mutant("DeadLetters.total counts distinct reasons", "connectors/dead_letter.py",
           "return sum(self.counts.values())", "return len(self.counts)", DEAD_LETTER_TESTS),
    Mutant("a reason's count is set to 1, not incremented", "connectors/dead_letter.py",
           "self.counts[reason] += 1", "self.counts[reason] = 1", DEAD_LETTER_TESTS),
    Mutant("dead-letter records are not written to the file", "connectors/dead_letter.py",
           'self._file.write(line + "\\n")', "pass", DEAD_LETTER_TESTS),
    Mutant("collector stats count distinct reasons", "connectors/collector.py",
           "self.stats.dead_letters = self.dead_letters.total",
           "self.stats.dead_letters = len(self.dead_letters.counts)",
           ("tests/collector/test_dead_letter_counts.py",)),
    Mutant("a limit exit past limit_timeout is cancelled, not sent at market",
           "engine/backtest/fills.py", "                    if target == 0:\n",
           "                    if target == 0 and False:\n", FILLS_TESTS),
    Mutant("limit_timeout is exclusive", "engine/backtest/fills.py",
           "elif t - ist[s, I_PPOSTTS] >= cfg[C_TIMEOUT]:",
           "elif t - ist[s, I_PPOSTTS] > cfg[C_TIMEOUT]:", FILLS_TESTS),
    Mutant("limit fills pay the taker fee", "engine/backtest/fills.py",
           "transition(s, t, limit, cfg[C_MAKER]", "transition(s, t, limit, cfg[C_TAKER]",
           FILLS_TESTS),
    Mutant("rule rejections lose their reason", "engine/rules.py",
           'return RuleError(f"{label} not allowed in a rule"',
           'return RuleError("not allowed in a rule"', ("tests/engine/test_rules.py",)),
]

KERNEL_MUTANTS = [
    Mutant("rolling_min/rolling_max keep the row exactly one window old",
           "kernels/extremes.py",
           "while c > 0 and (c >= rows if rows > 0 else tss[k, h] <= t - span):\n"
           "            h = h + 1 if h + 1 < cap else 0",
           "while c > 0 and (c >= rows if rows > 0 else tss[k, h] < t - span):\n"
           "            h = h + 1 if h + 1 < cap else 0", EDGE_TESTS),
    Mutant("rolling_moments keeps the row exactly one window old", "kernels/averages.py",
           "                while c > 0 and tss[k, h] <= limit:\n"
           "                    d = vals[k, h] - sh",
           "                while c > 0 and tss[k, h] < limit:\n"
           "                    d = vals[k, h] - sh", EDGE_TESTS),
]


def copy_tree(dest: Path) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP_DIRS or n.endswith(".parquet")}
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def run_mutant(m: Mutant, tree: Path, env: dict[str, str]) -> tuple[str, float]:
    target = tree / m.path
    original = target.read_text()
    if original.count(m.old) != 1:
        return f"stale (the text to change occurs {original.count(m.old)} times)", 0.0
    target.write_text(original.replace(m.old, m.new))
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "--no-header", *m.tests], cwd=tree, env=env, capture_output=True, text=True,
            timeout=1800, check=False)
    finally:
        target.write_text(original)
    took = time.monotonic() - start
    if proc.returncode == 0:
        return "SURVIVED", took
    if proc.returncode == 1:
        failed = [line.split(" ")[1] for line in proc.stdout.splitlines()
                  if line.startswith("FAILED ")]
        return f"killed by {failed[0] if failed else 'a failing test'}", took
    return f"killed (pytest exit {proc.returncode}: collection or usage error)", took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", action="store_true", help="run the kernel mutants instead")
    ap.add_argument("--only", default="", help="only mutants whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = ap.parse_args()
    mutants = [m for m in (KERNEL_MUTANTS if args.kernels else MUTANTS)
               if args.only.lower() in m.name.lower()]
    if args.list:
        for m in mutants:
            print(f"{m.path}: {m.name}")
        return 0
    survived = stale = 0
    with tempfile.TemporaryDirectory(prefix="tickflow-mutate-") as scratch:
        tree = Path(scratch) / "repo"
        copy_tree(tree)
        env = {**os.environ, "PYTHONPATH": str(tree),
               "NUMBA_CACHE_DIR": str(Path(scratch) / "numba-cache")}
        for m in mutants:
            verdict, took = run_mutant(m, tree, env)
            survived += verdict == "SURVIVED"
            stale += verdict.startswith("stale")
            print(f"{verdict:<70} {took:6.1f}s  {m.path}: {m.name}", flush=True)
    print(f"{len(mutants) - survived - stale} killed, {survived} survived, {stale} stale "
          f"of {len(mutants)}")
    return 1 if survived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
