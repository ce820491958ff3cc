"""The audit log."""

from __future__ import annotations

from modelplane_server.config_svc.store import Store, audit
from modelplane_server.domain.types import AuditEvent


async def list_audit_events(store: Store, limit: int, before_id: int, resource_prefix: str) -> list[AuditEvent]:
    """Newest first, before event `before_id` (0: from the newest), resources starting with the prefix."""
    async with store.connection() as conn:
        return await audit.list_page(conn, limit, before_id, resource_prefix)
