"""DIGLOT_* variables that cannot silently open the door, and warnings worth a line at startup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from diglot.proxy import cli
from diglot.proxy.config import Config, ConfigError, config_warnings, load_config

BASE = {"upstream": "http://127.0.0.1:8000/v1", "upstream_api": "chat"}
ENV = {key: value for key, value in os.environ.items() if not key.startswith("DIGLOT_")}
SERVE = ("--upstream", "http://127.0.0.1:9/v1", "--upstream-api", "chat", "--port", "0")


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diglot", *args],
        capture_output=True,
        text=True,
        env={**ENV, **env},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "keys"),
    [
        ({"DIGLOT_CLIENT_API_KEY": "secret"}, ("secret",)),
        ({"DIGLOT_CLIENT_API_KEY": "a, b"}, ("a", "b")),
        ({"DIGLOT_CLIENT_API_KEYS": "a", "DIGLOT_CLIENT_API_KEY": "b,c"}, ("a", "b", "c")),
        ({"DIGLOT_CLIENT_API_KEYS": "a", "DIGLOT_CLIENT_API_KEY": ""}, ("a",)),
    ],
)
def test_singular_variable_turns_authentication_on(env: dict[str, str], keys: tuple[str]) -> None:
    assert load_config(BASE, env).client_api_keys == keys


def test_singular_key_in_the_file_adds_to_the_list(tmp_path: Path) -> None:
    path = tmp_path / "diglot.toml"
    path.write_text('client_api_keys = ["a"]\nclient-api-key = "b"\n')
    assert load_config({**BASE, "config": str(path)}, {}).client_api_keys == ("a", "b")
    path.write_text('client_api_key = "only"\n')
    assert load_config({**BASE, "config": str(path)}, {}).client_api_keys == ("only",)


def test_command_line_keys_win_over_the_singular_variable() -> None:
    config = load_config({**BASE, "client_api_keys": ["cli"]}, {"DIGLOT_CLIENT_API_KEY": "env"})
    assert config.client_api_keys == ("cli",)


def test_a_bad_singular_key_names_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(BASE, {"DIGLOT_CLIENT_API_KEY": "a,,b"})
    assert str(caught.value) == (
        "invalid setting client_api_keys: "
        "expected one or more non-empty keys, as a list or separated by commas"
    )


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("DIGLOT_CLIENT_KEYS", "DIGLOT_CLIENT_API_KEYS"),
        ("DIGLOT_CLIENT_API_KEYS_FLIE", "DIGLOT_CLIENT_API_KEYS_FILE"),
        ("DIGLOT_API_KEYS", "DIGLOT_CLIENT_API_KEYS"),
        ("DIGLOT_CLIENT_APIKEY", "DIGLOT_CLIENT_API_KEY"),
    ],
)
def test_near_miss_of_an_access_setting_exits_2_with_one_line(variable: str, meant: str) -> None:
    result = run(*SERVE, env={variable: "secret"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"diglot: error: invalid setting {variable}: unknown environment variable; "
        f"did you mean {meant}? (it guards access, so diglot does not start)"
    ]


def test_unknown_harmless_variable_is_a_warning_naming_the_closest_setting() -> None:
    env = {"DIGLOT_LOG_LEVLE": "debug", "DIGLOT_FROBNICATE": "1"}
    config = load_config(BASE, env)
    assert config.log_level == "info"
    assert config_warnings(config, env) == [
        "unknown environment variable DIGLOT_FROBNICATE ignored; no setting has a name close to it",
        "unknown environment variable DIGLOT_LOG_LEVLE ignored; did you mean DIGLOT_LOG_LEVEL?",
    ]


KUBERNETES = {
    "DIGLOT_SERVICE_HOST": "10.0.0.1",
    "DIGLOT_SERVICE_PORT": "8080",
    "DIGLOT_SERVICE_PORT_HTTP": "8080",
    "DIGLOT_PORT": "tcp://10.0.0.1:8080",
    "DIGLOT_PORT_8080_TCP": "tcp://10.0.0.1:8080",
    "DIGLOT_PORT_8080_TCP_PROTO": "tcp",
    "DIGLOT_PORT_8080_TCP_PORT": "8080",
    "DIGLOT_PORT_8080_TCP_ADDR": "10.0.0.1",
    "DIGLOT_REDIS_SERVICE_HOST": "10.0.0.2",
    "DIGLOT_REDIS_PORT": "tcp://10.0.0.2:6379",
    "DIGLOT_REDIS_PORT_6379_TCP_ADDR": "10.0.0.2",
    "DIGLOT_METRICS_PORT_9090_UDP": "udp://10.0.0.3:9090",
}


def test_kubernetes_service_variables_are_neither_settings_nor_reported() -> None:
    config = load_config(BASE, KUBERNETES)
    assert config == load_config(BASE, {})
    assert config.port == 8080
    assert config_warnings(config, KUBERNETES) == []


def test_kubernetes_port_link_leaves_the_port_to_other_sources(tmp_path: Path) -> None:
    path = tmp_path / "diglot.toml"
    path.write_text("port = 9000\n")
    assert load_config({**BASE, "config": str(path)}, KUBERNETES).port == 9000
    assert load_config(BASE, {**KUBERNETES, "DIGLOT_PORT": "9090"}).port == 9090


def test_diglot_config_is_a_known_variable(tmp_path: Path) -> None:
    path = tmp_path / "diglot.toml"
    path.write_text('upstream = "http://h:1/v1"\nupstream_api = "chat"\n')
    env = {"DIGLOT_CONFIG": str(path)}
    assert config_warnings(load_config({}, env), env) == []


@pytest.mark.parametrize(
    ("upstream_api", "called"), [("chat", "/chat/completions"), ("responses", "/responses")]
)
def test_upstream_without_a_path_is_a_warning(upstream_api: str, called: str) -> None:
    config = load_config({"upstream": "http://127.0.0.1:8000/", "upstream_api": upstream_api}, {})
    assert config_warnings(config, {}) == [
        "upstream http://127.0.0.1:8000 has no path: diglot will call "
        f"http://127.0.0.1:8000{called}; most backends want http://127.0.0.1:8000/v1"
    ]


@pytest.mark.parametrize("upstream", ["http://127.0.0.1:8000/v1", "https://api.test/openai/v1"])
def test_upstream_with_a_path_is_no_warning(upstream: str) -> None:
    assert config_warnings(load_config({**BASE, "upstream": upstream}, {}), {}) == []


def test_main_prints_each_warning_on_stderr_before_serving(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in [key for key in os.environ if key.startswith("DIGLOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DIGLOT_LOG_LEVLE", "debug")
    served: list[Config] = []
    monkeypatch.setattr(cli, "serve", served.append)
    assert cli.main(["--upstream", "http://127.0.0.1:8000", "--upstream-api", "chat"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "diglot: warning: unknown environment variable DIGLOT_LOG_LEVLE ignored; "
        "did you mean DIGLOT_LOG_LEVEL?",
        "diglot: warning: upstream http://127.0.0.1:8000 has no path: diglot will call "
        "http://127.0.0.1:8000/chat/completions; most backends want http://127.0.0.1:8000/v1",
    ]
    assert [config.upstream for config in served] == ["http://127.0.0.1:8000"]
