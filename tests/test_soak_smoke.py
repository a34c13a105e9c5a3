"""The soak script, run for a moment: it starts its stack, drives it and reports memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_short_soak_ends_clean() -> None:
    argv = [sys.executable, "-m", "bench.soak", "--seconds", "1", "--warmup", "0.5"]
    argv += ["--idle", "0.2", "--concurrency", "20", "--event-gap-ms", "2"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("fresh ")
    assert "streams diglot still counts as open: {'chat': 0.0, 'responses': 0.0}" in lines
    clients = next(line for line in lines if line.startswith("clients: "))
    assert clients.count(" 0 errors") == 2
    assert lines[-1] == "memory returned to baseline"
