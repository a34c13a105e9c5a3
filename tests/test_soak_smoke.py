"""The soak script, run for a moment: diglot on its defaults, its state in a folder it removes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COMMAND = (
    r"started: python -m diglot --upstream http://127.0.0.1:\d+/v1 --upstream-api {api} "
    r"--host 127.0.0.1 --port \d+"
)


def test_a_short_soak_ends_clean_on_the_defaults_leaving_nothing_behind(tmp_path: Path) -> None:
    home, systemd, tmp = tmp_path / "home", tmp_path / "systemd", tmp_path / "tmp"
    for folder in (home, systemd, tmp):
        folder.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "XDG_STATE_HOME"}
    env |= {"HOME": str(home), "STATE_DIRECTORY": str(systemd), "TMPDIR": str(tmp)}
    env |= {"DIGLOT_STORE": "memory://", "DIGLOT_LOG_LEVEL": "warning"}
    argv = [sys.executable, "-m", "bench.soak", "--seconds", "1", "--warmup", "0.5"]
    argv += ["--idle", "0.2", "--concurrency", "20", "--event-gap-ms", "2"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(DEFAULT_COMMAND.format(api="chat"), lines[0])
    assert re.fullmatch(DEFAULT_COMMAND.format(api="responses"), lines[1])
    assert lines[2].startswith("fresh ")
    assert "streams diglot still counts as open: {'chat': 0.0, 'responses': 0.0}" in lines
    clients = next(line for line in lines if line.startswith("clients: "))
    assert clients.count(" 0 errors") == 2
    assert lines[-2] == "memory returned to baseline"
    stored = re.fullmatch(
        r"SQLite store \(default\) on disk: diglot-chat (\S+) MB, diglot-responses 0\.00 MB",
        lines[-1],
    )
    assert stored is not None, lines[-1]
    assert float(stored[1]) > 0  # translated Responses requests were kept in SQLite
    assert list(home.iterdir()) == list(systemd.iterdir()) == list(tmp.iterdir()) == []
