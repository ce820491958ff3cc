"""The bounds table (domain.bounds): every string and repeated field of every
request both services take has an explicit, documented bound, and the edge
check names the field path of whatever is over it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc_health.v1 import health_pb2

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resolver_service_pb2 as rs
from modelplane.v1 import resources_pb2 as pb
from modelplane_server.domain import bounds
from modelplane_server.domain.errors import InvalidArgument
from modelplane_server.runtime.request_gate import MAX_VIOLATIONS, Undecodable, bound_violations, check_request

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
TEXT = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and bool(fd.message_type.GetOptions().map_entry)


def request_messages() -> list[Descriptor]:
    services = [cs.DESCRIPTOR.services_by_name["ConfigService"], rs.DESCRIPTOR.services_by_name["ResolverService"]]
    found = {m.input_type.full_name: m.input_type for s in services for m in s.methods}
    found[health_pb2.HealthCheckRequest.DESCRIPTOR.full_name] = health_pb2.HealthCheckRequest.DESCRIPTOR
    return list(found.values())


def bounded_fields() -> set[tuple[str, str]]:
    """(message, field) of every string, repeated and map field reachable from a request."""
    out: set[tuple[str, str]] = set()
    seen: set[str] = set()

    def walk(d: Descriptor) -> None:
        if d.full_name in seen:
            return
        seen.add(d.full_name)
        for fd in d.fields:
            if _is_map(fd):
                out.add((d.full_name, fd.name))
                out.add((d.full_name, fd.name + "[]"))
                value = fd.message_type.fields_by_name["value"]
                if value.message_type is not None:
                    walk(value.message_type)
                continue
            if fd.is_repeated:
                out.add((d.full_name, fd.name))
                if fd.type in TEXT:
                    out.add((d.full_name, fd.name + "[]"))
            elif fd.type in TEXT:
                out.add((d.full_name, fd.name))
            if fd.message_type is not None:
                walk(fd.message_type)

    for d in request_messages():
        walk(d)
    return out


def test_every_string_and_repeated_field_of_every_request_has_an_explicit_bound() -> None:
    missing = sorted(bounded_fields() - set(bounds.BOUNDS))
    assert not missing, f"add these to domain/bounds.py BOUNDS and docs/operations.md: {missing}"


def test_every_entry_names_a_real_field_of_the_right_kind() -> None:
    pool = descriptor_pool.Default()
    for (message, field), limit in bounds.BOUNDS.items():
        d = pool.FindMessageTypeByName(message)
        fd = d.fields_by_name[field.removesuffix("[]")]
        assert limit > 0
        if field.endswith("[]"):
            assert _is_map(fd) or (fd.is_repeated and fd.type in TEXT), (message, field)
        else:
            assert fd.is_repeated or fd.type in TEXT, (message, field)


def test_the_bounds_are_documented() -> None:
    text = DOCS.read_text()
    rows = set(re.findall(r"^\| `([\w.]+)` \| `([\w\[\]]+)` \| ([\d,]+) \|", text, re.MULTILINE))
    documented = {(m, f): int(n.replace(",", "")) for m, f, n in rows}
    expected = {(m.removeprefix("modelplane.v1."), f): n for (m, f), n in bounds.BOUNDS.items()}
    assert documented == expected
    for service, size in bounds.MAX_REQUEST_BYTES.items():
        assert f"| {service} | {size:,} |" in text


def test_identifiers_are_small_and_conversations_generous() -> None:
    assert bounds.BOUNDS[("modelplane.v1.ChatRequest", "chat_id")] <= 512
    assert bounds.BOUNDS[("modelplane.v1.ChatRequest", "user")] <= 512
    assert bounds.BOUNDS[("modelplane.v1.ChatMessage", "text")] >= 1_000_000
    assert bounds.MAX_REQUEST_BYTES["resolver_svc"] > 2 * bounds.BOUNDS[("modelplane.v1.ChatMessage", "text")]


# ------------------------------------------------------------------ the edge check


def test_violations_name_the_field_path() -> None:
    request = rs.ChatRequest(chat_id="c" * (bounds.CHAT_ID + 1), messages=[
        rs.ChatMessage(text="fine"),
        rs.ChatMessage(text="t" * (bounds.CHAT_TEXT + 1), tool_calls=[
            rs.ToolCall(id="ok"), rs.ToolCall(id="i" * (bounds.TOOL_CALL_ID + 1))])])
    tool = request.tools.add(name="t")
    tool.parameters.update({"type": "object", "properties": {"city": {"description": "d" * (bounds.SCHEMA_TEXT + 1)}}})
    assert [v.field for v in bound_violations(request)] == [
        "chat_id", "messages[1].text", "messages[1].tool_calls[1].id",
        'tools[0].parameters.fields["properties"].struct_value.fields["city"].struct_value'
        '.fields["description"].string_value']
    [v] = bound_violations(rs.ChatRequest(user="u" * 256))
    assert (v.field, v.description) == ("user", "must be at most 255 characters, got 256")


def test_repeated_fields_and_their_elements() -> None:
    mask = cs.UpdateProviderRequest(update_mask={"paths": ["display_name", "p" * (bounds.MASK_PATH + 1)]})
    assert [v.field for v in bound_violations(mask)] == ["update_mask.paths[1]"]
    many = cs.UpdateProviderRequest(update_mask={"paths": ["x"] * (bounds.MASK_PATHS + 1)})
    [v] = bound_violations(many)
    assert (v.field, v.description) == ("update_mask.paths", f"must have at most {bounds.MASK_PATHS} elements, "
                                                             f"got {bounds.MASK_PATHS + 1}")
    tools = rs.ChatRequest(tools=[rs.ToolDefinition(name="t")] * (bounds.CHAT_TOOLS + 1))
    assert [v.field for v in bound_violations(tools)] == ["tools"]


def test_at_the_bound_is_fine_and_violations_are_few() -> None:
    assert bound_violations(rs.ChatRequest(chat_id="c" * bounds.CHAT_ID, user="u" * 255)) == []
    assert bound_violations(cs.CreateProviderRequest(provider=pb.Provider(api_key="k" * 8192))) == []
    flood = rs.ChatRequest(messages=[rs.ChatMessage(tool_call_id="i" * 600)] * 100)
    assert len(bound_violations(flood)) == MAX_VIOLATIONS


def test_an_undecodable_body_is_invalid_argument_without_internals() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_request(Undecodable("modelplane.v1.ChatRequest"))
    assert "modelplane.v1.ChatRequest" in err.value.message
    assert "Error" not in err.value.message and "<class" not in err.value.message
