"""The store and sealing settings: parsed from the command line, environment and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from diglot.proxy.cli import serve_parser
from diglot.proxy.config import ConfigError, load_config
from diglot.proxy.store import DAY, default_state_dir, sqlite_path

BASE = {"upstream": "http://127.0.0.1:8000/v1", "upstream_api": "chat"}


def test_defaults() -> None:
    config = load_config(BASE, {})
    assert config.store is None
    assert config.store_ttl == 30 * DAY
    assert config.store_max_bytes == 1 << 30
    assert config.seal_key is None
    assert config.state_dir is None


def test_every_source(tmp_path: Path) -> None:
    file = tmp_path / "diglot.toml"
    file.write_text('state-dir = "/var/lib/diglot"\nstore-max-bytes = 1000\n')
    env = {"DIGLOT_SEAL_KEY": "s3cret", "DIGLOT_STORE_TTL": "12h", "DIGLOT_CONFIG": str(file)}
    config = load_config({**BASE, "store": "redis://127.0.0.1:6379/2"}, env)
    assert config.store == "redis://127.0.0.1:6379/2"
    assert config.store_ttl == 12 * 3600
    assert config.seal_key == "s3cret"
    assert config.state_dir == "/var/lib/diglot"
    assert config.store_max_bytes == 1000


@pytest.mark.parametrize(
    ("ttl", "seconds"), [("90", 90.0), ("30d", 30 * DAY), ("15m", 900.0), (7.5, 7.5)]
)
def test_ttl_units(ttl: object, seconds: float) -> None:
    assert load_config({**BASE, "store_ttl": ttl}, {}).store_ttl == seconds


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("store", "postgres://db/x"),
        ("store", "sqlite://"),
        ("store", "redis://"),
        ("store_ttl", "0d"),
        ("store_ttl", "soon"),
        ("store_max_bytes", "-1"),
    ],
)
def test_bad_values(setting: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, setting: value}, {})
    assert caught.value.setting == setting


def test_state_dir_defaults() -> None:
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/diglot:/other"}) == Path(
        "/var/lib/diglot"
    )
    assert default_state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/diglot")
    assert default_state_dir({}) == Path.home() / ".local" / "state" / "diglot"


def test_sqlite_paths() -> None:
    assert sqlite_path("sqlite:///var/lib/diglot/r.db") == Path("/var/lib/diglot/r.db")
    assert sqlite_path("sqlite:////var/lib/diglot/r.db") == Path("/var/lib/diglot/r.db")
    assert sqlite_path("sqlite://data/r.db") == Path("data/r.db")


def test_command_line_flags() -> None:
    args = [
        *("--upstream", "http://127.0.0.1:8000/v1", "--upstream-api", "chat"),
        *("--store", "sqlite:///var/lib/diglot/r.db", "--store-ttl", "7d"),
        *("--store-max-bytes", "1048576", "--seal-key", "k", "--state-dir", "/srv/diglot"),
    ]
    config = load_config(vars(serve_parser().parse_args(args)), {})
    assert (config.store, config.store_ttl, config.store_max_bytes) == (
        "sqlite:///var/lib/diglot/r.db",
        7 * DAY,
        1048576,
    )
    assert (config.seal_key, config.state_dir) == ("k", "/srv/diglot")
