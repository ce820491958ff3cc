"""External-services mode: the smoke suite in this folder runs against
services that are already running (compose's `tests` profile, CI's process
stack, a staging deployment), named by the environment:

  MODELPLANE_TEST_CONFIG_ADDR       host:port of config_svc
  MODELPLANE_TEST_RESOLVER_ADDR     host:port of resolver_svc
  MODELPLANE_TEST_ADMIN_TOKEN_FILE  file holding an admin token
                                    (or MODELPLANE_TEST_ADMIN_TOKEN)

Without them the suite is skipped. It only adds resources with unique names
and deletes them again, so it is safe against a shared deployment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

CONFIG_ADDR = "MODELPLANE_TEST_CONFIG_ADDR"
RESOLVER_ADDR = "MODELPLANE_TEST_RESOLVER_ADDR"
ADMIN_TOKEN = "MODELPLANE_TEST_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "MODELPLANE_TEST_ADMIN_TOKEN_FILE"


@dataclass(frozen=True)
class Target:
    config_address: str
    resolver_address: str
    admin_token: str


def target_from_env(environ: Mapping[str, str] = os.environ) -> Target | None:
    """The services to test, or None when the environment names none."""
    config, resolver = environ.get(CONFIG_ADDR), environ.get(RESOLVER_ADDR)
    if not config or not resolver:
        return None
    token = environ.get(ADMIN_TOKEN)
    if not token and environ.get(ADMIN_TOKEN_FILE):
        token = Path(environ[ADMIN_TOKEN_FILE]).read_text().strip()
    if not token:
        raise RuntimeError(f"{CONFIG_ADDR} is set but neither {ADMIN_TOKEN} nor {ADMIN_TOKEN_FILE} is")
    return Target(config, resolver, token)
