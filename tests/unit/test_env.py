from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from modelplane_server.runtime.env import (
    Env,
    SettingsError,
    describe,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    render_help,
)

SECRET = "s3cr3t-canary-value"


@dataclass(frozen=True)
class DemoSettings:
    listen: str
    database_url: str
    pool_size: int
    debug: bool
    origins: list[str]
    timeout_s: float

    @classmethod
    def from_env(cls, env: Env) -> DemoSettings:
        settings = cls(
            listen=env_str(env, "DEMO_LISTEN", "127.0.0.1:50051", "host:port to serve gRPC on"),
            database_url=env_str(env, "DEMO_DATABASE_URL", None, "Postgres DSN", secret=True),
            pool_size=env_int(env, "DEMO_POOL_SIZE", 10, "connections", minimum=1),
            debug=env_bool(env, "DEMO_DEBUG", False, "verbose logs"),
            origins=env_list(env, "DEMO_ORIGINS", [], "own addresses"),
            timeout_s=env_float(env, "DEMO_TIMEOUT_S", 30.0, "upstream timeout", minimum=0),
        )
        if settings.pool_size > 100:
            raise SettingsError("DEMO_POOL_SIZE must be at most 100")
        return settings


def test_reads_values_and_defaults() -> None:
    settings = DemoSettings.from_env(
        Env({"DEMO_DATABASE_URL": "postgres://x", "DEMO_DEBUG": "Yes", "DEMO_ORIGINS": " a:1, ,b:2 ,"})
    )
    assert settings == DemoSettings("127.0.0.1:50051", "postgres://x", 10, True, ["a:1", "b:2"], 30.0)


def test_required_missing_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="DEMO_DATABASE_URL is required: Postgres DSN"):
        DemoSettings.from_env(Env({}))
    with pytest.raises(SettingsError, match="DEMO_DATABASE_URL is required"):
        DemoSettings.from_env(Env({"DEMO_DATABASE_URL": ""}))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DEMO_POOL_SIZE": "ten"}, "DEMO_POOL_SIZE must be an integer, got 'ten'"),
        ({"DEMO_POOL_SIZE": "0"}, "DEMO_POOL_SIZE must be at least 1"),
        ({"DEMO_DEBUG": "maybe"}, "DEMO_DEBUG must be one of true/false"),
        ({"DEMO_TIMEOUT_S": "soon"}, "DEMO_TIMEOUT_S must be a number"),
        ({"DEMO_TIMEOUT_S": "-1"}, "DEMO_TIMEOUT_S must be at least 0"),
    ],
)
def test_malformed_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        DemoSettings.from_env(Env({"DEMO_DATABASE_URL": "postgres://x", **environ}))


def test_bool_spellings() -> None:
    for text, value in [("1", True), ("on", True), ("TRUE", True), ("0", False), ("off", False), ("No", False)]:
        assert env_bool(Env({"B": text}), "B", False) is value
    assert env_bool(Env({}), "B", True) is True


def test_int_bounds() -> None:
    assert env_int(Env({"N": " 5 "}), "N", maximum=5) == 5
    with pytest.raises(SettingsError, match="at most 5"):
        env_int(Env({"N": "6"}), "N", maximum=5)


def test_secret_values_are_never_echoed() -> None:
    with pytest.raises(SettingsError) as failed:
        env_int(Env({"PIN": SECRET}), "PIN", secret=True)
    assert "PIN must be an integer" in str(failed.value)
    assert SECRET not in str(failed.value)


def test_file_variant(tmp_path: Path) -> None:
    path = tmp_path / "dsn"
    path.write_text("postgres://from-file\n")
    env = Env({"DEMO_DATABASE_URL_FILE": str(path)})
    assert DemoSettings.from_env(env).database_url == "postgres://from-file"


def test_file_variant_strips_exactly_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "v"
    path.write_text("value\n\n")
    assert env_str(Env({"V_FILE": str(path)}), "V") == "value\n"
    path.write_bytes(b"value\r\n")
    assert env_str(Env({"V_FILE": str(path)}), "V") == "value"
    path.write_text("value")
    assert env_str(Env({"V_FILE": str(path)}), "V") == "value"


def test_file_and_value_both_set_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "v"
    path.write_text(SECRET)
    with pytest.raises(SettingsError, match="V and V_FILE are both set") as failed:
        env_str(Env({"V": SECRET, "V_FILE": str(path)}), "V", secret=True)
    assert SECRET not in str(failed.value)


def test_unreadable_file_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(SettingsError, match=r"V_FILE: cannot read .*absent.*No such file"):
        env_str(Env({"V_FILE": str(missing)}), "V", secret=True)


def test_describe_lists_every_variable_without_an_environment() -> None:
    spec = describe(DemoSettings.from_env)
    assert [v.name for v in spec] == [
        "DEMO_LISTEN",
        "DEMO_DATABASE_URL",
        "DEMO_POOL_SIZE",
        "DEMO_DEBUG",
        "DEMO_ORIGINS",
        "DEMO_TIMEOUT_S",
    ]
    dsn = spec[1]
    assert (dsn.default, dsn.secret, dsn.description) == (None, True, "Postgres DSN")
    assert spec[2].default == "10"
    assert spec[3].default == "false"


def test_describe_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_POOL_SIZE", "not a number")
    assert len(describe(DemoSettings.from_env)) == 6


def test_render_help() -> None:
    text = render_help(describe(DemoSettings.from_env))
    assert "DEMO_DATABASE_URL (required) secret; may also be read from the file named by DEMO_DATABASE_URL_FILE" in text
    assert "DEMO_LISTEN (default: '127.0.0.1:50051')" in text
    assert "      host:port to serve gRPC on" in text


def test_secret_defaults_are_hidden_in_help() -> None:
    spec = describe(lambda env: env_str(env, "TOKEN", SECRET, "dev token", secret=True))
    assert SECRET not in render_help(spec)


def test_default_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_TEST_ENV_VALUE", "42")
    assert env_int(Env(), "MODELPLANE_TEST_ENV_VALUE") == 42
