"""Groups and per-model access lists: who may use which model.

A model's access list names users and groups; an empty list (neither)
means everyone. Pure: plain data in, answers out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from modelplane_server.domain.errors import FieldViolation

MAX_ACCESS_USERS = 1000
MAX_ACCESS_GROUPS = 100
MAX_GROUP_MEMBERS = 10_000
MAX_MEMBERS_PER_CALL = 1000
MAX_DESCRIPTION_LENGTH = 1000

NO_GROUPS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ModelAccess:
    """Who may use a model: these users and the members of these groups."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def open(self) -> bool:
        """Nobody is named: everyone may use the model."""
        return not self.users and not self.groups


OPEN = ModelAccess()


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    display_name: str = ""
    description: str = ""
    members: tuple[str, ...] = ()  # sorted, unique
    version: int = 1
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None

    @property
    def etag(self) -> str:
        return str(self.version)


class _HasAccess(Protocol):
    @property
    def access(self) -> ModelAccess: ...


def may_use(access: ModelAccess, user: str, user_groups: frozenset[str]) -> bool:
    """Whether `user` (a member of `user_groups`) may use a model with `access`."""
    if access.open or user in access.users:
        return True
    return not user_groups.isdisjoint(access.groups)


def named_users(models: Iterable[_HasAccess]) -> frozenset[str]:
    """Every user the models' access lists name."""
    return frozenset(user for m in models for user in m.access.users)


def memberships(groups: Iterable[Group]) -> Mapping[str, frozenset[str]]:
    """user -> the names of the groups they belong to (users in no group are absent)."""
    found: dict[str, set[str]] = {}
    for g in groups:
        for user in g.members:
            found.setdefault(user, set()).add(g.name)
    return {user: frozenset(names) for user, names in found.items()}


def duplicate_violations(values: Iterable[str], field: str) -> list[FieldViolation]:
    """One violation per value given a second time, naming its position."""
    seen: set[str] = set()
    found = []
    for i, value in enumerate(values):
        if value in seen:
            found.append(FieldViolation(f"{field}[{i}]", f"duplicates {value!r}"))
        seen.add(value)
    return found
