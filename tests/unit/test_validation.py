"""Table tests for modelplane_server.domain.validation and .base_url: each rule, valid and invalid, by exact field path."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelplane_server.domain.types import (
    OPTIONS_FAMILY,
    GenerationOptions,
    KeyPolicy,
    Model,
    OverrideContext,
    ADMIN_CONTEXTS,
    PERSONAL_CONTEXTS,
    Pricing,
    Provider,
    ProviderOptions,
    ProviderType,
)
from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.domain.options import ALL_OPTIONS, OptionDef, OptionKind
from modelplane_server.domain.base_url import base_url_violations, effective_base_url, metadata_address, parse_own_address
from modelplane_server.domain.validation import (
    DEFAULT_PAGE_SIZE,
    NAME_PATTERN,
    api_key_violations,
    derive_model_name,
    model_violations,
    provider_violations,
    update_mask_violations,
    user_violations,
    validate_api_key,
    validate_model,
    validate_override_context,
    validate_page_size,
    validate_provider,
    validate_update_mask,
    validate_user,
)

OWN = ("modelplane.internal:8443", "https://config.example.com", "127.0.0.1:9000")


def fields(violations: list[FieldViolation]) -> list[str]:
    return [v.field for v in violations]


def describe(violations: list[FieldViolation]) -> str:
    return " | ".join(v.description for v in violations)


# ---------------------------------------------------------------- providers


def provider(**changes: Any) -> Provider:
    return dataclasses.replace(Provider(name="openai", type=ProviderType.OPENAI), **changes)


def check_provider(p: Provider, *, allow_metadata: bool = False) -> list[FieldViolation]:
    return provider_violations(p, own_addresses=OWN, allow_metadata_addresses=allow_metadata)


@pytest.mark.parametrize(
    "p",
    [
        provider(),
        provider(name="a"),
        provider(name="a" * 63),
        provider(name="openai-eu-2", display_name="OpenAI (EU) ✨", base_url="https://api.openai.com/v1/"),
        provider(type=ProviderType.ANTHROPIC, name="anthropic"),
        provider(type=ProviderType.GOOGLE, name="google"),
        provider(type=ProviderType.OPENROUTER, name="openrouter"),
        provider(type=ProviderType.VERCEL_AI_GATEWAY, name="vercel"),
        provider(type=ProviderType.AZURE_OPENAI, base_url="https://res.openai.azure.com/openai/v1"),
        provider(type=ProviderType.OPENAI_COMPATIBLE, base_url="http://localhost:11434/v1"),
        provider(type=ProviderType.BEDROCK),
        provider(type=ProviderType.BEDROCK, region="eu-central-1"),
        provider(type=ProviderType.BEDROCK, region="us-gov-west-1"),
        provider(type=ProviderType.BEDROCK, region="us-isob-east-1"),
        provider(type=ProviderType.BEDROCK, base_url="https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"),
        provider(key_policy=KeyPolicy(central_key_enabled=True, allow_user_keys=False, central_key_fallback=False)),
        provider(key_policy=KeyPolicy(central_key_enabled=False, allow_user_keys=True, central_key_fallback=False)),
        provider(key_policy=KeyPolicy(central_key_enabled=True, allow_user_keys=True, central_key_fallback=False)),
    ],
    ids=repr,
)
def test_valid_providers(p: Provider) -> None:
    assert check_provider(p) == []
    validate_provider(p, own_addresses=OWN, allow_metadata_addresses=False)


@pytest.mark.parametrize(
    ("p", "expected_fields", "says"),
    [
        (provider(name=""), ["provider.name"], "is required"),
        (provider(name="OpenAI"), ["provider.name"], "kebab-case"),
        (provider(name="open_ai"), ["provider.name"], "kebab-case"),
        (provider(name="-openai"), ["provider.name"], "kebab-case"),
        (provider(name="openai-"), ["provider.name"], "kebab-case"),
        (provider(name="open--ai"), ["provider.name"], "kebab-case"),
        (provider(name="openai\n"), ["provider.name"], "kebab-case"),
        (provider(name="ópenai"), ["provider.name"], "kebab-case"),
        (provider(name="a" * 64), ["provider.name"], "at most 63 characters, got 64"),
        (provider(name="A" * 64), ["provider.name", "provider.name"], "at most 63"),
        (provider(type=""), ["provider.type"], "is required: one of anthropic, openai"),
        (provider(type="gemini"), ["provider.type"], "is required"),
        (provider(display_name="x" * 201), ["provider.display_name"], "at most 200 characters, got 201"),
        (provider(display_name="Open\nAI"), ["provider.display_name"], "control characters"),
        (provider(display_name="Open\x00AI"), ["provider.display_name"], "control characters"),
        (provider(display_name="   "), ["provider.display_name"], "blank"),
        (provider(type=ProviderType.AZURE_OPENAI), ["provider.base_url"], "required for azure-openai"),
        (provider(type=ProviderType.OPENAI_COMPATIBLE), ["provider.base_url"], "required for openai-compatible"),
        (provider(region="us-east-1"), ["provider.region"], "only to bedrock"),
        (provider(type=ProviderType.BEDROCK, region="US-EAST-1"), ["provider.region"], "AWS region"),
        (provider(type=ProviderType.BEDROCK, region="useast1"), ["provider.region"], "AWS region"),
        (provider(type=ProviderType.BEDROCK, region="us-east-1\n"), ["provider.region"], "AWS region"),
        (provider(key_policy=KeyPolicy(False, False, False)), ["provider.key_policy"], "at least one"),
        (provider(key_policy=KeyPolicy(True, False, True)), ["provider.key_policy.central_key_fallback"],
         "needs both"),
        (provider(key_policy=KeyPolicy(False, True, True)), ["provider.key_policy.central_key_fallback"],
         "needs both"),
        (provider(key_policy=KeyPolicy(False, False, True)),
         ["provider.key_policy", "provider.key_policy.central_key_fallback"], "at least one"),
    ],
    ids=repr,
)
def test_invalid_providers(p: Provider, expected_fields: list[str], says: str) -> None:
    found = check_provider(p)
    assert fields(found) == expected_fields
    assert says in describe(found)
    with pytest.raises(InvalidArgument) as raised:
        validate_provider(p, own_addresses=OWN, allow_metadata_addresses=False)
    assert raised.value.violations == found
    assert raised.value.reason == "INVALID_FIELD"


def test_every_provider_problem_is_reported_at_once() -> None:
    p = Provider(
        name="Bad_Name", type=ProviderType.OPENAI, display_name="x\n", base_url="ftp://u:p@h/?q#f",
        region="us-east-1", key_policy=KeyPolicy(False, False, True),
    )
    found = check_provider(p)
    assert fields(found) == [
        "provider.name",
        "provider.display_name",
        "provider.base_url",  # scheme
        "provider.base_url",  # user info
        "provider.base_url",  # query
        "provider.base_url",  # fragment
        "provider.region",
        "provider.key_policy",
        "provider.key_policy.central_key_fallback",
    ]


def test_field_prefix_is_the_callers() -> None:
    found = provider_violations(provider(name=""), own_addresses=(), allow_metadata_addresses=False,
                                field_prefix="")
    assert fields(found) == ["name"]


# ---------------------------------------------------------------- base URLs


def check_url(url: str, provider_type: ProviderType = ProviderType.OPENAI, *, own: tuple[str, ...] = OWN,
              allow_metadata: bool = False) -> list[FieldViolation]:
    return base_url_violations(url, provider_type, own_addresses=own,
                               allow_metadata_addresses=allow_metadata, field="provider.base_url")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://api.openai.com/v1",
        "https://api.openai.com/v1/",
        "HTTPS://API.OPENAI.COM/v1",
        "http://10.0.0.5:4000/v1",
        "http://[2001:db8::1]:8080/v1",
        "https://litellm.corp.example/api/v2/other/openai/v1",
        "https://gateway.example.com/aibridge/v1",  # only the full route is modelplane's
        "http://localhost:11434/v1",  # a local Ollama is not modelplane
        "http://127.0.0.1:8000/v1",
        "https://modelplane.internal:9443/v1",  # own host, another port
        "http://169.254.169.253/",  # next to the metadata address, not it
    ],
)
def test_valid_base_urls(url: str) -> None:
    assert check_url(url) == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("api.openai.com/v1", "absolute http or https"),
        ("//api.openai.com/v1", "absolute http or https"),
        ("ftp://api.openai.com/v1", "absolute http or https"),
        ("file:///etc/passwd", "absolute http or https"),
        ("https:///v1", "must include a host"),
        ("https://user:pw@api.openai.com/v1", "user info"),
        ("https://api.openai.com/v1?key=1", "query string"),
        ("https://api.openai.com/v1?", "query string"),
        ("https://api.openai.com/v1#frag", "fragment"),
        ("https://api.openai.com:99999/v1", "invalid port"),
        ("https://api.openai.com:http/v1", "invalid port"),
        ("http://[::1/v1", "not a valid URL"),
        ("https://api.openai.com/v1 ", "whitespace"),
        ("https://api.open ai.com/v1", "whitespace"),
        ("https://api.openai.com/\x7fv1", "control characters"),
        ("https://x.com/" + "a" * 2048, "at most 2048"),
    ],
)
def test_malformed_base_urls(url: str, says: str) -> None:
    found = check_url(url)
    assert fields(found) == ["provider.base_url"]
    assert says in found[0].description


def test_user_info_is_never_echoed() -> None:
    found = check_url("https://alice:sk-secret-123@api.openai.com/v1?token=sk-secret-456#sk-secret-789")
    assert len(found) == 3
    assert "sk-secret" not in describe(found)


@pytest.mark.parametrize(
    "url",
    [
        "https://coder.example.com/api/v2/aibridge/openai/v1",
        "https://coder.example.com/api/v2/aibridge",
        "https://coder.example.com/API/V2/AIBRIDGE/anthropic",
        "https://coder.example.com//api//v2/aibridge/openai/v1",
        "https://coder.example.com/api/v2/%61ibridge/openai/v1",
        "https://coder.example.com/prefix/api/v2/aibridge/openai/v1",
    ],
)
def test_gateway_route_is_refused_with_what_to_set_instead(url: str) -> None:
    found = check_url(url, own=())
    assert fields(found) == ["provider.base_url"]
    assert "/api/v2/aibridge/" in found[0].description
    assert "upstream provider or proxy endpoint instead, e.g. https://api.openai.com/v1" in found[0].description


def test_self_reference_example_falls_back_for_types_without_a_default() -> None:
    found = check_url("https://c.example.com/api/v2/aibridge/v1", ProviderType.OPENAI_COMPATIBLE, own=())
    assert "e.g. https://provider.example.com/v1" in found[0].description


@pytest.mark.parametrize(
    ("own", "url", "refused"),
    [
        (("modelplane.internal:8443",), "https://modelplane.internal:8443/v1", True),
        (("modelplane.internal:8443",), "https://MODELPLANE.Internal.:8443/v1", True),
        (("modelplane.internal:8443",), "https://modelplane.internal/v1", False),
        (("modelplane.internal",), "https://modelplane.internal:1234/v1", True),  # bare host: any port
        (("https://config.example.com",), "https://config.example.com/v1", True),
        (("https://config.example.com",), "https://config.example.com:443/v1", True),
        (("https://config.example.com",), "http://config.example.com/v1", False),  # port 80, not 443
        (("https://gw.example.com/modelplane",), "https://gw.example.com/modelplane/v1", True),
        (("https://gw.example.com/modelplane",), "https://gw.example.com/modelplane", True),
        (("https://gw.example.com/modelplane",), "https://gw.example.com/modelplane-other/v1", False),
        (("https://gw.example.com/modelplane",), "https://gw.example.com/litellm/v1", False),
        (("127.0.0.1:9000",), "http://localhost:9000/v1", True),
        (("127.0.0.1:9000",), "http://[::1]:9000/v1", True),
        (("127.0.0.1:9000",), "http://127.1:9000/v1", True),
        (("127.0.0.1:9000",), "http://[::ffff:127.0.0.1]:9000/v1", True),
        (("localhost:9000",), "http://127.0.0.1:9000/v1", True),
        (("127.0.0.1:9000",), "http://localhost:11434/v1", False),  # same machine, other service
        (("localhost",), "http://127.0.0.1:9000/v1", False),  # loopback aliasing needs a port
        (("[::1]:9000",), "http://127.0.0.1:9000/v1", True),
        ((), "https://modelplane.internal:8443/v1", False),
    ],
)
def test_own_addresses(own: tuple[str, ...], url: str, refused: bool) -> None:
    found = check_url(url, own=own)
    assert fields(found) == (["provider.base_url"] if refused else [])
    if refused:
        assert f"points back at modelplane itself ({own[0]})" in found[0].description
        assert "upstream provider or proxy endpoint" in found[0].description


@pytest.mark.parametrize(
    ("own", "url", "refused"),
    [
        # A wildcard listener answers on every local address of its port.
        (("0.0.0.0:50052",), "http://127.0.0.1:50052/v1", True),
        (("0.0.0.0:50052",), "http://localhost:50052/v1", True),
        (("0.0.0.0:50052",), "http://LOCALHOST.:50052/v1", True),
        (("0.0.0.0:50052",), "http://[::1]:50052/v1", True),
        (("0.0.0.0:50052",), "http://127.0.0.2:50052/v1", True),
        (("0.0.0.0:50052",), "http://0.0.0.0:50052/v1", True),
        (("0.0.0.0:50052",), "http://0:50052/v1", True),
        (("0.0.0.0:50052",), "http://[::]:50052/v1", True),
        (("0.0.0.0:50052",), "http://api.localhost:50052/v1", True),
        (("0.0.0.0:50052",), "http://mp-test-host:50052/v1", True),  # the machine's own name
        (("0.0.0.0:50052",), "http://MP-Test-Host.example.internal:50052/v1", True),
        (("[::]:50052",), "http://127.0.0.1:50052/v1", True),
        (("[::]:50052",), "http://localhost:50052/v1", True),
        (("[::]:50052",), "http://mp-test-host:50052/v1", True),
        (("0.0.0.0:50052",), "http://localhost:50053/v1", False),  # same machine, other service
        (("0.0.0.0:50052",), "http://upstream.example.com:50052/v1", False),
        (("0.0.0.0:50052",), "http://10.1.2.3:50052/v1", False),
        # A connection to 0.0.0.0 or :: reaches loopback, so a loopback listener.
        (("127.0.0.1:51052",), "http://0.0.0.0:51052/v1", True),
        (("127.0.0.1:51052",), "http://[::]:51052/v1", True),
        (("127.0.0.1:51052",), "http://0:51052/v1", True),
        (("127.0.0.1:51052",), "http://[::ffff:0.0.0.0]:51052/v1", True),
        (("localhost:51052",), "http://0.0.0.0:51052/v1", True),
        (("127.0.0.1:51052",), "http://0.0.0.0:11434/v1", False),
        # A loopback listener is not reachable on the machine's name.
        (("127.0.0.1:51052",), "http://mp-test-host:51052/v1", False),
    ],
)
def test_own_wildcard_and_unspecified_addresses(own: tuple[str, ...], url: str, refused: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "mp-test-host.example.internal")
    found = check_url(url, own=own)
    assert fields(found) == (["provider.base_url"] if refused else [])
    if refused:
        assert f"points back at modelplane itself ({own[0]})" in found[0].description


@pytest.mark.parametrize("entry", ["", ":8080", "host:port", "https://:443"])
def test_malformed_own_address_fails_fast(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_own_address(entry)


@pytest.mark.parametrize(
    ("host", "canonical"),
    [
        ("169.254.169.254", "169.254.169.254"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("169.254.169.254.", "169.254.169.254"),
        ("[::ffff:169.254.169.254]", "169.254.169.254"),
        ("[::ffff:a9fe:a9fe]", "169.254.169.254"),
        ("[::169.254.169.254]", "169.254.169.254"),
        ("[64:ff9b::a9fe:a9fe]", "169.254.169.254"),
        ("[2002:a9fe:a9fe::1]", "169.254.169.254"),
        ("１６９．２５４．１６９．２５４", "169.254.169.254"),
        ("fd00:ec2::254", "fd00:ec2::254"),
        ("[FD00:EC2:0::254]", "fd00:ec2::254"),
        ("fd00:ec2::23", "fd00:ec2::23"),
        ("100.100.100.200", "100.100.100.200"),
        ("169.254.170.2", "169.254.170.2"),
        ("169.254.170.23", "169.254.170.23"),
        ("metadata.google.internal", "metadata.google.internal"),
        ("Metadata.Google.Internal.", "metadata.google.internal"),
        ("metadata.goog", "metadata.goog"),
        ("metadata", "metadata"),
        ("instance-data.ec2.internal", "instance-data.ec2.internal"),
        ("Instance-Data.EC2.Internal.", "instance-data.ec2.internal"),
        ("instance-data", "instance-data"),
    ],
)
def test_metadata_addresses(host: str, canonical: str) -> None:
    assert metadata_address(host) == canonical
    url_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    url = f"http://{url_host}/latest/meta-data/"
    found = check_url(url)
    assert fields(found) == ["provider.base_url"]
    assert f"cloud metadata endpoint ({canonical})" in found[0].description
    assert check_url(url, allow_metadata=True) == []


@pytest.mark.parametrize(
    "host",
    ["169.254.169.253", "metadata.google.internal.example.com", "my-metadata.goog.example", "0x", "1.2.3.4.5",
     "0x1ffffffff", "256.1.1.1", "08.1.1.1", "1_0.0.0.1", "api.openai.com", "::1", "fd00:ec2::255"],
)
def test_not_metadata_addresses(host: str) -> None:
    assert metadata_address(host) is None


IPV4_ENCODINGS = [
    lambda ip: str(ip),
    lambda ip: str(int(ip)),
    lambda ip: hex(int(ip)),
    lambda ip: ".".join(oct(b).replace("0o", "0") for b in ip.packed),
    lambda ip: f"{ip.packed[0]}.{int.from_bytes(ip.packed[1:], 'big')}",
    lambda ip: f"[::ffff:{ip}]",
]


@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from(IPV4_ENCODINGS))
def test_any_encoding_of_an_ipv4_address_means_that_address(n: int, encode: Any) -> None:
    ip = ipaddress.IPv4Address(n)
    metadata = {"169.254.169.254", "100.100.100.200", "169.254.170.2", "169.254.170.23"}
    expected = str(ip) if str(ip) in metadata else None
    assert metadata_address(encode(ip)) == expected
    assert metadata_address(encode(ipaddress.IPv4Address("169.254.169.254"))) == "169.254.169.254"


# ---------------------------------------------------------------- names


@given(st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 63))
def test_any_kebab_name_up_to_63_is_accepted(name: str) -> None:
    assert check_provider(provider(name=name)) == []


@given(st.text(max_size=80))
def test_names_are_accepted_exactly_when_they_match_the_rule(name: str) -> None:
    ok = bool(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name)) and len(name) <= 63
    assert (check_provider(provider(name=name)) == []) is ok


@pytest.mark.parametrize(
    ("provider_name", "identifier", "expected"),
    [
        ("anthropic", "claude-opus-4-6", "anthropic-claude-opus-4-6"),
        ("openai", "gpt-5.3-codex", "openai-gpt-5-3-codex"),
        ("openrouter", "anthropic/claude-sonnet-4.5", "openrouter-anthropic-claude-sonnet-4-5"),
        ("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", "bedrock-us-anthropic-claude-sonnet-4-20250514-v1-0"),
        ("local", "Llama 3.1 8B Instruct", "local-llama-3-1-8b-instruct"),
        ("local", "modèle-ünïcode", "local-modele-unicode"),
        ("", "???", "model"),
        ("", "", "model"),
    ],
)
def test_derive_model_name(provider_name: str, identifier: str, expected: str) -> None:
    assert derive_model_name(provider_name, identifier) == expected


def test_derived_long_names_stay_distinct_and_valid() -> None:
    base = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-"
    a, b = derive_model_name("bedrock", base + "1"), derive_model_name("bedrock", base + "2")
    assert a != b
    assert len(a) == 63 and a.startswith("bedrock-arn-aws-bedrock-us-east-1-")
    assert re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{8}", a)


@given(st.text(max_size=40), st.text(max_size=300))
def test_derive_model_name_always_yields_a_valid_name(provider_name: str, identifier: str) -> None:
    name = derive_model_name(provider_name, identifier)
    assert model_violations(model(name=name), ProviderType.OPENAI) == []
    assert name == derive_model_name(provider_name, identifier)


# ---------------------------------------------------------------- effective URL and joining


@pytest.mark.parametrize(
    ("p", "env_region", "expected"),
    [
        (provider(), None, "https://api.openai.com/v1"),
        (provider(base_url="https://proxy.example.com/v1"), None, "https://proxy.example.com/v1"),
        (provider(type=ProviderType.ANTHROPIC), None, "https://api.anthropic.com"),
        (provider(type=ProviderType.GOOGLE), None, "https://generativelanguage.googleapis.com/v1beta/openai/"),
        (provider(type=ProviderType.OPENROUTER), None, "https://openrouter.ai/api/v1"),
        (provider(type=ProviderType.VERCEL_AI_GATEWAY), None, "https://ai-gateway.vercel.sh/v1"),
        (provider(type=ProviderType.OPENAI_COMPATIBLE), None, ""),
        (provider(type=ProviderType.BEDROCK, region="eu-west-1"), "us-west-2",
         "https://bedrock-runtime.eu-west-1.amazonaws.com"),
        (provider(type=ProviderType.BEDROCK), "us-west-2", "https://bedrock-runtime.us-west-2.amazonaws.com"),
        (provider(type=ProviderType.BEDROCK), None, "https://bedrock-runtime.us-east-1.amazonaws.com"),
        (provider(type=ProviderType.BEDROCK), "", "https://bedrock-runtime.us-east-1.amazonaws.com"),
        (provider(type=ProviderType.BEDROCK, base_url="https://vpce.example.com"), "us-west-2",
         "https://vpce.example.com"),
    ],
)
def test_effective_base_url(p: Provider, env_region: str | None, expected: str) -> None:
    assert effective_base_url(p, env_region) == expected




# ---------------------------------------------------------------- API keys, users


@pytest.mark.parametrize("key", ["sk-abc123", "x", "a" * 8192, "ABSK" + "Zm9v" * 20 + "==", "key with inner space"])
def test_valid_api_keys(key: str) -> None:
    assert api_key_violations(key, "api_key") == []
    validate_api_key(key, "api_key")


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", ["is required"]),
        (" sk-abc", ["refused, not trimmed"]),
        ("sk-abc\n", ["refused, not trimmed"]),
        ("\tsk-abc", ["refused, not trimmed"]),
        ("sk-\nabc", ["control characters"]),
        ("sk-\x00abc", ["control characters"]),
        ("sk-\u2028abc", ["control characters", "ASCII"]),
        ("sk-äbc", ["ASCII"]),
        ("a" * 8193, ["at most 8192"]),
        (" " + "a" * 8193 + "\x01é", ["at most 8192", "refused, not trimmed", "control characters", "ASCII"]),
    ],
)
def test_invalid_api_keys(key: str, says: list[str]) -> None:
    found = api_key_violations(key, "provider.api_key")
    assert fields(found) == ["provider.api_key"] * len(says)
    for violation, expected in zip(found, says):
        assert expected in violation.description
    with pytest.raises(InvalidArgument) as raised:
        validate_api_key(key, "provider.api_key")
    assert raised.value.violations == found


def test_api_key_is_never_echoed() -> None:
    key = " sk-live-SECRETVALUE\n"
    with pytest.raises(InvalidArgument) as raised:
        validate_api_key(key, "api_key")
    assert "SECRETVALUE" not in raised.value.message


@pytest.mark.parametrize("user", ["alice", "alice@example.com", "Ünïcode User", "u" * 255])
def test_valid_users(user: str) -> None:
    assert user_violations(user, "user") == []
    validate_user(user, "user")


@pytest.mark.parametrize(
    ("user", "count", "says"),
    [
        ("", 1, "is required"),
        (" alice", 1, "whitespace"),
        ("alice\n", 1, "whitespace"),
        ("al\x1bice", 1, "control characters"),
        ("u" * 256, 1, "at most 255"),
        (" " + "u" * 255 + "\x00x", 3, "at most 255"),
    ],
)
def test_invalid_users(user: str, count: int, says: str) -> None:
    found = user_violations(user, "request.user")
    assert fields(found) == ["request.user"] * count
    assert says in found[0].description
    with pytest.raises(InvalidArgument):
        validate_user(user, "request.user")


# ---------------------------------------------------------------- models


def model(**changes: Any) -> Model:
    base = Model(name="openai-gpt-5", provider="openai", model_identifier="gpt-5", display_name="GPT-5",
                 context_limit=400_000)
    return dataclasses.replace(base, **changes)


def options(**values: Any) -> GenerationOptions:
    return GenerationOptions(**values)


def anthropic(**values: Any) -> ProviderOptions:
    return ProviderOptions("anthropic", values)


@pytest.mark.parametrize(
    ("m", "provider_type"),
    [
        (model(), ProviderType.OPENAI),
        (model(options=options(compression_threshold=0, max_output_tokens=1, temperature=0.0, top_p=0.0,
                               top_k=1, presence_penalty=-2, frequency_penalty=-2.0)), ProviderType.OPENAI),
        (model(options=options(compression_threshold=100, temperature=2, top_p=1, presence_penalty=2.0,
                               frequency_penalty=2)), ProviderType.OPENAI),
        (model(pricing=Pricing(0, 0.0, 0.3, 3.75)), ProviderType.OPENAI),
        (model(pricing=Pricing(input_per_mtok=15)), ProviderType.OPENAI),
        (model(display_name="Claude Opus 4.6 — fast ⚡"), ProviderType.ANTHROPIC),
        (model(model_identifier="x" * 256), ProviderType.OPENAI),
        (model(model_identifier="arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-v1:0"),
         ProviderType.BEDROCK),
        (model(context_limit=100_000_000), ProviderType.OPENAI),
        (model(provider_options=ProviderOptions("openai", {"reasoning_effort": "minimal", "api": "chat_completions",
                                                           "max_completion_tokens": 1, "parallel_tool_calls": False})),
         ProviderType.OPENAI),
        (model(provider_options=ProviderOptions("openai", {"reasoning_effort": "xhigh"})), ProviderType.AZURE_OPENAI),
        (model(options=options(max_output_tokens=64000),
               provider_options=anthropic(thinking_budget_tokens=63999, effort="max")), ProviderType.ANTHROPIC),
        (model(options=options(max_output_tokens=2048, temperature=1, top_p=0.95),
               provider_options=anthropic(thinking_budget_tokens=1024)), ProviderType.BEDROCK),
        (model(options=options(temperature=0.2, top_k=40), provider_options=anthropic(effort="low")),
         ProviderType.ANTHROPIC),
        (model(provider_options=ProviderOptions("google", {"thinking_budget": -1, "include_thoughts": True})),
         ProviderType.GOOGLE),
        (model(provider_options=ProviderOptions("google", {"thinking_budget": 0})), ProviderType.GOOGLE),
        (model(provider_options=ProviderOptions("openrouter", {"reasoning_enabled": True, "reasoning_effort": "high"})),
         ProviderType.OPENROUTER),
        (model(provider_options=ProviderOptions("vercel", {"reasoning_effort": "low"})),
         ProviderType.VERCEL_AI_GATEWAY),
        (model(provider_options=ProviderOptions("vercel", {})), ProviderType.VERCEL_AI_GATEWAY),
        (model(provider_options=ProviderOptions("openai", {"reasoning_effort": None})), ProviderType.OPENAI),
        (model(options=options(max_output_tokens=400_000)), ProviderType.OPENAI),
    ],
    ids=repr,
)
def test_valid_models(m: Model, provider_type: ProviderType) -> None:
    assert model_violations(m, provider_type) == []
    validate_model(m, provider_type)


@pytest.mark.parametrize(
    ("m", "provider_type", "expected_fields", "says"),
    [
        (model(name=""), ProviderType.OPENAI, ["model.name"], "is required"),
        (model(name="GPT_5"), ProviderType.OPENAI, ["model.name"], "kebab-case"),
        (model(name="g" * 64), ProviderType.OPENAI, ["model.name"], "at most 63"),
        (model(provider=""), ProviderType.OPENAI, ["model.provider"], "is required"),
        (model(model_identifier=""), ProviderType.OPENAI, ["model.model_identifier"], "is required"),
        (model(model_identifier="gpt 5"), ProviderType.OPENAI, ["model.model_identifier"], "whitespace"),
        (model(model_identifier="gpt-5\n"), ProviderType.OPENAI, ["model.model_identifier"], "whitespace"),
        (model(model_identifier="gpt-\x005"), ProviderType.OPENAI, ["model.model_identifier"], "control"),
        (model(model_identifier="x" * 257), ProviderType.OPENAI, ["model.model_identifier"], "at most 256"),
        (model(display_name=""), ProviderType.OPENAI, ["model.display_name"], "is required"),
        (model(display_name="  "), ProviderType.OPENAI, ["model.display_name"], "blank"),
        (model(display_name="d" * 201), ProviderType.OPENAI, ["model.display_name"], "at most 200"),
        (model(display_name="GPT\r\n5"), ProviderType.OPENAI, ["model.display_name"], "control"),
        (model(context_limit=0), ProviderType.OPENAI, ["model.context_limit"], "greater than 0"),
        (model(context_limit=-5), ProviderType.OPENAI, ["model.context_limit"], "greater than 0"),
        (model(context_limit=100_000_001), ProviderType.OPENAI, ["model.context_limit"], "at most 100000000"),
        (model(context_limit=True), ProviderType.OPENAI, ["model.context_limit"], "integer"),
        (model(options=options(compression_threshold=101)), ProviderType.OPENAI,
         ["model.options.compression_threshold"], "between 0 and 100"),
        (model(options=options(compression_threshold=-1)), ProviderType.OPENAI,
         ["model.options.compression_threshold"], "between 0 and 100"),
        (model(options=options(max_output_tokens=0)), ProviderType.OPENAI,
         ["model.options.max_output_tokens"], "at least 1"),
        (model(options=options(temperature=2.01)), ProviderType.OPENAI,
         ["model.options.temperature"], "between 0 and 2"),
        (model(options=options(temperature=math.nan)), ProviderType.OPENAI,
         ["model.options.temperature"], "finite"),
        (model(options=options(top_p=math.inf)), ProviderType.OPENAI, ["model.options.top_p"], "finite"),
        (model(options=options(top_k=0)), ProviderType.OPENAI, ["model.options.top_k"], "at least 1"),
        (model(options=options(top_k=2.5)), ProviderType.OPENAI, ["model.options.top_k"], "integer"),
        (model(options=options(presence_penalty=-2.5)), ProviderType.OPENAI,
         ["model.options.presence_penalty"], "between -2 and 2"),
        (model(options=options(frequency_penalty=3)), ProviderType.OPENAI,
         ["model.options.frequency_penalty"], "between -2 and 2"),
        (model(pricing=Pricing(input_per_mtok=-0.01)), ProviderType.OPENAI,
         ["model.pricing.input_per_mtok"], "at least 0"),
        (model(pricing=Pricing(output_per_mtok=math.nan)), ProviderType.OPENAI,
         ["model.pricing.output_per_mtok"], "finite"),
        (model(pricing=Pricing(cache_read_per_mtok=math.inf)), ProviderType.OPENAI,
         ["model.pricing.cache_read_per_mtok"], "finite"),
        (model(pricing=Pricing(cache_write_per_mtok=-1)), ProviderType.OPENAI,
         ["model.pricing.cache_write_per_mtok"], "at least 0"),
        (model(options=options(max_output_tokens=400_001)), ProviderType.OPENAI,
         ["model.options.max_output_tokens"], "must not exceed context_limit (400000)"),
        # Family must match the provider type.
        (model(provider_options=anthropic(effort="high")), ProviderType.OPENAI,
         ["model.anthropic"], "a openai provider takes openai options (model.openai), not anthropic"),
        (model(provider_options=ProviderOptions("openai", {})), ProviderType.BEDROCK,
         ["model.openai"], "takes anthropic options (model.anthropic)"),
        (model(provider_options=ProviderOptions("vercel", {})), ProviderType.OPENROUTER,
         ["model.vercel"], "takes openrouter options"),
        (model(provider_options=ProviderOptions("openai", {"api": "responses"})), ProviderType.OPENAI_COMPATIBLE,
         ["model.openai"], "openai-compatible providers take no provider-specific options"),
        (model(provider_options=ProviderOptions("bogus", {})), ProviderType.OPENAI,
         ["model.bogus"], "takes openai options"),
        # Values against their definitions.
        (model(provider_options=anthropic(effort="extreme")), ProviderType.ANTHROPIC,
         ["model.anthropic.effort"], "one of low, medium, high, xhigh, max"),
        (model(provider_options=anthropic(thinking_budget_tokens=1023)), ProviderType.ANTHROPIC,
         ["model.anthropic.thinking_budget_tokens"], "at least 1024"),
        (model(provider_options=anthropic(budget=2048)), ProviderType.ANTHROPIC,
         ["model.anthropic.budget"],
         "is not an option; anthropic options are thinking_budget_tokens, effort, thinking"),
        (model(provider_options=ProviderOptions("openai", {"reasoning_effort": "maximal"})), ProviderType.OPENAI,
         ["model.openai.reasoning_effort"], "one of none, minimal, low, medium, high, xhigh, max"),
        (model(provider_options=ProviderOptions("openai", {"api": "completions"})), ProviderType.AZURE_OPENAI,
         ["model.openai.api"], "one of responses, chat_completions"),
        (model(provider_options=ProviderOptions("openai", {"max_completion_tokens": 0})), ProviderType.OPENAI,
         ["model.openai.max_completion_tokens"], "at least 1"),
        (model(provider_options=ProviderOptions("openai", {"parallel_tool_calls": "yes"})), ProviderType.OPENAI,
         ["model.openai.parallel_tool_calls"], "true or false"),
        (model(provider_options=ProviderOptions("google", {"thinking_budget": -2})), ProviderType.GOOGLE,
         ["model.google.thinking_budget"], "between -1 and 32768"),
        (model(provider_options=ProviderOptions("google", {"thinking_budget": 32769})), ProviderType.GOOGLE,
         ["model.google.thinking_budget"], "between -1 and 32768"),
        (model(provider_options=ProviderOptions("google", {"include_thoughts": 1})), ProviderType.GOOGLE,
         ["model.google.include_thoughts"], "true or false"),
        (model(provider_options=ProviderOptions("openrouter", {"reasoning_effort": "max"})),
         ProviderType.OPENROUTER, ["model.openrouter.reasoning_effort"],
         "one of none, minimal, low, medium, high, xhigh"),
        (model(provider_options=ProviderOptions("vercel", {"reasoning_enabled": "true"})),
         ProviderType.VERCEL_AI_GATEWAY, ["model.vercel.reasoning_enabled"], "true or false"),
        # Anthropic: budget_tokens < max_tokens, and sampling limits while thinking.
        (model(options=options(max_output_tokens=4096), provider_options=anthropic(thinking_budget_tokens=4096)),
         ProviderType.ANTHROPIC, ["model.anthropic.thinking_budget_tokens"],
         "must be below options.max_output_tokens (4096)"),
        (model(options=options(max_output_tokens=2000), provider_options=anthropic(thinking_budget_tokens=8000)),
         ProviderType.BEDROCK, ["model.anthropic.thinking_budget_tokens"], "budget_tokens < max_tokens"),
        (model(options=options(temperature=0.7), provider_options=anthropic(thinking_budget_tokens=2048)),
         ProviderType.ANTHROPIC, ["model.options.temperature"], "unset or 1 while anthropic.thinking_budget_tokens"),
        (model(options=options(top_k=5), provider_options=anthropic(thinking_budget_tokens=2048)),
         ProviderType.ANTHROPIC, ["model.options.top_k"], "must be unset while"),
        (model(options=options(top_p=0.9), provider_options=anthropic(thinking_budget_tokens=2048)),
         ProviderType.ANTHROPIC, ["model.options.top_p"], "between 0.95 and 1"),
    ],
    ids=repr,
)
def test_invalid_models(m: Model, provider_type: ProviderType, expected_fields: list[str], says: str) -> None:
    found = model_violations(m, provider_type)
    assert fields(found) == expected_fields
    assert says in describe(found)
    with pytest.raises(InvalidArgument) as raised:
        validate_model(m, provider_type)
    assert raised.value.violations == found


def test_every_model_problem_is_reported_at_once() -> None:
    m = Model(
        name="", provider="anthropic", model_identifier="claude opus", display_name="", context_limit=0,
        options=options(temperature=5, top_p=-1, max_output_tokens=2048),
        pricing=Pricing(input_per_mtok=-3, output_per_mtok=math.nan),
        provider_options=anthropic(thinking_budget_tokens=4096, effort="huge", colour="red"),
    )
    found = model_violations(m, ProviderType.ANTHROPIC, field_prefix="request.model.")
    assert fields(found) == [
        "request.model.name",
        "request.model.model_identifier",
        "request.model.display_name",
        "request.model.context_limit",
        "request.model.options.temperature",
        "request.model.options.top_p",
        "request.model.pricing.input_per_mtok",
        "request.model.pricing.output_per_mtok",
        "request.model.anthropic.effort",
        "request.model.anthropic.colour",
        "request.model.anthropic.thinking_budget_tokens",  # 4096 >= 2048
        "request.model.options.temperature",  # not 1 while thinking
        "request.model.options.top_p",  # below 0.95 while thinking
    ]


# ---------------------------------------------------------------- schema and validation agree


FAMILY_TYPE = {family: ptype for ptype, family in reversed(list(OPTIONS_FAMILY.items()))}


def model_with(d: OptionDef, value: Any) -> tuple[Model, ProviderType]:
    if d.group == "options":
        return model(options=dataclasses.replace(GenerationOptions(), **{d.field_name: value})), ProviderType.OPENAI
    if d.group == "pricing":
        return model(pricing=dataclasses.replace(Pricing(), **{d.field_name: value})), ProviderType.OPENAI
    return model(provider_options=ProviderOptions(d.group, {d.field_name: value})), FAMILY_TYPE[d.group]


def inside_and_outside(d: OptionDef) -> tuple[list[object], list[object]]:
    if d.kind is OptionKind.BOOLEAN:
        return [True, False], [1, 0, "true"]
    if d.kind is OptionKind.ENUM:
        return list(d.enum_values), ["", "bogus", d.enum_values[0].upper(), 1]
    step: Any = 1 if d.kind is OptionKind.INTEGER else None
    inside: list[object] = []
    outside: list[object] = [True, "1"]
    if d.minimum is not None:
        low = int(d.minimum) if step else d.minimum
        inside += [low, low + 1]
        outside.append(low - 1 if step else math.nextafter(d.minimum, -math.inf))
    if d.maximum is not None:
        high = int(d.maximum) if step else d.maximum
        inside += [high, high - 1]
        outside.append(high + 1 if step else math.nextafter(d.maximum, math.inf))
    if step:
        outside.append(float(inside[0]) + 0.5)  # type: ignore[arg-type]
    else:
        outside += [math.nan, math.inf, -math.inf]
    return inside, outside


@pytest.mark.parametrize("d", ALL_OPTIONS, ids=lambda d: d.path)
def test_every_option_definition_is_what_validation_enforces(d: OptionDef) -> None:
    inside, outside = inside_and_outside(d)
    for value in inside:
        m, provider_type = model_with(d, value)
        assert model_violations(m, provider_type) == [], (d.path, value)
    for value in outside:
        m, provider_type = model_with(d, value)
        assert fields(model_violations(m, provider_type)) == [f"model.{d.path}"], (d.path, value)


# ---------------------------------------------------------------- requests


@pytest.mark.parametrize(
    ("ctx", "allowed", "expected"),
    [
        (OverrideContext.GENERAL, ADMIN_CONTEXTS, OverrideContext.GENERAL),
        ("title_generation", ADMIN_CONTEXTS, OverrideContext.TITLE_GENERATION),
        (OverrideContext.ROOT, PERSONAL_CONTEXTS, OverrideContext.ROOT),
        ("explore", PERSONAL_CONTEXTS, OverrideContext.EXPLORE),
    ],
)
def test_valid_override_contexts(ctx: Any, allowed: frozenset[OverrideContext], expected: OverrideContext) -> None:
    assert validate_override_context(ctx, allowed, "context") == expected


@pytest.mark.parametrize(
    ("ctx", "allowed", "says"),
    [
        # Both spellings: the proto's (what grpcurl and JSON callers type), and the CLI's.
        (OverrideContext.ROOT, ADMIN_CONTEXTS, "must be one of OVERRIDE_CONTEXT_GENERAL, OVERRIDE_CONTEXT_EXPLORE, "
                                               "OVERRIDE_CONTEXT_TITLE_GENERATION here (the CLI: general, explore, "
                                               "title_generation)"),
        ("title_generation", PERSONAL_CONTEXTS, "must be one of OVERRIDE_CONTEXT_ROOT, OVERRIDE_CONTEXT_GENERAL, "
                                                "OVERRIDE_CONTEXT_EXPLORE here (the CLI: root, general, explore)"),
        (None, ADMIN_CONTEXTS, "is required: one of OVERRIDE_CONTEXT_GENERAL, OVERRIDE_CONTEXT_EXPLORE, "
                               "OVERRIDE_CONTEXT_TITLE_GENERATION (the CLI: general, explore, title_generation)"),
        ("", PERSONAL_CONTEXTS, "is required: one of OVERRIDE_CONTEXT_ROOT, OVERRIDE_CONTEXT_GENERAL, "
                                "OVERRIDE_CONTEXT_EXPLORE (the CLI: root, general, explore)"),
        ("GENERAL", ADMIN_CONTEXTS, "must be one of"),
        ("chat", ADMIN_CONTEXTS, "must be one of"),
    ],
)
def test_invalid_override_contexts(ctx: Any, allowed: frozenset[OverrideContext], says: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_override_context(ctx, allowed, "override.context")
    assert fields(raised.value.violations) == ["override.context"]
    assert says in raised.value.violations[0].description


@pytest.mark.parametrize(("n", "expected"), [(0, DEFAULT_PAGE_SIZE), (1, 1), (100, 100), (500, 500)])
def test_valid_page_sizes(n: int, expected: int) -> None:
    assert validate_page_size(n) == expected


@pytest.mark.parametrize("n", [-1, -500, 501, 10**9])
def test_invalid_page_sizes(n: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_page_size(n, "request.page_size")
    assert fields(raised.value.violations) == ["request.page_size"]
    assert "between 1 and 500" in raised.value.violations[0].description


PROVIDER_MASK = {"display_name", "base_url", "enabled", "key_policy", "api_key", "region"}


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["display_name"], {"display_name"}),
        (["api_key", "base_url", "api_key"], {"api_key", "base_url"}),
    ],
)
def test_valid_update_masks(paths: list[str], expected: set[str]) -> None:
    assert validate_update_mask(paths, PROVIDER_MASK) == expected


@pytest.mark.parametrize(
    ("paths", "bad"),
    [
        ([], None),
        (["name"], ["'name'"]),
        (["name", "type", "display_name", "name"], ["'name'", "'type'"]),
        (["Display_Name"], ["'Display_Name'"]),
    ],
)
def test_invalid_update_masks(paths: list[str], bad: list[str] | None) -> None:
    found = update_mask_violations(paths, PROVIDER_MASK)
    if bad is None:
        assert fields(found) == ["update_mask"]
        assert "at least one field" in found[0].description
    else:
        assert fields(found) == ["update_mask"] * len(bad)
        for violation, name in zip(found, bad):
            assert violation.description.startswith(f"{name} cannot be updated;")
            assert "updatable fields: api_key, " in violation.description
    with pytest.raises(InvalidArgument) as raised:
        validate_update_mask(paths, PROVIDER_MASK, "update_mask")
    assert raised.value.violations == found


def test_update_mask_hints_spell_the_closest_path_both_ways() -> None:
    """A JSON caller (grpcurl) writes a field mask in lowerCamelCase, a client in snake_case."""
    [violation] = update_mask_violations(["displayname"], PROVIDER_MASK)
    assert "did you mean display_name (in JSON: 'displayName')?" in violation.description
    [violation] = update_mask_violations(["zzz"], PROVIDER_MASK)
    assert "did you mean" not in violation.description


def test_an_option_enum_value_gets_the_closest_one() -> None:
    effort = model(provider_options=ProviderOptions("openai", {"reasoning_effort": "mediun"}))
    [violation] = model_violations(effort, ProviderType.OPENAI)
    assert violation.field == "model.openai.reasoning_effort"
    assert violation.description.endswith("; did you mean medium?")
