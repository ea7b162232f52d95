"""The Dask services of docker-compose.yml run tickflow itself, built from this repository."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dask_services_run_the_image_built_from_the_dockerfile() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    built = services["dask-scheduler"]
    assert built["build"] == "." and (ROOT / "Dockerfile").is_file()
    for name in ("dask-worker", "dask-client"):
        assert services[name]["image"] == built["image"], name


def test_the_dockerfile_copies_and_installs_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = pyproject["tool"]["setuptools"]["package-dir"].values()
    for package in folders:  # the folder, or the folder holding it (jobs/ holds jobs/features)
        top = package.split("/")[0]
        assert re.search(rf"^COPY {top} ", text, re.M), package
    assert re.search(r"^RUN pip install \.$", text, re.M)
    assert "python:3.11" in text  # the version requires-python and CI use
