"""The domain rules' results (credentials, selection, resolution) as ResolverService messages.

The rules' enums are the proto enums without their prefix, so each table is
built by name; a rule value with no proto counterpart fails at import, not
on a request.
"""

from __future__ import annotations

import enum
from typing import Any, Mapping, TypeVar

from modelplane_server import convert

from modelplane_server.domain.credentials import CredentialDecision, KeyStatus, ProviderKeyStatus
from modelplane_server.domain.resolution import LayerOutcome, Resolution, ResolutionLayer, TraceStep
from modelplane_server.domain.selection import AvailableModels, EmptyReason, Preselection, SkipReason
from modelplane_server.domain.types import CredentialSource
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane_server.resolver_svc.state.config_state import ConfigState

E = TypeVar("E", bound=enum.Enum)

PROVIDER_TYPES: Mapping[Any, Any] = convert.PROVIDER_TYPE_TO_PB


def _by_name(rule_enum: type[E], prefix: str, proto_enum: Any) -> Mapping[E, Any]:
    # Any: each proto enum has its own value type in the stubs.
    return {member: proto_enum.Value(prefix + member.name) for member in rule_enum}


CREDENTIAL_SOURCES = _by_name(CredentialSource, "CREDENTIAL_SOURCE_", cs.CredentialSource)
KEY_STATUSES = _by_name(KeyStatus, "KEY_STATUS_", rs.KeyStatus)
PRESELECTIONS = _by_name(Preselection, "PRESELECTION_", rs.Preselection)
EMPTY_REASONS = _by_name(EmptyReason, "EMPTY_REASON_", rs.EmptyReason)
LAYERS = _by_name(ResolutionLayer, "RESOLUTION_LAYER_", rs.ResolutionLayer)
OUTCOMES = _by_name(LayerOutcome, "LAYER_OUTCOME_", rs.LayerOutcome)
SKIP_REASONS = _by_name(SkipReason, "SKIP_REASON_", rs.SkipReason)
FIXABLE_BY: Mapping[str, Any] = {"user": rs.FIXABLE_BY_USER, "admin": rs.FIXABLE_BY_ADMIN}


def credential_resolution(provider: str, d: CredentialDecision) -> rs.CredentialResolution:
    out = rs.CredentialResolution(provider=provider, source=CREDENTIAL_SOURCES[d.source], reason=d.reason)
    if d.fixable_by is not None:
        out.fixable_by = FIXABLE_BY[d.fixable_by]
    return out


def key_statuses(byok_enabled: bool, statuses: list[ProviderKeyStatus]) -> rs.ListUserKeyStatusResponse:
    return rs.ListUserKeyStatusResponse(
        byok_enabled=byok_enabled,
        providers=[
            rs.ProviderKeyStatus(provider=s.provider, type=PROVIDER_TYPES[s.type],
                                 display_name=s.display_name, status=KEY_STATUSES[s.status],
                                 user_keys_allowed=s.user_keys_allowed)
            for s in statuses
        ],
    )


def available_models(a: AvailableModels) -> rs.ListAvailableModelsResponse:
    out = rs.ListAvailableModelsResponse(message=a.message)
    for g in a.groups:
        group = out.groups.add(provider=g.provider.name, display_name=g.provider.display_name or g.provider.name,
                               type=PROVIDER_TYPES[g.provider.type])
        for m in g.models:
            group.models.add(name=m.name, display_name=m.display_name, model_identifier=m.model_identifier,
                             context_limit=m.context_limit, is_default=m.is_default)
    if a.preselected is not None:
        out.preselected_model = a.preselected
    if a.preselection is not None:
        out.preselection = PRESELECTIONS[a.preselection]
    if a.empty_reason is not None:
        out.empty_reason = EMPTY_REASONS[a.empty_reason]
    return out


def trace_step(step: TraceStep) -> rs.TraceStep:
    out = rs.TraceStep(layer=LAYERS[step.layer], outcome=OUTCOMES[step.outcome],
                       model=step.model or "", detail=step.detail)
    if step.skip_reason is not None:
        out.skip_reason = SKIP_REASONS[step.skip_reason]
    return out


def resolved_model(r: Resolution, state: ConfigState) -> rs.ResolvedModel:
    """The resolution with the model and provider exactly as config_svc
    described them (options included, never a key)."""
    return rs.ResolvedModel(
        model=state.model_msgs[r.model.name],
        provider=state.provider_msgs[r.provider.name],
        layer=LAYERS[r.layer],
        credential=CREDENTIAL_SOURCES[r.credential],
        compaction_threshold_tokens=r.compaction_threshold_tokens,
        trace=[trace_step(s) for s in r.trace],
    )
