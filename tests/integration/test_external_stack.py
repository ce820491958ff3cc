"""CI's stand-in for `docker compose --profile tests up`: the compose
services run as local processes with compose's own commands and
environment (tests/external/stack.py), the secrets are made by
scripts/compose-secrets as docs/operations.md says (only the database URL
is then pointed at the test's database), and the external smoke suite runs
against them as a separate pytest process. Stopping the stack checks that
every service exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.external import ADMIN_TOKEN_FILE, CONFIG_ADDR, RESOLVER_ADDR
from tests.external.stack import ROOT, ProcessStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _make_secrets(folder: Path, database_url: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "compose-secrets"), str(folder)], check=True, capture_output=True,
                   env={**{k: v for k, v in os.environ.items() if not k.startswith("MODELPLANE_")},
                        "PYTHON": sys.executable}, timeout=60)
    (folder / "database-url").write_text(database_url + "\n")


def _bring_up(stack: ProcessStack, database_url: str) -> None:
    _make_secrets(stack.secrets_dir, database_url)
    for one_shot in ("migrate", "register-resolver-token", "register-test-admin"):
        stack.run_once(one_shot)
    stack.start("config-svc")
    stack.start("resolver-svc")


async def test_smoke_suite_passes_against_the_compose_commands(database_url: str, tmp_path: Path) -> None:
    stack = ProcessStack(tmp_path)
    try:
        await asyncio.to_thread(_bring_up, stack, database_url)
        env = {**os.environ, CONFIG_ADDR: stack.address("config-svc", 50051),
               RESOLVER_ADDR: stack.address("resolver-svc", 50052),
               ADMIN_TOKEN_FILE: str(tmp_path / "admin-token")}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/external", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await process.communicate()
        report = out.decode()
        assert process.returncode == 0, report
        assert "3 passed" in report, report
    finally:
        codes = await asyncio.to_thread(stack.stop)
    assert codes == {"resolver-svc": 0, "config-svc": 0}, {name: stack.log(name) for name in codes}
