"""Which model a chat or subagent gets, and the explain trace saying why.

One trace step per layer, in resolution order; the first usable model wins.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from modelplane_server.domain.errors import FailedPrecondition
from modelplane_server.domain.selection import SkipReason, Usable, Unusable, check_model, usable_groups
from modelplane_server.domain.types import CredentialSource, Model, OverrideContext, Provider
from modelplane_server.domain.view import ConfigView, UserView


class ResolutionLayer(enum.StrEnum):
    """Proto ResolutionLayer without the RESOLUTION_LAYER_ prefix, in resolution order."""

    PERSONAL_OVERRIDE = "personal_override"
    ADMIN_OVERRIDE = "admin_override"
    CHAT_MODEL = "chat_model"
    DEFAULT_MODEL = "default_model"
    FIRST_AVAILABLE = "first_available"


class LayerOutcome(enum.StrEnum):
    """Proto LayerOutcome without the LAYER_OUTCOME_ prefix."""

    USED = "used"
    NOT_SET = "not_set"
    SKIPPED = "skipped"
    NOT_REACHED = "not_reached"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True, slots=True)
class TraceStep:
    layer: ResolutionLayer
    outcome: LayerOutcome
    model: str | None  # the model this layer named, if any
    skip_reason: SkipReason | None
    detail: str


@dataclass(frozen=True, slots=True)
class Resolution:
    model: Model
    provider: Provider
    layer: ResolutionLayer
    credential: CredentialSource
    compaction_threshold_tokens: int
    trace: list[TraceStep]


class NoUsableModel(FailedPrecondition):
    """FAILED_PRECONDITION / NO_USABLE_MODEL, carrying the explain trace."""

    reason = "NO_USABLE_MODEL"

    def __init__(self, message: str, trace: list[TraceStep]) -> None:
        super().__init__(message)
        self.trace = trace


_LAYER_LABEL = {
    ResolutionLayer.PERSONAL_OVERRIDE: "Your personal override",
    ResolutionLayer.ADMIN_OVERRIDE: "The admin override",
    ResolutionLayer.CHAT_MODEL: "The chat's selected model",
    ResolutionLayer.DEFAULT_MODEL: "The deployment default",
    ResolutionLayer.FIRST_AVAILABLE: "The first available model",
}
_LAYERS = tuple(ResolutionLayer)
_NOT_REACHED_DETAIL = "Not consulted: an earlier layer chose the model."
_CONTEXT_LAYERS = frozenset({ResolutionLayer.PERSONAL_OVERRIDE, ResolutionLayer.ADMIN_OVERRIDE})


def _ctx(context: OverrideContext) -> str:
    return context.value.replace("_", " ")


def resolve_model(
    view: ConfigView,
    user_view: UserView,
    context: OverrideContext,
    chat_model: str | None,
) -> Resolution:
    """Which model a chat or subagent gets, and why (one trace step per layer).

    Order, first usable wins: personal override (root/general/explore, only
    while personal overrides are enabled) -> admin override
    (general/explore/title_generation) -> the chat's model -> the deployment
    default -> the first available model. Raises NoUsableModel when nothing
    is usable.
    """
    trace: list[TraceStep] = []
    winner: tuple[ResolutionLayer, Usable] | None = None

    for layer in _LAYERS:
        name: str | None
        if layer is ResolutionLayer.PERSONAL_OVERRIDE:
            if context is OverrideContext.TITLE_GENERATION:
                trace.append(
                    TraceStep(
                        layer,
                        LayerOutcome.NOT_APPLICABLE,
                        None,
                        None,
                        "Personal overrides do not apply to title generation.",
                    )
                )
                continue
            name = user_view.personal_overrides.get(context)
            if name and not view.settings.personal_overrides_enabled:
                trace.append(
                    TraceStep(
                        layer,
                        LayerOutcome.SKIPPED,
                        name,
                        SkipReason.PERSONAL_OVERRIDES_DISABLED,
                        f"Your personal override {name} for {_ctx(context)} is ignored "
                        "because an administrator turned personal overrides off.",
                    )
                )
                continue
        elif layer is ResolutionLayer.ADMIN_OVERRIDE:
            if context is OverrideContext.ROOT:
                trace.append(
                    TraceStep(
                        layer,
                        LayerOutcome.NOT_APPLICABLE,
                        None,
                        None,
                        "Admin overrides do not apply to root chats.",
                    )
                )
                continue
            name = view.admin_overrides.get(context)
        elif layer is ResolutionLayer.CHAT_MODEL:
            name = chat_model
        elif layer is ResolutionLayer.DEFAULT_MODEL:
            name = view.default_model
        else:
            groups = usable_groups(view, user_view)
            name = groups[0].models[0].name if groups else None

        if not name:
            detail = (
                "No model is available to you."
                if layer is ResolutionLayer.FIRST_AVAILABLE
                else f"{_LAYER_LABEL[layer]} is not set"
                + (f" for {_ctx(context)}." if layer in _CONTEXT_LAYERS else ".")
            )
            trace.append(TraceStep(layer, LayerOutcome.NOT_SET, None, None, detail))
            continue

        checked = check_model(view, user_view, name)
        if isinstance(checked, Unusable):
            trace.append(
                TraceStep(
                    layer,
                    LayerOutcome.SKIPPED,
                    name,
                    checked.reason,
                    f"{_LAYER_LABEL[layer]} {name} was skipped: {checked.why}",
                )
            )
            continue
        used = f"{_LAYER_LABEL[layer]} {name} is used."
        trace.append(TraceStep(layer, LayerOutcome.USED, name, None, used))
        winner = (layer, checked)
        break

    if winner is None:
        raise NoUsableModel(
            f"No usable model for {_ctx(context)}: no configured model is available "
            "to you. Contact an administrator.",
            trace,
        )
    layer, won = winner
    m = won.model
    for rest in _LAYERS[len(trace) :]:
        trace.append(TraceStep(rest, LayerOutcome.NOT_REACHED, None, None, _NOT_REACHED_DETAIL))
    return Resolution(
        model=m,
        provider=won.provider,
        layer=layer,
        credential=won.credential.source,
        compaction_threshold_tokens=m.context_limit * m.compression_threshold // 100,
        trace=trace,
    )

