"""How the CLI decides on TLS: a token must never go out in plaintext because
MODELPLANE_TLS was spelled "on" or only MODELPLANE_TLS_SERVER_NAME was set."""

from __future__ import annotations

import io

import pytest

from modelplane import cli
from modelplane.cli import session
from modelplane.client import TLS

TLS_VARIABLES = ("MODELPLANE_TLS", "MODELPLANE_TLS_CA", "MODELPLANE_TLS_CERT", "MODELPLANE_TLS_KEY",
                 "MODELPLANE_TLS_SERVER_NAME", "MODELPLANE_TOKEN_FILE")


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TLS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELPLANE_TOKEN", "mp_test_token")


def _tls_of(*argv: str) -> TLS | None:
    args = cli.build_parser().parse_args([*argv, "settings", "get"])
    client = session._build_client(args)
    try:
        return client._tls
    finally:
        client.close()


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "YES", "on", "ON", "On", " on "])
def test_every_common_spelling_of_true_turns_tls_on(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MODELPLANE_TLS", value)
    assert _tls_of() == TLS()


@pytest.mark.parametrize("value", ["", "0", "false", "FALSE", "no", "No", "off", "OFF"])
def test_every_common_spelling_of_false_is_plaintext(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MODELPLANE_TLS", value)
    assert _tls_of() is None


@pytest.mark.parametrize("value", ["enabled", "2", "y", "tls", "maybe"])
def test_anything_else_is_a_usage_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MODELPLANE_TLS", value)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert cli.main(["settings", "get"]) == 2
    assert "MODELPLANE_TLS" in err.getvalue() and value in err.getvalue()


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("MODELPLANE_TLS_SERVER_NAME", "config.internal", TLS(server_name="config.internal")),
    ("MODELPLANE_TLS_CA", "/etc/ca.pem", TLS(root_certificates="/etc/ca.pem")),
])
def test_any_tls_setting_turns_tls_on(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                      expected: TLS) -> None:
    monkeypatch.setenv(variable, value)
    assert _tls_of() == expected


def test_a_client_certificate_turns_tls_on_even_when_tls_says_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_TLS", "off")
    monkeypatch.setenv("MODELPLANE_TLS_CERT", "/c.pem")
    monkeypatch.setenv("MODELPLANE_TLS_KEY", "/k.pem")
    assert _tls_of() == TLS(certificate_chain="/c.pem", private_key="/k.pem")


def test_flags_turn_tls_on() -> None:
    assert _tls_of("--tls") == TLS()
    assert _tls_of("--tls-server-name", "svc") == TLS(server_name="svc")
