"""config-svc: serve, migrate, bootstrap-admin, create-token, import-token,
new-token, new-key, rotate-keys."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

import structlog

from modelplane_server.config_svc import db
from modelplane_server.config_svc.server import KeyringMismatch, build_server
from modelplane_server.config_svc.service.tokens import list_tokens, live_token
from modelplane_server.config_svc.settings import ConfigServiceSettings
from modelplane_server.config_svc.store import Store
from modelplane_server.runtime import crypto, logs, tokens
from modelplane_server.domain.types import ApiToken, Role
from modelplane_server.domain.errors import DomainError
from modelplane_server.runtime.env import Env, SettingsError, describe, render_help
from modelplane_server.runtime.tls import ListenError

log = structlog.get_logger("config_svc")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="config-svc", description="modelplane configuration service",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=render_help(describe(ConfigServiceSettings.from_env)))
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="apply migrations and serve gRPC (the default)")
    sub.add_parser("migrate", help="apply pending migrations and exit")
    boot = sub.add_parser("bootstrap-admin", help="mint an admin token and print it")
    boot.add_argument("--subject", default="admin", help="who the token is for (default: admin)")
    tok = sub.add_parser("create-token", help="mint a token and print it")
    tok.add_argument("--role", choices=[r.value for r in Role], required=True)
    tok.add_argument("--subject", required=True)
    tok.add_argument("--description", default="")
    imp = sub.add_parser("import-token", help="register a token generated elsewhere (idempotent), e.g. the "
                         "resolver's service token from a secrets file")
    imp.add_argument("--role", choices=[r.value for r in Role], required=True)
    imp.add_argument("--subject", required=True)
    imp.add_argument("--token-file", required=True, help="file holding the token (mp_<id>_<secret>)")
    sub.add_parser("new-token", help="print a fresh token without storing it (for import-token)")
    key = sub.add_parser("new-key", help="print a fresh keyring entry keyid:base64 (for "
                         "MODELPLANE_ENCRYPTION_KEYS); needs no database")
    key.add_argument("--id", dest="key_id", default=None,
                     help="key id (lowercase letters, digits and -); default: k<UTC date and time>")
    sub.add_parser("rotate-keys", help="re-encrypt every stored key with the primary key; print counts")
    return parser


async def _serve(settings: ConfigServiceSettings) -> None:
    srv = await build_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"config_svc listening on {settings.listen} (port {srv.port})", flush=True)
    await stop.wait()
    log.info("shutting down", grace_seconds=settings.shutdown_grace_seconds)
    await srv.stop(settings.shutdown_grace_seconds)
    log.info("stopped")


class CommandError(Exception):
    """A command cannot do what it was asked: message on stderr, exit code 2."""


def _read_token_file(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise CommandError(f"--token-file {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CommandError(f"--token-file {path}: not a text file") from None


async def _stored_token(store: Store, token_id: str) -> ApiToken | None:
    """The token with this id, revoked or not. Ids are fixed-length hex, so
    every id after the id's one-shorter prefix and up to it shares that
    prefix: at most 16 rows."""
    for token in await list_tokens(store, 16, token_id[:-1], include_revoked=True):
        if token.id == token_id:
            return token
    return None


async def _import_token(store: Store, token: str, role: Role, subject: str) -> str:
    """Register `token` (idempotent): present with the same secret, role and
    subject is fine; anything else under that id is refused."""
    try:
        token_id, secret = tokens.parse(token)
    except DomainError as exc:
        raise CommandError(f"--token-file: {exc}") from None
    live = await live_token(store, token_id)
    if live is not None:
        principal, stored_hash = live
        differences = [what for what, same in (
            ("secret", tokens.verify(secret, stored_hash)),
            (f"role (stored {principal.role.value}, given {role.value})", principal.role == role),
            (f"subject (stored {principal.subject!r}, given {subject!r})", principal.subject == subject),
        ) if not same]
        if differences:
            raise CommandError(f"token {token_id} is already registered with a different "
                               f"{', '.join(differences)}; refusing to change it. Generate a new token "
                               "(python -m config_svc new-token) or revoke the old one.")
        return f"token {token_id} already present"
    stored = await _stored_token(store, token_id)
    if stored is not None:
        raise CommandError(f"token {token_id} was revoked; a revoked token cannot be registered again. "
                           "Generate a new one (python -m config_svc new-token).")
    await store.create_token("system:import-token", token_id, role, subject, "imported",
                             tokens.hash_secret(secret))
    return f"imported token {token_id}"


async def _with_store(settings: ConfigServiceSettings, command: str, args: argparse.Namespace) -> int:
    pool = await db.create_pool(settings.database_url, max_size=2)
    try:
        async with pool.acquire() as conn:
            applied = await db.migrate(conn)
        if command == "migrate":
            print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
            return 0
        store = Store(pool, crypto.Keyring.parse(settings.encryption_keys))
        if command == "rotate-keys":
            counts = await store.rotate_keys("system:rotate-keys")
            print(f"re-encrypted providers={counts['providers']} user_keys={counts['user_keys']} "
                  f"already_current={counts['already_current']} primary={store.keyring.primary_key_id}")
            return 0
        if command == "import-token":
            print(await _import_token(store, _read_token_file(args.token_file), Role(args.role), args.subject))
            return 0
        role = Role.ADMIN if command == "bootstrap-admin" else Role(args.role)
        minted = tokens.mint()
        await store.create_token(f"system:{command}", minted.token_id, role, args.subject,
                                 getattr(args, "description", "") or f"created by {command}", minted.secret_hash)
        print(minted.token)
        return 0
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "new-token":
        print(tokens.mint().token)
        return 0
    if command == "new-key":
        key_id = args.key_id or time.strftime("k%Y%m%d%H%M%S", time.gmtime())
        try:
            print(crypto.generate_key_entry(key_id))
        except ValueError as exc:
            print(f"config-svc: --id: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        settings = ConfigServiceSettings.from_env(Env())
    except SettingsError as exc:
        print(f"config-svc: {exc}", file=sys.stderr)
        return 2
    # Commands other than serve print their result on stdout (a token, for
    # scripts such as `make run` to read): their log lines go to stderr.
    logs.configure_logging(settings.log_level, stream=None if command == "serve" else sys.stderr)
    try:
        if command == "serve":
            asyncio.run(_serve(settings))
            return 0
        return asyncio.run(_with_store(settings, command, args))
    except (KeyringMismatch, SettingsError, DomainError, CommandError, ListenError) as exc:
        print(f"config-svc: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
