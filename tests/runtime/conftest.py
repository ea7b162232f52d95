"""The runtime tests use the real Dask cluster of tests/dask and the session's Kafka broker."""

from tests.dask.conftest import client  # noqa: F401  (a fixture)
