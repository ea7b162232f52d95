"""The research report never imports pandas: pyarrow's ``to_numpy``, ``pa.array`` of a list
and ``pa.scalar`` import it on first use (0.3-0.9 s of CPU on the report's thread while the
kernels run), so the report reads Arrow buffers itself (``research_math.numbers``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT


def test_a_research_run_with_its_report_imports_no_pandas(tmp_path) -> None:
    ticks, out = tmp_path / "ticks.parquet", tmp_path / "out"
    subprocess.run([sys.executable, "-m", "tickflow.engine.cli", "simulate", "-o", str(ticks),
                    "--rows", "20000", "--symbols", "5"], cwd=ROOT, check=True,
                   capture_output=True, timeout=180)
    code = textwrap.dedent("""
        import json, sys
        from tickflow.engine import cli
        code = cli.main(["run", "jobs/research.yaml", "--quiet"])
        print(json.dumps({"code": code, "pandas": "pandas" in sys.modules}))
        """)
    env = {**os.environ, "TICKS": str(ticks), "OUT_DIR": str(out)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=300)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0
    html = (out / "research_report.html").read_text()
    assert "log_return" in html and "rsi" in html  # the report was written, with features
    assert seen["pandas"] is False
