"""Where each built-in source and sink lives, by name, so the engine never imports connectors.

The registry imports a connector's module the first time a job (or ``run-job --list``) names it;
the module's ``@source``/``@sink`` decorator then registers the real entry. A test checks that
this table and the connector modules agree.
"""

from tickflow.engine.registry import CONNECTORS

BUILTIN_CONNECTORS = {
    "source:simulator": "tickflow.connectors.simulator",
    "source:parquet": "tickflow.connectors.parquet",
    "source:kafka": "tickflow.connectors.kafka_source",
    "source:funding_simulator": "tickflow.connectors.funding_simulator",
    "source:coinbase": "tickflow.connectors.coinbase_source",
    "source:venue_simulator": "tickflow.connectors.venue_simulator",
    "source:binance": "tickflow.connectors.venue_sources",
    "source:kraken": "tickflow.connectors.venue_sources",
    "sink:parquet": "tickflow.connectors.parquet_sink",
    "sink:report": "tickflow.connectors.report",
    "sink:console": "tickflow.connectors.console",
    "sink:kafka": "tickflow.connectors.kafka_sink",
    "sink:arbitrage_report": "tickflow.connectors.arbitrage_report",
}

for _name, _module in BUILTIN_CONNECTORS.items():
    CONNECTORS.add_lazy(_name, _module)
