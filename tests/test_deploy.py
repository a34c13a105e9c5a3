"""deploy/: the systemd unit verifies and runs where the README installs diglot; the env example,
image recipe and sidecar pod."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from diglot.proxy import systemd
from diglot.proxy.config import ALIASES, ENV_PREFIX, PARSERS, load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "diglot.service"
README = ROOT / "README.md"
SETTINGS = set(PARSERS) | set(ALIASES.values()) | {"config"}


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def installed_diglot() -> str | None:
    """The console script next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "diglot"
    return str(beside) if beside.exists() else shutil.which("diglot")


def seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def test_unit_is_a_hardened_notify_service() -> None:
    unit = unit_settings()
    expected = {
        "Type": "notify",
        "DynamicUser": "yes",
        "StateDirectory": "diglot",
        "EnvironmentFile": "-/etc/diglot/diglot.env",
        "ExecStart": "/opt/diglot/bin/diglot",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "LockPersonality": "yes",
        "RestrictNamespaces": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
    }
    assert {key: unit.get(key, [None])[0] for key in expected} == expected
    assert "@system-service" in unit["SystemCallFilter"]
    assert seconds(unit["WatchdogSec"][0]) > 0
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_stop_timeout_covers_the_drain() -> None:
    drain = load_config({"upstream": "http://h/v1", "upstream_api": "chat"}, env_example())
    stop = seconds(unit_settings()["TimeoutStopSec"][0])
    assert stop > drain.drain_timeout + 5


def readme_block(heading: str) -> str:
    """The first ```sh block under this heading of the README."""
    section = README.read_text().split(f"\n{heading}\n", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, f"no sh block under {heading}"
    return found.group(1)


def shell_commands(block: str) -> list[list[str]]:
    """The words of each command in a shell block (split at && and ;), without sudo or comments."""
    commands: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.shlex(line, posix=True, punctuation_chars=True)
        words.whitespace_split = True
        command: list[str] = []
        for word in [*words, "&&"]:
            if word not in ("&&", ";"):
                command.append(word)
            elif command:
                commands.append(command[1:] if command[0] == "sudo" else command)
                command = []
    return commands


def diglot_installed_at(commands: list[list[str]]) -> list[str]:
    """Where these commands leave a `diglot` executable: a virtualenv they pip install into, and
    links made to it. Other ways of installing are not recognised, so they place nothing."""
    venvs: set[Path] = set()
    places: list[str] = []
    for words in commands:
        match words:
            case [python, "-m", "venv", directory] if Path(python).name.startswith("python3"):
                venvs.add(Path(directory))
            case [pip, "install", *_] | [pip, "-m", "pip", "install", *_] if (
                Path(pip).parent.name == "bin" and Path(pip).parent.parent in venvs
            ):
                places.append(str(Path(pip).parent / "diglot"))
            case ["ln", "-s" | "-sf", target, link] if target in places:
                places.append(link)
    return places


def systemd_install_commands() -> list[list[str]]:
    return shell_commands(readme_block("### systemd"))


def exec_start() -> str:
    return unit_settings()["ExecStart"][0].split()[0]


def test_the_readme_installs_diglot_where_the_unit_starts_it() -> None:
    """pipx 1.1 (Debian 12) has no --global: a virtualenv's console script is where it is on
    every release, as long as `python3 -m venv` works, which on Debian takes python3-venv."""
    commands = systemd_install_commands()
    assert exec_start() in diglot_installed_at(commands)
    venv = next(i for i, words in enumerate(commands) if words[1:3] == ["-m", "venv"])
    assert any(
        words[:2] == ["apt-get", "install"] and "python3-venv" in words for words in commands[:venv]
    )


def test_install_commands_are_read_as_a_shell_would() -> None:
    """The reading above means something: only a virtualenv pip installed into counts."""
    block = (
        "sudo python3 -m venv /opt/d && sudo /opt/d/bin/pip install .   # comment\n"
        "python3 -m venv /srv/v; /srv/v/bin/python -m pip install \\\n  diglot\n"
        "sudo ln -sf /srv/v/bin/diglot /usr/local/bin/diglot\n"
        "sudo pipx install --global .\n"
        "/elsewhere/bin/pip install .\n"
    )
    assert diglot_installed_at(shell_commands(block)) == [
        "/opt/d/bin/diglot",
        "/srv/v/bin/diglot",
        "/usr/local/bin/diglot",
    ]


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            f"--root={root}",
            "/etc/systemd/system/diglot.service",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def stub(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


@pytest.fixture
def installed_root(tmp_path: Path) -> Path:
    """A root as the README leaves it: the unit in /etc/systemd/system, diglot where the README's
    commands put it (a stub: verify checks that ExecStart is an executable), the system's units."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    system_units = Path("/usr/lib/systemd/system")
    if not (system_units / "sysinit.target").exists():
        pytest.skip("no systemd units in /usr/lib/systemd/system")
    shutil.copytree(system_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    reload_command = unit_settings()["ExecReload"][0].split()[0]
    for binary in [*diglot_installed_at(systemd_install_commands()), reload_command]:
        stub(tmp_path / binary.lstrip("/"))
    unit = tmp_path / "etc/systemd/system/diglot.service"
    unit.parent.mkdir(parents=True)
    shutil.copy(UNIT, unit)
    return tmp_path


def test_systemd_analyze_verify_passes(installed_root: Path) -> None:
    result = verify(installed_root)
    assert result.returncode == 0, result.stderr
    assert "diglot.service" not in result.stderr, result.stderr


def test_systemd_analyze_verify_can_fail(installed_root: Path) -> None:
    """The check above means something: a bad directive or a missing binary is reported."""
    unit = installed_root / "etc/systemd/system/diglot.service"
    text = unit.read_text()
    unit.write_text(text.replace("Type=notify", "Type=notifyy"))
    assert "Failed to parse service type" in verify(installed_root).stderr
    unit.write_text(text)
    (installed_root / exec_start().lstrip("/")).unlink()
    result = verify(installed_root)
    assert result.returncode != 0 and f"{exec_start()} is not executable" in result.stderr


def user_systemd_running() -> bool:
    if shutil.which("systemd-run") is None or shutil.which("systemctl") is None:
        return False
    state = subprocess.run(
        ["systemctl", "--user", "is-system-running"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return state in ("running", "degraded")


def test_service_reaches_active_running_under_user_systemd(free_port: int) -> None:
    """Without a user systemd, tests/test_shutdown.py checks the protocol on its own socket."""
    diglot = installed_diglot()
    if diglot is None or not user_systemd_running():
        pytest.skip("no user systemd manager (the notify protocol is tested on a socket instead)")
    unit = f"diglot-test-{secrets.token_hex(4)}"
    subprocess.run(
        [
            "systemd-run",
            "--user",
            f"--unit={unit}",
            "--property=Type=notify",
            "--property=WatchdogSec=10s",
            "--property=TimeoutStopSec=20s",
            "--setenv=DIGLOT_STORE=memory://",
            diglot,
            "--upstream",
            "http://127.0.0.1:9/v1",
            "--upstream-api",
            "chat",
            "--port",
            str(free_port),
        ],
        check=True,
        capture_output=True,
        timeout=60,  # systemd-run returns once the unit has started: after READY=1
    )
    try:
        shown = subprocess.run(
            ["systemctl", "--user", "show", unit, "--property=ActiveState,SubState"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.split()
        assert shown == ["ActiveState=active", "SubState=running"]
    finally:
        subprocess.run(["systemctl", "--user", "stop", unit], timeout=60, check=False)


def env_example() -> dict[str, str]:
    lines = (DEPLOY / "diglot.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_env_example_names_only_real_settings_and_loads() -> None:
    text = (DEPLOY / "diglot.env").read_text()
    names = re.findall(rf"\b{ENV_PREFIX}([A-Z_]+)=", text)
    assert names
    assert {name.lower() for name in names} <= SETTINGS
    config = load_config({}, env_example())
    assert (config.upstream_api, config.drain_timeout) == ("chat", 30.0)


def test_dockerfile_runs_diglot_unprivileged_with_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"(?m)^FROM (\S+)", text)
    assert bases and all(re.fullmatch(r"python:3\.1[1-9]-slim", base) for base in bases)
    users = re.findall(r"(?m)^USER (\S+)", text)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    healthcheck = text[text.index("HEALTHCHECK") :].split("\n\n")[0]
    assert "/healthz" in healthcheck
    assert '"diglot"' in re.findall(r"(?m)^ENTRYPOINT (.+)$", text)[0]
    assert {name.lower() for name in re.findall(rf"\b{ENV_PREFIX}([A-Z_]+)=", text)} <= SETTINGS


def test_sidecar_pod_probes_diglot_beside_its_backend() -> None:
    yaml = pytest.importorskip("yaml")
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "diglot-sidecar.yaml").read_text()))
    pod = next(doc for doc in documents if doc["kind"] == "Pod")
    containers = {container["name"]: container for container in pod["spec"]["containers"]}
    assert set(containers) == {"backend", "diglot"}
    diglot = containers["diglot"]
    assert diglot["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert diglot["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {item["name"]: item["value"] for item in diglot["env"]}
    assert {name.removeprefix(ENV_PREFIX).lower() for name in env} <= SETTINGS
    assert env["DIGLOT_UPSTREAM"].startswith("http://127.0.0.1:")
    assert pod["spec"]["terminationGracePeriodSeconds"] > float(env["DIGLOT_DRAIN_TIMEOUT"])
    assert diglot["securityContext"]["runAsUser"] != 0


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_notify_reaches_a_socket_by_path() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        path = os.path.join(directory, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            assert systemd.notify("READY=1", {"NOTIFY_SOCKET": path})
            assert receive(sock) == "READY=1"


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"diglot-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert systemd.notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert receive(sock) == "STOPPING=1"


@pytest.mark.parametrize("value", [None, "", "relative/path", "@diglot-test-nobody-listens"])
def test_notify_without_a_listener_is_a_quiet_false(value: str | None) -> None:
    env = {} if value is None else {"NOTIFY_SOCKET": value}
    assert systemd.notify("READY=1", env) is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdogsec(env: dict[str, str], interval: float) -> None:
    assert systemd.watchdog_interval(env) == interval
