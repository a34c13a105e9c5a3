"""Configuration: CLI > env > file > default, and one clear error per bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from diglot.proxy.cli import main, serve_parser
from diglot.proxy.config import Config, ConfigError, load_config
from diglot.translators.context import Options

BASE = {"upstream": "http://127.0.0.1:8000/v1", "upstream_api": "chat"}


def test_defaults() -> None:
    config = load_config(BASE, {})
    assert config == Config(upstream="http://127.0.0.1:8000/v1", upstream_api="chat")
    assert (config.host, config.port, config.max_body_bytes) == ("127.0.0.1", 8080, 50 * 1024**2)
    assert config.options() == Options()


def test_trailing_slash_of_upstream_is_dropped() -> None:
    config = load_config({**BASE, "upstream": "http://h:1/v1/"}, {})
    assert config.upstream == "http://h:1/v1"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "diglot.toml"
    path.write_text(text)
    return str(path)


def test_precedence_cli_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'upstream = "http://file:1/v1"\nupstream-api = "responses"\nport = 1111\n'
        'read_timeout = 5\nstrict = true\nlog_format = "json"\n',
    )
    env = {"DIGLOT_PORT": "2222", "DIGLOT_READ_TIMEOUT": "7.5", "DIGLOT_CONFIG": path}
    config = load_config({"port": "3333", "upstream_api": "chat"}, env)
    assert config.port == 3333  # CLI
    assert config.read_timeout == 7.5  # env
    assert config.upstream == "http://file:1/v1"  # file
    assert config.upstream_api == "chat"  # CLI over file
    assert config.strict is True and config.log_format == "json"  # file
    assert config.connect_timeout == 10.0  # default


def test_cli_config_path_wins_over_env_path(tmp_path: Path) -> None:
    good = write(tmp_path, 'upstream = "http://good:1/v1"\nupstream_api = "chat"\n')
    config = load_config({"config": good}, {"DIGLOT_CONFIG": str(tmp_path / "missing.toml")})
    assert config.upstream == "http://good:1/v1"


def test_env_alone_is_enough_and_empty_env_values_are_unset() -> None:
    env = {
        "DIGLOT_UPSTREAM": "https://api.example.test/v1",
        "DIGLOT_UPSTREAM_API": "RESPONSES",
        "DIGLOT_UPSTREAM_API_KEY": "",
        "DIGLOT_THINK_TAGS": "off",
        "DIGLOT_INSTRUCTIONS_ROLE": "developer",
        "DIGLOT_MAX_TOKENS_FIELD": "max_completion_tokens",
        "DIGLOT_REASONING_EVENTS": "text",
    }
    config = load_config({}, env)
    assert config.upstream_api == "responses"
    assert config.upstream_api_key is None
    assert config.options() == Options(
        instructions_role="developer",
        max_tokens_field="max_completion_tokens",
        reasoning_events="text",
        think_tags=False,
    )


def test_cli_false_flag_beats_env_true() -> None:
    config = load_config({**BASE, "strict": False}, {"DIGLOT_STRICT": "1"})
    assert config.strict is False


@pytest.mark.parametrize(
    ("cli", "env", "setting"),
    [
        ({"upstream_api": "chat"}, {}, "upstream"),
        ({"upstream": "http://h/v1"}, {}, "upstream_api"),
        ({**BASE, "upstream": "ftp://h/v1"}, {}, "upstream"),
        ({**BASE, "upstream": "127.0.0.1:8000"}, {}, "upstream"),
        ({**BASE, "upstream_api": "completions"}, {}, "upstream_api"),
        ({**BASE, "port": "http"}, {}, "port"),
        ({**BASE, "port": "70000"}, {}, "port"),
        ({**BASE}, {"DIGLOT_PORT": "8.5"}, "port"),
        ({**BASE, "connect_timeout": "0"}, {}, "connect_timeout"),
        ({**BASE, "read_timeout": "soon"}, {}, "read_timeout"),
        ({**BASE, "max_body_bytes": "-1"}, {}, "max_body_bytes"),
        ({**BASE}, {"DIGLOT_STRICT": "maybe"}, "strict"),
        ({**BASE, "log_format": "xml"}, {}, "log_format"),
        ({**BASE, "log_level": "loud"}, {}, "log_level"),
        ({**BASE, "instructions_role": "user"}, {}, "instructions_role"),
        ({**BASE, "max_tokens_field": "tokens"}, {}, "max_tokens_field"),
        ({**BASE, "reasoning_events": "none"}, {}, "reasoning_events"),
    ],
)
def test_invalid_values_name_the_setting(
    cli: dict[str, object], env: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(cli, env)
    assert caught.value.setting == setting
    assert str(caught.value).startswith(f"invalid setting {setting}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("port = true\n", "port"),
        ('port = "x"\n', "port"),
        ("strict = 1\n", "strict"),
        ("max_body_bytes = 1.5\n", "max_body_bytes"),
        ('colour = "blue"\n', "colour"),
        ("this is not toml", "config"),
    ],
)
def test_file_errors_name_the_setting(tmp_path: Path, text: str, setting: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, "config": path}, {})
    assert caught.value.setting == setting


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, "config": str(tmp_path / "nope.toml")}, {})
    assert caught.value.setting == "config"
    assert "cannot read" in str(caught.value)


def test_chat_client_options_from_each_source(tmp_path: Path) -> None:
    assert load_config(BASE, {}).options() == Options(
        chat_reasoning_content=True, forward_chat_only_params=False, hoist_system=False
    )
    path = write(tmp_path, "forward-chat-only-params = true\n")
    env = {"DIGLOT_CHAT_REASONING_CONTENT": "off", "DIGLOT_HOIST_SYSTEM": "yes"}
    config = load_config({**BASE, "config": path}, env)
    assert config.options() == Options(
        chat_reasoning_content=False, forward_chat_only_params=True, hoist_system=True
    )
    config = load_config({**BASE, "config": path, "forward_chat_only_params": False}, env)
    assert config.forward_chat_only_params is False


@pytest.mark.parametrize(
    "setting", ["chat_reasoning_content", "forward_chat_only_params", "hoist_system"]
)
def test_chat_client_options_are_booleans(setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(BASE, {"DIGLOT_" + setting.upper(): "sometimes"})
    assert caught.value.setting == setting


def test_chat_client_options_on_the_command_line() -> None:
    args = ["--no-chat-reasoning-content", "--forward-chat-only-params", "--hoist-system"]
    config = load_config({**vars(serve_parser().parse_args(args)), **BASE}, {})
    assert (config.chat_reasoning_content, config.forward_chat_only_params) == (False, True)
    assert config.hoist_system is True


@pytest.mark.parametrize(
    ("cli", "env", "message"),
    [
        (
            {"store_ttl": "5x"},
            {},
            "store_ttl: '5x' is not a duration: give seconds or a number with s, m, h or d (30d)",
        ),
        (
            {},
            {"DIGLOT_STORE_TTL": "ad"},
            "store_ttl: 'ad' is not a duration: give seconds or a number with s, m, h or d (30d)",
        ),
        (
            {},
            {"DIGLOT_STRICT": "maybe"},
            "strict: 'maybe' is not a boolean: give 1/true/yes/on or 0/false/no/off",
        ),
        (
            {"port": "http"},
            {},
            "port: 'http' is not a port: give a whole number from 0 to 65535",
        ),
        (
            {"port": "70000"},
            {},
            "port: '70000' is not a port: give a whole number from 0 to 65535",
        ),
        (
            {"read_timeout": "soon"},
            {},
            "read_timeout: 'soon' is not a number of seconds: give one such as 10 or 2.5",
        ),
        (
            {},
            {"DIGLOT_DRAIN_TIMEOUT": "nan"},
            "drain_timeout: 'nan' is not a number of seconds: give one such as 10 or 2.5",
        ),
        (
            {"max_body_bytes": "1.5"},
            {},
            "max_body_bytes: '1.5' is not a whole number: give one such as 512",
        ),
        (
            {"max_input_items": "0"},
            {},
            "max_input_items: must be greater than 0: give a whole number such as 512",
        ),
        ({"log_format": "xml"}, {}, "log_format: 'xml' is not one of json, console, auto"),
        ({"host": " "}, {}, "host: expected a non-empty string"),
    ],
)
def test_messages_state_the_accepted_forms(
    cli: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, **cli}, env)
    assert str(caught.value) == f"invalid setting {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("strict = 1\n", "strict: 1 is not a boolean: give true or false"),
        ("log_format = 1\n", "log_format: 1 is not one of json, console, auto"),
        (
            "read_timeout = true\n",
            "read_timeout: True is not a number of seconds: give one such as 10 or 2.5",
        ),
        (
            "client_api_keys = []\n",
            "client_api_keys: expected one or more non-empty keys, "
            "as a list or separated by commas",
        ),
    ],
)
def test_file_messages_state_the_accepted_forms(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, "config": write(tmp_path, text)}, {})
    assert str(caught.value) == f"invalid setting {message}"


def test_unknown_file_key_names_the_closest_setting(tmp_path: Path) -> None:
    path = write(tmp_path, 'client-api-kyes = ["k"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, "config": path}, {})
    assert str(caught.value) == (
        f"invalid setting client-api-kyes: unknown setting in {path}; did you mean client_api_keys?"
    )


def test_main_prints_a_bad_duration_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--upstream", "http://h/v1", "--upstream-api", "chat", "--store-ttl", "5x"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "diglot: error: invalid setting store_ttl: '5x' is not a duration: "
        "give seconds or a number with s, m, h or d (30d)\n"
    )
