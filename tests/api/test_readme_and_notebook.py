"""The README's Python example and the cookbook notebook run as written."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1]
    match = re.match(r"\s*```python\n(.*?)```", section, flags=re.S)
    assert match, "the README's Python section must open with a ```python block"
    return match.group(1)


def test_readme_python_section_opens_with_a_five_line_example_that_runs(
        tmp_path: Path, sim_ticks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = readme_python_example()
    assert len(code.strip().splitlines()) == 5
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    (tmp_path / "data").mkdir()
    shutil.copy(sim_ticks, tmp_path / "data" / "sim_ticks.parquet")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    *body, last = code.strip().splitlines()
    exec(compile("\n".join(body), "README.md", "exec"), namespace)
    shown = eval(compile(last, "README.md", "eval"), namespace)
    assert list(shown.index) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert shown[("zscore", "count")].sum() > 5_000
    assert not (tmp_path / "out").exists(), "sinks=False writes nothing"


def test_cookbook_notebook_executes(tmp_path: Path, sim_ticks: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "docs" / "cookbook" / "notebook.ipynb", as_version=4)
    env = {"TICKS": str(sim_ticks), "PYTHONPATH": str(ROOT)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel process inherits them
    try:
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "tickflow result: crypto-research" in html
    assert "buy and hold" in html and "sharpe" in html
    assert any("trades; final equity" in o.get("text", "") for o in outputs)
