"""Golden error messages: every broken job in bad/ gives its located message and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickflow.engine.cli import main

BAD = Path(__file__).parent / "bad"
CASES = sorted(p.name for p in BAD.glob("*.yaml"))


def test_there_are_at_least_fifteen_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", CASES)
def test_validate_prints_located_problems(name: str, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD)
    monkeypatch.delenv("TICKFLOW_TEST_UNSET_VAR", raising=False)
    code = main(["validate", name])
    out = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out.err + out.out
    expected = (BAD / name).with_suffix(".txt").read_text()
    assert out.err == expected


@pytest.mark.parametrize("name", ["04_unknown_kernel.yaml", "07_missing_column.yaml"])
def test_run_refuses_an_invalid_job_the_same_way(name: str, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD)
    assert main([name]) == 2
    err = capsys.readouterr().err
    assert err == (BAD / name).with_suffix(".txt").read_text()
