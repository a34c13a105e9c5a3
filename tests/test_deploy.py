"""deploy/: the systemd unit verifies and runs; the env example, image recipe and sidecar pod."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from diglot.proxy import systemd
from diglot.proxy.config import ALIASES, ENV_PREFIX, PARSERS, load_config

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNIT = DEPLOY / "diglot.service"
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
        "ExecStart": "/usr/local/bin/diglot",
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


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart at the installed console script: verify checks that it exists."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    diglot = installed_diglot()
    if diglot is None:
        pytest.skip("the diglot console script is not installed")
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={diglot}", UNIT.read_text())
    copy = tmp_path / "diglot.service"
    copy.write_text(text)
    return copy


def test_systemd_analyze_verify_passes(unit_copy: Path) -> None:
    result = verify(unit_copy)
    assert result.returncode == 0, result.stderr
    assert "diglot.service" not in result.stderr, result.stderr


def test_systemd_analyze_verify_can_fail(unit_copy: Path) -> None:
    """The check above means something: a bad directive or a missing binary is reported."""
    text = unit_copy.read_text()
    unit_copy.write_text(text.replace("Type=notify", "Type=notifyy"))
    assert "Failed to parse service type" in verify(unit_copy).stderr
    unit_copy.write_text(re.sub(r"(?m)^ExecStart=\S+", "ExecStart=/nonexistent/diglot", text))
    result = verify(unit_copy)
    assert result.returncode != 0 and "/nonexistent/diglot" in result.stderr


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
