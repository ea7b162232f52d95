"""tickflow engine: job spec, compiler, executors and the command line."""

__version__ = "0.1.0"
