"""One declaration per setting: a translation option of `Options` is a flag, a variable and a
file key without being named anywhere else, and `diglot --help` shows them apart."""

from __future__ import annotations

import re
import typing
from dataclasses import Field, fields
from pathlib import Path
from typing import Any, Literal

import pytest

from diglot.proxy.cli import serve_parser
from diglot.proxy.config import ALIASES, SINGULARS, Config, load_config
from diglot.translators.context import Options

BASE = {"upstream": "http://127.0.0.1:8000/v1", "upstream_api": "chat"}
OPTIONS = fields(Options)
HINTS = typing.get_type_hints(Config)
OPTION_NAMES = {option.name for option in OPTIONS}
SERVER = [setting.name for setting in fields(Config) if setting.name not in OPTION_NAMES]
LISTED = re.compile(r"^  (--[a-z-]+)", re.MULTILINE)


def other_value(option: Field[Any]) -> Any:
    """A value of the option's type that is not its default."""
    hint = HINTS[option.name]
    if hint is bool:
        return not option.default
    assert typing.get_origin(hint) is Literal, f"{option.name}: expected a boolean or a Literal"
    return next(choice for choice in typing.get_args(hint) if choice != option.default)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.mark.parametrize("option", OPTIONS, ids=[option.name for option in OPTIONS])
def test_each_translation_option_is_set_from_every_source(
    option: Field[Any], tmp_path: Path
) -> None:
    value = other_value(option)
    if isinstance(value, bool):
        args = [flag(option.name) if value else "--no-" + flag(option.name)[2:]]
        env_value, file_value = ("true" if value else "false"), ("true" if value else "false")
    else:
        args = [flag(option.name), value]
        env_value, file_value = value, f'"{value}"'
    expected = Options(**{option.name: value})
    from_cli = {**vars(serve_parser().parse_args(args)), **BASE}
    assert load_config(from_cli, {}).options() == expected
    env = {"DIGLOT_" + option.name.upper(): env_value}
    assert load_config(BASE, env).options() == expected
    path = tmp_path / "diglot.toml"
    path.write_text(f"{option.name.replace('_', '-')} = {file_value}\n")
    assert load_config({**BASE, "config": str(path)}, {}).options() == expected
    assert load_config(BASE, {}).options() == Options()


def test_every_flag_is_a_setting_named_once() -> None:
    """Each setting's flag is its name (its newer name, or a list's singular) with hyphens."""
    parser = serve_parser()
    flags = {string for action in parser._actions for string in action.option_strings}
    expected = {"-h", "--help", "-V", "--version", "--config"}
    for setting in fields(Config):
        name = setting.name
        expected.add(flag(SINGULARS.get(name, name)))
        if name in ALIASES:
            expected.add(flag(ALIASES[name]))
        if HINTS[name] is bool:
            expected.add("--no-" + flag(name)[2:])
    assert flags == expected


def test_help_lists_the_translation_options_apart_in_their_declared_order() -> None:
    text = serve_parser().format_help()
    server, _, translation = text.partition("\noptions:\n")[2].partition("\ntranslation:\n")
    assert LISTED.findall(translation) == [flag(option.name) for option in OPTIONS]
    assert LISTED.findall(server) == [
        "--config",
        *(flag(ALIASES.get(name, SINGULARS.get(name, name))) for name in SERVER),
    ]
    assert "  --upstream URL        upstream base URL including /v1\n" in server
