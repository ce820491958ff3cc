"""min_revision on every ResolverService call: read your own writes.

A caller passes the revision a ConfigService answer reported (the request's
min_revision field, or the MIN_REVISION_KEY request metadata; the higher
one counts). The call goes on once the resolver has fully applied that
revision (state/revision_gate.py), waiting for it until shortly before the
call's deadline and at most `max_wait_seconds`; otherwise it fails
UNAVAILABLE (REVISION_NOT_REACHED) before doing anything, so it is safe to
retry, here or at another replica.

Already applied (the usual case), it costs a comparison: no await, no lock.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

import grpc.aio

from modelplane_server.domain.errors import InvalidArgument, Unavailable
from modelplane_server.resolver_svc.state.revision_gate import RevisionGate
from modelplane_server.runtime.consistency_metrics import ConsistencyMetrics

MIN_REVISION_KEY = "x-modelplane-min-revision"
REVISION_NOT_REACHED = "REVISION_NOT_REACHED"
DEFAULT_MAX_WAIT_SECONDS = 5.0
# Room for the UNAVAILABLE answer to reach the caller before its deadline
# does (else the caller would see DEADLINE_EXCEEDED and not why): a tenth of
# the time left, within these bounds.
ANSWER_MARGIN_SECONDS = (0.02, 0.1)

Context = grpc.aio.ServicerContext[Any, Any]


class RevisionNotReached(Unavailable):
    reason = REVISION_NOT_REACHED

    def __init__(self, applied: int, wanted: int) -> None:
        super().__init__(f"this resolver has applied config revision {applied}, not yet the {wanted} the call asked "
                         "for (min_revision); retry, or ask another resolver replica")
        self.metadata = MappingProxyType({"applied_revision": str(applied), "min_revision": str(wanted)})


def _from_metadata(context: Context) -> int:
    for key, value in context.invocation_metadata() or ():
        if key == MIN_REVISION_KEY:
            text = value if isinstance(value, str) else ""
            if not text.isascii() or not text.isdigit() or len(text) > 18:
                raise InvalidArgument.one(MIN_REVISION_KEY, "request metadata must be a non-negative integer "
                                                            "(a revision a ConfigService answer reported)")
            return int(text)
    return 0


class MinRevision:
    def __init__(self, gate: RevisionGate, *, max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
                 metrics: ConsistencyMetrics | None = None) -> None:
        self._gate = gate
        self._max_wait = max_wait_seconds
        self._metrics = metrics

    async def reach(self, requested: int, context: Context) -> None:
        """Return once the larger of `requested` (the request's
        min_revision) and the call's metadata is applied; RevisionNotReached
        when it is not by the deadline."""
        if requested < 0:
            raise InvalidArgument.one("min_revision", "must not be negative")
        wanted = max(requested, _from_metadata(context))
        if not wanted:
            return
        if self._gate.revision >= wanted:
            if self._metrics is not None:
                self._metrics.asked("satisfied")
            return
        remaining = context.time_remaining()
        if remaining is None:
            budget = self._max_wait
        else:
            least, most = ANSWER_MARGIN_SECONDS
            budget = min(self._max_wait, remaining - min(most, max(least, remaining / 10)))
        started = time.perf_counter()
        reached = await self._gate.wait(wanted, budget)
        if self._metrics is not None:
            self._metrics.asked("waited" if reached else "not_reached", time.perf_counter() - started)
        if not reached:
            raise RevisionNotReached(self._gate.revision, wanted)
