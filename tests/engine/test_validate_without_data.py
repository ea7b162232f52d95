"""`run-job validate` needs no data: a missing source file is checked against its declared
schema."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tickflow.engine.cli import main

JOBS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "jobs").rglob("*.yaml")
              if "features" not in p.relative_to(ROOT / "jobs").parts)


@pytest.fixture
def fresh_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's jobs/ alone in an empty directory: no data/, no out/."""
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    monkeypatch.chdir(tmp_path)
    for name in ("TICKS", "OUT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.parametrize("job", JOBS)
def test_every_shipped_job_validates_on_a_fresh_clone(job: str, fresh_clone: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", job]) == 0
    out = capsys.readouterr().out
    assert f"{job}: valid" in out
    assert not (fresh_clone / "data").exists()  # validating made no data


def test_a_missing_file_is_said_in_one_located_line(fresh_clone: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "jobs/research.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("jobs/research.yaml:8:5: sources[0]: 'data/sim_ticks.parquet' does not "
                        "exist yet; validated against the canonical tick schema")
    assert len(lines) == 2


JOB = """name: declared
mode: research
sources:
  - kind: parquet
    path: data/later.parquet
    schema: {{timestamp: timestamp, symbol: string, {price}: {price_type}}}
steps:
  - kernel: sma
    params: {{window: 5}}
"""


def write_job(root: Path, price: str = "price", price_type: str = "float64") -> str:
    (root / "job.yaml").write_text(JOB.format(price=price, price_type=price_type))
    return "job.yaml"


def test_a_declared_schema_is_what_the_steps_are_checked_against(
        fresh_clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", write_job(fresh_clone)]) == 0
    assert "validated against its declared `schema:`" in capsys.readouterr().out
    assert main(["validate", write_job(fresh_clone, price="last")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("job.yaml:8:")
    assert "missing column 'price'" in err


def test_a_bad_schema_type_is_a_located_error(fresh_clone: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", write_job(fresh_clone, price_type="double")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("job.yaml:6:")
    assert "sources[0].schema" in err
    assert "Traceback" not in err


def test_running_still_needs_the_data(fresh_clone: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main([write_job(fresh_clone)]) == 2
    assert "no such file or directory: 'data/later.parquet'" in capsys.readouterr().err
