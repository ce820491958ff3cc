"""Every modelplane RPC as a plain function of keyword arguments.

Each function builds the request message and returns a description of the
call: which service, which method, how to decode the answer, whether it is
safe to retry, whether it is about a user, and the caller's per-call options
(`timeout=`, `metadata=`: see CallOptions). `ModelplaneClient` and
`AsyncModelplaneClient` run these descriptions, so both clients share one
definition of every argument, default and update mask.

Friendly names are accepted wherever the proto has an enum: provider types
("openai", "azure-openai"), contexts ("root", "title_generation") and roles
("member").
"""

from modelplane.calls._base import (CONFIG_SERVICE, OPTION_FAMILIES, RESOLVER_SERVICE, UNSET, CallOptions,
                                    Joined, MessageOrFields, Paged, Stream, Target, Unary, Unset)
from modelplane.calls._config import (access_credential, clear_model_override, clear_personal_override,
                                      create_api_token, create_model, create_provider, delete_model, delete_provider,
                                      delete_user_key, get_model, get_model_options_schema, get_provider, get_settings,
                                      get_user_config, introspect_token, list_api_tokens, list_audit_events,
                                      list_model_overrides, list_models, list_personal_overrides, list_providers,
                                      list_user_keys, revoke_api_token, set_default_model, set_model_override,
                                      set_personal_override, set_user_key, update_model, update_provider,
                                      update_settings, watch_config)
from modelplane.calls._config import ack_config, get_user_configs, list_resolvers, list_resolvers_page
from modelplane.calls._governance import (add_group_members, clear_spend_limit, create_group, delete_group, get_group,
                                          list_groups, list_spend_limits, micro_usd, record_usage, remove_group_members,
                                          set_spend_limit, summarize_usage, update_group)
from modelplane.calls._names import (context_name, context_names, did_you_mean, override_context, provider_type,
                                     provider_type_name, provider_type_names, role, role_name, spend_period,
                                     spend_period_name, usage_dimension)
from modelplane.calls._resolver import (HEALTH_CHECK, HEALTH_STATUSES, ChatInput, ToolInput, chat, chat_request,
                                        health, list_available_models, list_user_key_status, probe_provider,
                                        resolve_credential, resolve_model, stream_chat)

__all__ = [
    # what a call is
    "CallOptions", "Paged", "Joined", "Stream", "Target", "Unary", "UNSET", "Unset", "MessageOrFields", "OPTION_FAMILIES",
    "CONFIG_SERVICE", "RESOLVER_SERVICE", "HEALTH_CHECK", "HEALTH_STATUSES", "ChatInput", "ToolInput",
    # friendly enum names
    "provider_type", "override_context", "role", "provider_type_name", "context_name", "role_name",
    "provider_type_names", "context_names", "did_you_mean",
    # ConfigService
    "create_provider", "get_provider", "list_providers", "update_provider", "delete_provider",
    "create_model", "get_model", "list_models", "update_model", "delete_model", "set_default_model",
    "get_model_options_schema", "get_settings", "update_settings", "set_model_override", "clear_model_override",
    "list_model_overrides", "set_personal_override", "clear_personal_override", "list_personal_overrides",
    "set_user_key", "delete_user_key", "list_user_keys", "list_audit_events", "create_api_token",
    "list_api_tokens", "revoke_api_token", "watch_config", "get_user_config", "get_user_configs", "access_credential",
    "introspect_token", "ack_config", "list_resolvers", "list_resolvers_page",
    # ConfigService: governance
    "create_group", "get_group", "list_groups", "update_group", "delete_group", "add_group_members",
    "remove_group_members", "set_spend_limit", "clear_spend_limit", "list_spend_limits", "record_usage",
    "summarize_usage", "micro_usd", "spend_period", "spend_period_name", "usage_dimension",
    # ResolverService and health
    "resolve_credential", "list_user_key_status", "list_available_models", "resolve_model", "chat_request",
    "chat", "stream_chat", "probe_provider", "health",
]
