"""The built wheel, installed into a fresh virtualenv (no editable install), runs a job from a
temporary folder that includes the packaged feature steps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "tickflow", "engine", "kernels",
           "connectors", "jobs/features")


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False,
                         **kwargs)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{cmd}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (the build leaves build/ behind)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(dist), str(src)])
    (built,) = dist.glob("tickflow-*.whl")
    return built


@pytest.mark.slow
def test_wheel_installs_one_top_level_name_and_runs_a_job_from_anywhere(
        wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"]).stdout.strip())
    before = set(os.listdir(site))
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
          str(wheel)], env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    added = set(os.listdir(site)) - before
    assert {n for n in added if not n.endswith(".dist-info")} == {"tickflow"}
    # then the dependencies from this environment, through a plain path line: its .pth files
    # (the editable tickflow among them) are not processed
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()
    probe = _run([str(python), "-c", "import tickflow, tickflow.engine.cli as c; "
                  "print(tickflow.__file__); print(c.__file__); import importlib.util as u; "
                  "print([n for n in ('engine', 'kernels', 'connectors') if u.find_spec(n)])"],
                 cwd=work, env=env).stdout.splitlines()
    assert probe[0].startswith(str(site / "tickflow"))
    assert probe[1].startswith(str(site / "tickflow" / "engine"))
    assert probe[2] == "[]"
    assert "0.2.0" in _run([str(venv / "bin" / "run-job"), "--version"], cwd=work,
                           env=env).stdout

    _run([str(venv / "bin" / "run-job"), "simulate", "-o", "ticks.parquet", "--rows", "3000",
          "--symbols", "2"], cwd=work, env=env)
    (work / "job.yaml").write_text(
        "name: anywhere\nmode: research\nsources: [{kind: parquet, path: ticks.parquet}]\n"
        "include: [features/core.yaml]\nsinks: [{kind: parquet, path: out/f.parquet}]\n"
        "executor: {workers: 1}\n")
    out = _run([str(venv / "bin" / "run-job"), "job.yaml", "-q"], cwd=work, env=env)
    assert out.stderr == ""
    import pyarrow.parquet as pq

    table = pq.read_table(work / "out" / "f.parquet")
    assert table.num_rows == 3000 and "zscore" in table.column_names


def test_wheel_carries_license_metadata_types_and_feature_steps(wheel: Path) -> None:
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = z.read(meta_name).decode()
        entry_points = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
        license_text = z.read(next(n for n in names if n.endswith("/LICENSE"))).decode()
    assert {n.split("/")[0] for n in names} == {"tickflow", meta_name.split("/")[0]}
    assert "tickflow/py.typed" in names and "tickflow/jobs/features/core.yaml" in names
    assert "Apache License" in license_text and "Version 2.0" in license_text
    assert "License: Apache-2.0" in meta
    for field in ("Project-URL: Homepage", "Project-URL: Source", "Keywords: ",
                  "Classifier: License :: OSI Approved :: Apache Software License",
                  "Classifier: Typing :: Typed", "Requires-Python: >=3.11"):
        assert field in meta, field
    assert "run-job = tickflow.engine.cli:main" in entry_points


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    """A new package folder missing from pyproject's list would be left out of the wheel."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for name, folder in config["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            sub = init.parent.relative_to(root / folder).parts
            assert ".".join((name, *sub)) in listed, f"add {'.'.join((name, *sub))!r}"
