"""docker-compose.yml stays in step with the defaults the connectors and jobs use."""

from __future__ import annotations

from pathlib import Path

import yaml

from tickflow.connectors.kafka_client import DEFAULT_BOOTSTRAP
from tickflow.connectors.kafka_sink import KafkaSinkConfig
from tickflow.connectors.kafka_source_config import KafkaSourceConfig

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def host_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[0]) for p in service.get("ports", [])}


def test_kafka_listens_where_the_connectors_look() -> None:
    kafka = compose()["services"]["kafka"]
    host, port = DEFAULT_BOOTSTRAP.split(":")
    assert KafkaSourceConfig(kind="kafka").bootstrap == DEFAULT_BOOTSTRAP
    assert KafkaSinkConfig(kind="kafka").bootstrap == DEFAULT_BOOTSTRAP
    assert int(port) in host_ports(kafka) and int(port) == 19092
    env = kafka["environment"]
    assert f"EXTERNAL://{host}:{port}" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper service
    assert "zookeeper" not in compose()["services"]


def test_schema_registry_uses_the_kafka_service() -> None:
    registry = compose()["services"]["schema-registry"]
    assert 8081 in host_ports(registry)
    assert "kafka:9092" in registry["environment"]["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"]


def test_dask_services_share_a_data_volume() -> None:
    services = compose()["services"]
    scheduler, worker = services["dask-scheduler"], services["dask-worker"]
    assert {8786, 8787} <= host_ports(scheduler)
    assert "tcp://dask-scheduler:8786" in worker["command"]
    volume = {v.split(":")[0] for v in scheduler["volumes"]} & \
        {v.split(":")[0] for v in worker["volumes"]}
    assert volume and volume <= set(compose()["volumes"])


def test_jobs_default_to_the_embedded_broker_and_name_the_compose_port() -> None:
    for name in ("live.yaml", "export.yaml"):
        text = (ROOT / "jobs" / name).read_text()
        assert "bootstrap: ${KAFKA_BOOTSTRAP:-embedded}" in text
    assert "KAFKA_BOOTSTRAP=localhost:19092" in (ROOT / "jobs/live.yaml").read_text()
