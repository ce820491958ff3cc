"""Read your writes across CLI invocations.

Each `modelplane` command is its own process, so the client's memory of the
revisions it wrote (ModelplaneClient.revision) would end with it. The CLI
keeps the highest revision written through each config_svc address in a
small state file, and resolver commands (resolve, keys status, chat, probe)
send it as min_revision: `modelplane models create ...` followed by
`modelplane resolve model` sees the new model on any resolver replica.

The file is MODELPLANE_STATE_FILE ("off" turns this off), else
$XDG_STATE_HOME/modelplane/revisions.json, else
~/.local/state/modelplane/revisions.json. An entry is used for
REMEMBER_SECONDS after its write: read-your-writes is about the next few
commands, and a database restored to an older revision must not make every
later command wait for a revision it will not reach soon.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

REMEMBER_SECONDS = 600.0
_OFF = ("off", "none", "0", "false", "no")


def state_file() -> Path | None:
    chosen = os.environ.get("MODELPLANE_STATE_FILE", "").strip()
    if chosen.lower() in _OFF:
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "modelplane" / "revisions.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: remembering is best effort
    return data if isinstance(data, dict) else {}


def remembered(config_address: str, *, now: float | None = None) -> int:
    """The highest revision written through `config_address` lately (0: none)."""
    path = state_file()
    if path is None:
        return 0
    entry = _read(path).get(config_address)
    if not isinstance(entry, dict):
        return 0
    revision, written = entry.get("revision"), entry.get("time")
    if not isinstance(revision, int) or not isinstance(written, (int, float)):
        return 0
    if (time.time() if now is None else now) - written > REMEMBER_SECONDS:
        return 0
    return max(0, revision)


def remember(config_address: str, revision: int) -> None:
    """Record a write's revision (keeping a higher one another command
    recorded). Written to a temporary file and renamed over, so a reader
    never sees half a file."""
    path = state_file()
    if path is None or revision <= 0:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read(path)
        kept = remembered(config_address)
        data[config_address] = {"revision": max(revision, kept), "time": time.time()}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".revisions-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home must not fail the command that already succeeded
