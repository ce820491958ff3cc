"""One usage record per upstream chat: the meter is started when the
request goes upstream and ended exactly once, as

- finished: the upstream finished the answer;
- failed: the upstream failed after it had started answering (a failure
  before any answer costs nothing and is not recorded);
- cancelled: the caller cancelled or its deadline ended, at any point.

The record holds no key material: only which kind of credential paid.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass

from modelplane_server.domain.types import CredentialSource, Model, OverrideContext, Provider
from modelplane_server.domain.usage import Outcome, Tokens, UsageRecord, cost_micro_usd
from modelplane_server.resolver_svc.upstream import Usage
from modelplane_server.resolver_svc.usage.ledger import UsageLedger
from modelplane_server.runtime.context import current_principal, current_request_id


@dataclass(frozen=True, slots=True)
class ChatIdentity:
    """Who and what a chat is, fixed before it goes upstream."""

    user: str
    chat_id: str
    provider: Provider
    model: Model
    credential: CredentialSource
    context: OverrideContext | None
    streamed: bool


def tokens(u: Usage | None) -> Tokens:
    if u is None:
        return Tokens()
    return Tokens(u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens, u.reasoning_tokens)


class ChatMeter:
    """Measures one chat; `end` (or `close`) records it once."""

    def __init__(self, ledger: UsageLedger | None, chat: ChatIdentity) -> None:
        self._ledger = ledger
        self._chat = chat
        self._id = os.urandom(16).hex()  # as unique as a uuid4, without building one
        self._request_id = current_request_id()
        principal = current_principal()
        self._acting = principal.actor if principal.subject != chat.user else ""
        self._start_wall = time.time()
        self._start = time.perf_counter()
        self._first_token: float | None = None
        self.usage: Usage | None = None
        self._answered = False
        self._ended = False
        if ledger is not None:
            ledger.chat_started()

    def answered(self) -> None:
        """The upstream sent part of the answer (text, reasoning, a tool call)."""
        self._answered = True
        if self._first_token is None:
            self._first_token = time.perf_counter()

    def reported(self, usage: Usage) -> None:
        self._answered = True
        self.usage = usage

    def end(self, outcome: Outcome, usage: Usage | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if usage is not None:
            self.usage = usage
        if self._ledger is None:
            return
        recorded = outcome is not Outcome.FAILED or self._answered
        self._ledger.chat_ended(self._record(outcome) if recorded else None)

    def cost_micro_usd(self) -> int | None:
        """The cost of the usage reported so far (None: the model is
        unpriced): one pricing for the chat's answer and its record."""
        return cost_micro_usd(tokens(self.usage), self._chat.model.pricing)

    def close(self) -> None:
        """The chat ended without a word about how (the stream just stopped):
        a failure, recorded if it had answered."""
        self.end(Outcome.FAILED)

    def _record(self, outcome: Outcome) -> UsageRecord:
        c = self._chat
        t = tokens(self.usage)
        now = time.perf_counter()
        return UsageRecord(
            id=self._id, user=c.user, provider=c.provider.name, model=c.model.name, credential_source=c.credential,
            tokens=t, cost_micro_usd=self.cost_micro_usd(), outcome=outcome,
            end_time=dt.datetime.now(dt.timezone.utc),
            start_time=dt.datetime.fromtimestamp(self._start_wall, dt.timezone.utc), request_id=self._request_id,
            chat_id=c.chat_id, service=self._acting, context=c.context, model_identifier=c.model.model_identifier,
            upstream_latency_ms=round((now - self._start) * 1000),
            time_to_first_token_ms=None if self._first_token is None else round(
                (self._first_token - self._start) * 1000),
            streamed=c.streamed,
        )
