"""The lazy kernel index (kernels/__init__.py) against the ``@kernel`` decorators it mirrors.

The decorators are the source of truth; the index only says which module to import for a name.
A kernel added, renamed or moved without updating the index fails here.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest

from tests.conftest import ROOT


def test_the_index_names_every_decorated_kernel_by_its_module() -> None:
    import tickflow.kernels as kernels
    from tickflow.engine.registry import KERNELS

    for info in pkgutil.iter_modules(kernels.__path__):
        importlib.import_module(f"tickflow.kernels.{info.name}")
    registered: dict[str, set[str]] = defaultdict(set)
    for entry in KERNELS:
        if entry.obj.kind != "kernel":
            continue  # batch steps (model_score) live in the engine
        module = entry.obj.fn.py_func.__module__
        if module.startswith("tickflow.kernels."):
            registered[module.rsplit(".", 1)[-1]].add(entry.name)
    indexed = {module: set(names) for module, names in kernels.BUILTIN_KERNELS.items()}
    expected = "\n".join(f"    {m!r}: {tuple(sorted(n))!r}," for m, n in sorted(registered.items()))
    assert indexed == dict(registered), f"update BUILTIN_KERNELS to:\n{expected}"


def _fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter (nothing imported yet); it prints one JSON value."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


FAMILIES = """
    import json, sys
    def families():
        return sorted(m.rsplit(".", 1)[-1] for m in sys.modules
                      if m.startswith("tickflow.kernels.") and m.rsplit(".", 1)[-1] not in
                      ("base", "window", "rolling_sums", "stat_params"))
"""


def test_a_job_imports_only_the_kernel_modules_it_names(tmp_path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(textwrap.dedent("""\
        name: lazy
        mode: research
        sources: [{id: ticks, kind: simulator, rows: 100, symbols: 2}]
        steps:
          - {kernel: ewma, params: {alpha: 0.1}, inputs: [price], output: ewma}
          - {kernel: log_returns, inputs: [price], output: r}
        sinks: [{kind: console}]
        """))
    seen = _fresh(FAMILIES + f"""
    from tickflow.engine.compile import compile_job
    from tickflow.engine.loader import load_job
    before = families()
    job = compile_job(load_job({str(job)!r}))
    print(json.dumps({{"before": before, "after": families(), "steps": len(job.steps)}}))
    """)
    assert seen["before"] == []
    assert seen["steps"] == 2
    assert seen["after"] == ["averages", "returns"]


def test_an_unknown_kernel_still_suggests_from_every_kernel_and_listing_loads_them_all() -> None:
    seen = _fresh(FAMILIES + """
    from tickflow.engine.registry import KERNELS, UnknownNameError
    import tickflow.kernels
    try:
        KERNELS.get("hayashi_yoshida_cor")
    except UnknownNameError as exc:
        message = str(exc)
    lazy_before = families()
    names = [e.name for e in KERNELS]
    print(json.dumps({"message": message, "before": lazy_before, "after": families(),
                      "count": len(names), "names": len(KERNELS.names())}))
    """)
    assert seen["message"] == ("unknown kernel 'hayashi_yoshida_cor'; did you mean "
                               "'hayashi_yoshida_corr' or 'hayashi_yoshida_cov'?")
    assert seen["before"] == []
    import tickflow.kernels as kernels

    assert set(seen["after"]) == set(kernels.BUILTIN_KERNELS)
    assert seen["count"] == seen["names"] >= sum(map(len, kernels.BUILTIN_KERNELS.values()))


def test_a_plugin_reusing_a_lazy_built_in_name_is_refused_as_before() -> None:
    seen = _fresh("""
    import json
    import tickflow.kernels
    from tickflow.engine.registry import KERNELS, RegistrationError
    try:
        KERNELS.add("vpin", object())   # trade_flow is not imported yet
        outcome = "accepted"
    except RegistrationError as exc:
        outcome = str(exc)
    print(json.dumps({"outcome": outcome, "kept": KERNELS.get("vpin").fn.__name__}))
    """)
    assert seen == {"outcome": "kernel 'vpin' is registered twice", "kept": "vpin"}


@pytest.mark.parametrize("command", [["kernels", "--json"], ["kernels", "vpin"]])
def test_listing_commands_see_every_kernel(command: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "tickflow.engine.cli", *command], cwd=ROOT,
                         check=True, capture_output=True, text=True, timeout=120).stdout
    if command[-1] == "--json":
        import tickflow.kernels as kernels

        names = {row["name"] for row in json.loads(out)}
        assert {n for ns in kernels.BUILTIN_KERNELS.values() for n in ns} <= names
    else:
        assert "vpin" in out
