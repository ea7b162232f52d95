"""Loading the same job file again reuses its parsed YAML: never a change made to a loaded job,
always the variables and the text of now."""

from __future__ import annotations

from tickflow.engine.loader import load_job

JOB = """\
name: cached
mode: research
sources:
  - id: ticks
    kind: simulator
    rows: ${ROWS:-100}
steps:
  - {kernel: ewma, params: {alpha: 0.1}, inputs: [price], output: ewma}
sinks: [{kind: console}]
"""


def test_a_change_to_a_loaded_job_does_not_reach_the_next_load(tmp_path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    first = load_job(path, env={})
    first.data["steps"][0]["params"]["alpha"] = 0.9
    first.data["sources"].append({"id": "more"})
    first.marks.values[("sources", 1)] = first.marks.find(("name",))
    again = load_job(path, env={})
    assert again.data["steps"][0]["params"]["alpha"] == 0.1
    assert len(again.data["sources"]) == 1
    assert ("sources", 1) not in again.marks.values
    assert again.marks.find(("steps", 0, "kernel")).line == 8


def test_a_new_value_of_a_variable_or_a_new_text_is_read_again(tmp_path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    assert load_job(path, env={}).data["sources"][0]["rows"] == 100
    assert load_job(path, env={"ROWS": "7"}).data["sources"][0]["rows"] == 7
    path.write_text(JOB.replace("alpha: 0.1", "alpha: 0.2"))
    assert load_job(path, env={"ROWS": "7"}).data["steps"][0]["params"]["alpha"] == 0.2
