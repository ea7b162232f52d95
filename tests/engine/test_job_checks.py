"""Compile-time checks of a job's data and sizes (engine/io_checks.py, engine/limits.py).

Wrong column types, outputs that would replace an input, and sizes that cannot fit in memory
are refused by ``validate`` and ``run`` alike, with a located message and status 2, before any
file is written. All on real Parquet files under ``tmp_path``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tickflow.connectors.simulator import write_simulated_parquet
from tickflow.engine.cli import _out_of_memory, build_parser, main
from tickflow.engine.compile import compile_job
from tickflow.engine.errors import CompileError
from tickflow.engine.limits import check_state_memory
from tickflow.engine.loader import load_job

ROOT = Path(__file__).resolve().parents[2]


def job_text(source: str, sink: str | None = None, extra: str = "") -> str:
    text = (f"name: t\nmode: research\nsources:\n  - kind: parquet\n    path: {source}\n"
            f"steps:\n  - kernel: ewma\n    params: {{alpha: 0.1}}\n{extra}")
    if sink is not None:
        text += f"sinks:\n  - kind: parquet\n    path: {sink}\n"
    return text


@pytest.fixture(scope="module")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    path = tmp_path_factory.mktemp("ticks") / "ticks.parquet"
    write_simulated_parquet(path, rows=500, symbols=3)
    return pq.read_table(path)


def with_column(table: pa.Table, name: str, array: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def run_both(tmp_path: Path, job: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """validate and run: both status 2 with the same message and no traceback."""
    errs = []
    for command in (["validate", str(job)], ["run", "-q", str(job)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        errs.append(err)
    assert errs[0] == errs[1]
    return errs[0]


# ------------------------------------------------------------------ column types (item 6)


def test_timestamp_stored_as_strings(tmp_path: Path, ticks: pa.Table,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "ticks.parquet"
    pq.write_table(with_column(ticks, "timestamp", pc.cast(ticks["timestamp"], pa.string())),
                   data)
    job = tmp_path / "job.yaml"
    job.write_text(job_text(str(data), str(tmp_path / "out.parquet")))
    assert run_both(tmp_path, job, capsys) == (
        f"{job}:5:11: sources[0].path: column 'timestamp' of parquet source 'parquet0' "
        f"({data}) has type string; expected a timestamp or integer microseconds since the "
        f"epoch (the row times)\n")
    assert not (tmp_path / "out.parquet").exists()


def test_price_stored_as_strings_is_not_cast_silently(tmp_path: Path, ticks: pa.Table,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "ticks.parquet"
    pq.write_table(with_column(ticks, "price", pc.cast(ticks["price"], pa.string())), data)
    job = tmp_path / "job.yaml"
    job.write_text(job_text(str(data)))
    assert run_both(tmp_path, job, capsys) == (
        f"{job}:5:11: sources[0].path: column 'price' of parquet source 'parquet0' ({data}) "
        f"has type string; expected a number (float, integer, decimal or boolean) (read by "
        f"step 'ewma')\n")


def test_list_key_column_is_refused(tmp_path: Path, ticks: pa.Table) -> None:
    data = tmp_path / "ticks.parquet"
    symbols = pa.array([[s] for s in ticks["symbol"].to_pylist()])
    pq.write_table(with_column(ticks, "symbol", symbols), data)
    job = tmp_path / "job.yaml"
    job.write_text(job_text(str(data)))
    with pytest.raises(CompileError, match=r"column 'symbol' of parquet source 'parquet0' .* "
                                           r"has type list<element: string>; expected a string or "
                                           r"integer key \(the job's key\)"):
        compile_job(load_job(job))


def test_numeric_columns_of_other_widths_are_accepted(tmp_path: Path, ticks: pa.Table) -> None:
    data = tmp_path / "ticks.parquet"
    table = with_column(ticks, "price", pc.cast(ticks["price"], pa.float32()))
    table = with_column(table, "timestamp", pc.cast(ticks["timestamp"], pa.timestamp("ns")))
    pq.write_table(table, data)
    job = tmp_path / "job.yaml"
    job.write_text(job_text(str(data)))
    assert compile_job(load_job(job)).steps[0].step_id == "ewma"


def test_a_later_file_with_another_column_type_is_named(tmp_path: Path,
                                                        ticks: pa.Table) -> None:
    folder = tmp_path / "ticks"
    folder.mkdir()
    pq.write_table(ticks, folder / "a.parquet")
    pq.write_table(with_column(ticks, "price", pc.cast(ticks["price"], pa.string())),
                   folder / "b.parquet")
    job = tmp_path / "job.yaml"
    job.write_text(job_text(str(folder)))
    with pytest.raises(CompileError) as err:
        compile_job(load_job(job))
    (problem,) = err.value.problems
    assert (problem.line, problem.path) == (4, "sources[0]")
    assert problem.message.endswith("b.parquet' has a different schema from "
                                    f"'{folder / 'a.parquet'}': column 'price' has type string; "
                                    "expected double as in the first file")


# ------------------------------------------------------------------ outputs (item 9)


def refused_and_input_kept(tmp_path: Path, source: str, sink: str, data: Path,
                           capsys: pytest.CaptureFixture[str]) -> str:
    before = data.read_bytes()
    job = tmp_path / "job.yaml"
    job.write_text(job_text(source, sink))
    err = run_both(tmp_path, job, capsys)
    assert err.startswith(f"{job}:11:11: sinks[0].path: ")
    assert data.read_bytes() == before
    return err


def test_output_equal_to_the_input(tmp_path: Path, ticks: pa.Table,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "ticks.parquet"
    pq.write_table(ticks, data)
    err = refused_and_input_kept(tmp_path, str(data), str(data), data, capsys)
    assert f"'{data}' is the file that source 'parquet0' ({data}) reads; writing it would " \
           f"replace the input" in err


def test_output_reaching_the_input_through_a_symlink(tmp_path: Path, ticks: pa.Table,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "ticks.parquet"
    pq.write_table(ticks, data)
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "out.parquet").symlink_to(data)
    err = refused_and_input_kept(tmp_path, str(data), f"{tmp_path}/link/../link/out.parquet",
                                 data, capsys)
    assert f"(through a symlink: both are {data.resolve()})" in err


def test_output_inside_the_input_directory(tmp_path: Path, ticks: pa.Table,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "dataset"
    folder.mkdir()
    pq.write_table(ticks, folder / "day1.parquet")
    err = refused_and_input_kept(tmp_path, str(folder), str(folder / "features.parquet"),
                                 folder / "day1.parquet", capsys)
    assert "is inside the directory that source 'parquet0'" in err
    assert not (folder / "features.parquet").exists()


def test_output_matching_the_input_glob(tmp_path: Path, ticks: pa.Table,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    pq.write_table(ticks, tmp_path / "day1.parquet")
    err = refused_and_input_kept(tmp_path, f"'{tmp_path}/day*.parquet'",
                                 str(tmp_path / "day2.parquet"), tmp_path / "day1.parquet",
                                 capsys)
    assert "matches the glob that source 'parquet0'" in err


def test_output_beside_the_input_is_fine(tmp_path: Path, ticks: pa.Table) -> None:
    data = tmp_path / "ticks.parquet"
    pq.write_table(ticks, data)
    job = tmp_path / "job.yaml"
    job.write_text(job_text(str(data), str(tmp_path / "features.parquet")))
    assert main(["run", "-q", str(job)]) == 0
    assert pq.read_table(tmp_path / "features.parquet").num_rows == ticks.num_rows


# ------------------------------------------------------------------ sizes (item 10)


def simulator_job(tmp_path: Path, steps: str, executor: str = "") -> Path:
    job = tmp_path / "job.yaml"
    job.write_text("name: t\nmode: research\nsources:\n  - kind: simulator\n    rows: 1000\n"
                   f"steps:\n{steps}{executor}")
    return job


def test_state_estimate_names_the_step(tmp_path: Path) -> None:
    job = simulator_job(tmp_path, "  - id: zs\n    kernel: rolling_zscore\n"
                                  "    params: {window: 9000000}\n",
                        "executor: {workers: 1024}\n")
    with pytest.raises(CompileError) as err:
        compile_job(load_job(job))
    (problem,) = err.value.problems
    assert (problem.line, problem.col, problem.path) == (7, 5, "steps[0]")
    # (a row window keeps no timestamps: its ring of values is the state, 8 bytes a row)
    assert re.fullmatch(r"step 'zs' \(kernel rolling_zscore\) needs about 961\.3 GiB of state "
                        r"\(68\.7 MiB per key x 14 keys x 1,024 worker lanes\), more than the "
                        r"[\d.,]+ [KMGT]iB of memory available; use a smaller window or fewer "
                        r"workers", problem.message), problem.message


def test_state_estimate_sums_the_steps(tmp_path: Path) -> None:
    steps = "".join(f"  - {{id: s{i}, kernel: rolling_zscore, output: z{i}, "
                    f"params: {{window: 1000}}}}\n" for i in range(4))
    job = compile_job(load_job(simulator_job(tmp_path, steps)))
    problems: list[tuple[tuple[object, ...], str]] = []
    steps = [(("steps", i), s) for i, s in enumerate(job.steps)
             if s.definition.kind == "kernel"]
    check_state_memory(steps, 2, 14, lambda p, m: problems.append((p, m)), available=500_000)
    check_state_memory(steps, 2, 14, lambda p, m: problems.append((p, m)),
                       available=10_000_000_000)
    assert len(problems) == 1
    assert "the job's kernel steps need about" in problems[0][1]


def test_workers_option_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = simulator_job(tmp_path, "  - kernel: ewma\n    params: {alpha: 0.1}\n")
    assert main(["run", str(job), "--workers", "100000"]) == 2
    assert capsys.readouterr().err == ("--workers: expected an integer from 0 (one per CPU "
                                       "core but one) to 1,024, found 100,000\n")


def test_memory_error_at_run_time_names_the_step(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """More keys than the estimate could know of: numpy refuses the state; no traceback.

    rolling_max keeps its whole row window per key (its ring does not start narrow).
    """
    data = tmp_path / "many_keys.parquet"
    n = 200_000
    pq.write_table(pa.table({"timestamp": pa.array(range(n), pa.timestamp("us", tz="UTC")),
                             "symbol": [f"S{i}" for i in range(n)],
                             "price": pa.array([1.0] * n)}), data)
    job = tmp_path / "job.yaml"
    job.write_text(f"name: t\nmode: research\nsources: [{{kind: parquet, path: {data}}}]\n"
                   f"steps:\n  - {{id: big, kernel: rolling_max, "
                   f"params: {{window: 1000000}}}}\n")
    assert main(["run", "-q", str(job), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("step 'big' (rolling_max) failed: ")
    assert "Unable to allocate" in err


def test_cli_names_the_step_of_a_memory_error(tmp_path: Path) -> None:
    step = compile_job(load_job(simulator_job(
        tmp_path, "  - {id: zs, kernel: rolling_zscore}\n"))).steps[0]
    try:
        np.empty(1 << 50)  # a real MemoryError, raised where `step` is a local
    except MemoryError as exc:
        message = _out_of_memory(exc, build_parser().parse_args(["run", "job.yaml"]))
    assert step.step_id == "zs"
    assert message.startswith("job.yaml: out of memory in step 'zs' during `run-job run` "
                              "(Unable to allocate")


def test_dead_letters_may_share_a_file_but_not_replace_an_input(tmp_path: Path,
                                                                ticks: pa.Table) -> None:
    data = tmp_path / "ticks.parquet"
    pq.write_table(ticks, data)
    job = tmp_path / "job.yaml"
    kafka = "  - {kind: kafka, topic: t, id: k%d, dead_letter_path: %s}\n"
    job.write_text("name: t\nmode: live\nsources:\n" + kafka % (1, tmp_path / "dl.jsonl")
                   + kafka % (2, tmp_path / "dl.jsonl") + "steps:\n  - kernel: ewma\n"
                   "    params: {alpha: 0.1}\n")
    compile_job(load_job(job))  # two sources appending to one dead-letter file is fine
    job.write_text(job.read_text().replace("sources:\n", f"sources:\n  - {{kind: parquet, "
                                           f"id: p, path: {data}}}\n")
                   .replace(str(tmp_path / "dl.jsonl"), str(data), 1))
    with pytest.raises(CompileError, match=r"sources\[1\]\.dead_letter_path: .* is the file "
                                           r"that source 'p' .* reads; writing it would "
                                           r"replace the input"):
        compile_job(load_job(job))


def test_a_signal_reading_a_text_column_is_refused(tmp_path: Path, ticks: pa.Table) -> None:
    data = tmp_path / "ticks.parquet"
    pq.write_table(with_column(ticks, "best_bid", pc.cast(ticks["best_bid"], pa.string())), data)
    job = tmp_path / "job.yaml"
    job.write_text(job_text(str(data), extra="signals:\n  wide: best_bid < ewma\n"))
    with pytest.raises(CompileError, match=r"column 'best_bid' .* has type string; expected a "
                                           r"number .* \(read by signal 'wide'\)"):
        compile_job(load_job(job))
