"""Plain data shared by both services: no gRPC, no SQL, no I/O.

Servicers convert protobuf messages to these types and back; the store
returns them; the pure rules (validation, credential and model resolution)
take and return them.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from modelplane_server.domain.access import OPEN as OPEN_ACCESS
from modelplane_server.domain.access import ModelAccess


class ProviderType(enum.StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GOOGLE = "google"
    AZURE_OPENAI = "azure-openai"
    BEDROCK = "bedrock"
    OPENAI_COMPATIBLE = "openai-compatible"
    OPENROUTER = "openrouter"
    VERCEL_AI_GATEWAY = "vercel-ai-gateway"


# Types whose base URL holds an OpenAI-compatible prefix to which
# /chat/completions, /responses and /models are appended.
OPENAI_SHAPED: frozenset[ProviderType] = frozenset(
    {
        ProviderType.OPENAI,
        ProviderType.AZURE_OPENAI,
        ProviderType.GOOGLE,
        ProviderType.OPENAI_COMPATIBLE,
        ProviderType.OPENROUTER,
        ProviderType.VERCEL_AI_GATEWAY,
    }
)

# Public endpoints; azure-openai and openai-compatible have none and must set one.
# Bedrock's depends on the region and is filled in by bedrock_base_url().
DEFAULT_BASE_URLS: Mapping[ProviderType, str] = {
    ProviderType.OPENAI: "https://api.openai.com/v1",
    ProviderType.ANTHROPIC: "https://api.anthropic.com",
    ProviderType.GOOGLE: "https://generativelanguage.googleapis.com/v1beta/openai/",
    ProviderType.OPENROUTER: "https://openrouter.ai/api/v1",
    ProviderType.VERCEL_AI_GATEWAY: "https://ai-gateway.vercel.sh/v1",
}

# The Model oneof field (options family) each provider type uses.
OPTIONS_FAMILY: Mapping[ProviderType, str] = {
    ProviderType.ANTHROPIC: "anthropic",
    ProviderType.BEDROCK: "anthropic",
    ProviderType.OPENAI: "openai",
    ProviderType.AZURE_OPENAI: "openai",
    ProviderType.GOOGLE: "google",
    ProviderType.OPENROUTER: "openrouter",
    ProviderType.VERCEL_AI_GATEWAY: "vercel",
}

BEDROCK_BEARER_DEFAULT_REGION = "us-east-1"


def bedrock_base_url(region: str) -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


@dataclass(frozen=True)
class KeyPolicy:
    central_key_enabled: bool = True
    allow_user_keys: bool = True
    central_key_fallback: bool = True


@dataclass(frozen=True)
class Provider:
    name: str
    type: ProviderType
    display_name: str = ""
    base_url: str = ""  # empty: the type's default
    enabled: bool = True
    key_policy: KeyPolicy = KeyPolicy()
    api_key_set: bool = False
    region: str = ""
    version: int = 1
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None

    @property
    def etag(self) -> str:
        return str(self.version)


@dataclass(frozen=True)
class GenerationOptions:
    compression_threshold: int | None = None  # default 70 when unset
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


DEFAULT_COMPRESSION_THRESHOLD = 70


@dataclass(frozen=True)
class Pricing:
    """USD per one million tokens; None means unpriced."""

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None


@dataclass(frozen=True)
class ProviderOptions:
    """Provider-specific options: family is the Model oneof field name
    (anthropic, openai, google, openrouter, vercel); values maps option name
    to value, only options that are set."""

    family: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    name: str
    provider: str
    model_identifier: str
    display_name: str
    context_limit: int
    enabled: bool = True
    is_default: bool = False
    options: GenerationOptions = GenerationOptions()
    pricing: Pricing = Pricing()
    provider_options: ProviderOptions | None = None
    version: int = 1
    create_time: dt.datetime | None = None
    update_time: dt.datetime | None = None
    access: ModelAccess = OPEN_ACCESS  # who may use it; open: everyone

    @property
    def etag(self) -> str:
        return str(self.version)

    @property
    def compression_threshold(self) -> int:
        t = self.options.compression_threshold
        return DEFAULT_COMPRESSION_THRESHOLD if t is None else t


@dataclass(frozen=True)
class Settings:
    byok_enabled: bool = False
    personal_overrides_enabled: bool = False
    version: int = 1
    update_time: dt.datetime | None = None
    byok_spend_counts: bool = False  # spend on users' own keys counts toward their limits
    allow_unpriced_under_limit: bool = True  # unpriced models may be used while a limit applies

    @property
    def etag(self) -> str:
        return str(self.version)


class OverrideContext(enum.StrEnum):
    ROOT = "root"
    GENERAL = "general"
    EXPLORE = "explore"
    TITLE_GENERATION = "title_generation"


ADMIN_CONTEXTS: frozenset[OverrideContext] = frozenset(
    {OverrideContext.GENERAL, OverrideContext.EXPLORE, OverrideContext.TITLE_GENERATION}
)
PERSONAL_CONTEXTS: frozenset[OverrideContext] = frozenset(
    {OverrideContext.ROOT, OverrideContext.GENERAL, OverrideContext.EXPLORE}
)


@dataclass(frozen=True)
class ModelOverride:
    context: OverrideContext
    model: str
    user: str = ""  # personal overrides only
    update_time: dt.datetime | None = None


@dataclass(frozen=True)
class UserKey:
    user: str
    provider: str
    update_time: dt.datetime | None = None


class Role(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    role: Role
    subject: str
    token_id: str = ""

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.subject}"


@dataclass(frozen=True)
class ApiToken:
    id: str
    role: Role
    subject: str
    description: str = ""
    create_time: dt.datetime | None = None
    revoke_time: dt.datetime | None = None
    last_used_time: dt.datetime | None = None


@dataclass(frozen=True)
class AuditEvent:
    id: int
    revision: int
    actor: str
    action: str
    resource: str
    change: Mapping[str, Any]
    create_time: dt.datetime


class CredentialSource(enum.StrEnum):
    USER_KEY = "user_key"
    CENTRAL_KEY = "central_key"
    AMBIENT_AWS = "ambient_aws"
    UNAVAILABLE = "unavailable"
