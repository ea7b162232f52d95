"""Loading job files: marks, environment variables, includes, overrides, safe YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickflow.engine.errors import JobSpecError
from tickflow.engine.field_paths import parse_override
from tickflow.engine.loader import load_job

JOB = """\
name: t
mode: research
sources:
  - kind: simulator
    rows: ${ROWS:-500}
    seed: ${SEED}
steps:
  - kernel: ewma
    params: {alpha: 0.1}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_env_values_take_their_yaml_type(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, "j.yaml", JOB), env={"SEED": "42"})
    source = job.data["sources"][0]
    assert source["rows"] == 500 and isinstance(source["rows"], int)
    assert source["seed"] == 42


def test_env_inside_a_string_stays_a_string(tmp_path: Path) -> None:
    text = "name: t-${SUFFIX:-x}\nmode: research\nsources: [{kind: simulator}]\n"
    job = load_job(write(tmp_path, "j.yaml", text), env={"SUFFIX": "7"})
    assert job.data["name"] == "t-7"


def test_quoted_env_value_stays_a_string(tmp_path: Path) -> None:
    text = 'name: "${N}"\nmode: research\nsources: [{kind: simulator}]\n'
    assert load_job(write(tmp_path, "j.yaml", text), env={"N": "12"}).data["name"] == "12"


def test_missing_env_var_is_located(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError) as err:
        load_job(write(tmp_path, "j.yaml", JOB), env={})
    (problem,) = err.value.problems
    assert (problem.line, problem.col, problem.path) == (6, 11, "sources[0].seed")
    assert "SEED" in problem.message


def test_marks_point_at_values_and_keys(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, "j.yaml", JOB), env={"SEED": "1"})
    mark = job.marks.find(("steps", 0, "params", "alpha"))
    assert (mark.line, mark.col) == (9, 21)
    assert job.marks.find(("steps", 0, "params", "nope"), prefer_key=True).line == 9


def test_include_puts_included_steps_first_with_their_own_marks(tmp_path: Path) -> None:
    write(tmp_path, "features/core.yaml", "steps:\n  - kernel: sma\n  - kernel: ema\n")
    text = JOB.replace("steps:", "include: [features/core.yaml]\nsteps:")
    job = load_job(write(tmp_path, "j.yaml", text), env={"SEED": "1"})
    assert [s["kernel"] for s in job.data["steps"]] == ["sma", "ema", "ewma"]
    included = job.marks.find(("steps", 1, "kernel"))
    assert included.file.endswith("core.yaml") and included.line == 3
    own = job.marks.find(("steps", 2, "params", "alpha"))
    assert own.file.endswith("j.yaml") and own.line == 10


def test_include_holds_only_steps(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "steps: []\nsinks: []\n")
    text = JOB.replace("steps:", "include: [bad.yaml]\nsteps:")
    with pytest.raises(JobSpecError, match="holds only `steps:`"):
        load_job(write(tmp_path, "j.yaml", text), env={"SEED": "1"})


def test_overrides_set_nested_and_indexed_fields(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, "j.yaml", JOB), env={"SEED": "1"},
                   overrides=["steps[0].params.alpha=0.5", "executor.workers=3"])
    assert job.data["steps"][0]["params"]["alpha"] == 0.5
    assert job.data["executor"] == {"workers": 3}
    assert job.marks.find(("executor", "workers")).file.startswith("--set")


def test_override_of_a_missing_index_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match=r"no item \[5\]"):
        load_job(write(tmp_path, "j.yaml", JOB), env={"SEED": "1"},
                 overrides=["steps[5].params.alpha=0.5"])


def test_parse_override() -> None:
    assert parse_override("a.b[2].c=x") == (("a", "b", 2, "c"), "x")
    assert parse_override("w=2") == (("w",), 2)
    with pytest.raises(ValueError, match=r"key\.path=value"):
        parse_override("nothing")


def test_python_tags_are_refused(tmp_path: Path) -> None:
    text = "name: !!python/object/apply:os.system ['echo hi']\nmode: research\n"
    with pytest.raises(JobSpecError, match="not allowed"):
        load_job(write(tmp_path, "j.yaml", text))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="cannot read the file"):
        load_job(tmp_path / "missing.yaml")
