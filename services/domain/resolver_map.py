"""The live map of resolvers: who watches the configuration, which revision
each has applied, and how far behind the current one that is. Plain data and
the rules for the values a resolver reports about itself."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.domain.text import has_control_chars

MAX_ID_LENGTH = 128
MAX_HOST_LENGTH = 255
MAX_VERSION_LENGTH = 64
MAX_EPOCH_LENGTH = 128
_ID = re.compile(r"[A-Za-z0-9._:-]+")


@dataclass(frozen=True)
class ResolverIdentity:
    """One resolver process: a fresh id on every start, its host and version."""

    id: str
    host: str = ""
    version: str = ""


@dataclass(frozen=True)
class ResolverRecord:
    """One row of the map, as the config_svc replicas share it in Postgres."""

    identity: ResolverIdentity
    config_svc: str  # the replica holding its watch stream; "" when none
    watching: bool
    applied_revision: int
    epoch: str
    connect_time: dt.datetime | None
    heartbeat_time: dt.datetime

    def lag(self, revision: int, epoch: str) -> int:
        """Revisions behind `revision` of `epoch`; all of them when the
        resolver holds another history's revisions (a restore, say)."""
        if self.epoch != epoch:
            return revision
        return max(0, revision - self.applied_revision)


def _text_violations(value: str, field: str, maximum: int) -> list[FieldViolation]:
    found = []
    if len(value) > maximum:
        found.append(FieldViolation(field, f"must be at most {maximum} characters, got {len(value)}"))
    if has_control_chars(value):
        found.append(FieldViolation(field, "must not contain control characters or line breaks"))
    return found


def identity_violations(identity: ResolverIdentity, field: str = "resolver") -> list[FieldViolation]:
    found: list[FieldViolation] = []
    if not identity.id:
        found.append(FieldViolation(f"{field}.id", "is required"))
    elif len(identity.id) > MAX_ID_LENGTH or not _ID.fullmatch(identity.id):
        found.append(FieldViolation(f"{field}.id", f"must be 1-{MAX_ID_LENGTH} characters of [A-Za-z0-9._:-]"))
    found += _text_violations(identity.host, f"{field}.host", MAX_HOST_LENGTH)
    found += _text_violations(identity.version, f"{field}.version", MAX_VERSION_LENGTH)
    return found


def validate_report(identity: ResolverIdentity, revision: int, epoch: str, *, revision_field: str,
                    epoch_field: str = "epoch") -> None:
    """What a resolver says about itself (a watch request, an ack): its
    identity, a revision that is not negative, an epoch of sane text."""
    found = identity_violations(identity)
    if revision < 0:
        found.append(FieldViolation(revision_field, "must not be negative"))
    found += _text_violations(epoch, epoch_field, MAX_EPOCH_LENGTH)
    if found:
        raise InvalidArgument(found)
