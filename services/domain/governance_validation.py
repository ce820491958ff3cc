"""Input rules for groups, model access lists and spend limits: plain data
in, field violations out (modelplane_server.domain.validation's conventions:
every problem at once, named by the request field path)."""

from __future__ import annotations

from collections.abc import Sequence

from modelplane_server.domain.access import (
    MAX_ACCESS_GROUPS,
    MAX_ACCESS_USERS,
    MAX_DESCRIPTION_LENGTH,
    MAX_GROUP_MEMBERS,
    MAX_MEMBERS_PER_CALL,
    Group,
    ModelAccess,
    duplicate_violations,
)
from modelplane_server.domain.errors import FieldViolation
from modelplane_server.domain.spend import Scope, SpendLimit
from modelplane_server.domain.text import has_control_chars
from modelplane_server.domain.validation import (
    MAX_DISPLAY_NAME_LENGTH,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    user_violations,
)

# Far above any real budget (a trillion USD), and far below bigint overflow when summed.
MAX_LIMIT_MICRO_USD = 10**18


def group_name_violations(name: str, field: str) -> list[FieldViolation]:
    if not name:
        return [FieldViolation(field, "is required")]
    found = []
    if len(name) > MAX_NAME_LENGTH:
        found.append(FieldViolation(field, f"must be at most {MAX_NAME_LENGTH} characters, got {len(name)}"))
    if not NAME_PATTERN.fullmatch(name):
        found.append(FieldViolation(
            field, "must be lowercase kebab-case: a-z and 0-9 in groups joined by single hyphens"))
    return found


def users_violations(users: Sequence[str], field: str, max_count: int, *, required: bool = False
                     ) -> list[FieldViolation]:
    """A list of user names: bounded, each well-formed, none twice."""
    if required and not users:
        return [FieldViolation(field, "is required: at least one user")]
    if len(users) > max_count:
        return [FieldViolation(field, f"must have at most {max_count} entries, got {len(users)}")]
    found = []
    for i, user in enumerate(users):
        found += user_violations(user, f"{field}[{i}]")
    return found + duplicate_violations(users, field)


def _text_violations(value: str, field: str, max_length: int) -> list[FieldViolation]:
    if len(value) > max_length:
        return [FieldViolation(field, f"must be at most {max_length} characters, got {len(value)}")]
    if has_control_chars(value):
        return [FieldViolation(field, "must not contain control characters")]
    return []


def group_violations(g: Group, field_prefix: str = "group.") -> list[FieldViolation]:
    found = group_name_violations(g.name, field_prefix + "name")
    found += _text_violations(g.display_name, field_prefix + "display_name", MAX_DISPLAY_NAME_LENGTH)
    found += _text_violations(g.description, field_prefix + "description", MAX_DESCRIPTION_LENGTH)
    found += users_violations(g.members, field_prefix + "members", MAX_GROUP_MEMBERS)
    return found


def access_violations(a: ModelAccess, field_prefix: str = "model.access.") -> list[FieldViolation]:
    """Well-formed users and group names; whether the groups exist is the
    service's to check (NOT_FOUND GROUP_NOT_FOUND)."""
    found = users_violations(a.users, field_prefix + "users", MAX_ACCESS_USERS)
    if len(a.groups) > MAX_ACCESS_GROUPS:
        return found + [FieldViolation(field_prefix + "groups",
                                       f"must have at most {MAX_ACCESS_GROUPS} entries, got {len(a.groups)}")]
    for i, name in enumerate(a.groups):
        found += group_name_violations(name, f"{field_prefix}groups[{i}]")
    return found + duplicate_violations(a.groups, field_prefix + "groups")


def members_violations(users: Sequence[str], field: str = "users") -> list[FieldViolation]:
    return users_violations(users, field, MAX_MEMBERS_PER_CALL, required=True)


def limit_violations(lim: SpendLimit, field_prefix: str = "limit.") -> list[FieldViolation]:
    found: list[FieldViolation] = []
    if lim.scope is Scope.GROUP:
        found += group_name_violations(lim.subject, field_prefix + "group")
    elif lim.scope is Scope.USER:
        found += user_violations(lim.subject, field_prefix + "user")
    amount = lim.limit_micro_usd
    if amount is None:
        if lim.scope is Scope.DEFAULT:
            found.append(FieldViolation(field_prefix + "unlimited",
                                        "applies only to group and user limits; clear the default instead"))
    elif not 0 <= amount <= MAX_LIMIT_MICRO_USD:
        found.append(FieldViolation(field_prefix + "limit_micro_usd", f"must be between 0 and {MAX_LIMIT_MICRO_USD}"))
    return found
