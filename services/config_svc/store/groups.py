"""Groups and their members."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import asyncpg

from modelplane_server.config_svc.store.tx import WriteTx
from modelplane_server.domain.access import Group
from modelplane_server.domain.errors import AlreadyExists, NotFound

# Members ride along as a sorted array; the groups table is small and a
# group's members are read whole (the snapshot, Get, List).
SELECT = ("SELECT g.*, COALESCE((SELECT array_agg(m.user_name ORDER BY m.user_name) FROM group_members m "
          "WHERE m.group_name = g.name), '{}') AS members FROM groups g")
GET = SELECT + " WHERE g.name = $1"
LOCK = "SELECT version FROM groups WHERE name = $1 FOR UPDATE"
ALL = SELECT + " ORDER BY g.name"
LIST_PAGE = (SELECT + " WHERE g.name > $1 AND ($2 = '' OR EXISTS (SELECT 1 FROM group_members x "
             "WHERE x.group_name = g.name AND x.user_name = $2)) ORDER BY g.name LIMIT $3")
EXISTING = "SELECT name FROM groups WHERE name = ANY($1::text[])"
INSERT = "INSERT INTO groups (name, display_name, description) VALUES ($1, $2, $3)"
UPDATE = ("UPDATE groups SET display_name = $2, description = $3, version = version + 1, update_time = now() "
          "WHERE name = $1")
TOUCH = "UPDATE groups SET version = version + 1, update_time = now() WHERE name = $1"
DELETE = "DELETE FROM groups WHERE name = $1"
ADD_MEMBERS = ("INSERT INTO group_members (group_name, user_name) SELECT $1, u FROM unnest($2::text[]) AS u "
               "ON CONFLICT DO NOTHING")
REMOVE_MEMBERS = "DELETE FROM group_members WHERE group_name = $1 AND user_name = ANY($2::text[])"
CLEAR_MEMBERS = "DELETE FROM group_members WHERE group_name = $1"
COUNT_MEMBERS = "SELECT count(*) FROM group_members WHERE group_name = $1"


def from_row(r: Mapping[str, Any]) -> Group:
    return Group(name=r["name"], display_name=r["display_name"], description=r["description"],
                 members=tuple(r["members"]), version=r["version"], create_time=r["create_time"],
                 update_time=r["update_time"])


def _not_found(name: str) -> NotFound:
    return NotFound(f"group {name!r} not found", reason="GROUP_NOT_FOUND")


async def find(conn: asyncpg.Connection, name: str) -> Group | None:
    row = await conn.fetchrow(GET, name)
    return from_row(row) if row else None


async def get(conn: asyncpg.Connection, name: str) -> Group:
    found = await find(conn, name)
    if found is None:
        raise _not_found(name)
    return found


async def lock(conn: asyncpg.Connection, name: str) -> int:
    """Hold the group's row until commit, to change it or its members; its version."""
    version = await conn.fetchval(LOCK, name)
    if version is None:
        raise _not_found(name)
    return int(version)


async def list_all(conn: asyncpg.Connection) -> list[Group]:
    return [from_row(r) for r in await conn.fetch(ALL)]


async def list_page(conn: asyncpg.Connection, limit: int, after: str, member: str) -> list[Group]:
    return [from_row(r) for r in await conn.fetch(LIST_PAGE, after, member, limit)]


async def missing(conn: asyncpg.Connection, names: Iterable[str]) -> list[str]:
    """Which of `names` are not groups, in the given order."""
    wanted = list(dict.fromkeys(names))
    found = {r["name"] for r in await conn.fetch(EXISTING, wanted)}
    return [n for n in wanted if n not in found]


async def member_count(conn: asyncpg.Connection, name: str) -> int:
    return int(await conn.fetchval(COUNT_MEMBERS, name))


async def insert(tx: WriteTx, g: Group) -> Group:
    try:
        await tx.conn.execute(INSERT, g.name, g.display_name, g.description)
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(f"a group named {g.name!r} already exists", reason="GROUP_EXISTS") from None
    await tx.conn.execute(ADD_MEMBERS, g.name, list(g.members))
    tx.changed("group", name=g.name)
    return await get(tx.conn, g.name)


async def update(tx: WriteTx, g: Group, *, replace_members: bool) -> Group:
    await tx.conn.execute(UPDATE, g.name, g.display_name, g.description)
    if replace_members:
        await tx.conn.execute(CLEAR_MEMBERS, g.name)
        await tx.conn.execute(ADD_MEMBERS, g.name, list(g.members))
    tx.changed("group", name=g.name)
    return await get(tx.conn, g.name)


async def add_members(tx: WriteTx, name: str, users: list[str]) -> Group:
    await tx.conn.execute(ADD_MEMBERS, name, users)
    await tx.conn.execute(TOUCH, name)
    tx.changed("group", name=name)
    return await get(tx.conn, name)


async def remove_members(tx: WriteTx, name: str, users: list[str]) -> Group:
    await tx.conn.execute(REMOVE_MEMBERS, name, users)
    await tx.conn.execute(TOUCH, name)
    tx.changed("group", name=name)
    return await get(tx.conn, name)


async def delete(tx: WriteTx, name: str) -> None:
    await tx.conn.execute(DELETE, name)
    tx.changed("group", name=name)
