"""Turn a ``strategy:`` block into parsed rules, and find its problems at compile time.

Rules keep ``{name}`` placeholders so that a sweep can vary thresholds; they are filled from
``strategy.params`` as plain numbers and then parsed by the rule language (never eval'ed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tickflow.engine.backtest.spec import StrategySpec
from tickflow.engine.registry import close_matches, did_you_mean
from tickflow.engine.rules import Rule, RuleError, parse_rule

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# bit flags of the per-row signal code the simulator reads
ENTRY_LONG, EXIT_LONG, ENTRY_SHORT, EXIT_SHORT = 1, 2, 4, 8


def fill_template(text: str, params: dict[str, float]) -> str:
    """Replace ``{name}`` by the number ``params[name]``; ValueError for an unknown name."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in params:
            known = sorted(params)
            hint = did_you_mean(close_matches(name, known))
            raise ValueError(f"placeholder {{{name}}} has no value in strategy.params{hint}"
                             + (f" (params: {', '.join(known)})" if known else ""))
        return f"({float(params[name])!r})"

    return _PLACEHOLDER.sub(repl, text)


@dataclass(frozen=True)
class StrategyPlan:
    """The parsed rules of a strategy and every column the backtest reads beyond the quotes."""

    long_entry: Rule | None
    long_exit: Rule | None
    short_entry: Rule | None
    short_exit: Rule | None
    vol_column: str | None

    @property
    def columns(self) -> frozenset[str]:
        cols: set[str] = set()
        for rule in (self.long_entry, self.long_exit, self.short_entry, self.short_exit):
            if rule is not None:
                cols |= rule.columns
        if self.vol_column:
            cols.add(self.vol_column)
        return frozenset(cols)

    def signal_codes(self, columns: dict[str, np.ndarray], keys: np.ndarray) -> np.ndarray:
        """One int8 per row: the ENTRY_/EXIT_ bit flags that hold on that row.

        Rows are every symbol's ticks in time order; rules that remember earlier rows
        (``prev``, ``crosses_above``) keep that memory per symbol (``keys``).
        """
        n = len(keys)
        code = np.zeros(n, dtype=np.int8)
        for rule, bit in ((self.long_entry, ENTRY_LONG), (self.long_exit, EXIT_LONG),
                          (self.short_entry, ENTRY_SHORT), (self.short_exit, EXIT_SHORT)):
            if rule is not None:
                if rule.is_keyed:
                    held = rule.mask(columns, keys=keys, state=rule.new_state())
                else:
                    held = rule.mask(columns)
                mask = np.broadcast_to(held, (n,))
                code |= mask.astype(np.int8) * np.int8(bit)
        return code


def _rules(strategy: StrategySpec) -> Iterable[tuple[str, str, str]]:
    for side in ("long", "short"):
        rules = getattr(strategy, side)
        if rules is not None:
            yield side, "entry", rules.entry
            yield side, "exit", rules.exit


def build_plan(strategy: StrategySpec, columns: set[str] | None = None) -> StrategyPlan:
    """Parse the strategy's rules; raises RuleError/ValueError naming the rule."""
    parsed: dict[str, Rule] = {}
    for side, which, text in _rules(strategy):
        parsed[f"{side}_{which}"] = parse_rule(fill_template(text, strategy.params), columns)
    vol = strategy.sizing.vol_column if strategy.sizing.method == "vol_target" else None
    return StrategyPlan(parsed.get("long_entry"), parsed.get("long_exit"),
                        parsed.get("short_entry"), parsed.get("short_exit"), vol)


def strategy_problems(spec: Any, columns: set[str] | None,
                      step_ids: Iterable[str]) -> list[tuple[tuple[Any, ...], str, bool]]:
    """Problems of a job's ``strategy:``/``sweep:`` blocks as (key path, message, at_key).

    ``columns`` are every column the job provides (None when the source schema is unknown).
    """
    out: list[tuple[tuple[Any, ...], str, bool]] = []
    strategy: StrategySpec | None = spec.strategy
    if spec.mode == "backtest" and strategy is None:
        out.append((("mode",), "a backtest job needs a `strategy:` block (entry and exit "
                               "rules, sizing, execution)", False))
    if strategy is not None:
        for side, which, text in _rules(strategy):
            try:
                parse_rule(fill_template(text, strategy.params), columns)
            except (RuleError, ValueError) as exc:
                out.append((("strategy", side, which), str(exc), False))
        vol = strategy.sizing.vol_column
        if strategy.sizing.method == "vol_target" and columns is not None and vol not in columns:
            hint = did_you_mean(close_matches(vol, sorted(columns)))
            out.append((("strategy", "sizing", "vol_column"),
                        f"vol_target sizing reads column {vol!r}, which no source or step "
                        f"provides{hint}", False))
    if spec.sweep is not None:
        if strategy is None:
            out.append((("sweep",), "a sweep needs a `strategy:` block", False))
        ids = set(step_ids)
        for name in spec.sweep.parameters:
            where = ("sweep", "parameters", name)
            if name.startswith("steps."):
                parts = name.split(".")
                if len(parts) < 4 or parts[2] != "params":
                    out.append((where, f"expected steps.<step id>.params.<name>, found "
                                       f"{name!r}", True))
                elif parts[1] not in ids:
                    hint = did_you_mean(close_matches(parts[1], sorted(ids)))
                    out.append((where, f"no step with id {parts[1]!r}{hint}", True))
            elif "." not in name and strategy is not None and name not in strategy.params:
                hint = did_you_mean(close_matches(name, sorted(strategy.params)))
                out.append((where, f"{name!r} is not a key of strategy.params{hint}; a sweep "
                                   f"varies strategy.params or a path such as "
                                   f"steps.rsi.params.period", True))
            elif "." in name and not name.startswith("strategy."):
                out.append((where, f"a swept path starts with `steps.` or `strategy.`, found "
                                   f"{name!r}", True))
    return out
