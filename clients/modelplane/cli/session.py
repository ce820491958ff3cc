"""One CLI invocation: its arguments, the client built from flags and
environment (a bearer token never goes out in plaintext by accident), secrets
read from stdin or files, and output as tables (coloured on a terminal),
JSON or YAML."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Final, Iterable, TextIO

from google.protobuf.message import Message

from modelplane.cli import render, revisions, yamlout
from modelplane.cli.style import Style, style_for
from modelplane.client import DEFAULT_CONFIG_ADDRESS, DEFAULT_RESOLVER_ADDRESS, TLS, ModelplaneClient


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


Handler = Callable[["Session"], None]
OUTPUTS: Final = ("table", "json", "yaml")


@dataclass
class Session:
    """One invocation: parsed arguments, a lazily built client, and output."""

    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: ModelplaneClient | None = None

    @property
    def output(self) -> str:
        """table, json or yaml: -o/--output, or --json (the same as -o json)."""
        chosen = getattr(self.args, "output", None)
        if getattr(self.args, "json", False):
            if chosen not in (None, "json"):
                raise UsageError(f"--json and -o {chosen} ask for different outputs; pass one")
            return "json"
        return chosen or "table"

    @property
    def structured(self) -> bool:
        """Output for programs (JSON or YAML) rather than people."""
        return self.output != "table"

    @property
    def style(self) -> Style:
        return style_for(self.out, getattr(self.args, "color", None))

    @property
    def err_style(self) -> Style:
        return style_for(self.err, getattr(self.args, "color", None))

    @property
    def client(self) -> ModelplaneClient:
        """Built on first use; resolver calls wait for the revisions this CLI
        wrote lately (cli.revisions)."""
        if self._client is None:
            self._client = _build_client(self.args)
            self._client.observe_revision(revisions.remembered(self._config_address()))
        return self._client

    def _config_address(self) -> str:
        return _setting(self.args, "config_addr", "MODELPLANE_CONFIG_ADDR", DEFAULT_CONFIG_ADDRESS) or ""

    def close(self) -> None:
        """Remember what this command wrote, and close the channels."""
        if self._client is None:
            return
        if self._client.revision > revisions.remembered(self._config_address()):
            revisions.remember(self._config_address(), self._client.revision)
        self._client.close()

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def warn(self, text: str) -> None:
        self.note(self.err_style.yellow(text))

    def data(self, data: Any) -> None:
        """JSON-shaped data in the structured format chosen."""
        self.print(json.dumps(data, indent=2) if self.output == "json" else yamlout.dump(data))

    def event(self, message: Message) -> None:
        """One event of a stream: a JSON line (NDJSON), or a YAML document."""
        if self.output == "json":
            self.print(render.event_json(message))
        else:
            self.print("---\n" + yamlout.dump(render.as_dict(message)))

    def show(self, message: Message, text: str | None = None) -> None:
        """A single message: structured, or `text` (default: its fields)."""
        if self.structured:
            self.data(render.as_dict(message))
        else:
            self.print(text or render.details(message, self.style))

    def show_list(self, items: Iterable[Any], columns: render.Columns[Any], empty: str) -> None:
        if self.structured:
            self.data([render.as_dict(m) for m in items])
        else:
            self.print(columns.render(items, empty, self.style))

    def done(self, text: str) -> None:
        """A call that answers nothing (deletes, clears)."""
        if self.structured:
            self.data({})
        else:
            self.print(text)


def _setting(args: argparse.Namespace, attr: str, variable: str, default: str | None = None) -> str | None:
    value = getattr(args, attr, None)
    if value is not None:
        return str(value)
    return os.environ.get(variable) or default


def _read_secret_file(path: str) -> str:
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("", "0", "false", "no", "off")


def _env_flag(variable: str) -> bool:
    value = os.environ.get(variable, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{variable}={os.environ[variable]!r}: use one of 1, true, yes, on or 0, false, no, off")


# W3C trace context (version 00): the CLI joins the caller's trace when the
# environment carries one, as OpenTelemetry's environment-variable carriers
# (TRACEPARENT, TRACESTATE) do for command-line tools.
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """traceparent (and tracestate) metadata from TRACEPARENT/TRACESTATE."""
    parent = os.environ.get("TRACEPARENT", "").strip().lower()
    if not parent:
        return ()
    if not _TRACEPARENT.fullmatch(parent) or parent[3:35] == "0" * 32 or parent[36:52] == "0" * 16:
        raise UsageError(f"TRACEPARENT={parent!r}: expected a W3C traceparent, "
                         "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>")
    state = os.environ.get("TRACESTATE", "").strip()
    return (("traceparent", parent),) + ((("tracestate", state),) if state else ())


def _build_client(args: argparse.Namespace) -> ModelplaneClient:
    token = os.environ.get("MODELPLANE_TOKEN", "")
    token_file = _setting(args, "token_file", "MODELPLANE_TOKEN_FILE")
    if token_file:
        token = _read_secret_file(token_file)
    if not token:
        raise UsageError("no token: set MODELPLANE_TOKEN (or MODELPLANE_TOKEN_FILE, --token-file)")
    ca = _setting(args, "tls_ca", "MODELPLANE_TLS_CA")
    cert = _setting(args, "tls_cert", "MODELPLANE_TLS_CERT")
    key = _setting(args, "tls_key", "MODELPLANE_TLS_KEY")
    server_name = _setting(args, "tls_server_name", "MODELPLANE_TLS_SERVER_NAME")
    use_tls = getattr(args, "tls", False) or _env_flag("MODELPLANE_TLS")
    tls = None
    # Any TLS setting turns TLS on: a bearer token must never go out in
    # plaintext because one variable was spelled differently.
    if use_tls or ca or cert or key or server_name:
        try:
            tls = TLS(root_certificates=ca, certificate_chain=cert, private_key=key, server_name=server_name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    timeout = float(getattr(args, "timeout", None) or 30.0)
    return ModelplaneClient(
        _setting(args, "config_addr", "MODELPLANE_CONFIG_ADDR", DEFAULT_CONFIG_ADDRESS),
        _setting(args, "resolver_addr", "MODELPLANE_RESOLVER_ADDR", DEFAULT_RESOLVER_ADDRESS),
        token=token, tls=tls, timeout=timeout, metadata=trace_metadata())


def read_api_key(session: Session, what: str) -> str:
    """An API key from --api-key-file, else stdin (prompted without echo on a terminal)."""
    path = getattr(session.args, "api_key_file", None)
    if path:
        key = _read_secret_file(path)
    elif sys.stdin.isatty():
        key = getpass.getpass(f"API key for {what} (not echoed): ")
    else:
        key = sys.stdin.read().rstrip("\r\n")
    if not key:
        raise UsageError(f"no API key given for {what}: pipe it on stdin or pass --api-key-file")
    return key


def on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"
