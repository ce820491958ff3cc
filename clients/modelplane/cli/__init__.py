"""`modelplane`: the operator CLI over ModelplaneClient.

Addresses and token come from the environment (MODELPLANE_CONFIG_ADDR,
MODELPLANE_RESOLVER_ADDR, MODELPLANE_TOKEN or MODELPLANE_TOKEN_FILE, the
MODELPLANE_TLS_* variables); flags override them. The revisions of its
writes are kept in a state file (revisions.py), so a later resolver command
reads them. Output is aligned tables
by default and JSON with --json. Exit codes: 0 ok, 1 the server refused or
failed, 2 usage errors. API keys are read from stdin or a file, never from
the command line, and are never printed.

parser.py lists the commands; admin.py and runtime.py run them; session.py
builds the client and prints; render.py formats.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

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
        session.close()
    return 0


__all__ = ["build_parser", "main"]
