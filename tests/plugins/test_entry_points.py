"""Installed packages advertise plugins through `tickflow.*` entry points; no `plugins:` needed.

The "installed package" is a real distribution on sys.path: a module and its `.dist-info`
folder with `entry_points.txt`, which is what pip writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugins.test_user_plugins import USER_KERNELS
from tickflow.engine.compile import compile_job
from tickflow.engine.errors import CompileError
from tickflow.engine.loader import load_job
from tickflow.engine.registry import KERNELS


def install(site: Path, dist: str, entry_points: str, modules: dict[str, str]) -> None:
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    for name, body in modules.items():
        (site / f"{name}.py").write_text(body)


def job(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text("name: ep\nmode: research\nsources:\n  - kind: simulator\n    rows: 500\n"
                    "steps:\n  - kernel: price_gap\n")
    return path


def test_an_entry_point_kernel_needs_no_plugins_key(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install(site, "gap_signals", "[tickflow.kernels]\ngap = gap_signals_kernels\n",
            {"gap_signals_kernels": USER_KERNELS})
    monkeypatch.syspath_prepend(str(site))
    compiled = compile_job(load_job(job(tmp_path)))
    assert compiled.steps[0].definition.name == "price_gap"
    assert KERNELS.get("price_gap").family == "gap_signals_kernels"


def test_a_callable_entry_point_is_called_once(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    body = "CALLS = []\n\ndef register():\n    CALLS.append(1)\n" \
           "    import gap_signals_kernels  # noqa: F401\n"
    install(site, "gap_hook", "[tickflow.kernels]\ngap = gap_hook:register\n",
            {"gap_hook": body, "gap_signals_kernels": USER_KERNELS})
    monkeypatch.syspath_prepend(str(site))
    compile_job(load_job(job(tmp_path)))
    compile_job(load_job(job(tmp_path)))
    import gap_hook  # type: ignore[import-not-found]

    assert gap_hook.CALLS == [1]


def test_a_broken_entry_point_names_the_package(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install(site, "broken_signals", "[tickflow.kernels]\nbroken = broken_signals_mod\n",
            {"broken_signals_mod": "raise RuntimeError('needs a GPU')\n"})
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(CompileError) as err:
        compile_job(load_job(job(tmp_path)))
    first = err.value.problems[0]
    assert first.message == (
        "entry point 'broken = broken_signals_mod' (tickflow.kernels, package "
        "'broken_signals'): failed to import: RuntimeError: needs a GPU "
        f"({site / 'broken_signals_mod.py'}:1)")
