"""Where and how a chat is sent: the UpstreamTarget (URL, key, region,
model options) and the prices, from the resolved domain provider and model.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from modelplane_server.domain.base_url import effective_base_url
from modelplane_server.domain.types import BEDROCK_BEARER_DEFAULT_REGION, Model, Provider, ProviderType
from modelplane_server.resolver_svc import upstream as up

# Model oneof field (modelplane_server.domain.types.ProviderOptions.family) -> the ModelOptions
# group and dataclass the engine reads. openrouter and vercel share the
# gateway group: same `reasoning` object on the wire.
_OPTION_GROUPS: Final[Mapping[str, tuple[str, type[Any]]]] = {
    "anthropic": ("anthropic", up.AnthropicOptions),
    "openai": ("openai", up.OpenAIOptions),
    "google": ("google", up.GoogleOptions),
    "openrouter": ("gateway", up.GatewayReasoningOptions),
    "vercel": ("gateway", up.GatewayReasoningOptions),
}


def model_options(model: Model) -> up.ModelOptions:
    """The model's general options plus its provider-specific group.
    Unset stays None, so the engine sends nothing for it."""
    o = model.options
    groups: dict[str, Any] = {}
    po = model.provider_options
    if po is not None and po.family in _OPTION_GROUPS:
        group, cls = _OPTION_GROUPS[po.family]
        groups[group] = cls(**{k: v for k, v in po.values.items() if k in cls.__dataclass_fields__})
    return up.ModelOptions(
        max_output_tokens=o.max_output_tokens,
        temperature=o.temperature,
        top_p=o.top_p,
        top_k=o.top_k,
        presence_penalty=o.presence_penalty,
        frequency_penalty=o.frequency_penalty,
        **groups,
    )


def upstream_target(provider: Provider, api_key: str | None, env_region: str | None,
                    model: Model | None = None) -> up.UpstreamTarget:
    """Where and as whom to send: the provider's effective URL, the chosen
    key (None: no key, or SigV4 from the ambient chain for bedrock).

    Bedrock region: the provider's own, else the environment's; a bearer
    token may fall back to us-east-1, SigV4 may not (DESIGN.md), so the
    engine refuses a keyless target without one. Without a model (the
    probe) there is no identifier and no options.
    """
    region: str | None = None
    if provider.type is ProviderType.BEDROCK:
        region = provider.region or env_region or (BEDROCK_BEARER_DEFAULT_REGION if api_key else None)
    return up.UpstreamTarget(
        provider_type=provider.type.value,
        base_url=effective_base_url(provider, env_region),
        api_key=api_key,
        region=region,
        model_identifier=model.model_identifier if model else "",
        options=model_options(model) if model else up.ModelOptions(),
    )


def configured_identifiers(models: Sequence[Model], provider: str) -> list[str]:
    """Model identifiers of the provider's enabled models, sorted, unique."""
    return sorted({m.model_identifier for m in models if m.provider == provider and m.enabled})
