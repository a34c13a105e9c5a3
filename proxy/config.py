"""diglot's settings, merged from the command line, DIGLOT_* variables and a TOML file."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from diglot.translators.context import Options

LogFormat = Literal["json", "console", "auto"]
UpstreamApi = Literal["chat", "responses"]


class ConfigError(Exception):
    """A setting with an unusable value; the CLI prints it as one line and exits 2."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting


@dataclass(frozen=True, slots=True)
class Config:
    """Everything diglot needs to run; built once at startup."""

    upstream: str
    upstream_api: UpstreamApi
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_api_key: str | None = None
    strict: bool = False
    instructions_role: Literal["system", "developer"] = "system"
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    reasoning_events: Literal["text", "summary"] = "text"
    think_tags: bool = True
    chat_reasoning_content: bool = True
    forward_chat_only_params: bool = False
    hoist_system: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    max_body_bytes: int = 50 * 1024 * 1024
    upstream_idle_timeout: float = 600.0
    max_input_items: int = 20_000
    max_upstream_requests: int = 512
    upstream_queue_timeout: float = 10.0
    client_api_keys: tuple[str, ...] = ()
    client_api_keys_file: str | None = None
    drain_timeout: float = 30.0
    store: str | None = None  # None: sqlite under the state directory
    store_ttl: float = 30 * 24 * 60 * 60.0
    store_max_bytes: int | None = None
    seal_key: str | None = None
    state_dir: str | None = None
    log_format: LogFormat = "auto"
    log_level: str = "info"
    log_bodies: bool = False

    def options(self) -> Options:
        """The translation knobs of this configuration."""
        return Options(
            instructions_role=self.instructions_role,
            max_tokens_field=self.max_tokens_field,
            strict=self.strict,
            reasoning_events=self.reasoning_events,
            think_tags=self.think_tags,
            chat_reasoning_content=self.chat_reasoning_content,
            forward_chat_only_params=self.forward_chat_only_params,
            hoist_system=self.hoist_system,
        )


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, "expected a non-empty string")
    return value.strip()


def _choice(*allowed: str) -> Callable[[str, object], str]:
    def parse(name: str, value: object) -> str:
        text = _text(name, value).lower()
        if text not in allowed:
            raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise ConfigError(name, f"{value!r} is not a boolean (true/false)")


def _number(name: str, value: object, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, bool):
        raise ConfigError(name, f"{value!r} is not a number")
    if isinstance(value, int | float):
        number: int | float = value
    elif isinstance(value, str):
        try:
            number = kind(value.strip())
        except ValueError:
            raise ConfigError(name, f"{value!r} is not a number") from None
    else:
        raise ConfigError(name, f"{value!r} is not a number")
    if kind is int and number != int(number):
        raise ConfigError(name, f"{value!r} is not a whole number")
    return kind(number)


def _port(name: str, value: object) -> int:
    port = int(_number(name, value, int))
    if not 0 <= port <= 65535:
        raise ConfigError(name, f"{port} is outside 0-65535")
    return port


def _positive_float(name: str, value: object) -> float:
    seconds = float(_number(name, value, float))
    if seconds <= 0:
        raise ConfigError(name, "must be greater than 0")
    return seconds


def _positive_int(name: str, value: object) -> int:
    size = int(_number(name, value, int))
    if size <= 0:
        raise ConfigError(name, "must be greater than 0")
    return size


def _url(name: str, value: object) -> str:
    url = _text(name, value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"{value!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
    return url


def _keys(name: str, value: object) -> tuple[str, ...]:
    """One or more keys: a list (CLI, TOML) or a comma-separated string (environment)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(name, "expected one or more keys")
    return tuple(_text(name, item) for item in items)


def _text_file(name: str, value: object) -> str:
    path = _text(name, value)
    try:
        with open(path, encoding="utf-8") as handle:
            handle.read()
    except OSError as exc:
        raise ConfigError(name, f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(name, f"{path} is not UTF-8 text") from None
    return path


def _store_url(name: str, value: object) -> str:
    url = _text(name, value)
    parts = urlsplit(url)
    if (
        parts.scheme == "memory"
        or (parts.scheme == "sqlite" and url.removeprefix("sqlite://").strip("/"))
        or (parts.scheme in ("redis", "rediss") and parts.hostname)
    ):
        return url
    raise ConfigError(
        name, f"{value!r} is not memory://, sqlite:///path/to/file.db or redis://host:port/db"
    )


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(name: str, value: object) -> float:
    """Seconds, or a number with s, m, h or d after it (`30d`)."""
    if isinstance(value, str) and value.strip()[-1:].lower() in _DURATION_UNITS:
        text = value.strip()
        return _positive_float(name, text[:-1]) * _DURATION_UNITS[text[-1].lower()]
    return _positive_float(name, value)


def _level(name: str, value: object) -> str:
    return _choice("debug", "info", "warning", "error", "critical")(name, value)


PARSERS: dict[str, Callable[[str, object], Any]] = {
    "upstream": _url,
    "upstream_api": _choice("chat", "responses"),
    "host": _text,
    "port": _port,
    "upstream_api_key": _text,
    "strict": _flag,
    "instructions_role": _choice("system", "developer"),
    "max_tokens_field": _choice("max_tokens", "max_completion_tokens"),
    "reasoning_events": _choice("text", "summary"),
    "think_tags": _flag,
    "chat_reasoning_content": _flag,
    "forward_chat_only_params": _flag,
    "hoist_system": _flag,
    "connect_timeout": _positive_float,
    "read_timeout": _positive_float,
    "max_body_bytes": _positive_int,
    "upstream_idle_timeout": _positive_float,
    "max_input_items": _positive_int,
    "max_upstream_requests": _positive_int,
    "upstream_queue_timeout": _positive_float,
    "client_api_keys": _keys,
    "client_api_keys_file": _text_file,
    "drain_timeout": _positive_float,
    "store": _store_url,
    "store_ttl": _duration,
    "store_max_bytes": _positive_int,
    "seal_key": _text,
    "state_dir": _text,
    "log_format": _choice("json", "console", "auto"),
    "log_level": _level,
    "log_bodies": _flag,
}
REQUIRED = ("upstream", "upstream_api")
# Newer names of settings, accepted wherever the older name is (the newer one wins).
ALIASES = {
    "connect_timeout": "upstream_connect_timeout",
    "read_timeout": "upstream_read_timeout",
}
ENV_PREFIX = "DIGLOT_"


def env_name(setting: str) -> str:
    """The environment variable that carries a setting."""
    return ENV_PREFIX + setting.upper()


def read_file(path: str) -> dict[str, object]:
    """A TOML config file's settings; keys are the option names with `_` or `-`."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    settings: dict[str, object] = {}
    fields = {alias: name for name, alias in ALIASES.items()}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in fields:
            settings[fields[name]] = value
        elif name not in PARSERS:
            raise ConfigError(key, f"unknown setting in {path}")
        else:
            settings.setdefault(name, value)
    return settings


def load_config(cli: Mapping[str, object | None], env: Mapping[str, str]) -> Config:
    """Merge the sources (CLI > env > file > default) and validate every value."""
    config_path = cli.get("config") or env.get(env_name("config"))
    from_file = read_file(str(config_path)) if config_path else {}
    values: dict[str, Any] = {}
    for name, parse in PARSERS.items():
        names = (ALIASES[name], name) if name in ALIASES else (name,)
        raw: object | None = next((cli[key] for key in names if cli.get(key) is not None), None)
        if raw is None:
            raw = next((env[env_name(key)] for key in names if env.get(env_name(key))), None)
        if raw is None:
            raw = from_file.get(name)
        if raw is not None:
            values[name] = parse(name, raw)
    for name in REQUIRED:
        if name not in values:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(name, f"required (set {flag}, {env_name(name)} or the config file)")
    return Config(**values)
