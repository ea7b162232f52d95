"""The compiler's checks of what a job outputs: its signals (and strategy), and its sinks.

A mixin of the compiler (engine/compile.py), reporting through ``self.problem``: signal rules
are parsed against the main stream's columns, and each sink is placed on the stream it reads
(``from:``) and checked for the columns it needs.
"""

from __future__ import annotations

from collections.abc import Callable

from tickflow.engine.compiled import ConnectorUse
from tickflow.engine.contract import RunContext
from tickflow.engine.registry import close_matches, did_you_mean
from tickflow.engine.rules import Rule, RuleError, parse_rule
from tickflow.engine.spec import JobSpec
from tickflow.engine.streams import Stream, stream_names_hint


class OutputChecks:
    """Binds the signals to the main stream and places every sink on its stream."""

    problem: Callable[..., None]

    def bind_signals(self, spec: JobSpec, streams: dict[str, Stream], main: str,
                     step_ids: list[str]) -> dict[str, Rule]:
        """The job's signal rules, parsed against the main stream (which then carries them)."""
        main_stream = streams.get(main)
        all_columns = set(main_stream.columns) if main_stream else set()
        known = bool(main_stream and main_stream.known and main_stream.columns)
        signals: dict[str, Rule] = {}
        for name, text in spec.signals.items():
            if name in all_columns:
                self.problem(("signals", name), f"signal {name!r} has the name of a column; "
                                                f"choose another name", at_key=True)
                continue
            try:
                signals[name] = parse_rule(text, all_columns if known else None)
            except RuleError as exc:
                self.problem(("signals", name), str(exc))
        if spec.strategy is not None or spec.sweep is not None or spec.mode == "backtest":
            from tickflow.engine.backtest.plan import strategy_problems

            for path, message, at_key in strategy_problems(
                    spec, all_columns if known else None, step_ids):
                self.problem(path, message, at_key=at_key)
        if main_stream is not None:
            main_stream.signals = signals
            main_stream.columns = [*main_stream.columns, *signals]
        return signals

    def place_sinks(self, spec: JobSpec, sinks: list[ConnectorUse],
                    report_use: ConnectorUse | None, streams: dict[str, Stream], main: str,
                    context: RunContext) -> list[str]:
        """The stream each sink writes; reports a missing stream or a column a sink needs."""
        sink_streams: list[str] = []
        for use in sinks:
            is_report = use is report_use
            section = ("report",) if is_report else ("sinks", use.index)
            wanted = None if is_report else spec.sinks[use.index].from_
            if wanted is not None and wanted not in streams:
                hint = did_you_mean(close_matches(wanted, list(streams)))
                self.problem((*section, "from"), f"no stream named {wanted!r}{hint}"
                                                 f"{stream_names_hint(streams, '')}")
                continue
            target = streams.get(wanted or main)
            sink_streams.append(wanted or main)
            if target is None or not target.known or not target.columns:
                continue
            final_columns = set(target.columns)
            required = use.definition.cls(use.config, context).required_columns()
            for col in required:
                if col not in final_columns:
                    hint = did_you_mean(close_matches(col, sorted(final_columns)))
                    self.problem(section, f"the {use.definition.name} sink reads column "
                                          f"{col!r}, which no source or step provides{hint}")
        return sink_streams
