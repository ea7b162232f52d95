"""Built-in sources and sinks.

Importing this package registers nothing and imports no connector: the engine's table of
built-ins (``tickflow.engine.builtin_connectors``) imports a connector's module the first
time a job names it, so a research run does not load Kafka, WebSocket or report code.
"""
