"""`diglot` (serve) and `diglot demo`: argument parsing, configuration errors as one line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from diglot import __version__
from diglot.proxy.app import create_app
from diglot.proxy.config import PARSERS, Config, ConfigError, config_warnings, load_config
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
    add = parser.add_argument
    add("-V", "--version", action="version", version=f"diglot {__version__}")
    add("--upstream", metavar="URL", help="upstream base URL including /v1")
    add("--upstream-api", metavar="chat|responses", help="the API the upstream speaks")
    add("--host", help="address to listen on (default 127.0.0.1)")
    add("--port", help="port to listen on (default 8080)")
    add("--upstream-api-key", metavar="KEY", help="replace the client's Authorization upstream")
    add("--config", metavar="FILE", help="TOML file with any of these settings")
    add("--strict", action=argparse.BooleanOptionalAction, help="refuse unmappable fields (400)")
    add("--instructions-role", metavar="system|developer", help="role for `instructions`")
    add("--max-tokens-field", metavar="max_tokens|max_completion_tokens")
    add(
        "--reasoning-events",
        metavar="text|summary",
        help="reasoning as a summary, which clients show (default), or as raw reasoning_text",
    )
    add("--think-tags", action=argparse.BooleanOptionalAction, help="split <think> blocks")
    add(
        "--chat-reasoning-content",
        action=argparse.BooleanOptionalAction,
        help="give Chat clients reasoning as `reasoning_content` (default on)",
    )
    add(
        "--forward-chat-only-params",
        action=argparse.BooleanOptionalAction,
        help="send Chat-only params (stop, logit_bias, ...) to a Responses upstream as they are",
    )
    add(
        "--hoist-system",
        action=argparse.BooleanOptionalAction,
        help="a Chat request's leading system message becomes `instructions`",
    )
    add("--upstream-connect-timeout", metavar="SECONDS", help="upstream connect timeout (def. 10)")
    add("--upstream-read-timeout", metavar="SECONDS", help="wait for each upstream read (def. 600)")
    add("--upstream-idle-timeout", metavar="SECONDS", help="silence allowed mid-stream (def. 600)")
    add("--connect-timeout", help=argparse.SUPPRESS)
    add("--read-timeout", help=argparse.SUPPRESS)
    add("--max-body-bytes", metavar="N", help="decoded request body limit (default 50 MiB)")
    add("--max-input-items", metavar="N", help="input items/messages per request (def. 20000)")
    add("--max-upstream-requests", metavar="N", help="concurrent upstream requests (def. 512)")
    add("--upstream-queue-timeout", metavar="SECONDS", help="wait for a slot, then 429 (def. 10)")
    add(
        "--client-api-key",
        dest="client_api_keys",
        action="append",
        metavar="KEY",
        help="accept only clients bearing this key (repeatable)",
    )
    add("--client-api-keys-file", metavar="FILE", help="client keys, one per line (SIGHUP reloads)")
    add("--drain-timeout", metavar="SECONDS", help="on SIGTERM, wait this long for requests (30)")
    add(
        "--store", metavar="URL", help="sqlite:///FILE (default), memory:// or redis://HOST:PORT/DB"
    )
    add("--store-ttl", metavar="DURATION", help="keep stored responses this long (default 30d)")
    add("--store-max-bytes", metavar="N", help="evict the oldest responses beyond this size")
    add("--seal-key", metavar="SECRET", help="key sealing reasoning (default: kept in state dir)")
    add("--state-dir", metavar="DIR", help="where the default store and seal key live")
    add("--log-format", metavar="json|console|auto")
    add("--log-level", metavar="LEVEL", help="debug, info, warning, error (default info)")
    add("--log-bodies", action=argparse.BooleanOptionalAction, help="log request bodies")
    return parser


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
