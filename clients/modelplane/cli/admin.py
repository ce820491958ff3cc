"""Commands that read and change the configuration: providers, models and
their options, settings, admin and personal overrides, users' keys, API
tokens and the audit log."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from modelplane import calls
from modelplane.cli import governance, render
from modelplane.cli.session import Session, UsageError, on_off, read_api_key


def providers_list(s: Session) -> None:
    s.show_list(s.client.list_providers(), render.PROVIDERS, "no providers")


def providers_get(s: Session) -> None:
    s.show(s.client.get_provider(s.args.name))


def providers_create(s: Session) -> None:
    a = s.args
    api_key = read_api_key(s, a.name) if a.api_key_stdin or a.api_key_file else ""
    s.show(s.client.create_provider(
        a.name, a.type, display_name=a.display_name or "", base_url=a.base_url or "", region=a.region or "",
        api_key=api_key, enabled=False if a.disabled else None, central_key_enabled=on_off(a.central_key),
        allow_user_keys=on_off(a.user_keys), central_key_fallback=on_off(a.fallback)))


def providers_update(s: Session) -> None:
    a = s.args
    fields: dict[str, Any] = {k: v for k, v in (("display_name", a.display_name), ("base_url", a.base_url),
                                                 ("region", a.region)) if v is not None}
    for name, value in (("enabled", a.enabled), ("central_key_enabled", a.central_key),
                        ("allow_user_keys", a.user_keys), ("central_key_fallback", a.fallback)):
        if value is not None:
            fields[name] = value == "on"
    if a.api_key_stdin or a.api_key_file:
        fields["api_key"] = read_api_key(s, a.name)
    elif a.remove_api_key:
        fields["api_key"] = None
    if not fields:
        raise UsageError("nothing to update: pass at least one field flag (see --help)")
    s.show(s.client.update_provider(a.name, etag=a.etag or "", **fields))


def providers_delete(s: Session) -> None:
    s.client.delete_provider(s.args.name, etag=s.args.etag or "", force=s.args.force)
    s.done(f"deleted provider {s.args.name}")


def _sections(assignments: Sequence[str], unsets: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """--set options.temperature=0.2 --unset pricing.input_per_mtok -> {section: {field: value}}."""
    sections: dict[str, dict[str, Any]] = {}
    pairs: list[tuple[str, str | None]] = [(a, None) for a in unsets]
    for assignment in assignments:
        target, sep, given = assignment.partition("=")
        if not sep:
            raise UsageError(f"--set {assignment!r}: expected PATH=VALUE, e.g. options.temperature=0.2")
        pairs.append((target, given))
    allowed = ("options", "pricing", *calls.OPTION_FAMILIES)
    for path, raw in pairs:
        section, dot, name = path.strip().partition(".")
        if section not in allowed or not dot or not name:
            close = calls.did_you_mean(section, allowed) if dot else None
            hint = f"did you mean {close}.{name}? " if close and name else ""
            raise UsageError(f"{path!r}: {hint}expected SECTION.FIELD with SECTION one of {', '.join(allowed)} "
                             "(see `modelplane options-schema TYPE`)")
        sections.setdefault(section, {})[name] = None if raw is None else _value(raw)
    return sections


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # a bare word such as high


def models_list(s: Session) -> None:
    s.show_list(s.client.list_models(provider=s.args.provider or ""), render.MODELS, "no models")


def models_get(s: Session) -> None:
    s.show(s.client.get_model(s.args.name))


def models_create(s: Session) -> None:
    a = s.args
    sections: dict[str, Any] = _sections(a.set or [])  # option sections only, never per-call options
    sections.update(governance.access_fields(s, update=False))
    s.show(s.client.create_model(a.provider, a.model_identifier, a.display_name, a.context_limit,
                                 name=a.name or "", enabled=False if a.disabled else None, **sections))


def models_update(s: Session) -> None:
    a = s.args
    fields: dict[str, Any] = {k: v for k, v in (("display_name", a.display_name),
                                                 ("model_identifier", a.model_identifier),
                                                 ("context_limit", a.context_limit)) if v is not None}
    if a.enabled is not None:
        fields["enabled"] = a.enabled == "on"
    fields.update(_sections(a.set or [], a.unset or []))
    fields.update(governance.access_fields(s, update=True))
    if not fields:
        raise UsageError("nothing to update: pass at least one field flag (see --help)")
    s.show(s.client.update_model(a.name, etag=a.etag or "", **fields))


def models_delete(s: Session) -> None:
    s.client.delete_model(s.args.name, etag=s.args.etag or "")
    s.done(f"deleted model {s.args.name}")


def models_default(s: Session) -> None:
    a = s.args
    if a.clear:
        s.client.set_default_model("")
        s.done("cleared the default model")
    elif a.name:
        model = s.client.set_default_model(a.name)
        s.show(model, f"default model: {model.name}")
    else:
        current = next((m for m in s.client.list_models() if m.is_default), None)
        if current is None:
            s.done("no default model")
        else:
            s.show(current, f"default model: {current.name}")


def options_schema(s: Session) -> None:
    schema = s.client.get_model_options_schema(s.args.type)
    s.show(schema, render.options_schema(schema, s.style))


def settings_get(s: Session) -> None:
    s.show(s.client.get_settings())


def settings_set(s: Session) -> None:
    a = s.args
    fields = {k: v == "on" for k, v in (("byok_enabled", a.byok),
                                        ("personal_overrides_enabled", a.personal_overrides),
                                        ("byok_spend_counts", a.byok_spend_counts),
                                        ("allow_unpriced_under_limit", a.unpriced_under_limit)) if v is not None}
    if not fields:
        raise UsageError("nothing to set: pass --byok, --personal-overrides, --byok-spend-counts and/or "
                         "--unpriced-under-limit on|off")
    s.show(s.client.update_settings(etag=a.etag or "", **fields))


def overrides_list(s: Session) -> None:
    response = s.client.list_model_overrides()
    s.show(response, render.OVERRIDES.render(response.overrides, "no admin overrides", s.style))


def overrides_set(s: Session) -> None:
    override = s.client.set_model_override(s.args.context, s.args.model)
    s.show(override, f"{calls.context_name(override.context)} -> {override.model}")


def overrides_clear(s: Session) -> None:
    s.client.clear_model_override(s.args.context)
    s.done(f"cleared the {s.args.context} override")


def personal_list(s: Session) -> None:
    response = s.client.list_personal_overrides(user=s.args.user or "")
    state = "apply" if response.enabled else "are switched off by the administrator (stored, not applied)"
    s.show(response, render.OVERRIDES.render(response.overrides, "no personal overrides", s.style)
           + f"\n\npersonal overrides {state}")


def personal_set(s: Session) -> None:
    override = s.client.set_personal_override(s.args.context, s.args.model, user=s.args.user or "")
    s.show(override, f"{calls.context_name(override.context)} -> {override.model} (for {override.user})")


def personal_clear(s: Session) -> None:
    s.client.clear_personal_override(s.args.context, user=s.args.user or "")
    s.done(f"cleared the personal {s.args.context} override")


def keys_set(s: Session) -> None:
    key = s.client.set_user_key(s.args.provider, read_api_key(s, s.args.provider), user=s.args.user or "")
    s.show(key, f"saved {key.user}'s key for {key.provider}")


def keys_delete(s: Session) -> None:
    s.client.delete_user_key(s.args.provider, user=s.args.user or "")
    s.done(f"deleted the key for {s.args.provider}")


def keys_list(s: Session) -> None:
    response = s.client.list_user_keys(user=s.args.user or "")
    s.show(response, render.USER_KEYS.render(response.keys, "no saved keys", s.style))


def keys_status(s: Session) -> None:
    response = s.client.list_user_key_status(user=s.args.user or "")
    byok = "on" if response.byok_enabled else "off"
    s.show(response, render.KEY_STATUS.render(response.providers, "no enabled providers", s.style) + f"\n\nBYOK is {byok}")


def tokens_create(s: Session) -> None:
    a = s.args
    created = s.client.create_api_token(a.role, a.subject, description=a.description or "")
    if s.structured:
        s.show(created)
        return
    s.print(render.TOKENS.render([created.token], style=s.style))
    s.print(f"\nsecret: {created.secret}")
    s.warn("store the secret now: it is shown only once")


def tokens_list(s: Session) -> None:
    s.show_list(s.client.list_api_tokens(include_revoked=s.args.include_revoked), render.TOKENS, "no tokens")


def tokens_revoke(s: Session) -> None:
    token = s.client.revoke_api_token(s.args.id)
    s.show(token, f"revoked token {token.id} ({calls.role_name(token.role)} {token.subject})")


def tokens_introspect(s: Session) -> None:
    token = s.client.introspect_token(read_api_key(s, "the token to check"))
    s.show(token, render.TOKENS.render([token], style=s.style))


def audit_list(s: Session) -> None:
    events = s.client.list_audit_events(resource_prefix=s.args.resource_prefix or "",
                                        page_size=min(s.args.limit or 100, 500))
    s.show_list(_take(events, s.args.limit), render.AUDIT, "no audit events")


def _take(items: Iterable[Any], limit: int) -> list[Any]:
    taken: list[Any] = []
    for item in items:
        if limit and len(taken) >= limit:
            break
        taken.append(item)
    return taken
