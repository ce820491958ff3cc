"""docker-compose.yml's services as plain local processes: the same
commands and environment compose would use, with container details mapped
to this machine (service host names and 0.0.0.0 to 127.0.0.1, fixed ports to
free ones, /run/secrets/NAME to files in a folder). CI has no Docker engine;
this is how it runs exactly what compose runs.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRETS_PREFIX = "/run/secrets/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ProcessStack:
    secrets_dir: Path
    compose_file: Path = ROOT / "docker-compose.yml"
    ports: dict[str, str] = field(default_factory=dict)
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs_dir: Path | None = None

    def __post_init__(self) -> None:
        self.services: dict[str, Any] = yaml.safe_load(self.compose_file.read_text())["services"]
        self.hosts = set(self.services) | {"0.0.0.0"}
        self.logs_dir = self.logs_dir or self.secrets_dir

    def localise(self, value: str) -> str:
        """One compose value as it must read on this machine."""
        if value.startswith(SECRETS_PREFIX):
            return str(self.secrets_dir / value.removeprefix(SECRETS_PREFIX))

        def address(match: re.Match[str]) -> str:
            port = self.ports.setdefault(match.group(2), str(_free_port()))
            return f"127.0.0.1:{port}"

        host = "|".join(re.escape(h) for h in sorted(self.hosts, key=len, reverse=True))
        return re.sub(rf"\b({host}|127\.0\.0\.1):(\d+)\b", address, value)

    def environment(self, name: str) -> dict[str, str]:
        env = self.services[name].get("environment") or {}
        return {str(k): self.localise(str(v)) for k, v in env.items()}

    def argv(self, name: str) -> list[str]:
        # The image's ENTRYPOINT is ["python", "-m"].
        return [sys.executable, "-m", *(self.localise(str(a)) for a in self.services[name]["command"])]

    def _env(self, name: str, extra: Mapping[str, str]) -> dict[str, str]:
        return {**os.environ, **self.environment(name), **extra}

    def run_once(self, name: str, extra: Mapping[str, str] = {}) -> str:
        result = subprocess.run(self.argv(name), env=self._env(name, extra), capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{name} exited {result.returncode}: {result.stderr}")
        return result.stdout

    def start(self, name: str, extra: Mapping[str, str] = {}, *, healthy_within: float = 60) -> None:
        assert self.logs_dir is not None
        log = open(self.logs_dir / f"{name}.log", "wb")
        self.running[name] = subprocess.Popen(self.argv(name), env=self._env(name, extra), stdout=log,
                                              stderr=subprocess.STDOUT)
        log.close()
        self.wait_healthy(name, healthy_within)

    def wait_healthy(self, name: str, within: float) -> None:
        probe = [sys.executable, *(self.localise(str(a)) for a in self.services[name]["healthcheck"]["test"][2:])]
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.running[name].poll() is not None:
                raise RuntimeError(f"{name} exited {self.running[name].returncode}: {self.log(name)}")
            if subprocess.run(probe, capture_output=True, env={**os.environ, **self.environment(name)}).returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{name} not healthy within {within}s: {self.log(name)}")

    def log(self, name: str) -> str:
        assert self.logs_dir is not None
        path = self.logs_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def address(self, name: str, container_port: int) -> str:
        return self.localise(f"{name}:{container_port}")

    def stop(self) -> dict[str, int]:
        """SIGTERM to every service, newest first, as `docker compose stop` does."""
        codes: dict[str, int] = {}
        for name, process in reversed(list(self.running.items())):
            process.terminate()
            try:
                codes[name] = process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self.running.clear()
        return codes
