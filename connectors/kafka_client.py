"""What every Kafka source and sink shares: connection settings, secrets, topics, retries.

Credentials come only from environment variables named in the YAML (never the values
themselves), are held as ``SecretStr`` and never appear in logs, errors or the compiled plan.
librdkafka's own log lines go to the ``tickflow.kafka`` logger (silent unless configured),
because a broker that is down is reported once, clearly, by tickflow itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tickflow.connectors.embedded_broker import broker_answers
from tickflow.engine.errors import SourceError

KAFKA_LOG = logging.getLogger("tickflow.kafka")
KAFKA_LOG.addHandler(logging.NullHandler())
KAFKA_LOG.propagate = False

DEFAULT_BOOTSTRAP = "localhost:19092"  # the docker-compose broker; `embedded` starts one
DEFAULT_TICKS_TOPIC = "coinbase-ticker"
DEFAULT_FEATURES_TOPIC = "crypto-features"

Setting = str | int | float | bool
"""A librdkafka setting's value (extra `consumer:` / `producer:` settings in the YAML)."""


class KafkaSecurity(BaseModel):
    """How to authenticate to a real cluster. The YAML names environment variables; their
    values are read when the client connects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_* protocols)")
    username_env: str = Field("KAFKA_USERNAME",
                              description="environment variable holding the SASL username")
    password_env: str = Field("KAFKA_PASSWORD",
                              description="environment variable holding the SASL password")
    ssl_ca_location: str | None = Field(None, description="CA certificate file (TLS)")


def security_settings(security: KafkaSecurity, env: dict[str, str] | None = None,
                      ) -> dict[str, Any]:
    """librdkafka settings for ``security``; secrets wrapped until the last moment.

    Raises:
        SourceError: a SASL protocol is chosen but its environment variables are not set.
    """
    env = dict(os.environ) if env is None else env
    out: dict[str, Any] = {"security.protocol": security.security_protocol}
    if security.ssl_ca_location:
        out["ssl.ca.location"] = security.ssl_ca_location
    if security.security_protocol.startswith("SASL"):
        missing = [v for v in (security.username_env, security.password_env) if not env.get(v)]
        if missing:
            msg = (f"kafka: security_protocol {security.security_protocol} needs the "
                   f"environment variable(s) {', '.join(missing)} (the credentials are read "
                   f"from the environment only)")
            raise SourceError(msg)
        out["sasl.mechanism"] = security.sasl_mechanism or "PLAIN"
        out["sasl.username"] = SecretStr(env[security.username_env])
        out["sasl.password"] = SecretStr(env[security.password_env])
    return out


def client_settings(bootstrap: str, security: KafkaSecurity | None = None,
                    **extra: Any) -> dict[str, Any]:
    """A librdkafka config dict with secrets revealed: pass it to the client, never log it."""
    settings: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": KAFKA_LOG}
    if security is not None:
        settings.update(security_settings(security))
    settings.update(extra)
    return {k: (v.get_secret_value() if isinstance(v, SecretStr) else v)
            for k, v in settings.items()}


def redacted(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` fit for a log line: passwords and usernames masked."""
    return {k: ("**********" if "sasl" in k and k != "sasl.mechanism" else v)
            for k, v in settings.items() if k != "logger"}


def wait_for_broker(bootstrap: str, *, timeout_s: float, what: str = "kafka",
                    on_retry: Callable[[float], None] | None = None) -> None:
    """Wait until the broker answers, retrying with backoff (a broker that is down at start).

    Args:
        bootstrap: servers to ask.
        timeout_s: give up after this long; 0 asks once.
        what: who is waiting (for the message).
        on_retry: called with the seconds waited so far before each retry (to tell the user).

    Raises:
        SourceError: the broker did not answer within ``timeout_s``.
    """
    start = time.monotonic()
    delay = 0.2
    while True:
        if broker_answers(bootstrap, timeout_s=1.0):
            return
        waited = time.monotonic() - start
        if waited >= timeout_s:
            msg = (f"{what}: no Kafka broker answers at {bootstrap} (waited {waited:.0f} s); "
                   f"start one (docker compose up -d kafka) or set bootstrap: embedded")
            raise SourceError(msg)
        if on_retry is not None:
            on_retry(waited)
        time.sleep(min(delay, max(0.0, timeout_s - waited)))
        delay = min(delay * 2, 2.0)


def ensure_topic(settings: dict[str, Any], topic: str, partitions: int = 1,
                 timeout_s: float = 10.0) -> int:
    """Create ``topic`` when it does not exist; returns its partition count.

    Topics are created explicitly: auto-creation differs between brokers (Tansu, Kafka).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(settings)
    meta = admin.list_topics(timeout=timeout_s)
    if topic in meta.topics and not meta.topics[topic].error:
        return len(meta.topics[topic].partitions)
    futures = admin.create_topics([NewTopic(topic, partitions, 1)],
                                  operation_timeout=timeout_s)
    try:
        futures[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            msg = f"kafka: cannot create topic {topic!r}: {exc.args[0]}"
            raise SourceError(msg) from None
    return partitions


def partition_count(settings: dict[str, Any], topic: str, timeout_s: float = 10.0) -> int:
    """How many partitions ``topic`` has (0 when it does not exist)."""
    admin = _admin(settings)
    meta = admin.list_topics(topic=topic, timeout=timeout_s)
    info = meta.topics.get(topic)
    if info is None or info.error is not None:
        return 0
    return len(info.partitions)


def _admin(settings: dict[str, Any]) -> Any:
    """An AdminClient with the connection and security settings of a client's ``settings``."""
    from confluent_kafka.admin import AdminClient

    keep = {k: v for k, v in settings.items()
            if k in ("bootstrap.servers", "logger") or k.startswith(("security.", "sasl.",
                                                                      "ssl."))}
    return AdminClient(keep)


def topic_id(settings: dict[str, Any], topic: str, timeout_s: float = 10.0) -> str | None:
    """The broker's id of ``topic`` (None when unknown): a topic re-created by a restarted,
    empty broker has a new id even when its name and partitions are the same."""
    from confluent_kafka import TopicCollection

    try:
        admin = _admin(settings)  # must outlive the future
        future = admin.describe_topics(TopicCollection([topic]),
                                       request_timeout=timeout_s)[topic]
        return str(future.result(timeout=timeout_s).topic_id)
    except Exception:  # an old broker without topic ids: fall back to the other checks
        return None
