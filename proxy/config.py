"""diglot's settings, merged from the command line, DIGLOT_* variables and a TOML file."""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from itertools import chain
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import orjson

from diglot.translators.compaction import DEFAULT_PROMPT
from diglot.translators.context import Options

LogFormat = Literal["json", "console", "auto"]
UpstreamApi = Literal["chat", "responses"]
ApiChoice = Literal["chat", "responses", "auto"]  # an [[upstreams]] table's: auto is found out
Parser = Callable[[str, object], Any]


class ConfigError(Exception):
    """A setting with an unusable value; the CLI prints it as one line and exits 2."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, "expected a non-empty string")
    return value.strip()


def _choice(*allowed: str) -> Callable[[str, object], str]:
    def parse(name: str, value: object) -> str:
        text = value.strip().lower() if isinstance(value, str) else ""
        if text not in allowed:
            raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")
        return text

    return parse


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):  # TOML has booleans of its own
        raise ConfigError(name, f"{value!r} is not a boolean: give true or false")
    text = value.strip().lower()
    if text not in _TRUE + _FALSE:
        forms = f"{'/'.join(_TRUE)} or {'/'.join(_FALSE)}"
        raise ConfigError(name, f"{value!r} is not a boolean: give {forms}")
    return text in _TRUE


def _as_number(value: object, kind: type[int] | type[float]) -> int | float | None:
    """The finite number a TOML value or a string holds, else None."""
    if isinstance(value, str):
        try:
            value = kind(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if kind is int and value != int(value):
        return None
    return kind(value)


def _port(name: str, value: object) -> int:
    port = _as_number(value, int)
    if port is None or not 0 <= port <= 65535:
        raise ConfigError(name, f"{value!r} is not a port: give a whole number from 0 to 65535")
    return int(port)


def _seconds(name: str, value: object) -> float:
    seconds = _as_number(value, float)
    if seconds is None:
        raise ConfigError(name, f"{value!r} is not a number of seconds: give one such as 10 or 2.5")
    if seconds <= 0:
        raise ConfigError(name, "must be greater than 0: give seconds such as 10 or 2.5")
    return float(seconds)


def _count(name: str, value: object) -> int:
    count = _as_number(value, int)
    if count is None:
        raise ConfigError(name, f"{value!r} is not a whole number: give one such as 512")
    if count <= 0:
        raise ConfigError(name, "must be greater than 0: give a whole number such as 512")
    return int(count)


def _url(name: str, value: object) -> str:
    url = _text(name, value).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"{value!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
    return url


def _keys(name: str, value: object) -> tuple[str, ...]:
    """One or more keys: a list (CLI, TOML) or a comma-separated string (environment)."""
    items = value.split(",") if isinstance(value, str) else value
    if (
        not isinstance(items, list | tuple)
        or not items
        or not all(isinstance(item, str) and item.strip() for item in items)
    ):
        raise ConfigError(
            name, "expected one or more non-empty keys, as a list or separated by commas"
        )
    return tuple(item.strip() for item in items)


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
    number, scale = value, 1
    if isinstance(value, str) and value.strip()[-1:].lower() in _DURATION_UNITS:
        number, scale = value.strip()[:-1], _DURATION_UNITS[value.strip()[-1].lower()]
    seconds = _as_number(number, float)
    if seconds is None:
        forms = "give seconds or a number with s, m, h or d (30d)"
        raise ConfigError(name, f"{value!r} is not a duration: {forms}")
    if seconds <= 0:
        forms = "give seconds or a number with s, m, h or d (30d)"
        raise ConfigError(name, f"must be greater than 0: {forms}")
    return seconds * scale


def _level(name: str, value: object) -> str:
    return _choice("debug", "info", "warning", "error", "critical")(name, value)


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """One upstream as an [[upstreams]] table gives it; what it leaves out (None) comes from the
    global settings (see `Config.upstream_settings`)."""

    name: str
    urls: tuple[str, ...]  # its replicas
    api: ApiChoice
    models: tuple[str, ...]  # glob patterns, matched in order
    aliases: tuple[tuple[str, str], ...] = ()  # client-facing name -> the backend's model name
    api_key: str | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    idle_timeout: float | None = None
    max_requests: int | None = None
    queue_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """One upstream with every setting decided: what its replicas are built from."""

    name: str
    urls: tuple[str, ...]
    api: ApiChoice
    models: tuple[str, ...]
    aliases: Mapping[str, str]
    api_key: str | None
    connect_timeout: float
    read_timeout: float
    idle_timeout: float
    max_requests: int
    queue_timeout: float


_TABLE_PARSERS: dict[str, Parser] = {
    "name": _text,
    "api": _choice("chat", "responses", "auto"),
    "api_key": _text,
    "connect_timeout": _seconds,
    "read_timeout": _seconds,
    "idle_timeout": _seconds,
    "max_requests": _count,
    "queue_timeout": _seconds,
}
_TABLE_KEYS = {*_TABLE_PARSERS, "url", "urls", "models", "aliases"}


def _upstreams(name: str, value: object) -> tuple[UpstreamSpec, ...]:
    """[[upstreams]] tables; on the command line or in the environment, the same as JSON."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:  # the value is not quoted: it may hold a key
            raise ConfigError(
                name,
                f"not valid JSON ({exc.msg} at character {exc.pos}); give an array of tables "
                'such as [{"name": "a", "url": "http://...", "api": "chat", "models": ["*"]}]',
            ) from None
    if not isinstance(value, list) or not value:
        raise ConfigError(name, "expected one or more [[upstreams]] tables")
    specs = tuple(_upstream_table(f"{name}[{index}]", table) for index, table in enumerate(value))
    _refuse_duplicates(name, specs)
    return specs


def _upstream_table(where: str, table: object) -> UpstreamSpec:
    """One table, every key checked; an alias must lead to one of the table's own models."""
    if not isinstance(table, dict):
        raise ConfigError(where, "expected a table (name, url or urls, api, models, ...)")
    given = {str(key).replace("-", "_"): value for key, value in table.items()}
    for key in given:
        if key not in _TABLE_KEYS:
            meant = _closest(key, _TABLE_KEYS)
            raise ConfigError(
                f"{where}.{key}", "unknown key" + (f"; did you mean {meant}?" if meant else "")
            )
    for key in ("name", "api", "models"):
        if key not in given:
            raise ConfigError(f"{where}.{key}", "required in every [[upstreams]] table")
    parsed = {
        key: parse(f"{where}.{key}", given[key])
        for key, parse in _TABLE_PARSERS.items()
        if key in given
    }
    models = _globs(f"{where}.models", given["models"])
    return UpstreamSpec(
        urls=_replica_urls(where, given),
        models=models,
        aliases=_aliases(f"{where}.aliases", given.get("aliases", {}), models),
        **parsed,
    )


def _replica_urls(where: str, given: Mapping[str, object]) -> tuple[str, ...]:
    """`url = "..."` for one replica, `urls = [...]` for several: one of the two."""
    if ("url" in given) == ("urls" in given):
        raise ConfigError(f"{where}.url", "give either url (one replica) or urls (several)")
    if "url" in given:
        return (_url(f"{where}.url", given["url"]),)
    listed = given["urls"]
    if not isinstance(listed, list) or not listed:
        raise ConfigError(f"{where}.urls", "expected a list of one or more URLs")
    urls = tuple(_url(f"{where}.urls[{index}]", url) for index, url in enumerate(listed))
    if len(set(urls)) != len(urls):
        raise ConfigError(f"{where}.urls", "lists the same URL twice")
    return urls


def _globs(where: str, value: object) -> tuple[str, ...]:
    """Model name patterns: `*` any run of characters, `?` one, `[...]` one of a set."""
    if not isinstance(value, list) or not value:
        raise ConfigError(where, 'expected a list of one or more patterns, such as ["qwen3-*"]')
    for pattern in value:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(where, f"{pattern!r} is not a model pattern: give a non-empty name")
        if _unclosed(pattern):
            raise ConfigError(where, f"{pattern!r} is not a model pattern: a [ has no closing ]")
    return tuple(value)


def _unclosed(pattern: str) -> bool:
    """A `[` without its `]`, which fnmatch would quietly take as a plain character."""
    opened = pattern.find("[")
    while opened != -1:
        closing = pattern.find("]", opened + 2)
        if closing == -1:
            return True
        opened = pattern.find("[", closing + 1)
    return False


def matches(model: str, patterns: tuple[str, ...]) -> bool:
    """Whether a model name matches one of an upstream's patterns (case counts)."""
    return any(fnmatch.fnmatchcase(model, pattern) for pattern in patterns)


def _aliases(where: str, value: object, models: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ConfigError(where, 'expected a table of names, such as { "gpt-5" = "qwen3-32b" }')
    pairs = []
    for alias, target in value.items():
        if not isinstance(target, str) or not target.strip() or not str(alias).strip():
            raise ConfigError(where, f"{alias!r} must name a model: give a non-empty string")
        if not matches(target, models):
            raise ConfigError(
                where, f"{alias!r} leads to {target!r}, which none of this upstream's models match"
            )
        pairs.append((str(alias), target))
    return tuple(pairs)


def _refuse_duplicates(name: str, specs: tuple[UpstreamSpec, ...]) -> None:
    """Names tell upstreams apart in logs, metrics and /readyz; an alias routes to one place."""
    names: set[str] = set()
    aliases: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.name in names:
            raise ConfigError(f"{name}[{index}].name", f"{spec.name!r} names two upstreams")
        names.add(spec.name)
        for alias, _ in spec.aliases:
            if alias in aliases:
                raise ConfigError(f"{name}[{index}].aliases", f"{alias!r} is an alias twice")
            aliases.add(alias)


_OPTIONS = tuple(option.name for option in fields(Options))
SHORTHAND = "default"  # the name of the one upstream `--upstream` gives


def _given(
    parse: Parser | None = None,
    help: str | None = None,
    *,
    metavar: str | None = None,
    alias: str | None = None,
    singular: str | None = None,
    guards: bool = False,
) -> dict[str, Any]:
    """How a `Config` field's setting is given (see `Setting`); a parser and a metavar left out
    come from its type."""
    return {
        "parse": parse,
        "help": help,
        "metavar": metavar,
        "alias": alias,
        "singular": singular,
        "guards": guards,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Config(Options):
    """Everything diglot needs to run; built once at startup.

    The one table of diglot's settings: each field here, and each translation option it
    inherits from `Options`, is a setting, and the CLI, the environment and the config file
    take it from its declaration (see `Setting`).
    """

    upstream: str = field(metadata=_given(_url, "upstream base URL including /v1", metavar="URL"))
    upstream_api: UpstreamApi = field(metadata=_given(help="the API the upstream speaks"))
    upstreams: tuple[UpstreamSpec, ...] = field(
        default=(),
        metadata=_given(
            _upstreams, "several upstreams, as [[upstreams]] tables in JSON", metavar="JSON"
        ),
    )
    host: str = field(
        default="127.0.0.1", metadata=_given(_text, "address to listen on (default 127.0.0.1)")
    )
    port: int = field(default=8080, metadata=_given(_port, "port to listen on (default 8080)"))
    upstream_api_key: str | None = field(
        default=None,
        metadata=_given(_text, "replace the client's Authorization upstream", metavar="KEY"),
    )
    connect_timeout: float = field(
        default=10.0,
        metadata=_given(
            _seconds,
            "upstream connect timeout (def. 10)",
            metavar="SECONDS",
            alias="upstream_connect_timeout",
        ),
    )
    read_timeout: float = field(
        default=600.0,
        metadata=_given(
            _seconds,
            "wait for each upstream read (def. 600)",
            metavar="SECONDS",
            alias="upstream_read_timeout",
        ),
    )
    upstream_idle_timeout: float = field(
        default=600.0,
        metadata=_given(_seconds, "silence allowed mid-stream (def. 600)", metavar="SECONDS"),
    )
    max_body_bytes: int = field(
        default=50 * 1024 * 1024,
        metadata=_given(_count, "decoded request body limit (default 50 MiB)", metavar="N"),
    )
    max_input_items: int = field(
        default=20_000,
        metadata=_given(_count, "input items/messages per request (def. 20000)", metavar="N"),
    )
    max_upstream_requests: int = field(
        default=512,
        metadata=_given(_count, "concurrent upstream requests (def. 512)", metavar="N"),
    )
    upstream_queue_timeout: float = field(
        default=10.0,
        metadata=_given(_seconds, "wait for a slot, then 429 (def. 10)", metavar="SECONDS"),
    )
    client_api_keys: tuple[str, ...] = field(
        default=(),
        metadata=_given(
            _keys,
            "accept only clients bearing this key (repeatable)",
            metavar="KEY",
            singular="client_api_key",
            guards=True,
        ),
    )
    client_api_keys_file: str | None = field(
        default=None,
        metadata=_given(
            _text_file, "client keys, one per line (SIGHUP reloads)", metavar="FILE", guards=True
        ),
    )
    drain_timeout: float = field(
        default=30.0,
        metadata=_given(
            _seconds, "on SIGTERM, wait this long for requests (30)", metavar="SECONDS"
        ),
    )
    store: str | None = field(
        default=None,  # sqlite under the state directory
        metadata=_given(
            _store_url,
            "sqlite:///FILE (default), memory:// or redis://HOST:PORT/DB",
            metavar="URL",
        ),
    )
    store_ttl: float = field(
        default=30 * 24 * 60 * 60.0,
        metadata=_given(
            _duration, "keep stored responses this long (default 30d)", metavar="DURATION"
        ),
    )
    store_max_bytes: int | None = field(
        default=1024 * 1024 * 1024,  # a store never fills a disk
        metadata=_given(_count, "evict the oldest responses beyond this size", metavar="N"),
    )
    seal_key: str | None = field(
        default=None,
        metadata=_given(
            _text, "key sealing reasoning (default: kept in state dir)", metavar="SECRET"
        ),
    )
    state_dir: str | None = field(
        default=None,
        metadata=_given(_text, "where the default store and seal key live", metavar="DIR"),
    )
    compaction_prompt: str = field(
        default=DEFAULT_PROMPT,
        metadata=_given(
            _text, "instruction the backend summarises with to compact", metavar="TEXT"
        ),
    )
    log_format: LogFormat = field(default="auto", metadata=_given())
    log_level: str = field(
        default="info",
        metadata=_given(_level, "debug, info, warning, error (default info)", metavar="LEVEL"),
    )
    log_bodies: bool = field(default=False, metadata=_given(help="log request bodies"))

    def options(self) -> Options:
        """The translation knobs of this configuration."""
        return Options(**{name: getattr(self, name) for name in _OPTIONS})

    def upstream_settings(self) -> tuple[UpstreamSettings, ...]:
        """Every upstream, in routing order: the [[upstreams]] tables, else `upstream` alone
        with `models = ["*"]`; what a table leaves out is the global setting."""
        specs = self.upstreams or (
            UpstreamSpec(
                name=SHORTHAND, urls=(self.upstream,), api=self.upstream_api, models=("*",)
            ),
        )
        return tuple(self._settled(spec) for spec in specs)

    def _settled(self, spec: UpstreamSpec) -> UpstreamSettings:
        def given(value: float | None, default: float) -> float:
            return default if value is None else value

        return UpstreamSettings(
            name=spec.name,
            urls=spec.urls,
            api=spec.api,
            models=spec.models,
            aliases=dict(spec.aliases),
            api_key=spec.api_key or self.upstream_api_key,
            connect_timeout=given(spec.connect_timeout, self.connect_timeout),
            read_timeout=given(spec.read_timeout, self.read_timeout),
            idle_timeout=given(spec.idle_timeout, self.upstream_idle_timeout),
            max_requests=spec.max_requests or self.max_upstream_requests,
            queue_timeout=given(spec.queue_timeout, self.upstream_queue_timeout),
        )


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting as the sources take it, from the declaration of its `Config` field.

    Its name is its config-file key (`_` or `-`); `DIGLOT_` and its name in capitals, its
    environment variable; `--` and its name with hyphens, its flag.
    """

    name: str
    parse: Parser  # given, else from its type: a boolean, or a Literal of choices
    help: str | None  # its line in `diglot --help`
    metavar: str | None  # given, else a Literal's choices, else argparse's
    alias: str | None  # a newer name, accepted wherever this one is (and winning)
    singular: str | None  # a list's singular name, repeated on the command line
    guards: bool  # guards access: a misspelt variable close to it stops diglot
    boolean: bool  # an on/off switch (--x / --no-x)
    translation: bool  # a field of the translators' `Options`


def _setting(spec: Field[Any], hint: object) -> Setting:
    """A field's setting, with what its declaration leaves out filled in from its type."""
    given = spec.metadata
    choices = get_args(hint) if get_origin(hint) is Literal else ()
    parse = given.get("parse") or (
        _flag if hint is bool else _choice(*choices) if choices else None
    )
    if parse is None:
        raise TypeError(f"setting {spec.name} declares no parser and its type implies none")
    return Setting(
        name=spec.name,
        parse=parse,
        help=given["help"],
        metavar=given.get("metavar") or "|".join(choices) or None,
        alias=given.get("alias"),
        singular=given.get("singular"),
        guards=given.get("guards", False),
        boolean=hint is bool,
        translation=spec.name in _OPTIONS,
    )


def _table() -> tuple[Setting, ...]:
    """Every setting: the server's own first, then the translation options."""
    hints = get_type_hints(Config)
    ordered = sorted(fields(Config), key=lambda spec: spec.name in _OPTIONS)
    return tuple(_setting(spec, hints[spec.name]) for spec in ordered)


SETTINGS = _table()
PARSERS = {setting.name: setting.parse for setting in SETTINGS}
REQUIRED = tuple(spec.name for spec in fields(Config) if spec.default is MISSING)
# Newer names of settings, accepted wherever the older name is (the newer one wins).
ALIASES = {setting.name: setting.alias for setting in SETTINGS if setting.alias}
# Singular names of list settings; the items given under both names count.
SINGULARS = {setting.name: setting.singular for setting in SETTINGS if setting.singular}
# Settings guarding access: a misspelt variable close to one of them stops diglot.
GUARDS = tuple(setting.name for setting in SETTINGS if setting.guards)
ENV_PREFIX = "DIGLOT_"
# Variables Kubernetes injects for a Service named diglot (or diglot-*): not settings.
_KUBERNETES_NAME = re.compile(
    r"DIGLOT_(?:\w+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_\w+)?"
    r"|PORT_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)"
)
# ... and DIGLOT_PORT=tcp://10.0.0.1:8080, which is not the port to listen on.
_KUBERNETES_PORT = re.compile(r"(?:tcp|udp|sctp)://\S*", re.IGNORECASE)


def env_name(setting: str) -> str:
    """The environment variable that carries a setting."""
    return ENV_PREFIX + setting.upper()


def _file_names() -> set[str]:
    """Every name a setting goes by, as a config-file key."""
    return {*PARSERS, *ALIASES.values(), *SINGULARS.values()}


def _env_names() -> set[str]:
    """Every name a setting goes by, lower-cased and without the DIGLOT_ prefix."""
    return _file_names() | {"config"}


def _closest(name: str, known: set[str]) -> str | None:
    """The known name a misspelt one most likely meant."""
    matches = difflib.get_close_matches(name, sorted(known), n=1)
    return matches[0] if matches else None


def _from_kubernetes(key: str, value: str) -> bool:
    """Whether a DIGLOT_* variable is a Kubernetes service link rather than a setting."""
    if _KUBERNETES_NAME.fullmatch(key):
        return True
    return key.endswith("_PORT") and _KUBERNETES_PORT.fullmatch(value.strip()) is not None


def _from_env(env: Mapping[str, str], setting: str) -> str | None:
    """A setting's variable; empty or a Kubernetes service link counts as unset."""
    key = env_name(setting)
    value = env.get(key)
    return value if value and not _from_kubernetes(key, value) else None


def _unknown_variables(env: Mapping[str, str]) -> list[str]:
    """DIGLOT_* variables that are neither a setting nor Kubernetes'."""
    known = {env_name(name) for name in _env_names()}
    return sorted(
        key
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key not in known and not _from_kubernetes(key, value)
    )


def _meant(key: str) -> str | None:
    """The setting an unknown variable most likely meant."""
    return _closest(key.removeprefix(ENV_PREFIX).lower(), _env_names())


def _refuse_near_guards(env: Mapping[str, str]) -> None:
    """A misspelt access setting would leave the door open: stop instead."""
    guards = {*GUARDS, *(SINGULARS[name] for name in GUARDS if name in SINGULARS)}
    for key in _unknown_variables(env):
        meant = _meant(key)
        if meant in guards:
            raise ConfigError(
                key,
                f"unknown environment variable; did you mean {env_name(meant)}? "
                "(it guards access, so diglot does not start)",
            )


def read_file(path: str) -> dict[str, object]:
    """A TOML config file's settings by the name used; keys are option names with `_` or `-`."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    known = _file_names()
    settings: dict[str, object] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            meant = _closest(name, known)
            hint = f"; did you mean {meant}?" if meant else ""
            raise ConfigError(key, f"unknown setting in {path}{hint}")
        settings.setdefault(name, value)
    return settings


def _raw_values(name: str, get: Callable[[str], object | None]) -> list[object]:
    """What one source gives a setting: the newer name wins, a singular name adds."""
    names = (ALIASES[name], name) if name in ALIASES else (name,)
    found = [value for key in names if (value := get(key)) is not None][:1]
    if name in SINGULARS and (value := get(SINGULARS[name])) is not None:
        found.append(value)
    return found


def load_config(cli: Mapping[str, object | None], env: Mapping[str, str]) -> Config:
    """Merge the sources (CLI > env > file > default) and validate every value."""
    _refuse_near_guards(env)
    config_path = cli.get("config") or _from_env(env, "config")
    from_file = read_file(str(config_path)) if config_path else {}
    sources: tuple[Callable[[str], object | None], ...] = (
        cli.get,
        lambda key: _from_env(env, key),
        from_file.get,
    )
    values: dict[str, Any] = {}
    for name, parse in PARSERS.items():
        raws = next((found for get in sources if (found := _raw_values(name, get))), [])
        parsed = [parse(name, raw) for raw in raws]
        if len(parsed) == 1:
            values[name] = parsed[0]
        elif parsed:
            values[name] = tuple(chain.from_iterable(parsed))
    if "upstreams" in values:
        _stand_in_for_upstream(values)
    for name in REQUIRED:
        if name not in values:
            flag = "--" + name.replace("_", "-")
            tables = ", or [[upstreams]] tables in the file" if name == "upstream" else ""
            where = f"{flag}, {env_name(name)} or the config file{tables}"
            raise ConfigError(name, f"required (set {where})")
    return Config(**values)


def _stand_in_for_upstream(values: dict[str, Any]) -> None:
    """With [[upstreams]], `upstream` and `upstream_api` name the first one, for code that
    knows of one upstream only; giving them as well is ambiguous."""
    if "upstream" in values or "upstream_api" in values:
        raise ConfigError(
            "upstreams",
            "give either upstream and upstream_api (one upstream) or [[upstreams]] tables",
        )
    first: UpstreamSpec = values["upstreams"][0]
    values["upstream"] = first.urls[0]
    values["upstream_api"] = "responses" if first.api == "responses" else "chat"


def config_warnings(config: Config, env: Mapping[str, str]) -> list[str]:
    """What is worth a line at startup without stopping diglot, one message each."""
    warnings = [_unknown_warning(key) for key in _unknown_variables(env)]
    for upstream in config.upstream_settings():
        for url in upstream.urls:
            if not urlsplit(url).path:
                warnings.append(_pathless_warning(url, upstream.api))
    return warnings


def _unknown_warning(key: str) -> str:
    meant = _meant(key)
    hint = f"did you mean {env_name(meant)}?" if meant else "no setting has a name close to it"
    return f"unknown environment variable {key} ignored; {hint}"


def _pathless_warning(url: str, api: ApiChoice) -> str:
    endpoint = {"chat": "/chat/completions", "responses": "/responses"}.get(api, "/models")
    return (
        f"upstream {url} has no path: diglot will call {url}{endpoint}; most backends want {url}/v1"
    )
