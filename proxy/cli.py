"""`diglot` (serve) and `diglot demo`: argument parsing, configuration errors as one line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from diglot import __version__
from diglot.proxy.app import create_app
from diglot.proxy.config import (
    PARSERS,
    SETTINGS,
    Config,
    ConfigError,
    Setting,
    config_warnings,
    load_config,
)
from diglot.proxy.demo import run_demo
from diglot.proxy.demo_backend import PACE
from diglot.proxy.observability import configure_logging
from diglot.proxy.service import CannotListen
from diglot.proxy.service import run as run_service

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (like a configuration error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def serve_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="diglot",
        description="Serve OpenAI Responses clients from a Chat Completions upstream and Chat "
        "Completions clients from a Responses upstream (and pass requests through when both "
        "speak the same API). Run `diglot demo` to try it.",
        argument_default=None,
    )
    parser.add_argument("-V", "--version", action="version", version=f"diglot {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML file with any of these settings")
    translation = parser.add_argument_group("translation")
    for setting in SETTINGS:
        group = translation if setting.translation else parser
        _add_setting(group.add_argument, setting)
    return parser


def _add_setting(add: Callable[..., argparse.Action], setting: Setting) -> None:
    """A setting's flag: `--` and its name with hyphens (its newer name, or its singular for a
    list given once per item)."""
    if setting.alias is not None:
        add(_flag(setting.alias), metavar=setting.metavar, help=setting.help)
        add(_flag(setting.name), help=argparse.SUPPRESS)
    elif setting.singular is not None:
        add(
            _flag(setting.singular),
            dest=setting.name,
            action="append",
            metavar=setting.metavar,
            help=setting.help,
        )
    elif setting.boolean:
        add(_flag(setting.name), action=argparse.BooleanOptionalAction, help=setting.help)
    else:
        add(_flag(setting.name), metavar=setting.metavar, help=setting.help)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def demo_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="diglot demo",
        description="Start a tiny chat-only demo backend and diglot in front of it.",
    )
    parser.add_argument("--port", type=_port, default=8080, help="diglot's port (default 8080)")
    parser.add_argument(
        "--pace",
        type=_pace,
        default=PACE,
        metavar="SECONDS",
        help=f"pause between streamed words (default {PACE})",
    )
    return parser


def _port(value: str) -> int:
    """The port setting's own rule, as a usage error rather than a traceback."""
    try:
        port: int = PARSERS["port"]("port", value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return port


def _pace(value: str) -> float:
    try:
        pace = float(value)
    except ValueError:
        pace = -1.0
    if not 0 <= pace <= 10:
        raise argparse.ArgumentTypeError(f"{value!r} is not a pace: give 0 to 10 seconds")
    return pace


def demo(args: Sequence[str]) -> int:
    """`diglot demo`: the demo backend with diglot in front of it, until Ctrl+C."""
    options = demo_parser().parse_args(args)
    try:
        run_demo(options.port, options.pace)
    except CannotListen as exc:
        _cannot_listen(exc)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `diglot` command and `python -m diglot`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["demo"]:
        return demo(args[1:])
    parsed = vars(serve_parser().parse_args(args))
    try:
        config = load_config(parsed, os.environ)
    except ConfigError as exc:
        print(f"diglot: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    for warning in config_warnings(config, os.environ):
        print(f"diglot: warning: {warning}", file=sys.stderr)
    serve(config)
    return 0


def serve(config: Config) -> None:
    """Run until SIGINT/SIGTERM, then drain; an address it cannot listen on is one line, exit 2."""
    configure_logging(config.log_format, config.log_level)
    try:
        run_service(create_app(config), config.host, config.port, config.drain_timeout)
    except CannotListen as exc:
        _cannot_listen(exc)


def _cannot_listen(exc: CannotListen) -> NoReturn:
    """Like a configuration error: the port is a setting the user can change."""
    print(f"diglot: error: {exc}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)
