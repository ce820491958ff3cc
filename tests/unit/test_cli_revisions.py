"""The CLI's memory of the revisions it wrote, between invocations."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from modelplane.cli import revisions


def test_a_write_is_remembered_per_config_address_and_only_upwards(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_STATE_FILE", str(tmp_path / "state.json"))
    assert revisions.remembered("cfg-a:50051") == 0
    revisions.remember("cfg-a:50051", 41)
    revisions.remember("cfg-b:50051", 7)
    revisions.remember("cfg-a:50051", 30)  # another command's older write: the higher stays
    assert revisions.remembered("cfg-a:50051") == 41
    assert revisions.remembered("cfg-b:50051") == 7


def test_an_old_entry_is_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_STATE_FILE", str(tmp_path / "state.json"))
    revisions.remember("cfg:1", 9)
    later = time.time() + revisions.REMEMBER_SECONDS + 1
    assert revisions.remembered("cfg:1", now=later) == 0
    assert revisions.remembered("cfg:1") == 9


def test_the_default_file_is_under_the_xdg_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    revisions.remember("cfg:1", 3)
    assert json.loads((tmp_path / "modelplane" / "revisions.json").read_text())["cfg:1"]["revision"] == 3


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"cfg:1": {"revision": "9", "time": 1}}',
                                     '{"cfg:1": 5}'])
def test_a_damaged_file_is_no_memory_and_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    monkeypatch.setenv("MODELPLANE_STATE_FILE", str(path))
    assert revisions.remembered("cfg:1") == 0
    revisions.remember("cfg:1", 4)
    assert revisions.remembered("cfg:1") == 4


def test_off_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_STATE_FILE", "off")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    revisions.remember("cfg:1", 4)
    assert revisions.remembered("cfg:1") == 0
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_place_does_not_fail_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MODELPLANE_STATE_FILE", str(blocker / "state.json"))  # its folder is a file
    revisions.remember("cfg:1", 4)
    assert revisions.remembered("cfg:1") == 0
