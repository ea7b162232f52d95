"""Backtesting: strategies in YAML, next-tick bid/ask fills, metrics, reports and sweeps.

``spec`` (the ``strategy:``/``sweep:`` models), ``plan`` (rules and their compile-time checks),
``data`` (features from the engine or a research output), ``fills`` (the numba execution
simulator), ``metrics``, ``report``, ``sweep`` and ``run`` (the entry point of ``run-job``).
"""
