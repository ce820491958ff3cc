"""Commands about what the running system decides and does: resolution,
chat, provider probes, health, the config stream and a user's config."""

from __future__ import annotations

import sys

from modelplane.cli import governance, render
from modelplane.cli.session import Session


def resolve_credential(s: Session) -> None:
    resolution = s.client.resolve_credential(s.args.provider, user=s.args.user or "")
    s.show(resolution, render.credential(resolution))


def resolve_models(s: Session) -> None:
    response = s.client.list_available_models(user=s.args.user or "", last_used_model=s.args.last_used or "")
    s.show(response, render.available_models(response, s.style) + "\n" + governance.budget(response.budget))


def resolve_model(s: Session) -> None:
    resolved = s.client.resolve_model(s.args.context, s.args.chat_model or "", user=s.args.user or "")
    counted = "" if resolved.budget.applies or not resolved.budget.limited else " (does not count for this model)"
    s.show(resolved, render.resolved_model(resolved, s.args.explain, s.style) + "\n"
           + governance.budget(resolved.budget) + counted)


def chat(s: Session) -> None:
    a = s.args
    text = sys.stdin.read() if a.message == "-" else a.message
    messages: list[tuple[str, str]] = [("system", a.system)] if a.system else []
    messages.append(("user", text))
    options = dict(context=a.context, chat_model=a.model or "", chat_id=a.chat_id or "", user=a.user or "")
    if not a.stream:
        response = s.client.chat(messages, **options)
        if s.structured:
            s.show(response)
            return
        if response.reasoning:
            s.note(s.err_style.dim(response.reasoning))
        s.print(response.text + response.refusal)
        s.note(s.err_style.dim(render.chat_summary(response.resolution.model.name, response.usage, response)))
        return
    model, usage, finish = "", None, None
    for event in s.client.stream_chat(messages, **options):
        if s.structured:
            s.event(event)
            continue
        kind = event.WhichOneof("event")
        if kind in ("text_delta", "refusal_delta"):
            s.out.write(event.text_delta or event.refusal_delta)
            s.out.flush()
        elif kind == "reasoning_delta":
            s.err.write(event.reasoning_delta)
            s.err.flush()
        elif kind == "resolution":
            model = event.resolution.model.name
        elif kind == "usage":
            usage = event.usage
        elif kind == "finish":
            finish = event.finish
        elif kind == "tool_call_delta" and event.tool_call_delta.name:
            s.note(f"[tool call {event.tool_call_delta.name}]")
    if not s.structured:
        s.print("")
        s.note(s.err_style.dim(render.chat_summary(model, usage, finish)))


def probe(s: Session) -> None:
    result = s.client.probe_provider(s.args.provider, use_own_key=s.args.own_key, user=s.args.user or "")
    s.show(result)


def health(s: Session) -> None:
    target = "resolver" if s.args.resolver else "config"
    status = s.client.health(target, s.args.service or "")
    if s.structured:
        s.data({"status": status})
    else:
        s.print(f"{target}: {s.style.green(status) if status == 'SERVING' else s.style.red(status)}")


def watch(s: Session) -> None:
    for event in s.client.watch_config(after_revision=s.args.after_revision):
        if s.structured:
            s.event(event)
        elif event.HasField("snapshot"):
            snap = event.snapshot
            s.print(f"revision {event.revision}: snapshot ({len(snap.providers)} providers, "
                    f"{len(snap.models)} models)")
        elif event.changes:
            changed = ", ".join(str(c.WhichOneof("change")) for c in event.changes)
            s.print(f"revision {event.revision}: {changed}")
        elif event.spend:
            s.print(f"revision {event.revision}: spend of {len({u.user for u in event.spend})} user(s)")
        else:
            s.print(f"revision {event.revision}: current")


def user_config(s: Session) -> None:
    s.show(s.client.get_user_config(user=s.args.user or ""))
