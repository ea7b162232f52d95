"""Built-in sources and sinks; importing this package registers every one of them."""

from importlib import import_module

_MODULES = ("simulator", "parquet", "report", "console", "kafka", "funding_simulator",
            "coinbase_source", "venue_simulator", "venue_sources", "arbitrage_report")

for _module in _MODULES:
    try:
        import_module(f"{__name__}.{_module}")
    except ModuleNotFoundError as exc:  # a connector not written yet
        if exc.name != f"{__name__}.{_module}":
            raise
