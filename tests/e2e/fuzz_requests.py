"""Hypothesis strategies for any request message, built from its descriptor.

Values lean towards what breaks services: strings at and just past their
bound (domain.bounds), huge ones, NUL and other control characters, line
separators, odd unicode, names and page tokens that almost look right;
integers at and past the edges of their type; NaN and infinities; enum
numbers the proto does not define; update masks with unknown, camelCase and
nested paths; timestamps out of range; deep JSON schemas.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from modelplane_server.domain.paging import encode
from modelplane_server.domain import bounds

F = FieldDescriptor
INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1), F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1), F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}

NAMES = ["p", "m", "openai", "gpt", "alice", "bob", "fuzz-p", "fuzz-m", "a" * 63, "a" * 64, "A", "a b", "-a",
         "a--b", "root-admin", "resolver", "providers/", "models/m", "users/alice", ".", "*", "%", "_", "\\"]
URLS = ["http://127.0.0.1:1/v1", "https://127.0.0.1:1/", "http://localhost:1", "http://[::1]:1/v1",
        "http://169.254.169.254/latest", "http://127.0.0.1:50051", "https://u:p@127.0.0.1/", "ftp://x/",
        "http://127.0.0.1:1/api/v2/aibridge/", "http://127.0.0.1:1/v1?x=1", "http://127.0.0.1:1/#f", "//x"]
ENUMISH = ["low", "medium", "high", "xhigh", "max", "minimal", "responses", "chat_completions", "us-east-1",
           "eu-west-9", "US-EAST-1"]
TOKENS = [encode("p"), encode(["p", "m"]), encode(5), encode(-1), encode(2**63), encode([["x"]]), encode({"a": 1}),
          encode("a\x00b"), encode(["p", "\u2028"]), encode(None), encode(1.5), encode(True),
          base64.urlsafe_b64encode(b"[" * 760).decode().rstrip("="), base64.b64encode(b"\xff\xfe").decode(),
          "not base64!", "====", "A" * 1025]
ETAGS = ["1", "2", "0", "-1", "99999999999999999999999", "x", " 1", "1\n"]
ODD = ["", " ", "\x00", "a\x00b", "\u2028", "a\u2029b", "\x7f", "\u0085", "\ufeff", "\u200b", "\u202e", "é", "名前",
       "\U0001f600", "a\tb", "a\nb", "\r\n", "'", "\"", "${x}", "%s%s%n", "null", "[]", "{}", "<script>"]
MASK_PATHS = ["display_name", "base_url", "enabled", "key_policy", "key_policy.allow_user_keys",
              "key_policy.central_key_enabled", "key_policy.central_key_fallback", "key_policy.nope", "api_key",
              "region", "name", "type", "etag", "create_time", "model_identifier", "context_limit", "options",
              "options.top_k", "options.temperature", "pricing", "pricing.input_per_mtok", "anthropic",
              "anthropic.effort", "openai.api", "google.thinking_budget", "vercel", "byok_enabled",
              "personal_overrides_enabled", "byokEnabled", "displayName", "settings.byok_enabled", "*", "",
              "options.", ".options", "options..top_k", "a" * 129]

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)


def _string(message: str, field: str) -> st.SearchStrategy[str]:
    limit = bounds.bound(message, field, repeated=False)
    pools: list[st.SearchStrategy[str]] = [
        st.sampled_from(NAMES), st.sampled_from(ODD), _text,
        st.sampled_from([limit, limit + 1, limit * 2 + 3]).map(lambda n: "x" * n),
    ]
    if field in ("page_token",):
        pools.append(st.sampled_from(TOKENS))
    if field in ("etag", "epoch"):
        pools.append(st.sampled_from(ETAGS))
    if field in ("base_url", "effective_base_url"):
        pools.append(st.sampled_from(URLS))
    if field in ("effort", "reasoning_effort", "api", "region"):
        pools.append(st.sampled_from(ENUMISH))
    if field == "paths[]" or field == "paths":
        pools.append(st.sampled_from(MASK_PATHS))
    if field == "arguments_json":
        pools.append(st.sampled_from(['{"a": 1}', "[" * 5000, '{"a": NaN}', "1", '"x"', "{" * 20]))
    if field == "api_key":
        pools.append(st.sampled_from(["sk-fuzz-0123456789", " sk-lead", "sk-trail ", "sk-\u00e9", "k"]))
    return st.one_of(*pools)


def _scalar(message: str, fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    if fd.type == F.TYPE_STRING:
        return _string(message, fd.name)
    if fd.type == F.TYPE_BYTES:
        return st.binary(max_size=32)
    if fd.type == F.TYPE_BOOL:
        return st.booleans()
    if fd.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32 if fd.type == F.TYPE_FLOAT else 64),
                         st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, 1e308, -1e-308]))
    if fd.type == F.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in fd.enum_type.values]), st.integers(-3, 12))
    low, high = INT_RANGES[fd.type]
    return st.one_of(st.integers(low, high), st.sampled_from([0, 1, -1 if low < 0 else 2, low, high]),
                     st.integers(-3, 600).filter(lambda n: low <= n <= high))


def messages(descriptor: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for a message: any subset of its fields, each a value
    (or a list of values, or a map) the field can hold."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for fd in descriptor.fields:
        value = _value(descriptor, fd, depth)
        if value is not None:
            optional[fd.name] = value
    return st.fixed_dictionaries({}, optional=optional)


def _value(descriptor: Any, fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    name = descriptor.full_name
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        if depth > 3:
            return None
        key = _string(name, fd.name + "[]")
        value_fd = fd.message_type.fields_by_name["value"]
        inner = messages(value_fd.message_type, depth + 1) if value_fd.message_type is not None \
            else _scalar(name, value_fd)
        return st.dictionaries(key, inner, max_size=3)
    if fd.message_type is not None:
        if depth > 3:
            return None
        single: st.SearchStrategy[Any] = messages(fd.message_type, depth + 1)
    else:
        single = _scalar(name, fd)
        if fd.is_repeated:
            single = _string(name, fd.name + "[]") if fd.type == F.TYPE_STRING else single
    if fd.is_repeated:
        return st.lists(single, max_size=3)
    return single


@st.composite
def requests(draw: st.DrawFn, cls: type[Message], seed: Message | None) -> Message:
    """A request: entirely generated, or (when the method has a seed, a
    request that succeeds) the seed with one or two fields replaced, so
    generated values also reach the code behind the first checks."""
    values = draw(messages(cls.DESCRIPTOR), label="fields")
    message = cls()
    if seed is not None and draw(st.booleans(), label="from seed"):
        message.CopyFrom(seed)
        keep = draw(st.lists(st.sampled_from(sorted(values)), max_size=2, unique=True), label="replaced") \
            if values else []
        values = {k: values[k] for k in keep}
        for name in values:
            message.ClearField(name)
    fill(message, values)
    return message


def fill(message: Message, values: dict[str, Any]) -> None:
    descriptor = message.DESCRIPTOR
    for name, value in values.items():
        fd = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            for k, v in value.items():
                if value_fd.message_type is not None:
                    fill(target[k], v)
                else:
                    target[k] = v
        elif fd.is_repeated and fd.message_type is not None:
            for item in value:
                fill(target.add(), item)
        elif fd.is_repeated:
            target.extend(value)
        elif fd.message_type is not None:
            target.SetInParent()
            fill(target, value)
        else:
            setattr(message, name, value)


def describe(message: Message) -> str:
    """A short, printable description of a request for failure messages."""
    return json.dumps(str(message)[:600])
