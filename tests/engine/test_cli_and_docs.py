"""The command line beyond validate: graph, kernels, docs; and that what ships compiles."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_path
from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.loader import load_job
from tickflow.engine.reference import (
    job_reference_markdown,
    kernel_table,
    kernels_markdown,
    reference_files,
)
from tickflow.engine.registry import KERNELS

JOB_FILES = sorted(p for p in (ROOT / "jobs").rglob("*.yaml") if "features" not in p.parts)


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_every_shipped_job_compiles(path: Path, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.parquet"
    from tickflow.connectors.simulator import write_simulated_parquet

    write_simulated_parquet(ticks, rows=1_000, symbols=3, seed=1)
    job = compile_job(load_job(path, env={"TICKS": str(ticks), "OUT_DIR": str(tmp_path)}))
    assert job.steps


def test_graph_formats(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = tmp_path / "ticks.parquet"
    from tickflow.connectors.simulator import write_simulated_parquet

    write_simulated_parquet(ticks, rows=1_000, symbols=3, seed=1)
    monkeypatch.setenv("TICKS", str(ticks))
    job = str(ROOT / "jobs" / "research.yaml")
    assert main(["graph", job]) == 0
    text = capsys.readouterr().out
    assert "[kernel] rolling_zscore (rolling_zscore)  <- ticks" in text
    assert "+ cusum_stat, cusum_alarm" in text
    assert main(["graph", job, "--format", "mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart TD") and "-->" in mermaid
    out = tmp_path / "g.dot"
    assert main(["graph", job, "--format", "dot", "-o", str(out)]) == 0
    dot = out.read_text()
    assert dot.startswith('digraph "crypto-research"') and "->" in dot


def test_kernels_json_lists_params_inputs_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kernels", "--json"]) == 0
    table = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
    from tickflow.engine.operators import OPERATORS

    assert set(table) == set(KERNELS.names()) | set(OPERATORS.names())
    assert table["asof_join"]["kind"] == "operator" and table["asof_join"]["params"]
    rz = table["rolling_zscore"]
    assert rz["inputs"] == ["price"] and rz["outputs"] == ["zscore"]
    assert {"name": "window", "default": 100} .items() <= {
        k: v for k, v in rz["params"][0].items() if k in ("name", "default")}.items()
    assert rz["formula"]


def test_committed_docs_are_generated_from_the_code() -> None:
    assert (ROOT / "docs" / "job-reference.md").read_text() == job_reference_markdown(), \
        "docs are stale: run `make docs`"
    assert (ROOT / "docs" / "kernel-reference.md").read_text() == kernels_markdown(), \
        "docs are stale: run `make docs`"
    files = reference_files()
    for name, text in files.items():
        assert (ROOT / "docs" / name).read_text() == text, f"docs/{name} is stale: `make docs`"
    committed = {f"kernels/{p.name}" for p in (ROOT / "docs" / "kernels").glob("*.md")}
    assert committed == {n for n in files if n.startswith("kernels/")}


def test_kernel_reference_is_split_by_family_with_every_parameter_described() -> None:
    files = reference_files()
    families = {k["family"] for k in kernel_table()}
    assert {f"kernels/{f}.md" for f in families} <= set(files)
    assert len(families) >= 10
    params = [(k["name"], p) for k in kernel_table() for p in k["params"]]
    assert len(params) >= 139
    undescribed = [f"{name}.{p['name']}" for name, p in params if not p["description"]]
    assert not undescribed, undescribed
    page = files["kernels/averages.md"]
    assert "## `ewma`" in page and "| `alpha` |" in page and "span N >= 1" in page
    assert "[averages](kernels/averages.md)" in files["kernel-reference.md"]


def test_every_core_kernel_of_the_spec_is_registered() -> None:
    spec = shared_path("KERNELS.md").read_text()
    core = spec.split("## Core set", 1)[1].split("## Extended set", 1)[0]
    names = re.findall(r"^\| `([a-z_0-9]+)`", core, flags=re.M)
    assert len(names) >= 26
    missing = [n for n in names if n not in KERNELS]
    assert not missing, f"not registered: {missing}"


def test_docs_into_a_file_says_it_takes_a_folder(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "reference.md"
    target.write_text("mine\n")
    assert main(["docs", "--out", str(target)]) == 2
    assert "takes a folder" in capsys.readouterr().err
    assert target.read_text() == "mine\n"  # left as it was
    assert main(["docs", "--out", str(tmp_path / "ref")]) == 0
    assert (tmp_path / "ref" / "job-reference.md").is_file()
