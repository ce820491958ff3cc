"""`modelplane`: the operator CLI over ModelplaneClient.

Addresses and token come from the environment (MODELPLANE_CONFIG_ADDR,
MODELPLANE_RESOLVER_ADDR, MODELPLANE_TOKEN or MODELPLANE_TOKEN_FILE, the
MODELPLANE_TLS_* variables); flags override them. Output is aligned tables
by default and JSON with --json. Exit codes: 0 ok, 1 the server refused or
failed, 2 usage errors. API keys are read from stdin or a file, never from
the command line, and are never printed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Final, Iterable, Sequence, TextIO

from google.protobuf.message import Message

from modelplane import calls, render
from modelplane.client import DEFAULT_CONFIG_ADDRESS, DEFAULT_RESOLVER_ADDRESS, TLS, ModelplaneClient
from modelplane.errors import ModelplaneError

ENVIRONMENT = """environment:
  MODELPLANE_CONFIG_ADDR     config_svc address (default 127.0.0.1:50051)
  MODELPLANE_RESOLVER_ADDR   resolver_svc address (default 127.0.0.1:50052)
  MODELPLANE_TOKEN           bearer token (or MODELPLANE_TOKEN_FILE: a file holding it)
  MODELPLANE_TLS             1/true/yes/on: TLS with the system's root certificates
                             (0/false/no/off: plaintext; anything else is refused)
  MODELPLANE_TLS_CA          CA certificate (PEM) to trust
  MODELPLANE_TLS_CERT, MODELPLANE_TLS_KEY   client certificate and key for mutual TLS
  MODELPLANE_TLS_SERVER_NAME name expected in the server certificate
  Any MODELPLANE_TLS_* setting (or its flag) turns TLS on.
"""


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


Handler = Callable[["Session"], None]


@dataclass
class Session:
    """One invocation: parsed arguments, a lazily built client, and output."""

    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: ModelplaneClient | None = None

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def client(self) -> ModelplaneClient:
        if self._client is None:
            self._client = _build_client(self.args)
        return self._client

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def show(self, message: Message, text: str | None = None) -> None:
        """A single message: JSON, or `text` (default: its fields)."""
        self.print(render.message_json(message) if self.json else text or render.details(message))

    def show_list(self, items: Iterable[Any], columns: render.Columns[Any], empty: str) -> None:
        if self.json:
            self.print(render.list_json(items))
        else:
            self.print(columns.render(items, empty))

    def done(self, text: str) -> None:
        """A call that answers nothing (deletes, clears)."""
        self.print("{}" if self.json else text)


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
        token=token, tls=tls, timeout=timeout)


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


# -- handlers -------------------------------------------------------------------------------------


def providers_list(s: Session) -> None:
    s.show_list(s.client.list_providers(), render.PROVIDERS, "no providers")


def providers_get(s: Session) -> None:
    s.show(s.client.get_provider(s.args.name))


def providers_create(s: Session) -> None:
    a = s.args
    api_key = read_api_key(s, a.name) if a.api_key_stdin or a.api_key_file else ""
    s.show(s.client.create_provider(
        a.name, a.type, display_name=a.display_name or "", base_url=a.base_url or "", region=a.region or "",
        api_key=api_key, enabled=False if a.disabled else None, central_key_enabled=on_off(a.central_key),
        allow_user_keys=on_off(a.user_keys), central_key_fallback=on_off(a.fallback)))


def providers_update(s: Session) -> None:
    a = s.args
    fields: dict[str, Any] = {k: v for k, v in (("display_name", a.display_name), ("base_url", a.base_url),
                                                 ("region", a.region)) if v is not None}
    for name, value in (("enabled", a.enabled), ("central_key_enabled", a.central_key),
                        ("allow_user_keys", a.user_keys), ("central_key_fallback", a.fallback)):
        if value is not None:
            fields[name] = value == "on"
    if a.api_key_stdin or a.api_key_file:
        fields["api_key"] = read_api_key(s, a.name)
    elif a.remove_api_key:
        fields["api_key"] = None
    if not fields:
        raise UsageError("nothing to update: pass at least one field flag (see --help)")
    s.show(s.client.update_provider(a.name, etag=a.etag or "", **fields))


def providers_delete(s: Session) -> None:
    s.client.delete_provider(s.args.name, etag=s.args.etag or "", force=s.args.force)
    s.done(f"deleted provider {s.args.name}")


def _sections(assignments: Sequence[str], unsets: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """--set options.temperature=0.2 --unset pricing.input_per_mtok -> {section: {field: value}}."""
    sections: dict[str, dict[str, Any]] = {}
    pairs: list[tuple[str, str | None]] = [(a, None) for a in unsets]
    for assignment in assignments:
        target, sep, given = assignment.partition("=")
        if not sep:
            raise UsageError(f"--set {assignment!r}: expected PATH=VALUE, e.g. options.temperature=0.2")
        pairs.append((target, given))
    allowed = ("options", "pricing", *calls.OPTION_FAMILIES)
    for path, raw in pairs:
        section, dot, name = path.strip().partition(".")
        if section not in allowed or not dot or not name:
            raise UsageError(f"{path!r}: expected SECTION.FIELD with SECTION one of {', '.join(allowed)} "
                             "(see `modelplane options-schema TYPE`)")
        sections.setdefault(section, {})[name] = None if raw is None else _value(raw)
    return sections


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # a bare word such as high


def models_list(s: Session) -> None:
    s.show_list(s.client.list_models(provider=s.args.provider or ""), render.MODELS, "no models")


def models_get(s: Session) -> None:
    s.show(s.client.get_model(s.args.name))


def models_create(s: Session) -> None:
    a = s.args
    s.show(s.client.create_model(a.provider, a.model_identifier, a.display_name, a.context_limit,
                                 name=a.name or "", enabled=False if a.disabled else None,
                                 **_sections(a.set or [])))


def models_update(s: Session) -> None:
    a = s.args
    fields: dict[str, Any] = {k: v for k, v in (("display_name", a.display_name),
                                                 ("model_identifier", a.model_identifier),
                                                 ("context_limit", a.context_limit)) if v is not None}
    if a.enabled is not None:
        fields["enabled"] = a.enabled == "on"
    fields.update(_sections(a.set or [], a.unset or []))
    if not fields:
        raise UsageError("nothing to update: pass at least one field flag (see --help)")
    s.show(s.client.update_model(a.name, etag=a.etag or "", **fields))


def models_delete(s: Session) -> None:
    s.client.delete_model(s.args.name, etag=s.args.etag or "")
    s.done(f"deleted model {s.args.name}")


def models_default(s: Session) -> None:
    a = s.args
    if a.clear:
        s.client.set_default_model("")
        s.done("cleared the default model")
    elif a.name:
        model = s.client.set_default_model(a.name)
        s.show(model, f"default model: {model.name}")
    else:
        current = next((m for m in s.client.list_models() if m.is_default), None)
        if current is None:
            s.print("{}" if s.json else "no default model")
        else:
            s.show(current, f"default model: {current.name}")


def options_schema(s: Session) -> None:
    schema = s.client.get_model_options_schema(s.args.type)
    s.show(schema, render.options_schema(schema))


def settings_get(s: Session) -> None:
    s.show(s.client.get_settings())


def settings_set(s: Session) -> None:
    a = s.args
    fields = {k: v == "on" for k, v in (("byok_enabled", a.byok),
                                        ("personal_overrides_enabled", a.personal_overrides)) if v is not None}
    if not fields:
        raise UsageError("nothing to set: pass --byok on|off and/or --personal-overrides on|off")
    s.show(s.client.update_settings(etag=a.etag or "", **fields))


def overrides_list(s: Session) -> None:
    response = s.client.list_model_overrides()
    s.show(response, render.OVERRIDES.render(response.overrides, "no admin overrides"))


def overrides_set(s: Session) -> None:
    override = s.client.set_model_override(s.args.context, s.args.model)
    s.show(override, f"{calls.context_name(override.context)} -> {override.model}")


def overrides_clear(s: Session) -> None:
    s.client.clear_model_override(s.args.context)
    s.done(f"cleared the {s.args.context} override")


def personal_list(s: Session) -> None:
    response = s.client.list_personal_overrides(user=s.args.user or "")
    state = "apply" if response.enabled else "are switched off by the administrator (stored, not applied)"
    s.show(response, render.OVERRIDES.render(response.overrides, "no personal overrides")
           + f"\n\npersonal overrides {state}")


def personal_set(s: Session) -> None:
    override = s.client.set_personal_override(s.args.context, s.args.model, user=s.args.user or "")
    s.show(override, f"{calls.context_name(override.context)} -> {override.model} (for {override.user})")


def personal_clear(s: Session) -> None:
    s.client.clear_personal_override(s.args.context, user=s.args.user or "")
    s.done(f"cleared the personal {s.args.context} override")


def keys_set(s: Session) -> None:
    key = s.client.set_user_key(s.args.provider, read_api_key(s, s.args.provider), user=s.args.user or "")
    s.show(key, f"saved {key.user}'s key for {key.provider}")


def keys_delete(s: Session) -> None:
    s.client.delete_user_key(s.args.provider, user=s.args.user or "")
    s.done(f"deleted the key for {s.args.provider}")


def keys_list(s: Session) -> None:
    response = s.client.list_user_keys(user=s.args.user or "")
    s.show(response, render.USER_KEYS.render(response.keys, "no saved keys"))


def keys_status(s: Session) -> None:
    response = s.client.list_user_key_status(user=s.args.user or "")
    byok = "on" if response.byok_enabled else "off"
    s.show(response, render.KEY_STATUS.render(response.providers, "no enabled providers") + f"\n\nBYOK is {byok}")


def tokens_create(s: Session) -> None:
    a = s.args
    created = s.client.create_api_token(a.role, a.subject, description=a.description or "")
    if s.json:
        s.show(created)
        return
    s.print(render.TOKENS.render([created.token]))
    s.print(f"\nsecret: {created.secret}")
    s.note("store the secret now: it is shown only once")


def tokens_list(s: Session) -> None:
    s.show_list(s.client.list_api_tokens(include_revoked=s.args.include_revoked), render.TOKENS, "no tokens")


def tokens_revoke(s: Session) -> None:
    token = s.client.revoke_api_token(s.args.id)
    s.show(token, f"revoked token {token.id} ({calls.role_name(token.role)} {token.subject})")


def tokens_introspect(s: Session) -> None:
    token = s.client.introspect_token(read_api_key(s, "the token to check"))
    s.show(token, render.TOKENS.render([token]))


def audit_list(s: Session) -> None:
    events = s.client.list_audit_events(resource_prefix=s.args.resource_prefix or "",
                                        page_size=min(s.args.limit or 100, 500))
    s.show_list(_take(events, s.args.limit), render.AUDIT, "no audit events")


def _take(items: Iterable[Any], limit: int) -> list[Any]:
    taken: list[Any] = []
    for item in items:
        if limit and len(taken) >= limit:
            break
        taken.append(item)
    return taken


def resolve_credential(s: Session) -> None:
    resolution = s.client.resolve_credential(s.args.provider, user=s.args.user or "")
    s.show(resolution, render.credential(resolution))


def resolve_models(s: Session) -> None:
    response = s.client.list_available_models(user=s.args.user or "", last_used_model=s.args.last_used or "")
    s.show(response, render.available_models(response))


def resolve_model(s: Session) -> None:
    resolved = s.client.resolve_model(s.args.context, s.args.chat_model or "", user=s.args.user or "")
    s.show(resolved, render.resolved_model(resolved, s.args.explain))


def chat(s: Session) -> None:
    a = s.args
    text = sys.stdin.read() if a.message == "-" else a.message
    messages: list[tuple[str, str]] = [("system", a.system)] if a.system else []
    messages.append(("user", text))
    options = dict(context=a.context, chat_model=a.model or "", chat_id=a.chat_id or "", user=a.user or "")
    if not a.stream:
        response = s.client.chat(messages, **options)
        if s.json:
            s.show(response)
            return
        if response.reasoning:
            s.note(response.reasoning)
        s.print(response.text + response.refusal)
        s.note(render.chat_summary(response.resolution.model.name, response.usage, response))
        return
    model, usage, finish = "", None, None
    for event in s.client.stream_chat(messages, **options):
        if s.json:
            s.print(render.event_json(event))
            continue
        kind = event.WhichOneof("event")
        if kind in ("text_delta", "refusal_delta"):
            s.out.write(event.text_delta or event.refusal_delta)
            s.out.flush()
        elif kind == "reasoning_delta":
            s.err.write(event.reasoning_delta)
            s.err.flush()
        elif kind == "resolution":
            model = event.resolution.model.name
        elif kind == "usage":
            usage = event.usage
        elif kind == "finish":
            finish = event.finish
        elif kind == "tool_call_delta" and event.tool_call_delta.name:
            s.note(f"[tool call {event.tool_call_delta.name}]")
    if not s.json:
        s.print("")
        s.note(render.chat_summary(model, usage, finish))


def probe(s: Session) -> None:
    result = s.client.probe_provider(s.args.provider, use_own_key=s.args.own_key, user=s.args.user or "")
    s.show(result)


def health(s: Session) -> None:
    target = "resolver" if s.args.resolver else "config"
    status = s.client.health(target, s.args.service or "")
    s.print(json.dumps({"status": status}) if s.json else f"{target}: {status}")


def watch(s: Session) -> None:
    for event in s.client.watch_config(after_revision=s.args.after_revision):
        if s.json:
            s.print(render.event_json(event))
        elif event.HasField("snapshot"):
            snap = event.snapshot
            s.print(f"revision {event.revision}: snapshot ({len(snap.providers)} providers, "
                    f"{len(snap.models)} models)")
        else:
            changed = ", ".join(str(c.WhichOneof("change")) for c in event.changes)
            s.print(f"revision {event.revision}: {changed}")


def user_config(s: Session) -> None:
    s.show(s.client.get_user_config(user=s.args.user or ""))


# -- the parser -------------------------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand (defaults suppressed,
    so a later position does not reset an earlier one)."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("connection and output")
    group.add_argument("--json", action="store_true", help="print JSON (proto field names) instead of tables")
    group.add_argument("--config-addr", metavar="HOST:PORT", help="config_svc address [MODELPLANE_CONFIG_ADDR]")
    group.add_argument("--resolver-addr", metavar="HOST:PORT",
                       help="resolver_svc address [MODELPLANE_RESOLVER_ADDR]")
    group.add_argument("--token-file", metavar="PATH", help="file holding the bearer token [MODELPLANE_TOKEN_FILE]")
    group.add_argument("--tls", action="store_true", help="use TLS with the system roots [MODELPLANE_TLS]")
    group.add_argument("--tls-ca", metavar="PEM", help="CA certificate to trust [MODELPLANE_TLS_CA]")
    group.add_argument("--tls-cert", metavar="PEM", help="client certificate for mTLS [MODELPLANE_TLS_CERT]")
    group.add_argument("--tls-key", metavar="PEM", help="client key for mTLS [MODELPLANE_TLS_KEY]")
    group.add_argument("--tls-server-name", metavar="NAME",
                       help="name expected in the server certificate [MODELPLANE_TLS_SERVER_NAME]")
    group.add_argument("--timeout", type=float, metavar="SECONDS", help="per-call deadline (default 30)")
    return common


class _Builder:
    def __init__(self, common: argparse.ArgumentParser) -> None:
        self.common = common

    def group(self, parent: Any, name: str, help: str) -> Any:
        parser = parent.add_parser(name, help=help, description=help)
        return parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(self, parent: Any, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help,
                                                            parents=[self.common])
        parser.set_defaults(handler=handler)
        return parser


def _on_off(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    parser.add_argument(flag, choices=("on", "off"), help=help)


def _user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="the user (required for admin and service tokens; members: themselves)")


def _api_key_source(parser: argparse.ArgumentParser, stdin_flag: bool) -> None:
    if stdin_flag:
        parser.add_argument("--api-key-stdin", action="store_true",
                            help="read the central API key from stdin (prompted without echo on a terminal)")
    parser.add_argument("--api-key-file", metavar="PATH", help="read the API key from this file")


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="modelplane", parents=[common], epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Operate modelplane: providers, models, settings, overrides, keys, tokens, audit, "
                    "resolution and chat.")
    top = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    b = _Builder(common)
    types = ", ".join(calls.provider_type_names())
    contexts = ", ".join(calls.context_names())

    g = b.group(top, "providers", "LLM providers and their central keys")
    b.command(g, "list", providers_list, "list providers")
    b.command(g, "get", providers_get, "show one provider").add_argument("name")
    p = b.command(g, "create", providers_create, "add a provider (the key is read from stdin or a file)")
    p.add_argument("name", help="lowercase kebab-case, immutable")
    p.add_argument("--type", required=True, help=types)
    p.add_argument("--display-name")
    p.add_argument("--base-url", help="upstream URL; default: the type's public endpoint")
    p.add_argument("--region", help="bedrock: the AWS region")
    p.add_argument("--disabled", action="store_true", help="create it disabled")
    _api_key_source(p, stdin_flag=True)
    _on_off(p, "--central-key", "key policy: may the central key be used (default on)")
    _on_off(p, "--user-keys", "key policy: may users save their own key (default on)")
    _on_off(p, "--fallback", "key policy: users without a key fall back to the central key (default on)")
    p = b.command(g, "update", providers_update, "change the given fields of a provider")
    p.add_argument("name")
    p.add_argument("--etag", help="fail with ABORTED unless the provider still has this etag")
    p.add_argument("--display-name")
    p.add_argument("--base-url", help='"" returns to the default endpoint')
    p.add_argument("--region")
    _on_off(p, "--enabled", "enable or disable the provider")
    _api_key_source(p, stdin_flag=True)
    p.add_argument("--remove-api-key", action="store_true", help="remove the central key")
    _on_off(p, "--central-key", "key policy: central key")
    _on_off(p, "--user-keys", "key policy: users' own keys")
    _on_off(p, "--fallback", "key policy: fall back to the central key")
    p = b.command(g, "delete", providers_delete, "delete a provider, its key and users' keys for it")
    p.add_argument("name")
    p.add_argument("--etag")
    p.add_argument("--force", action="store_true", help="also delete its models")

    g = b.group(top, "models", "models, their options and the default model")
    b.command(g, "list", models_list, "list models").add_argument("--provider", help="only this provider's")
    b.command(g, "get", models_get, "show one model").add_argument("name")
    set_help = ("SECTION.FIELD=VALUE with SECTION options, pricing or the provider's options field "
                "(anthropic, openai, google, openrouter, vercel); repeatable. See options-schema.")
    p = b.command(g, "create", models_create, "add a model to a provider (the first becomes the default)")
    p.add_argument("provider")
    p.add_argument("model_identifier", help="the exact model string the upstream expects")
    p.add_argument("--display-name", required=True)
    p.add_argument("--context-limit", required=True, type=int, help="tokens in the context window")
    p.add_argument("--name", help="default: derived from provider and model identifier")
    p.add_argument("--disabled", action="store_true")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help=set_help)
    p = b.command(g, "update", models_update, "change the given fields of a model")
    p.add_argument("name")
    p.add_argument("--etag")
    p.add_argument("--display-name")
    p.add_argument("--model-identifier")
    p.add_argument("--context-limit", type=int)
    _on_off(p, "--enabled", "enable or disable the model")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help=set_help)
    p.add_argument("--unset", action="append", metavar="PATH", help="clear an option, e.g. options.temperature")
    p = b.command(g, "delete", models_delete, "delete a model (overrides naming it fall through)")
    p.add_argument("name")
    p.add_argument("--etag")
    p = b.command(g, "default", models_default, "show, set (star) or clear the default model")
    p.add_argument("name", nargs="?", help="the model to star; omit to show the current default")
    p.add_argument("--clear", action="store_true", help="clear the default")

    b.command(top, "options-schema", options_schema, "the model options a provider type takes").add_argument(
        "type", help=types)

    g = b.group(top, "settings", "deployment settings (BYOK, personal overrides)")
    b.command(g, "get", settings_get, "show the settings")
    p = b.command(g, "set", settings_set, "change settings")
    _on_off(p, "--byok", "users may bring their own keys")
    _on_off(p, "--personal-overrides", "users may set personal model overrides")
    p.add_argument("--etag")

    g = b.group(top, "overrides", "admin model overrides per context (general, explore, title_generation)")
    b.command(g, "list", overrides_list, "list admin overrides")
    p = b.command(g, "set", overrides_set, "pin a context to a model")
    p.add_argument("context", help="general, explore or title_generation")
    p.add_argument("model")
    b.command(g, "clear", overrides_clear, "remove an admin override").add_argument("context")

    g = b.group(top, "personal-overrides", "a user's own model overrides (root, general, explore)")
    _user(b.command(g, "list", personal_list, "list a user's personal overrides"))
    p = b.command(g, "set", personal_set, "pin a personal context to a model")
    p.add_argument("context", help="root, general or explore")
    p.add_argument("model")
    _user(p)
    p = b.command(g, "clear", personal_clear, "remove a personal override")
    p.add_argument("context")
    _user(p)

    g = b.group(top, "keys", "users' own API keys (BYOK); keys are never shown")
    p = b.command(g, "set", keys_set, "save your key for a provider, read from stdin or --api-key-file")
    p.add_argument("provider")
    _api_key_source(p, stdin_flag=False)
    _user(p)
    p = b.command(g, "delete", keys_delete, "delete a saved key")
    p.add_argument("provider")
    _user(p)
    _user(b.command(g, "list", keys_list, "list providers a user holds a key for"))
    _user(b.command(g, "status", keys_status, "key status per enabled provider (resolver)"))

    g = b.group(top, "tokens", "API tokens")
    p = b.command(g, "create", tokens_create, "mint a token; its secret is printed once")
    p.add_argument("--role", required=True, choices=("admin", "member", "service"))
    p.add_argument("--subject", required=True, help="the user for members; a service or operator name otherwise")
    p.add_argument("--description")
    b.command(g, "list", tokens_list, "list tokens").add_argument("--include-revoked", action="store_true")
    b.command(g, "revoke", tokens_revoke, "revoke a token now").add_argument("id")
    p = b.command(g, "introspect", tokens_introspect, "check a token read from stdin (service role)")
    p.add_argument("--api-key-file", metavar="PATH", help="read the token from this file")

    g = b.group(top, "audit", "the audit log")
    p = b.command(g, "list", audit_list, "list audit events, newest first")
    p.add_argument("--resource-prefix", help='e.g. "providers/"')
    p.add_argument("--limit", type=int, default=50, help="at most this many (0: all; default 50)")

    g = b.group(top, "resolve", "what the resolver decides for a user")
    p = b.command(g, "credential", resolve_credential, "which credential a user gets for a provider")
    p.add_argument("provider")
    _user(p)
    p = b.command(g, "models", resolve_models, "the models a user may pick, and the pre-selected one")
    p.add_argument("--last-used", metavar="MODEL", help="the client's last-used model")
    _user(p)
    p = b.command(g, "model", resolve_model, "which model a chat or subagent gets")
    p.add_argument("--context", default="root", help=f"{contexts} (default root)")
    p.add_argument("--chat-model", metavar="MODEL", help="the chat's selected model")
    p.add_argument("--explain", action="store_true", help="print every layer considered")
    _user(p)

    p = b.command(top, "chat", chat, "send a message through the resolver")
    p.add_argument("message", help='the user message ("-" reads stdin)')
    p.add_argument("--system", help="a system message")
    p.add_argument("--context", default="root", help=f"{contexts} (default root)")
    p.add_argument("--model", help="the chat's selected model")
    p.add_argument("--chat-id")
    p.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    _user(p)

    p = b.command(top, "probe", probe, "check a provider's URL and credentials against its /models")
    p.add_argument("provider")
    p.add_argument("--own-key", action="store_true", help="probe with your own key instead of the central one")
    _user(p)

    p = b.command(top, "health", health, "gRPC health of config_svc (or --resolver)")
    p.add_argument("--resolver", action="store_true", help="ask resolver_svc")
    p.add_argument("--service", help="a service name, e.g. modelplane.v1.ConfigService")
    p = b.command(top, "watch", watch, "stream configuration changes (service or admin)")
    p.add_argument("--after-revision", type=int, default=0)
    _user(b.command(top, "user-config", user_config, "a user's overrides and key providers as resolvers see them"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    session = Session(args)
    try:
        args.handler(session)
    except ModelplaneError as err:
        session.note(render.error(err))
        return 1
    except (UsageError, ValueError) as err:
        session.note(f"error: {err}")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, without a second
        # error when the interpreter flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if session._client is not None:
            session._client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
