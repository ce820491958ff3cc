"""Every bound on a request's strings and repeated fields, in one table.

Both services check each request against it before anything else looks at
the request (runtime.request_gate): a longer string or a longer list is
INVALID_ARGUMENT naming the field path (`messages[3].text`), before the
value can reach a log line, a regex or the database. The bounds are
documented in the proto field comments and in docs/operations.md
("Request bounds"); tests/unit/test_bounds.py keeps the three in step.

Lengths count characters (code points) for strings and elements for
repeated and map fields. Identifiers are a few hundred characters at most;
conversation content is generous (a chat message may carry a few MB of
text), and the whole request is bounded by the servers' gRPC maximum
receive size (MAX_REQUEST_BYTES).

Content rules (name patterns, control characters, ranges) are validation's
(domain.validation); this table only says how much. Where validation has a
limit of its own, the table takes it from there, so a field has one number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from modelplane_server.domain import access, resolver_map, usage, validation

KIB: Final = 1024
MIB: Final = 1024 * KIB

# The gRPC maximum receive size of each server (grpc.max_receive_message_length):
# a request larger than this is refused by gRPC itself (RESOURCE_EXHAUSTED)
# before it is parsed. config_svc takes configuration only; the resolver
# takes conversations.
MAX_REQUEST_BYTES: Final[Mapping[str, int]] = {"config_svc": 1 * MIB, "resolver_svc": 16 * MIB}

# Shared sizes.
IDENTIFIER: Final = 255  # user names, ids, references to providers and models
NAME: Final = validation.MAX_NAME_LENGTH  # a provider's or model's own name (63)
SHORT_TEXT: Final = 64  # enum-like strings, etags, epochs, regions
CHAT_ID: Final = validation.MAX_CHAT_ID_LENGTH
PAGE_TOKEN: Final = 1024
# ListAvailableModels' token holds a model's provider, display name and name:
# up to 63 + 4 x 200 + 63 bytes of UTF-8 in JSON, 1,248 characters of base64.
MODEL_POSITION_TOKEN: Final = 2048
URL: Final = 2048
DESCRIPTION: Final = 500
CHAT_TEXT: Final = 4 * MIB
TOOL_DESCRIPTION: Final = 64 * KIB
TOOL_CALL_ID: Final = 512
TOOL_ARGUMENTS: Final = 1_000_000
# Opaque reasoning state a provider returned (signatures, encrypted
# reasoning), replayed unchanged; and the provider's ids of output items.
OPAQUE_STATE: Final = 1_000_000
ITEM_ID: Final = 256
CHAT_PARTS: Final = 10_000
CHAT_MESSAGES: Final = 10_000
CHAT_TOOLS: Final = 512
TOOL_CALLS: Final = 512
SCHEMA_ENTRIES: Final = 10_000  # entries of one object or list in a tool's JSON schema
SCHEMA_TEXT: Final = 64 * KIB
MASK_PATHS: Final = 64
MASK_PATH: Final = 128

# Fields of messages not listed here (new fields, messages from other
# packages): the fallbacks below, so a field is never unbounded.
DEFAULT_STRING: Final = 64 * KIB
DEFAULT_REPEATED: Final = 10_000

V1 = "modelplane.v1."

# (message full name, field name) -> the most characters (strings) or
# elements (repeated and map fields) the field may hold.
BOUNDS: Final[Mapping[tuple[str, str], int]] = {
    # ---- resources as requests carry them
    (V1 + "Provider", "name"): NAME,
    (V1 + "Provider", "display_name"): validation.MAX_DISPLAY_NAME_LENGTH,
    (V1 + "Provider", "base_url"): URL,
    (V1 + "Provider", "effective_base_url"): URL,  # output only, ignored on input
    (V1 + "Provider", "api_key"): validation.MAX_API_KEY_LENGTH,
    (V1 + "Provider", "region"): SHORT_TEXT,
    (V1 + "Provider", "etag"): SHORT_TEXT,
    (V1 + "Model", "name"): NAME,
    (V1 + "Model", "provider"): IDENTIFIER,
    (V1 + "Model", "model_identifier"): validation.MAX_MODEL_IDENTIFIER_LENGTH,
    (V1 + "Model", "display_name"): validation.MAX_DISPLAY_NAME_LENGTH,
    (V1 + "Model", "etag"): SHORT_TEXT,
    (V1 + "AnthropicOptions", "effort"): SHORT_TEXT,
    (V1 + "AnthropicOptions", "thinking"): SHORT_TEXT,
    (V1 + "GoogleOptions", "thinking_level"): SHORT_TEXT,
    (V1 + "OpenAIOptions", "reasoning_effort"): SHORT_TEXT,
    (V1 + "OpenAIOptions", "api"): SHORT_TEXT,
    (V1 + "ReasoningOptions", "reasoning_effort"): SHORT_TEXT,
    (V1 + "Settings", "etag"): SHORT_TEXT,
    (V1 + "ApiToken", "id"): IDENTIFIER,  # output only, ignored on input
    (V1 + "ApiToken", "subject"): validation.MAX_USER_LENGTH,
    (V1 + "ApiToken", "description"): DESCRIPTION,
    ("google.protobuf.FieldMask", "paths"): MASK_PATHS,
    ("google.protobuf.FieldMask", "paths[]"): MASK_PATH,
    # ---- ConfigService requests
    (V1 + "GetProviderRequest", "name"): IDENTIFIER,
    (V1 + "ListProvidersRequest", "page_token"): PAGE_TOKEN,
    (V1 + "DeleteProviderRequest", "name"): IDENTIFIER,
    (V1 + "DeleteProviderRequest", "etag"): SHORT_TEXT,
    (V1 + "GetModelRequest", "name"): IDENTIFIER,
    (V1 + "ListModelsRequest", "page_token"): PAGE_TOKEN,
    (V1 + "ListModelsRequest", "provider"): IDENTIFIER,
    (V1 + "DeleteModelRequest", "name"): IDENTIFIER,
    (V1 + "DeleteModelRequest", "etag"): SHORT_TEXT,
    (V1 + "SetDefaultModelRequest", "model"): IDENTIFIER,
    (V1 + "SetModelOverrideRequest", "model"): IDENTIFIER,
    (V1 + "SetPersonalOverrideRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "SetPersonalOverrideRequest", "model"): IDENTIFIER,
    (V1 + "ClearPersonalOverrideRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "ListPersonalOverridesRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "SetUserKeyRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "SetUserKeyRequest", "provider"): IDENTIFIER,
    (V1 + "SetUserKeyRequest", "api_key"): validation.MAX_API_KEY_LENGTH,
    (V1 + "DeleteUserKeyRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "DeleteUserKeyRequest", "provider"): IDENTIFIER,
    (V1 + "ListUserKeysRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "ListAuditEventsRequest", "page_token"): PAGE_TOKEN,
    (V1 + "ListAuditEventsRequest", "resource_prefix"): IDENTIFIER,
    (V1 + "ListApiTokensRequest", "page_token"): PAGE_TOKEN,
    (V1 + "RevokeApiTokenRequest", "id"): IDENTIFIER,
    (V1 + "WatchConfigRequest", "epoch"): SHORT_TEXT,
    (V1 + "GetUserConfigRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "GetUserConfigsRequest", "users"): validation.MAX_USERS_PER_BATCH,
    (V1 + "GetUserConfigsRequest", "users[]"): validation.MAX_USER_LENGTH,
    (V1 + "AccessCredentialRequest", "provider"): IDENTIFIER,
    (V1 + "AccessCredentialRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "IntrospectTokenRequest", "token"): IDENTIFIER,
    (V1 + "AckConfigRequest", "epoch"): resolver_map.MAX_EPOCH_LENGTH,
    (V1 + "ResolverIdentity", "id"): resolver_map.MAX_ID_LENGTH,
    (V1 + "ResolverIdentity", "host"): resolver_map.MAX_HOST_LENGTH,
    (V1 + "ResolverIdentity", "version"): resolver_map.MAX_VERSION_LENGTH,
    (V1 + "ListResolversRequest", "page_token"): PAGE_TOKEN,
    # ---- ResolverService requests
    (V1 + "ResolveCredentialRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "ResolveCredentialRequest", "provider"): IDENTIFIER,
    (V1 + "ListUserKeyStatusRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "ListAvailableModelsRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "ListAvailableModelsRequest", "last_used_model"): IDENTIFIER,
    (V1 + "ListAvailableModelsRequest", "page_token"): MODEL_POSITION_TOKEN,
    (V1 + "ResolveModelRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "ResolveModelRequest", "chat_model"): IDENTIFIER,
    (V1 + "ChatRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "ChatRequest", "chat_model"): IDENTIFIER,
    (V1 + "ChatRequest", "chat_id"): CHAT_ID,
    (V1 + "ChatRequest", "messages"): CHAT_MESSAGES,
    (V1 + "ChatRequest", "tools"): CHAT_TOOLS,
    (V1 + "ChatMessage", "text"): CHAT_TEXT,
    (V1 + "ChatMessage", "tool_calls"): TOOL_CALLS,
    (V1 + "ChatMessage", "tool_call_id"): TOOL_CALL_ID,
    (V1 + "ChatMessage", "parts"): CHAT_PARTS,
    (V1 + "ChatPart", "text"): CHAT_TEXT,
    (V1 + "ChatPart", "refusal"): CHAT_TEXT,
    (V1 + "ReasoningPart", "text"): CHAT_TEXT,
    (V1 + "ReasoningPart", "signature"): OPAQUE_STATE,
    (V1 + "ReasoningPart", "redacted_data"): OPAQUE_STATE,
    (V1 + "ReasoningPart", "encrypted_content"): OPAQUE_STATE,
    (V1 + "ReasoningPart", "item_id"): ITEM_ID,
    (V1 + "ReasoningPart", "format"): SHORT_TEXT,
    (V1 + "ToolResult", "tool_call_id"): TOOL_CALL_ID,
    (V1 + "ToolResult", "text"): CHAT_TEXT,
    (V1 + "ToolCall", "id"): TOOL_CALL_ID,
    (V1 + "ToolCall", "name"): SHORT_TEXT,
    (V1 + "ToolCall", "arguments_json"): TOOL_ARGUMENTS,
    (V1 + "ToolCall", "signature"): OPAQUE_STATE,
    (V1 + "ToolCall", "item_id"): ITEM_ID,
    (V1 + "ToolDefinition", "name"): SHORT_TEXT,
    (V1 + "ToolDefinition", "description"): TOOL_DESCRIPTION,
    (V1 + "ProbeProviderRequest", "provider"): IDENTIFIER,
    (V1 + "ProbeProviderRequest", "user"): validation.MAX_USER_LENGTH,
    # ---- governance
    (V1 + "Group", "name"): NAME,
    (V1 + "Group", "display_name"): validation.MAX_DISPLAY_NAME_LENGTH,
    (V1 + "Group", "description"): access.MAX_DESCRIPTION_LENGTH,
    (V1 + "Group", "etag"): SHORT_TEXT,
    (V1 + "Group", "members"): access.MAX_GROUP_MEMBERS,
    (V1 + "Group", "members[]"): validation.MAX_USER_LENGTH,
    (V1 + "GetGroupRequest", "name"): IDENTIFIER,
    (V1 + "DeleteGroupRequest", "name"): IDENTIFIER,
    (V1 + "DeleteGroupRequest", "etag"): SHORT_TEXT,
    (V1 + "ListGroupsRequest", "member"): validation.MAX_USER_LENGTH,
    (V1 + "ListGroupsRequest", "page_token"): PAGE_TOKEN,
    (V1 + "AddGroupMembersRequest", "group"): IDENTIFIER,
    (V1 + "AddGroupMembersRequest", "users"): access.MAX_MEMBERS_PER_CALL,
    (V1 + "AddGroupMembersRequest", "users[]"): validation.MAX_USER_LENGTH,
    (V1 + "RemoveGroupMembersRequest", "group"): IDENTIFIER,
    (V1 + "RemoveGroupMembersRequest", "users"): access.MAX_MEMBERS_PER_CALL,
    (V1 + "RemoveGroupMembersRequest", "users[]"): validation.MAX_USER_LENGTH,
    (V1 + "ModelAccess", "users"): access.MAX_ACCESS_USERS,
    (V1 + "ModelAccess", "users[]"): validation.MAX_USER_LENGTH,
    (V1 + "ModelAccess", "groups"): access.MAX_ACCESS_GROUPS,
    (V1 + "ModelAccess", "groups[]"): IDENTIFIER,
    (V1 + "SpendLimit", "user"): validation.MAX_USER_LENGTH,
    (V1 + "SpendLimit", "group"): IDENTIFIER,
    (V1 + "ClearSpendLimitRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "ClearSpendLimitRequest", "group"): IDENTIFIER,
    (V1 + "ListSpendLimitsRequest", "page_token"): PAGE_TOKEN,
    (V1 + "RecordUsageRequest", "records"): usage.MAX_RECORDS_PER_CALL,
    (V1 + "UsageRecord", "id"): usage.MAX_RECORD_ID_LENGTH,
    (V1 + "UsageRecord", "user"): validation.MAX_USER_LENGTH,
    (V1 + "UsageRecord", "provider"): IDENTIFIER,
    (V1 + "UsageRecord", "model"): IDENTIFIER,
    (V1 + "UsageRecord", "model_identifier"): validation.MAX_MODEL_IDENTIFIER_LENGTH,
    (V1 + "UsageRecord", "request_id"): usage.MAX_TEXT_LENGTH,
    (V1 + "UsageRecord", "chat_id"): CHAT_ID,
    (V1 + "UsageRecord", "service"): usage.MAX_TEXT_LENGTH,
    (V1 + "SummarizeUsageRequest", "user"): validation.MAX_USER_LENGTH,
    (V1 + "SummarizeUsageRequest", "provider"): IDENTIFIER,
    (V1 + "SummarizeUsageRequest", "model"): IDENTIFIER,
    (V1 + "SummarizeUsageRequest", "group_by"): 16,  # each UsageDimension at most once
    (V1 + "SummarizeUsageRequest", "page_token"): PAGE_TOKEN,
    # ---- a tool's JSON schema (google.protobuf.Struct)
    ("google.protobuf.Struct", "fields"): SCHEMA_ENTRIES,
    ("google.protobuf.Struct", "fields[]"): SCHEMA_TEXT,  # the keys
    ("google.protobuf.ListValue", "values"): SCHEMA_ENTRIES,
    ("google.protobuf.Value", "string_value"): SCHEMA_TEXT,
    # ---- grpc.health.v1, served by both
    ("grpc.health.v1.HealthCheckRequest", "service"): IDENTIFIER,
}


def bound(message: str, field: str, *, repeated: bool) -> int:
    """The bound of `field` of `message` (`field[]`: each element of a repeated
    string field, or each key of a map), or the fallback for its kind."""
    found = BOUNDS.get((message, field))
    if found is not None:
        return found
    return DEFAULT_REPEATED if repeated and not field.endswith("[]") else DEFAULT_STRING
