"""tickflow's exception tree. Every user mistake ends as one of these, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class TickflowError(Exception):
    """Root of all errors tickflow reports to users."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One located problem in a job file: where, which key, and what is wrong."""

    file: str
    line: int | None
    col: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class JobSpecError(TickflowError):
    """The job file is not valid; holds every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class CompileError(JobSpecError):
    """The job is well-formed but cannot be compiled (unknown names, missing columns, cycles)."""


class SourceError(TickflowError):
    """A source could not be read (missing file, unreachable broker)."""


class SinkError(TickflowError):
    """A sink could not be written."""


class StateError(TickflowError):
    """State could not be loaded or saved, or does not match the job."""


class KernelRuntimeError(TickflowError):
    """A kernel failed on real data; names the step and the data coordinates."""
