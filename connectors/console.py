"""``kind: console``: print the first rows of the output and count the rest (for a quick look)."""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from tickflow.connectors.base import ConnectorConfig, RunContext, Sink, sink


class ConsoleSinkConfig(ConnectorConfig):
    """Show the first rows of the output as a table in the terminal, then the row count."""

    kind: Literal["console"] = "console"
    columns: list[str] | None = Field(None, min_length=1,
                                      description="columns to show (default: all)")
    rows: int = Field(10, ge=0, le=10_000, description="number of leading rows to show")


@sink("console", config=ConsoleSinkConfig,
      summary="print the first rows of the output and a running row count")
class ConsoleSink(Sink):
    """Prints the first ``rows`` rows once they have arrived, and the total on close."""

    config: ConsoleSinkConfig

    def __init__(self, config: ConsoleSinkConfig, context: RunContext):
        super().__init__(config, context)
        self._head: list[pa.RecordBatch] = []
        self._head_rows = 0
        self._shown = False
        self.count = 0
        self._console: Any = None

    def required_columns(self) -> list[str]:
        return list(self.config.columns or [])

    def _out(self) -> Any:
        if self._console is None:
            import sys

            from rich.console import Console

            # to a pipe or file: one line per row, never folded at 80 columns
            self._console = Console(soft_wrap=True,
                                    width=None if sys.stdout.isatty() else 100_000)
        return self._console

    def write(self, batch: pa.RecordBatch) -> None:
        if self.context.extra.get("streaming"):  # a live run: rows as they come
            self._print_rows(batch)
            return
        self.count += batch.num_rows
        if self._head_rows < self.config.rows:
            if self.config.columns:
                batch = batch.select(self.config.columns)
            take = batch.slice(0, self.config.rows - self._head_rows)
            self._head.append(take)
            self._head_rows += take.num_rows
        if not self._shown and self._head_rows >= self.config.rows:
            self._show()
        elif self._shown and self._out().is_terminal:
            self._out().print(f"[dim]{self.count:,} rows[/dim]", end="\r")

    def _print_rows(self, batch: pa.RecordBatch) -> None:
        if self.config.columns:
            batch = batch.select(self.config.columns)
        for row in batch.slice(0, max(0, self.config.rows - self.count)).to_pylist():
            self._out().print("  ".join(f"{k}={'null' if v is None else _cell(v)}"
                                        for k, v in row.items()),
                              markup=False, highlight=False, soft_wrap=True)
        self.count += batch.num_rows
        self._shown = True

    def _show(self) -> None:
        from rich.table import Table

        self._shown = True
        if not self.config.rows or not self._head:
            return
        table = pa.Table.from_batches(self._head)
        t = Table(title=f"first {table.num_rows} rows")
        for name in table.column_names:
            t.add_column(name, overflow="fold")
        for row in table.to_pylist():
            t.add_row(*(_cell(v) for v in row.values()))
        self._out().print(t)

    def close(self) -> str | None:
        if not self._shown:
            self._show()
        self._out().print(f"{self.count:,} rows")
        return f"console: {self.count:,} rows"


def _cell(v: object) -> str:
    if v is None:
        return "[dim]null[/dim]"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
