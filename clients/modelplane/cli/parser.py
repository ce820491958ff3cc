"""The command line: every command, its flags and the handler it runs.

Mistyped commands, options and choices get a "did you mean"; values the
shell can complete are marked on the argument (`complete`) for
cli.completion, which writes bash, zsh and fish scripts from this parser.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, Sequence

from modelplane import calls
from modelplane.cli import admin, completion, governance, runtime, status
from modelplane.cli.session import OUTPUTS, Handler

FILES = completion.FILES  # `complete` marker: the value is a path

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
  MODELPLANE_STATE_FILE      where the revisions of your writes are kept for 10 minutes, so
                             resolver commands read them (default
                             $XDG_STATE_HOME/modelplane/revisions.json; "off" disables)
  TRACEPARENT, TRACESTATE    W3C trace context: calls join that trace
  NO_COLOR                   set: no colour, even on a terminal (see --color)

shell completion: modelplane completion bash|zsh|fish (see `modelplane completion --help`)
"""


class Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for mistyped commands, choices and options."""

    _seen: Sequence[str] = ()

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            names = [str(c) for c in choices]
            close = calls.did_you_mean(str(value), names)
            hint = f"did you mean {close}? " if close else ""
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}: {hint}choose from {', '.join(names)}")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self._seen = list(sys.argv[1:] if args is None else args)  # for error(): what was typed
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command: Parser = getattr(parsed, "command_parser", self)
            command._seen = extras
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        # A misspelt option is the likely cause of most errors (say a
        # required --type "missing" because --tpye was typed): name it.
        known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        hints = []
        for word in self._seen:
            typed = word.split("=", 1)[0]
            if typed.startswith("--") and typed not in known:
                close = calls.did_you_mean(typed, known)
                hints.append(f"{typed}: did you mean {close}?" if close else f"{typed}: no such option")
        super().error(message + ("; " + "; ".join(hints) if hints else ""))


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand (defaults suppressed,
    so a later position does not reset an earlier one)."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("connection and output")
    group.add_argument("-o", "--output", choices=OUTPUTS,
                       help="table (default), json or yaml (proto field names); streams: one JSON line or one "
                            "YAML document per event")
    group.add_argument("--json", action="store_true", help="the same as -o json")
    group.add_argument("--color", choices=("auto", "always", "never"),
                       help="colour tables and errors: auto (default) on a terminal unless NO_COLOR is set")
    group.add_argument("--config-addr", metavar="HOST:PORT", help="config_svc address [MODELPLANE_CONFIG_ADDR]")
    group.add_argument("--resolver-addr", metavar="HOST:PORT",
                       help="resolver_svc address [MODELPLANE_RESOLVER_ADDR]")
    group.add_argument("--token-file", metavar="PATH",
                       help="file holding the bearer token [MODELPLANE_TOKEN_FILE]").complete = FILES  # type: ignore[attr-defined]
    group.add_argument("--tls", action="store_true", help="use TLS with the system roots [MODELPLANE_TLS]")
    for flag, help in (("--tls-ca", "CA certificate to trust [MODELPLANE_TLS_CA]"),
                       ("--tls-cert", "client certificate for mTLS [MODELPLANE_TLS_CERT]"),
                       ("--tls-key", "client key for mTLS [MODELPLANE_TLS_KEY]")):
        group.add_argument(flag, metavar="PEM", help=help).complete = FILES  # type: ignore[attr-defined]
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
        parser.set_defaults(handler=handler, command_parser=parser)
        return parser


def _on_off(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    parser.add_argument(flag, choices=("on", "off"), help=help)


def _user(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="the user (required for admin and service tokens; members: themselves)")


def _api_key_source(parser: argparse.ArgumentParser, stdin_flag: bool) -> None:
    if stdin_flag:
        parser.add_argument("--api-key-stdin", action="store_true",
                            help="read the central API key from stdin (prompted without echo on a terminal)")
    _complete(parser.add_argument("--api-key-file", metavar="PATH", help="read the API key from this file"), FILES)


def _complete(action: argparse.Action, values: Any) -> argparse.Action:
    """What the shell may complete for this argument (cli.completion): a
    list of words, or FILES."""
    action.complete = values  # type: ignore[attr-defined]
    return action


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = Parser(
        prog="modelplane", parents=[common], epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Operate modelplane: providers, models, settings, overrides, keys, tokens, audit, "
                    "resolution and chat.")
    top = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    b = _Builder(common)
    type_names, context_names = calls.provider_type_names(), calls.context_names()
    types, contexts = ", ".join(type_names), ", ".join(context_names)

    g = b.group(top, "providers", "LLM providers and their central keys")
    b.command(g, "list", admin.providers_list, "list providers")
    b.command(g, "get", admin.providers_get, "show one provider").add_argument("name")
    p = b.command(g, "create", admin.providers_create, "add a provider (the key is read from stdin or a file)")
    p.add_argument("name", help="lowercase kebab-case, immutable")
    _complete(p.add_argument("--type", required=True, help=types), type_names)
    p.add_argument("--display-name")
    p.add_argument("--base-url", help="upstream URL; default: the type's public endpoint")
    p.add_argument("--region", help="bedrock: the AWS region")
    p.add_argument("--disabled", action="store_true", help="create it disabled")
    _api_key_source(p, stdin_flag=True)
    _on_off(p, "--central-key", "key policy: may the central key be used (default on)")
    _on_off(p, "--user-keys", "key policy: may users save their own key (default on)")
    _on_off(p, "--fallback", "key policy: users without a key fall back to the central key (default on)")
    p = b.command(g, "update", admin.providers_update, "change the given fields of a provider")
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
    p = b.command(g, "delete", admin.providers_delete, "delete a provider, its key and users' keys for it")
    p.add_argument("name")
    p.add_argument("--etag")
    p.add_argument("--force", action="store_true", help="also delete its models")

    g = b.group(top, "models", "models, their options and the default model")
    b.command(g, "list", admin.models_list, "list models").add_argument("--provider", help="only this provider's")
    b.command(g, "get", admin.models_get, "show one model").add_argument("name")
    set_help = ("SECTION.FIELD=VALUE with SECTION options, pricing or the provider's options field "
                "(anthropic, openai, google, openrouter, vercel); repeatable. See options-schema.")
    p = b.command(g, "create", admin.models_create, "add a model to a provider (the first becomes the default)")
    p.add_argument("provider")
    p.add_argument("model_identifier", help="the exact model string the upstream expects")
    p.add_argument("--display-name", required=True)
    p.add_argument("--context-limit", required=True, type=int, help="tokens in the context window")
    p.add_argument("--name", help="default: derived from provider and model identifier")
    p.add_argument("--disabled", action="store_true")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help=set_help)
    _access(p)
    p = b.command(g, "update", admin.models_update, "change the given fields of a model")
    p.add_argument("name")
    p.add_argument("--etag")
    p.add_argument("--display-name")
    p.add_argument("--model-identifier")
    p.add_argument("--context-limit", type=int)
    _on_off(p, "--enabled", "enable or disable the model")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help=set_help)
    p.add_argument("--unset", action="append", metavar="PATH", help="clear an option, e.g. options.temperature")
    _access(p)
    p.add_argument("--open-access", action="store_true", help="clear the access list: everyone may use it")
    p = b.command(g, "delete", admin.models_delete, "delete a model (overrides naming it fall through)")
    p.add_argument("name")
    p.add_argument("--etag")
    p = b.command(g, "default", admin.models_default, "show, set (star) or clear the default model")
    p.add_argument("name", nargs="?", help="the model to star; omit to show the current default")
    p.add_argument("--clear", action="store_true", help="clear the default")

    _complete(b.command(top, "options-schema", admin.options_schema,
                        "the model options a provider type takes").add_argument("type", help=types), type_names)

    g = b.group(top, "settings", "deployment settings (BYOK, personal overrides)")
    b.command(g, "get", admin.settings_get, "show the settings")
    p = b.command(g, "set", admin.settings_set, "change settings")
    _on_off(p, "--byok", "users may bring their own keys")
    _on_off(p, "--personal-overrides", "users may set personal model overrides")
    _on_off(p, "--byok-spend-counts", "spend on users' own keys counts toward their limits (default off)")
    _on_off(p, "--unpriced-under-limit", "models without prices may be used while a limit applies (default on)")
    p.add_argument("--etag")

    g = b.group(top, "overrides", "admin model overrides per context (general, explore, title_generation)")
    b.command(g, "list", admin.overrides_list, "list admin overrides")
    p = b.command(g, "set", admin.overrides_set, "pin a context to a model")
    _complete(p.add_argument("context", help="general, explore or title_generation"),
              ["general", "explore", "title_generation"])
    p.add_argument("model")
    _complete(b.command(g, "clear", admin.overrides_clear, "remove an admin override").add_argument("context"),
              ["general", "explore", "title_generation"])

    g = b.group(top, "personal-overrides", "a user's own model overrides (root, general, explore)")
    _user(b.command(g, "list", admin.personal_list, "list a user's personal overrides"))
    p = b.command(g, "set", admin.personal_set, "pin a personal context to a model")
    _complete(p.add_argument("context", help="root, general or explore"), ["root", "general", "explore"])
    p.add_argument("model")
    _user(p)
    p = b.command(g, "clear", admin.personal_clear, "remove a personal override")
    _complete(p.add_argument("context"), ["root", "general", "explore"])
    _user(p)

    g = b.group(top, "keys", "users' own API keys (BYOK); keys are never shown")
    p = b.command(g, "set", admin.keys_set, "save your key for a provider, read from stdin or --api-key-file")
    p.add_argument("provider")
    _api_key_source(p, stdin_flag=False)
    _user(p)
    p = b.command(g, "delete", admin.keys_delete, "delete a saved key")
    p.add_argument("provider")
    _user(p)
    _user(b.command(g, "list", admin.keys_list, "list providers a user holds a key for"))
    _user(b.command(g, "status", admin.keys_status, "key status per enabled provider (resolver)"))

    g = b.group(top, "tokens", "API tokens")
    p = b.command(g, "create", admin.tokens_create, "mint a token; its secret is printed once")
    p.add_argument("--role", required=True, choices=("admin", "member", "service"))
    p.add_argument("--subject", required=True, help="the user for members; a service or operator name otherwise")
    p.add_argument("--description")
    b.command(g, "list", admin.tokens_list, "list tokens").add_argument("--include-revoked", action="store_true")
    b.command(g, "revoke", admin.tokens_revoke, "revoke a token now").add_argument("id")
    p = b.command(g, "introspect", admin.tokens_introspect, "check a token read from stdin (service role)")
    p.add_argument("--api-key-file", metavar="PATH", help="read the token from this file")

    g = b.group(top, "audit", "the audit log")
    p = b.command(g, "list", admin.audit_list, "list audit events, newest first")
    p.add_argument("--resource-prefix", help='e.g. "providers/"')
    p.add_argument("--limit", type=int, default=50, help="at most this many (0: all; default 50)")

    g = b.group(top, "resolve", "what the resolver decides for a user")
    p = b.command(g, "credential", runtime.resolve_credential, "which credential a user gets for a provider")
    p.add_argument("provider")
    _user(p)
    p = b.command(g, "models", runtime.resolve_models, "the models a user may pick, and the pre-selected one")
    p.add_argument("--last-used", metavar="MODEL", help="the client's last-used model")
    _user(p)
    p = b.command(g, "model", runtime.resolve_model, "which model a chat or subagent gets")
    _complete(p.add_argument("--context", default="root", help=f"{contexts} (default root)"), context_names)
    p.add_argument("--chat-model", metavar="MODEL", help="the chat's selected model")
    p.add_argument("--explain", action="store_true", help="print every layer considered")
    _user(p)

    p = b.command(top, "chat", runtime.chat, "send a message through the resolver")
    p.add_argument("message", help='the user message ("-" reads stdin)')
    p.add_argument("--system", help="a system message")
    _complete(p.add_argument("--context", default="root", help=f"{contexts} (default root)"), context_names)
    p.add_argument("--model", help="the chat's selected model")
    p.add_argument("--chat-id")
    p.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    _user(p)

    p = b.command(top, "probe", runtime.probe, "check a provider's URL and credentials against its /models")
    p.add_argument("provider")
    p.add_argument("--own-key", action="store_true", help="probe with your own key instead of the central one")
    _user(p)

    p = b.command(top, "health", runtime.health, "gRPC health of config_svc (or --resolver)")
    p.add_argument("--resolver", action="store_true", help="ask resolver_svc")
    p.add_argument("--service", help="a service name, e.g. modelplane.v1.ConfigService")
    p = b.command(top, "watch", runtime.watch, "stream configuration changes (service or admin)")
    p.add_argument("--after-revision", type=int, default=0)
    _user(b.command(top, "user-config", runtime.user_config, "a user's overrides and key providers as resolvers see them"))
    b.command(top, "status", status.status,
              "live resolvers of every config_svc replica: what each watches, applied and lags (admin)")
    _governance(b, top)

    p = top.add_parser("completion", help="print a shell completion script",
                       description=completion.HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=completion.SHELLS)
    p.set_defaults(handler=lambda s: s.print(completion.script(build_parser(), s.args.shell)), command_parser=p)
    return parser


def _access(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--access-user", action="append", metavar="USER",
                        help="only these users (and --access-group members) may use it; repeatable or a,b")
    parser.add_argument("--access-group", action="append", metavar="GROUP", help="see --access-user")


def _scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--default", action="store_true", help="the deployment default (every user)")
    parser.add_argument("--group", help="a group's limit (the highest of a user's groups applies)")
    parser.add_argument("--user", help="one user's own limit (beats groups and the default)")
    parser.add_argument("--period", required=True, choices=("day", "week", "month"), help="UTC day, ISO week or month")


def _governance(b: _Builder, top: Any) -> None:
    g = b.group(top, "groups", "groups of users, for model access lists and spend limits")
    b.command(g, "list", governance.groups_list, "list groups").add_argument("--member", help="only this user's")
    b.command(g, "get", governance.groups_get, "show a group and its members").add_argument("name")
    p = b.command(g, "create", governance.groups_create, "add a group")
    p.add_argument("name", help="lowercase kebab-case, immutable")
    p.add_argument("--display-name")
    p.add_argument("--description")
    p.add_argument("--member", action="append", metavar="USER", help="a member; repeatable or a,b")
    p = b.command(g, "update", governance.groups_update, "change a group's fields")
    p.add_argument("name")
    p.add_argument("--display-name")
    p.add_argument("--description")
    p.add_argument("--members", metavar="A,B", help="replace the member list (\"\" empties it)")
    p.add_argument("--etag")
    p = b.command(g, "delete", governance.groups_delete, "delete a group and its spend limits")
    p.add_argument("name")
    p.add_argument("--etag")
    p = b.command(g, "add-members", governance.groups_add, "add users to a group")
    p.add_argument("name")
    p.add_argument("users", nargs="+", metavar="USER")
    p = b.command(g, "remove-members", governance.groups_remove, "remove users from a group")
    p.add_argument("name")
    p.add_argument("users", nargs="+", metavar="USER")

    g = b.group(top, "limits", "spend limits per period: the default, groups' and users' own")
    b.command(g, "list", governance.limits_list, "list spend limits")
    p = b.command(g, "set", governance.limits_set, "set a limit (replacing the one in that scope and period)")
    _scope(p)
    p.add_argument("--usd", metavar="AMOUNT", help="the limit in USD, e.g. 12.50")
    p.add_argument("--micro-usd", type=int, metavar="N", help="the limit in micro-USD")
    p.add_argument("--unlimited", action="store_true", help="no limit (groups and users only)")
    p = b.command(g, "clear", governance.limits_clear, "remove a limit")
    _scope(p)

    p = b.command(top, "usage", governance.usage, "usage and cost over a time range (members: their own)")
    p.add_argument("action", nargs="?", choices=("summary", "record"), default="summary",
                   help="summary (default), or record: store records from --file or stdin (service role)")
    p.add_argument("--from", dest="since", metavar="WHEN", help="start: a date (UTC midnight) or ISO time")
    p.add_argument("--to", metavar="WHEN", help="end (exclusive); default now")
    p.add_argument("--days", type=int, help="the last N days (instead of --from); default: this month")
    p.add_argument("--by", default="user,model",
                   help="group by a comma list of user, model, provider, source, day (default user,model; "
                        "\"\" for totals only)")
    p.add_argument("--user", help="only this user (members: themselves; services: required)")
    p.add_argument("--model", help="only this model")
    p.add_argument("--provider", help="only this provider")
    p.add_argument("--file", help="usage record: a JSON array of UsageRecord objects (default stdin)")
