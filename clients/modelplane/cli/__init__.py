"""`modelplane`: the operator CLI over ModelplaneClient.

Addresses and token come from the environment (MODELPLANE_CONFIG_ADDR,
MODELPLANE_RESOLVER_ADDR, MODELPLANE_TOKEN or MODELPLANE_TOKEN_FILE, the
MODELPLANE_TLS_* variables); flags override them. The revisions of its
writes are kept in a state file (revisions.py), so a later resolver command
reads them. Output is aligned tables by default (coloured on a terminal
unless NO_COLOR is set), JSON with -o json (or --json) and YAML with -o yaml.
Exit codes: 0 ok, 1 the server refused or failed, 2 usage errors. API keys
are read from stdin or a file, never from the command line, and are never
printed.

parser.py lists the commands; admin.py and runtime.py run them; session.py
builds the client and prints; render.py, yamlout.py and style.py format;
completion.py writes shell completion scripts from the parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from modelplane import calls
from modelplane.cli import render
from modelplane.cli.parser import build_parser
from modelplane.cli.session import Session, UsageError
from modelplane.errors import ModelplaneError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    session = Session(args)
    try:
        args.handler(session)
    except ModelplaneError as err:
        session.note(render.error(err, session.err_style, lambda field: flag_for(args, field)))
        return 1
    except (UsageError, ValueError) as err:
        session.note(f"{session.err_style.red('error:')} {err}")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, without a second
        # error when the interpreter flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        session.close()
    return 0


def flag_for(args: argparse.Namespace, field: str) -> str | None:
    """How this command sets a field the server named: provider.base_url ->
    --base-url, model.openai.reasoning_effort -> --set openai.reasoning_effort=...,
    provider.name -> the NAME argument; None when it has no way."""
    command: argparse.ArgumentParser | None = getattr(args, "command_parser", None)
    if command is None:
        return None
    parts = field.split(".")
    options = {o for action in command._actions for o in action.option_strings}
    if len(parts) >= 3 and parts[-2] in ("options", "pricing", *calls.OPTION_FAMILIES) and "--set" in options:
        return f"--set {parts[-2]}.{parts[-1]}=..."
    name = parts[-1]
    for candidate in (name, name.removesuffix("_enabled"), name.removeprefix("allow_")):
        flag = "--" + candidate.replace("_", "-")
        if flag in options:
            return flag
    for action in command._actions:
        if not action.option_strings and action.dest == name:
            return f"the {name.upper()} argument"
    return None


__all__ = ["build_parser", "main"]
