"""The resolver's ambient AWS check and the cloud metadata address. With
AWS_EC2_METADATA_DISABLED=true (what `make run` sets unless the operator
does) botocore's credential chain opens no connection at all; without it the
chain asks 169.254.169.254. No packet leaves here: every socket connect is
recorded and refused."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from modelplane_server.resolver_svc.state import ambient


@pytest.fixture
def nothing_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    attempts: list[Any] = []

    def refuse(_sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise ConnectionRefusedError("tests do not leave the machine")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.mark.usefixtures("nothing_configured")
def test_with_the_metadata_address_disabled_the_check_connects_nowhere(
        monkeypatch: pytest.MonkeyPatch, connects: list[Any]) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert ambient.ambient_aws() == ambient.NONE
    assert connects == []


@pytest.mark.usefixtures("nothing_configured")
def test_without_the_setting_the_chain_asks_the_metadata_address(connects: list[Any]) -> None:
    assert ambient.ambient_aws().credentials is False
    assert "169.254.169.254" in {address[0] for address in connects}


@pytest.mark.usefixtures("nothing_configured")
def test_credentials_in_the_environment_still_count(monkeypatch: pytest.MonkeyPatch,
                                                     connects: list[Any]) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret-not-real")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert ambient.ambient_aws() == ambient.AmbientAws(credentials=True, region="eu-west-1")
    assert connects == []
