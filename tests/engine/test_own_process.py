"""run-job's own process: numba starts without scipy.linalg, and the process ends without the
interpreter's teardown once the command has returned (exit handlers still run, the code is
kept). Callers of ``main()`` in their own scripts keep the usual start and end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT
from tests.engine.test_start_up_gc import JOB  # a small research job writing to OUT

# run-job as `python -m tickflow.engine.cli` runs it (runpy makes the module __main__), with an
# exit handler that reports what the process looked like at its end, and an object whose
# destructor only the interpreter's teardown runs
AS_RUN_JOB = """
import atexit, json, runpy, sys

def seen():
    import numba.np.arraymath as arraymath
    print(json.dumps({"scipy.linalg": "scipy.linalg" in sys.modules,
                      "blas": "scipy.linalg.cython_blas" in sys.modules,
                      "have_blas": arraymath._HAVE_BLAS}), flush=True)

atexit.register(seen)

class Torn:
    def __del__(self, write=__import__("os").write):
        write(1, b"torn down\\n")

keep = Torn()
sys.argv = ["run-job", *ARGS]
runpy.run_module("tickflow.engine.cli", run_name="__main__", alter_sys=True)
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(code).replace("ARGS", repr(list(args)))
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)


def test_run_job_starts_numba_without_scipy_linalg_and_skips_the_teardown(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB.replace("OUT", str(tmp_path / "out.parquet")))
    proc = _run(AS_RUN_JOB, "run", str(job), "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"scipy.linalg": False, "blas": True, "have_blas": True}
    assert "torn down" not in proc.stdout  # os._exit: no teardown of the modules' objects
    import pyarrow.parquet as pq

    assert pq.read_metadata(tmp_path / "out.parquet").num_rows == 3000


def test_run_job_keeps_its_exit_code_and_output(tmp_path: Path) -> None:
    proc = _run(AS_RUN_JOB, "validate", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2
    assert "missing.yaml" in proc.stderr
    assert "torn down" not in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1])["scipy.linalg"] is False


def test_a_script_calling_main_keeps_the_usual_start_and_end(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB.replace("OUT", str(tmp_path / "out.parquet")))
    proc = _run("""
    import sys
    class Torn:
        def __del__(self, write=__import__("os").write):
            write(1, b"torn down\\n")
    keep = Torn()
    from tickflow.engine.cli import main
    sys.argv = ["run-job", *ARGS]
    code = main()
    print("returned", code, "scipy.linalg" in sys.modules, flush=True)
    """, "run", str(job), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "returned 0 True" in proc.stdout  # numba imported scipy.linalg itself, as always
    assert "torn down" in proc.stdout


def test_a_live_non_daemon_thread_gets_the_usual_exit(tmp_path: Path) -> None:
    done = tmp_path / "done"
    proc = _run(f"""
    import threading, time
    from tickflow.engine import own_process
    def late():
        time.sleep(0.3)
        open({str(done)!r}, "w").write("written")
    threading.Thread(target=late).start()
    own_process.exit_now(3)
    print("returned", flush=True)
    """)
    assert proc.returncode == 0
    assert "returned" in proc.stdout
    assert done.read_text() == "written"  # the interpreter waited for the thread
