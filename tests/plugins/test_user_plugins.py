"""A user's own kernel, in a module outside the repository, used from YAML like a built-in."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tickflow.engine.cli import main
from tickflow.engine.compile import compile_job
from tickflow.engine.errors import CompileError
from tickflow.engine.executors.local import run_local
from tickflow.engine.loader import load_job
from tickflow.engine.plugins import PluginError, load_plugin
from tickflow.engine.registry import KERNELS
from tickflow.engine.testing import assert_split_invariant, assert_state_roundtrip, run_kernel

# cache=False: a kernel compiled from a tmp_path file would leave one cache entry per test run
USER_KERNELS = '''
"""A user's kernel module, written as docs/kernel-guide.md says."""

import numpy as np
from numba import njit

from tickflow.kernels.base import Field, Params, kernel


class GapParams(Params):
    """How much to scale the gap."""

    scale: float = 1.0


@kernel("price_gap", params=GapParams, inputs=("price",), outputs=("price_gap",),
        state=lambda p: [Field("last")], args=lambda p: (p.scale,),
        formula="scale * (x_t - x_{t-1}) per key")
@njit(nogil=True)
def price_gap(key, ts, x, last, out, scale):
    """scale * (x_t - x_{t-1}) per key: NaN on a key's first row; a NaN input writes NaN and
    leaves the state unchanged. State: ``last`` per key."""
    for i in range(key.shape[0]):
        k = key[i]
        v = x[i]
        if np.isnan(v):
            out[i] = np.nan
            continue
        out[i] = scale * (v - last[k])
        last[k] = v
    return key.shape[0]
'''


def write_package(root: Path, body: str = USER_KERNELS, package: str = "my_research") -> Path:
    pkg = root / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The user\'s research code."""\n')
    (pkg / "kernels.py").write_text(body)
    return root


def write_job(path: Path, extra: str, steps: str) -> Path:
    path.write_text("name: user-plugin\nmode: research\n" + extra + "\n"
                    "sources:\n  - kind: simulator\n    rows: 6000\n    symbols: 3\n"
                    "    seed: 11\nsteps:\n" + steps +
                    "signals:\n  jump: price_gap > 0\n"
                    f"sinks:\n  - kind: parquet\n    path: {path.parent / 'out.parquet'}\n")
    return path


STEPS = """\
  - kernel: price_gap
    params: {scale: 2.0}
"""


def test_a_user_kernel_runs_from_yaml_like_a_builtin(tmp_path: Path) -> None:
    write_package(tmp_path / "user_code")
    job_file = write_job(tmp_path / "job.yaml",
                         "plugin_paths: [user_code]\nplugins: [my_research.kernels]", STEPS)
    job = compile_job(load_job(job_file))
    assert [s.definition.name for s in job.steps] == ["price_gap"]
    summary = run_local(job, workers=2, morsel_rows=1000)
    assert summary.rows == 6000
    table = pq.read_table(tmp_path / "out.parquet")
    want = run_kernel("price_gap", {"price": table.column("price").to_numpy()},
                      keys=table.column("symbol").to_numpy(), params={"scale": 2.0})
    np.testing.assert_array_equal(table.column("price_gap").to_numpy(), want["price_gap"])
    assert summary.signal_counts["jump"] == int(np.nansum(want["price_gap"] > 0)) > 0


def test_a_user_kernel_passes_the_public_contract_helpers(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(write_package(tmp_path)))
    assert load_plugin("my_research.kernels") == ["price_gap"]
    rng = np.random.default_rng(2)
    prices = rng.normal(100, 1, 400)
    prices[[5, 6, 300]] = np.nan
    keys = rng.choice(["X", "Y"], 400)
    assert_split_invariant("price_gap", {"price": prices}, keys=keys, splits=[1, 57, 58, 399],
                           params={"scale": 3.0})
    assert_state_roundtrip("price_gap", {"price": prices}, keys=keys, at=123)


def test_run_job_kernels_lists_the_plugins_of_a_job(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_package(tmp_path / "user_code")
    job_file = write_job(tmp_path / "job.yaml",
                         "plugin_paths: [user_code]\nplugins: [my_research.kernels]", STEPS)
    assert main(["kernels", "--json"]) == 0
    assert "price_gap" not in {k["name"] for k in json.loads(capsys.readouterr().out)}
    assert main(["kernels", "--json", str(job_file)]) == 0
    table = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
    gap = table["price_gap"]
    assert gap["inputs"] == ["price"] and gap["outputs"] == ["price_gap"]
    assert gap["params"][0]["name"] == "scale" and gap["family"] == "kernels"
    assert main(["kernels", "--plugins", "my_research.kernels"]) == 0  # now importable by name
    assert "price_gap" in capsys.readouterr().out


def test_kernels_plugins_flag_reports_a_missing_module(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert main(["kernels", "--plugins", "no_such_research_module"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plugin 'no_such_research_module': no module named")
    assert "Traceback" not in err


def test_a_bad_parameter_of_a_user_kernel_is_located(tmp_path: Path) -> None:
    write_package(tmp_path / "user_code")
    job_file = write_job(tmp_path / "job.yaml",
                         "plugin_paths: [user_code]\nplugins: [my_research.kernels]",
                         "  - kernel: price_gap\n    params: {scale: fast}\n")
    with pytest.raises(CompileError) as err:
        compile_job(load_job(job_file))
    text = str(err.value)
    assert "job.yaml:12:" in text and "steps[0].params.scale" in text
    assert "(step 'price_gap', kernel price_gap)" in text


def test_a_kernel_that_is_not_numba_is_refused_and_rolled_back(tmp_path: Path) -> None:
    body = USER_KERNELS + textwrap.dedent('''

        @kernel("slow_gap", inputs=("price",), outputs=("slow_gap",))
        def slow_gap(key, ts, x, out):
            """A pure-Python kernel: not allowed."""
            return key.shape[0]
        ''')
    write_package(tmp_path / "user_code", body)
    job_file = write_job(tmp_path / "job.yaml",
                         "plugin_paths: [user_code]\nplugins:\n  - my_research.kernels", STEPS)
    with pytest.raises(CompileError) as err:
        compile_job(load_job(job_file))
    first = err.value.problems[0]
    assert (first.line, first.path) == (5, "plugins[0]")
    assert first.message == (
        "plugin 'my_research.kernels': failed to register: kernel 'slow_gap' is not a numba "
        "function: decorate it with @njit(nogil=True, cache=True) below @kernel "
        "(docs/kernel-guide.md)")
    # nothing of the failed plugin stays registered, so its good kernel is unknown too
    assert "price_gap" not in KERNELS and "slow_gap" not in KERNELS
    assert any("unknown kernel 'price_gap'" in p.message for p in err.value.problems)


def test_an_import_error_names_the_module_file_and_line(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_package(tmp_path, "import numpy as np\n\nWINDOW = np.arange(3)[7]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginError) as err:
        load_plugin("my_research.kernels")
    assert str(err.value) == ("plugin 'my_research.kernels': failed to import: IndexError: "
                              "index 7 is out of bounds for axis 0 with size 3 "
                              "(my_research/kernels.py:3)")
    assert err.value.exit_code == 2


def test_a_fixed_plugin_can_be_loaded_after_a_failure(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_package(tmp_path, USER_KERNELS.replace("@njit(nogil=True)\n", ""))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="not a numba function"):
        load_plugin("my_research.kernels")
    (tmp_path / "my_research" / "kernels.py").write_text(USER_KERNELS)
    assert load_plugin("my_research.kernels") == ["price_gap"]


USER_SOURCE = '''
"""A user's source: a fixed price path for two symbols."""

from typing import Literal

import pyarrow as pa

from tickflow.connectors.base import CANONICAL_TICK_SCHEMA, ConnectorConfig, Source, source


class StairsConfig(ConnectorConfig):
    """rows of prices 1, 2, 3, ... alternating between two symbols."""

    kind: Literal["stairs"] = "stairs"
    rows: int = 10


@source("stairs", config=StairsConfig, summary="a price staircase")
class StairsSource(Source):
    def schema(self):
        return CANONICAL_TICK_SCHEMA

    def batches(self, columns=None, batch_rows=65536):
        n = self.config.rows
        data = {f.name: pa.nulls(n, f.type) for f in CANONICAL_TICK_SCHEMA}
        ts_type = CANONICAL_TICK_SCHEMA.field("timestamp").type
        data["timestamp"] = pa.array(range(n), pa.int64()).cast(ts_type)
        data["symbol"] = pa.array(["A", "B"] * (n // 2))
        data["price"] = pa.array([float(i + 1) for i in range(n)])
        yield pa.RecordBatch.from_pydict(data, schema=CANONICAL_TICK_SCHEMA)
'''


def test_a_user_source_and_kernel_from_two_plugins(tmp_path: Path) -> None:
    write_package(tmp_path / "user_code")
    (tmp_path / "user_code" / "my_research" / "sources.py").write_text(USER_SOURCE)
    job_file = tmp_path / "job.yaml"
    job_file.write_text("name: two-plugins\nmode: research\nplugin_paths: [user_code]\n"
                        "plugins: [my_research.sources, my_research.kernels]\n"
                        "sources:\n  - kind: stairs\n    rows: 8\nsteps:\n  - kernel: price_gap\n"
                        f"sinks:\n  - kind: parquet\n    path: {tmp_path / 'out.parquet'}\n")
    run_local(compile_job(load_job(job_file)), workers=1)
    gap = pq.read_table(tmp_path / "out.parquet").column("price_gap").to_numpy()
    # each symbol's price rises by 2 from one of its rows to the next
    np.testing.assert_array_equal(gap, [np.nan, np.nan, 2, 2, 2, 2, 2, 2])
