"""Groups: create, read, update, delete, and their members.

Every write runs in the one write transaction (store.write), which also
serialises writers: a group cannot be deleted while a model's access list
naming it is being saved.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from modelplane_server.config_svc import patch
from modelplane_server.config_svc.store import Store, groups, limits, models
from modelplane_server.domain.access import MAX_GROUP_MEMBERS, Group
from modelplane_server.domain.errors import FailedPrecondition, InvalidArgument
from modelplane_server.domain.governance_validation import group_violations, members_violations
from modelplane_server.domain.validation import raise_if_any

GROUP_FIELDS = frozenset({"display_name", "description", "members"})


def _normal(g: Group) -> Group:
    return dataclasses.replace(g, members=tuple(sorted(g.members)))


async def create_group(store: Store, actor: str, g: Group) -> Group:
    raise_if_any(group_violations(g))
    async with store.write(actor, "CreateGroup", f"groups/{g.name}") as tx:
        created = await groups.insert(tx, _normal(g))
        tx.audit = _audit(created, ("name", *sorted(GROUP_FIELDS)))
        return created


def _audit(g: Group, fields: Sequence[str]) -> dict[str, Any]:
    """The audit change: the named fields as stored."""
    return {f: list(g.members) if f == "members" else getattr(g, f) for f in fields}


async def get_group(store: Store, name: str) -> Group:
    async with store.connection() as conn:
        return await groups.get(conn, name)


async def list_groups(store: Store, limit: int, after: str, member: str) -> list[Group]:
    async with store.connection() as conn:
        return await groups.list_page(conn, limit, after, member)


async def update_group(store: Store, actor: str, update: patch.Update[Group]) -> Group:
    async with store.write(actor, "UpdateGroup", f"groups/{update.name}") as tx:
        patch.check_etag(update.etag, await groups.lock(tx.conn, update.name), f"group {update.name!r}")
        current = await groups.get(tx.conn, update.name)
        changed = {p: getattr(update.given, p) for p in update.paths}
        updated = _normal(dataclasses.replace(current, **changed))
        raise_if_any(group_violations(updated))
        tx.audit = _audit(updated, update.paths)
        return await groups.update(tx, updated, replace_members="members" in update.paths)


async def delete_group(store: Store, actor: str, name: str, etag: str) -> None:
    async with store.write(actor, "DeleteGroup", f"groups/{name}") as tx:
        patch.check_etag(etag, await groups.lock(tx.conn, name), f"group {name!r}")
        in_use = await models.names_granting_group(tx.conn, name)
        if in_use:
            # Dropping the group from those lists could empty one, and an
            # empty list means everyone: refuse rather than widen access.
            raise FailedPrecondition(
                f"group {name!r} is named in the access list of {len(in_use)} model(s) "
                f"({', '.join(in_use[:5])}); remove it there first", reason="GROUP_IN_USE")
        await limits.delete_group_limits(tx, name)
        await groups.delete(tx, name)


async def add_members(store: Store, actor: str, name: str, users: Sequence[str]) -> Group:
    raise_if_any(members_violations(users))
    async with store.write(actor, "AddGroupMembers", f"groups/{name}", {"users": list(users)}) as tx:
        await groups.lock(tx.conn, name)
        group = await groups.add_members(tx, name, list(users))
        if len(group.members) > MAX_GROUP_MEMBERS:
            raise InvalidArgument.one("users", f"would give the group {len(group.members)} members; "
                                               f"at most {MAX_GROUP_MEMBERS} are allowed")
        return group


async def remove_members(store: Store, actor: str, name: str, users: Sequence[str]) -> Group:
    raise_if_any(members_violations(users))
    async with store.write(actor, "RemoveGroupMembers", f"groups/{name}", {"users": list(users)}) as tx:
        await groups.lock(tx.conn, name)
        return await groups.remove_members(tx, name, list(users))
