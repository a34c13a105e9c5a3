"""Starting, pinning, watching and always stopping the processes a benchmark run needs."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def pinner(cpu: int | None) -> Callable[[], None] | None:
    """A preexec hook binding the child to one CPU before it starts any thread."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def diglot_argv(upstream: str, api: str, port: int | str, extra: Sequence[str] = ()) -> list[str]:
    """The command a user types, `--host` and `--port` aside; `extra` only for extra rows."""
    return [
        sys.executable, "-m", "diglot", "--upstream", upstream, "--upstream-api", api,
        "--host", "127.0.0.1", "--port", str(port), *extra,
    ]  # fmt: skip


def typed(argv: Sequence[str]) -> str:
    """A Python command line as a user would type it: `python -m ...`."""
    return " ".join(["python", *argv[1:]])


def diglot_env(state_home: Path) -> dict[str, str]:
    """This environment without any diglot setting or systemd state dir; state in `state_home`.

    diglot then runs on its defaults alone, and its default state dir ($XDG_STATE_HOME/diglot:
    the SQLite store and the seal key) lies inside the run's scratch folder, never the user's.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DIGLOT_") and key != "STATE_DIRECTORY"
    }
    env["XDG_STATE_HOME"] = str(state_home)
    return env


class Processes:
    """Every long-lived process of a run, so that all of them stop whatever happens."""

    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch  # logs and diglot's state; the caller removes it at the end
        self._procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cpu: int | None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` from the repository root, output to <scratch>/<name>.log."""
        log = (self._scratch / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only the runner, which then stops them
            preexec_fn=pinner(cpu),
        )
        self._procs.append((proc, log))
        return proc

    def start_diglot(
        self,
        name: str,
        upstream: str,
        api: str,
        port: int,
        cpu: int | None,
        extra: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """diglot as a user starts it; state in <scratch>/state/<name>, logs in <name>.log."""
        return self.start(
            name, diglot_argv(upstream, api, port, extra), cpu, diglot_env(self.state_home(name))
        )

    def state_home(self, name: str) -> Path:
        """The XDG_STATE_HOME given to the diglot named `name`."""
        return self._scratch / "state" / name

    def log_tail(self, name: str, lines: int = 8) -> str:
        """The last lines a process wrote, indented for the report."""
        path = self._scratch / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def error_lines(self, prefix: str) -> list[str]:
        """Logged errors and tracebacks, from the logs of the processes named `prefix`*."""
        found: list[str] = []
        for path in sorted(self._scratch.glob(f"{prefix}*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if '"level":"error"' in line or line.startswith(("Traceback", "Error handling")):
                    found.append(f"{path.stem}: {line}")
        return found

    def logged_events(self, prefix: str, event: str) -> list[dict[str, object]]:
        """The JSON log lines with this `event`, from the processes named `prefix`*."""
        found = []
        for path in sorted(self._scratch.glob(f"{prefix}*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if f'"event":"{event}"' in line:
                    with contextlib.suppress(ValueError):
                        found.append(json.loads(line))
        return found

    def stop_all(self) -> None:
        """SIGTERM each, then SIGKILL whatever is still alive after five seconds."""
        for proc, _ in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc, log in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        self._procs.clear()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> bool:
    """True once 127.0.0.1:port accepts connections; False if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent on anything but idling, from /proc/stat."""
    with open("/proc/stat", "rb") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / TICKS


def own_seconds() -> float:
    """CPU time of this runner and its finished children (wrk)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def settle(pids: Sequence[int], limit: float = 2.0) -> None:
    """Wait until these processes stop burning CPU, so a window counts only its own work."""
    deadline = time.monotonic() + limit
    last = [cpu_seconds(pid) for pid in pids]
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = [cpu_seconds(pid) for pid in pids]
        if now == last:
            return
        last = now
