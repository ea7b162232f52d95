"""Hostile job files: bounded aliases, depth and size; YAML 1.2 booleans; strings as keys.

Each case ran out of memory, hung or ended in a traceback before engine/yaml_safe.py. The
goldens in bad/yaml_*.yaml cover the same ground through ``run-job validate``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.errors import JobSpecError
from tickflow.engine.field_paths import parse_override
from tickflow.engine.loader import load_job
from tickflow.engine.yaml_safe import MAX_FILE_BYTES

BAD = Path(__file__).parent / "bad"
HEAD = "name: t\nmode: research\nsources: [{kind: simulator, rows: 100}]\n"


def write(tmp_path: Path, text: str | bytes, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def only_problem(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(JobSpecError) as err:
        load_job(path, env=env or {})
    (problem,) = err.value.problems
    return str(problem)


def test_alias_bomb_is_refused_fast_with_its_line(tmp_path: Path) -> None:
    start = time.process_time()  # CPU time: a busy machine (or a test beside it) can't fail it
    message = only_problem(BAD / "yaml_1_alias_bomb.yaml")
    assert time.process_time() - start < 5
    assert ":10:8: YAML limit: more than 100,000 values with aliases expanded" in message


def test_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    lines = [HEAD, "x0: &x0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]\n" for i in range(1, 8)]
    lines.append("executor:\n  <<: *x7\n")
    assert "YAML limit" in only_problem(write(tmp_path, "".join(lines)))


def test_alias_count_is_bounded(tmp_path: Path) -> None:
    text = HEAD + "a: &a 1\n" + "".join(f"k{i}: *a\n" for i in range(1001))
    assert only_problem(write(tmp_path, text)).endswith(
        "job.yaml:1005:8: YAML limit: more than 1,000 aliases (*name); a job file needs far "
        "fewer")


def test_too_many_values_without_aliases(tmp_path: Path) -> None:
    text = HEAD + "x: [" + ", ".join(["1"] * 100_001) + "]\n"
    assert "YAML limit: more than 100,000 values; a job file holds far fewer" in only_problem(
        write(tmp_path, text))


def test_shared_anchors_within_the_limits_still_work(tmp_path: Path) -> None:
    text = (HEAD + "defaults: &d {alpha: 0.1}\nsteps:\n"
            + "".join(f"  - {{kernel: ewma, id: e{i}, params: *d}}\n" for i in range(50)))
    with pytest.raises(JobSpecError, match="defaults"):  # anchors load; the key is unknown
        compile_job(load_job(write(tmp_path, text)))


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "a: &a {b: {c: *a}}\n",
                                  "a: &a\n  - x\n  - *a\n"])
def test_recursive_anchor_is_located(tmp_path: Path, text: str) -> None:
    assert "is inside its own anchor &a" in only_problem(write(tmp_path, text))


def test_hundred_thousand_levels_of_nesting(tmp_path: Path) -> None:
    path = write(tmp_path, "name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "job.yaml:1:70: YAML limit: nested deeper than 64 levels" in only_problem(path)


def test_nesting_through_aliases_is_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [[[[[[[[[[1]]]]]]]]]]\n"]
    lines += [f"a{i}: &a{i} [[[[[[[[[*a{i - 1}]]]]]]]]]\n" for i in range(1, 9)]
    assert "through aliases" in only_problem(write(tmp_path, "".join(lines)))


def test_file_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "name: t\nsymbol: caf\xe9\n".encode("latin-1"))
    assert only_problem(path).endswith(
        "job.yaml:2:12: the file is not UTF-8 text: byte 0xe9 cannot be decoded "
        "(save it as UTF-8)")


def test_utf8_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + HEAD.encode())
    assert load_job(path).data["name"] == "t"


def test_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "# padding\n" * (MAX_FILE_BYTES // 10 + 10))
    message = only_problem(path)
    assert "the file is larger than 1,048,576 bytes (found 1,048," in message
    assert "job.yaml:104" in message  # the line where the limit is crossed


def test_control_character_is_located(tmp_path: Path) -> None:
    assert only_problem(write(tmp_path, b"name: t\nmode: \x07\n")).startswith(
        f"{tmp_path / 'job.yaml'}:2:7: the file holds a control character #x0007")


def test_deeply_nested_environment_value_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "description: ${DEEP}\n")
    message = only_problem(path, env={"DEEP": "[" * 5000 + "]" * 5000})
    assert message.endswith("job.yaml:4:14: description: the value of ${DEEP} is nested "
                            "deeper than 64 levels of mappings and lists")


def test_environment_alias_bomb_is_located(tmp_path: Path) -> None:
    levels = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = write(tmp_path, HEAD + "description: ${BOMB}\n")
    message = only_problem(path, env={"BOMB": "{" + ", ".join(levels) + "}"})
    assert "the value of ${BOMB} is more than 100,000 values with aliases expanded" in message


def test_deeply_nested_override_is_an_error() -> None:
    with pytest.raises(ValueError, match="the value of name is nested deeper than 64"):
        parse_override("name=" + "[" * 5000 + "]" * 5000)


def test_cli_reports_each_hostile_file_with_status_2(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cases = {write(tmp_path, "name: " + "{a: " * 3000 + "}" * 3000 + "\n", "deep.yaml"): 1,
             write(tmp_path, b"name: \xff\xfe\n", "bytes.yaml"): 1,
             BAD / "yaml_1_alias_bomb.yaml": 10}
    for path, line in cases.items():
        for command in (["validate", str(path)], [str(path)]):
            assert main(command) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"{path}:{line}:")
            assert "Traceback" not in err


# ------------------------------------------------------------------ YAML 1.2 booleans


def test_on_is_a_key_not_true(tmp_path: Path) -> None:
    text = ("name: t\nmode: research\nsources: [{kind: simulator, id: a}, "
            "{kind: simulator, id: b}]\nsteps:\n  - operator: asof_join\n"
            "    params: {left: a, right: b, on: timestamp}\n")
    job = compile_job(load_job(write(tmp_path, text)))
    assert job.loaded.data["steps"][0]["params"]["on"] == "timestamp"
    assert job.operators[0].params.on == "timestamp"


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "OFF"])
def test_yaml_11_boolean_words_stay_strings(tmp_path: Path, word: str) -> None:
    data = load_job(write(tmp_path, f"{HEAD}description: {word}\n{word}: 1\n")).data
    assert data["description"] == word
    assert data[word] == 1


@pytest.mark.parametrize(("word", "value"), [("true", True), ("false", False),
                                             ("True", True), ("FALSE", False)])
def test_true_and_false_are_booleans(tmp_path: Path, word: str, value: bool) -> None:
    assert load_job(write(tmp_path, f"{HEAD}description: {word}\n")).data["description"] is value


def test_keys_are_the_text_written(tmp_path: Path) -> None:
    data = load_job(write(tmp_path, f"{HEAD}x: {{1: a, 1.50: b, true: c, 2024-01-01: d}}\n")).data
    assert list(data["x"]) == ["1", "1.50", "true", "2024-01-01"]


def test_a_list_as_key_is_refused(tmp_path: Path) -> None:
    assert "a key must be a name" in only_problem(write(tmp_path, f"{HEAD}? [a, b]\n: 1\n"))


def test_python_tags_are_still_refused(tmp_path: Path) -> None:
    text = HEAD + "description: !!python/object/apply:os.system ['echo hi']\n"
    assert "YAML tag !!python/object/apply:os.system is not allowed" in only_problem(
        write(tmp_path, text))
