"""The built-in operators are known by name and imported when a job first names one: the
index in ``engine/operators/__init__.py`` agrees with the ``@operator`` decorators, and a job
imports only the operator modules it uses."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT
from tickflow.engine import operators


def test_the_index_names_what_each_module_registers() -> None:
    for module in operators.BUILTIN_OPERATORS:
        importlib.import_module(f"tickflow.engine.operators.{module}")
    registered: dict[str, set[str]] = defaultdict(set)
    for entry in operators.OPERATORS:
        module = entry.obj.cls.__module__
        if module.startswith("tickflow.engine.operators."):
            registered[module.rsplit(".", 1)[-1]].add(entry.name)
    indexed = {m: set(names) for m, names in operators.BUILTIN_OPERATORS.items()}
    expected = "\n".join(f"    {m!r}: {tuple(sorted(n))!r}," for m, n in sorted(registered.items()))
    assert indexed == dict(registered), f"update BUILTIN_OPERATORS to:\n{expected}"


def _modules_after_compiling(job: Path) -> list[str]:
    code = f"""
    import json, sys
    from tickflow.engine.compile import compile_job
    from tickflow.engine.loader import load_job
    compile_job(load_job({str(job)!r}))
    print(json.dumps(sorted(m.rsplit(".", 1)[-1] for m in sys.modules
                            if m.startswith("tickflow.engine.operators."))))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_job_imports_only_the_operator_modules_it_names(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: plain\nmode: research\n"
                     "sources: [{kind: simulator, rows: 100, symbols: 2}]\n"
                     "steps:\n  - kernel: log_returns\n")
    assert _modules_after_compiling(plain) == ["base"]
    filtered = tmp_path / "filtered.yaml"
    filtered.write_text("name: filtered\nmode: research\n"
                        "sources: [{kind: simulator, rows: 100, symbols: 2}]\n"
                        "steps:\n  - operator: filter\n    params: {rule: price > 0}\n")
    assert _modules_after_compiling(filtered) == ["base", "filter"]
