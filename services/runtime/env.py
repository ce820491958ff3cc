"""Reading settings from the environment, once, with messages that help.

A service's settings.py is a frozen dataclass with a `from_env(env)`
classmethod that calls the helpers below. Each helper records what it read in
`env.spec`, so the same code that reads the settings also documents them for
`--help` (see `describe`): the list cannot drift from what is actually read.

Secrets may come from a file instead (`FOO_FILE=/run/secrets/foo`), the
convention of Docker and Kubernetes secrets, so they need not sit in the
process environment. Error messages name the variable and, for secrets,
never echo the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

FILE_SUFFIX = "_FILE"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(Exception):
    """A setting is missing or malformed. The message names the variable and
    never contains a secret's value."""


@dataclass(frozen=True)
class EnvVar:
    """One variable a service reads, as shown by --help."""

    name: str
    default: str | None  # rendered for display; None: required
    description: str
    secret: bool = False


@dataclass
class Env:
    """The environment being read plus the record of what was read.

    describe_only: record the variables but never fail; missing values read as
    their type's zero. Used to render --help without a complete environment.
    """

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    describe_only: bool = False
    spec: list[EnvVar] = field(default_factory=list)

    def _record(self, var: EnvVar) -> None:
        if all(v.name != var.name for v in self.spec):
            self.spec.append(var)

    def raw(self, name: str) -> str | None:
        """The variable's text: from NAME, or from the file NAME_FILE names."""
        file_var = name + FILE_SUFFIX
        direct = self.environ.get(name)
        path = self.environ.get(file_var)
        if path is None:
            return direct
        if direct is not None:
            raise SettingsError(f"{name} and {file_var} are both set; set only one")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            # The path is not secret; the file's content would be.
            raise SettingsError(f"{file_var}: cannot read {path!r}: {e.strerror}") from None
        # Editors and `echo` add one trailing newline; more than that is content.
        if text.endswith("\r\n"):
            return text[:-2]
        if text.endswith("\n"):
            return text[:-1]
        return text


def _shown(value: str, secret: bool) -> str:
    return "(value hidden)" if secret else repr(value)


def env_str(
    env: Env,
    name: str,
    default: str | None = None,
    description: str = "",
    *,
    secret: bool = False,
) -> str:
    """A string setting; default None makes it required. Empty counts as unset."""
    env._record(EnvVar(name, default, description, secret))
    value = None if env.describe_only else env.raw(name)
    if value is None or value == "":
        if default is not None:
            return default
        if env.describe_only:
            return ""
        raise SettingsError(f"{name} is required: {description}" if description else f"{name} is required")
    return value


def env_int(
    env: Env,
    name: str,
    default: int | None = None,
    description: str = "",
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    secret: bool = False,
) -> int:
    text = env_str(env, name, None if default is None else str(default), description, secret=secret)
    if env.describe_only and text == "":
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {_shown(text, secret)}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {_shown(text, secret)}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {_shown(text, secret)}")
    return value


def env_float(
    env: Env,
    name: str,
    default: float | None = None,
    description: str = "",
    *,
    minimum: float | None = None,
) -> float:
    text = env_str(env, name, None if default is None else str(default), description)
    if env.describe_only and text == "":
        return 0.0
    try:
        value = float(text.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {text!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {text!r}")
    return value


def env_bool(env: Env, name: str, default: bool | None = None, description: str = "") -> bool:
    shown_default = None if default is None else ("true" if default else "false")
    text = env_str(env, name, shown_default, description).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or (env.describe_only and text == ""):
        return False
    raise SettingsError(f"{name} must be one of true/false/1/0/yes/no/on/off, got {text!r}")


def env_list(
    env: Env,
    name: str,
    default: list[str] | None = None,
    description: str = "",
    *,
    secret: bool = False,
) -> list[str]:
    """Comma-separated; items are stripped and empty items dropped."""
    shown_default = None if default is None else ",".join(default)
    text = env_str(env, name, shown_default, description, secret=secret)
    return [item.strip() for item in text.split(",") if item.strip()]


def describe(read: Callable[[Env], object]) -> list[EnvVar]:
    """The variables `read` (e.g. Settings.from_env) consults, for --help.

    Runs it against an empty, never-failing environment. If the settings'
    own validation rejects the zero values, the variables read up to that
    point are still returned: reading records before it validates.
    """
    env = Env(environ={}, describe_only=True)
    try:
        read(env)
    except (SettingsError, ValueError):
        pass
    return env.spec


def render_help(spec: list[EnvVar]) -> str:
    """One paragraph per variable: name, default or (required), description."""
    lines = ["Environment variables:"]
    for var in spec:
        if var.default is None:
            default = "(required)"
        elif var.secret and var.default:
            default = "(default: hidden)"
        else:
            default = f"(default: {var.default!r})"
        if var.secret:
            default += f" secret; may also be read from the file named by {var.name}{FILE_SUFFIX}"
        lines.append(f"  {var.name} {default}")
        if var.description:
            lines.append(f"      {var.description}")
    return "\n".join(lines)
