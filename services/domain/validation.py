"""Pure input validation: plain data in, modelplane_server.domain.errors.InvalidArgument out.

Every check collects all problems, one FieldViolation each, named by the
request field path (the caller passes the prefix, e.g. "provider."), so an
administrator fixes a form in one round trip. `*_violations` functions return
the list, for callers that combine several checks into one error; `validate_*`
raise. Messages never echo a secret.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import socket
import unicodedata
from dataclasses import dataclass
from typing import Collection, Sequence
from urllib.parse import unquote, urlsplit

from modelplane_server.domain.types import (
    BEDROCK_BEARER_DEFAULT_REGION,
    DEFAULT_BASE_URLS,
    OPTIONS_FAMILY,
    Model,
    OverrideContext,
    Provider,
    ProviderOptions,
    ProviderType,
    bedrock_base_url,
)
from modelplane_server.domain.errors import FieldViolation, InvalidArgument
from modelplane_server.domain.options import (
    FAMILY_OPTIONS,
    GENERAL_OPTIONS,
    OPTIONS_BY_PATH,
    OptionDef,
    OptionKind,
)

NAME_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_NAME_LENGTH = 63
MAX_DISPLAY_NAME_LENGTH = 200
MAX_BASE_URL_LENGTH = 2048
MAX_API_KEY_LENGTH = 8192
MAX_MODEL_IDENTIFIER_LENGTH = 256
MAX_CONTEXT_LIMIT = 100_000_000
MAX_USER_LENGTH = 255
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

# The commercial, GovCloud and ISO partitions, plus the European Sovereign
# Cloud (eusc-de-east-1).
AWS_REGION_PATTERN = re.compile(r"(?:[a-z]{2}(?:-gov|-iso[a-z]*)?|eusc-[a-z]{2})-[a-z]+-\d+")

# modelplane's own AI-gateway route: a provider pointed here would call itself.
GATEWAY_ROUTE = "/api/v2/aibridge/"

BASE_URL_REQUIRED: frozenset[ProviderType] = frozenset(
    {ProviderType.AZURE_OPENAI, ProviderType.OPENAI_COMPATIBLE}
)

# Instance/task metadata endpoints hand out cloud credentials; a provider
# base URL must not turn modelplane into a proxy to them.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, Azure, GCP, OCI, DigitalOcean, OpenStack
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
    )
)
# "metadata" is the short name GCE resolves through its search domain;
# "instance-data" likewise on EC2 (instance-data.ec2.internal).
_METADATA_HOSTNAMES = frozenset({
    "metadata.google.internal", "metadata.goog", "metadata", "instance-data.ec2.internal", "instance-data",
})

# A listen address on these hosts accepts connections on every local address.
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})
# Names the usual /etc/hosts maps to loopback; RFC 6761 reserves *.localhost.
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

_NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def raise_if_any(violations: Sequence[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)


# ---------------------------------------------------------------- text rules


def has_control_chars(text: str) -> bool:
    # Cc covers C0 (NUL included), DEL and C1; U+2028/2029 are line breaks in disguise.
    return any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in text)


def _name_violations(value: str, field: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")]
    found = []
    if len(value) > MAX_NAME_LENGTH:
        found.append(FieldViolation(field, f"must be at most {MAX_NAME_LENGTH} characters, got {len(value)}"))
    if not NAME_PATTERN.fullmatch(value):
        found.append(FieldViolation(
            field, "must be lowercase kebab-case: a-z and 0-9 in groups joined by single hyphens"))
    return found


def _label_violations(value: str, field: str, *, required: bool, max_length: int) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")] if required else []
    if not value.strip():
        return [FieldViolation(field, "must not be blank")]
    found = []
    if len(value) > max_length:
        found.append(FieldViolation(field, f"must be at most {max_length} characters, got {len(value)}"))
    if has_control_chars(value):
        found.append(FieldViolation(field, "must not contain control characters or line breaks"))
    return found


def api_key_violations(value: str, field: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")]
    found = []
    if len(value) > MAX_API_KEY_LENGTH:
        found.append(FieldViolation(field, f"must be at most {MAX_API_KEY_LENGTH} characters"))
    if value != value.strip():
        found.append(FieldViolation(
            field, "must not start or end with whitespace; it is refused, not trimmed, "
                   "so check what was pasted"))
    inner = value.strip()
    if has_control_chars(inner):
        found.append(FieldViolation(field, "must not contain control characters or line breaks"))
    if not inner.isascii():
        found.append(FieldViolation(field, "must be ASCII: it is sent in an HTTP header"))
    return found


def validate_api_key(value: str, field: str) -> None:
    raise_if_any(api_key_violations(value, field))


def user_violations(user: str, field: str) -> list[FieldViolation]:
    if not user:
        return [FieldViolation(field, "is required")]
    found = []
    if len(user) > MAX_USER_LENGTH:
        found.append(FieldViolation(field, f"must be at most {MAX_USER_LENGTH} characters, got {len(user)}"))
    if user != user.strip():
        found.append(FieldViolation(field, "must not start or end with whitespace"))
    if has_control_chars(user.strip()):
        found.append(FieldViolation(field, "must not contain control characters or line breaks"))
    return found


def validate_user(user: str, field: str) -> None:
    raise_if_any(user_violations(user, field))


# ---------------------------------------------------------------- addresses


def _legacy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """inet_aton's forms that ipaddress refuses but HTTP clients may still
    connect to: 1-4 parts, each decimal, octal (leading 0) or hex (0x), the
    last filling the remaining bytes (0xA9FEA9FE, 2852039166, 169.254.43518)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        lowered = part.lower()
        if lowered.startswith("0x"):
            digits, base, alphabet = lowered[2:] or "0", 16, "0123456789abcdef"
        elif len(part) > 1 and part.startswith("0"):
            digits, base, alphabet = part[1:], 8, "01234567"
        else:
            digits, base, alphabet = part, 10, "0123456789"
        # int() alone would accept "_", spaces and non-ASCII digits.
        if not digits or any(c not in alphabet for c in digits):
            return None
        numbers.append(int(digits, base))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    return ipaddress.IPv4Address(value * 256 ** (4 - len(head)) + last)


def _normalize_host(host: str) -> str:
    # IDNA maps full-width digits and dots to ASCII, so an HTTP client would too.
    host = unicodedata.normalize("NFKC", host)
    for dot in "\u3002\uff0e\uff61":
        host = host.replace(dot, ".")
    return host.strip("[]").lower().rstrip(".")


def _parse_ip(host: str) -> IPAddress | None:
    try:
        ip: IPAddress = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return _legacy_ipv4(host)
    return ip


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 literal routes to, if it embeds one."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_PREFIX or ip.packed[:12] == bytes(12):  # NAT64, IPv4-compatible
        return ipaddress.IPv4Address(ip.packed[12:])
    return None


def _canonical_host(host: str) -> str:
    normalized = _normalize_host(host)
    ip = _parse_ip(normalized)
    if ip is None:
        return normalized
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_address(ip.packed))  # drops a zone id


def _is_loopback(canonical_host: str) -> bool:
    """Whether a connection to the host stays on this machine. 0.0.0.0 and ::
    count: on Linux connecting to them reaches the loopback interface."""
    if canonical_host in _LOOPBACK_NAMES or canonical_host.endswith(".localhost"):
        return True
    ip = _parse_ip(canonical_host)
    return ip is not None and (ip.is_loopback or ip.is_unspecified)


def _machine_hostnames() -> frozenset[str]:
    """This machine's own name (and its first label), which reaches a
    wildcard listener too. No DNS: gethostname only reads the kernel's."""
    name = _normalize_host(socket.gethostname())
    return frozenset(n for n in (name, name.split(".", 1)[0]) if n)


def _is_local(canonical_host: str) -> bool:
    """Whether the host is one of this machine's addresses a wildcard
    listener answers on."""
    return _is_loopback(canonical_host) or canonical_host in _machine_hostnames()


def metadata_address(host: str) -> str | None:
    """The cloud metadata endpoint host names, or None."""
    normalized = _normalize_host(host)
    if normalized in _METADATA_HOSTNAMES:
        return normalized
    ip = _parse_ip(normalized)
    if ip is None:
        return None
    for candidate in (ip, _embedded_ipv4(ip)):
        if candidate is not None and ipaddress.ip_address(candidate.packed) in _METADATA_ADDRESSES:
            return str(ipaddress.ip_address(candidate.packed))
    return None


@dataclass(frozen=True)
class OwnAddress:
    """One address modelplane is reachable at. port None: any port of host;
    path "": the whole host, else only URLs under that path."""

    text: str
    host: str
    port: int | None
    path: str


def _normalized_path(path: str) -> str:
    segments = [s for s in unquote(path).lower().split("/") if s]
    return "/" + "/".join(segments) if segments else ""


def parse_own_address(entry: str) -> OwnAddress:
    """Parse a "host:port" or URL prefix from settings. Raises ValueError so
    settings can fail fast at startup."""
    text = entry.strip()
    has_scheme = "://" in text
    parts = urlsplit(text if has_scheme else "//" + text)
    port = parts.port  # ValueError on a bad port
    if not parts.hostname:
        raise ValueError(f"own address {entry!r} has no host")
    if port is None and has_scheme:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    return OwnAddress(text, _canonical_host(parts.hostname), port, _normalized_path(parts.path))


def _points_at(own: OwnAddress, host: str, port: int | None, path: str) -> bool:
    if own.port is None:
        same_place = host == own.host
    else:
        # localhost, 127.0.0.1 and ::1 are one machine, but only the same port
        # is the same service. A wildcard listener (0.0.0.0, ::) answers on
        # every local address, the machine's own name included.
        if own.host in _WILDCARD_HOSTS:
            same_host = host == own.host or _is_local(host)
        else:
            same_host = host == own.host or (_is_loopback(host) and _is_loopback(own.host))
        same_place = same_host and port == own.port
    return same_place and (not own.path or path == own.path or path.startswith(own.path + "/"))


def _self_reference(host: str, port: int | None, path: str, own_addresses: Sequence[str]) -> str | None:
    """Why the URL points back at modelplane, or None."""
    if GATEWAY_ROUTE in path + "/":
        return f"points at modelplane's own AI-gateway route ({GATEWAY_ROUTE})"
    for entry in own_addresses:
        own = parse_own_address(entry)
        if _points_at(own, host, port, path):
            return f"points back at modelplane itself ({own.text})"
    return None


def base_url_violations(
    url: str,
    provider_type: ProviderType | None,
    *,
    own_addresses: Sequence[str],
    allow_metadata_addresses: bool,
    field: str,
) -> list[FieldViolation]:
    # No message echoes the URL: it may carry user-info credentials.
    example = DEFAULT_BASE_URLS.get(provider_type or ProviderType.OPENAI_COMPATIBLE,
                                    "https://provider.example.com/v1")
    if not url:
        if provider_type in BASE_URL_REQUIRED:
            return [FieldViolation(
                field, f"is required for {provider_type} providers: set the upstream provider or "
                       "proxy endpoint, including its OpenAI-compatible prefix such as /v1")]
        return []
    if len(url) > MAX_BASE_URL_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_BASE_URL_LENGTH} characters")]
    if any(c.isspace() for c in url) or has_control_chars(url):
        return [FieldViolation(field, "must not contain whitespace or control characters")]
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return [FieldViolation(field, "is not a valid URL")]
    found = []
    if parts.scheme not in _DEFAULT_PORTS:
        # Without a scheme urlsplit sees no host either; report the cause once.
        found.append(FieldViolation(field, "must be an absolute http or https URL"))
    elif not hostname:
        found.append(FieldViolation(field, "must include a host"))
    if "@" in parts.netloc:
        found.append(FieldViolation(field, "must not contain user info; put the credential in the API key"))
    if "?" in url.split("#", 1)[0]:
        found.append(FieldViolation(field, "must not contain a query string"))
    if "#" in url:
        found.append(FieldViolation(field, "must not contain a fragment"))
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        found.append(FieldViolation(field, "has an invalid port"))
        port = None
    if not hostname:
        return found
    reason = _self_reference(_canonical_host(hostname), port, _normalized_path(parts.path), own_addresses)
    if reason is not None:
        found.append(FieldViolation(
            field, f"{reason}; modelplane would call itself. Set it to the upstream provider or "
                   f"proxy endpoint instead, e.g. {example}"))
    metadata = metadata_address(hostname)
    if metadata is not None and not allow_metadata_addresses:
        found.append(FieldViolation(
            field, f"points at a cloud metadata endpoint ({metadata}), which serves instance "
                   "credentials; refused unless metadata addresses are explicitly allowed"))
    return found


# ---------------------------------------------------------------- providers


def _as_provider_type(value: object) -> ProviderType | None:
    # A servicer may hand over "" or None for PROVIDER_TYPE_UNSPECIFIED.
    if not isinstance(value, str):
        return None
    try:
        return ProviderType(value)
    except ValueError:
        return None


def provider_violations(
    p: Provider,
    *,
    own_addresses: Sequence[str],
    allow_metadata_addresses: bool,
    field_prefix: str = "provider.",
) -> list[FieldViolation]:
    found = _name_violations(p.name, field_prefix + "name")
    provider_type = _as_provider_type(p.type)
    if provider_type is None:
        found.append(FieldViolation(
            field_prefix + "type", "is required: one of " + ", ".join(t.value for t in ProviderType)))
    found += _label_violations(p.display_name, field_prefix + "display_name",
                               required=False, max_length=MAX_DISPLAY_NAME_LENGTH)
    found += base_url_violations(p.base_url, provider_type, own_addresses=own_addresses,
                                 allow_metadata_addresses=allow_metadata_addresses,
                                 field=field_prefix + "base_url")
    if p.region:
        if provider_type is not None and provider_type is not ProviderType.BEDROCK:
            found.append(FieldViolation(field_prefix + "region", "applies only to bedrock providers"))
        elif not AWS_REGION_PATTERN.fullmatch(p.region):
            found.append(FieldViolation(field_prefix + "region", "must be an AWS region such as us-east-1"))
    policy = p.key_policy
    if not (policy.central_key_enabled or policy.allow_user_keys):
        found.append(FieldViolation(
            field_prefix + "key_policy",
            "at least one credential source must be on: central_key_enabled or allow_user_keys"))
    if policy.central_key_fallback and not (policy.central_key_enabled and policy.allow_user_keys):
        found.append(FieldViolation(
            field_prefix + "key_policy.central_key_fallback",
            "needs both central_key_enabled and allow_user_keys on; turn it off or enable both"))
    return found


def validate_provider(
    p: Provider,
    *,
    own_addresses: Sequence[str],
    allow_metadata_addresses: bool,
    field_prefix: str = "provider.",
) -> None:
    raise_if_any(provider_violations(p, own_addresses=own_addresses,
                                     allow_metadata_addresses=allow_metadata_addresses,
                                     field_prefix=field_prefix))


def effective_base_url(p: Provider, env_region: str | None) -> str:
    """The URL requests go to: the provider's own, else its type's default
    ("" for azure-openai and openai-compatible, which validation requires to set one)."""
    if p.base_url:
        return p.base_url
    if p.type == ProviderType.BEDROCK:
        return bedrock_base_url(p.region or env_region or BEDROCK_BEARER_DEFAULT_REGION)
    return DEFAULT_BASE_URLS.get(p.type, "")


# ---------------------------------------------------------------- models


def _format_bound(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def option_value_violations(d: OptionDef, value: object, field: str) -> list[FieldViolation]:
    """Check one set value against its definition (at most one violation)."""
    def bad(description: str) -> list[FieldViolation]:
        return [FieldViolation(field, description)]

    if d.kind is OptionKind.BOOLEAN:
        return [] if isinstance(value, bool) else bad("must be true or false")
    if d.kind is OptionKind.ENUM:
        if isinstance(value, str) and value in d.enum_values:
            return []
        return bad("must be one of " + ", ".join(d.enum_values))
    # bool is an int subclass; True is not a token count.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return bad("must be an integer" if d.kind is OptionKind.INTEGER else "must be a number")
    if d.kind is OptionKind.INTEGER and not isinstance(value, int):
        return bad("must be an integer")
    if not math.isfinite(value):  # NaN would slip through every comparison below
        return bad("must be a finite number")
    too_low = d.minimum is not None and value < d.minimum
    too_high = d.maximum is not None and value > d.maximum
    if not (too_low or too_high):
        return []
    if d.minimum is not None and d.maximum is not None:
        return bad(f"must be between {_format_bound(d.minimum)} and {_format_bound(d.maximum)}")
    if d.minimum is not None:
        return bad(f"must be at least {_format_bound(d.minimum)}")
    assert d.maximum is not None
    return bad(f"must be at most {_format_bound(d.maximum)}")


def _model_identifier_violations(value: str, field: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "is required")]
    found = []
    if len(value) > MAX_MODEL_IDENTIFIER_LENGTH:
        found.append(FieldViolation(
            field, f"must be at most {MAX_MODEL_IDENTIFIER_LENGTH} characters, got {len(value)}"))
    if any(c.isspace() for c in value) or has_control_chars(value):
        found.append(FieldViolation(field, "must not contain whitespace or control characters"))
    return found


def _context_limit_violations(value: int, field: str) -> list[FieldViolation]:
    if isinstance(value, bool) or not isinstance(value, int):
        return [FieldViolation(field, "must be an integer")]
    if value <= 0:
        return [FieldViolation(field, "is required and must be greater than 0")]
    if value > MAX_CONTEXT_LIMIT:
        return [FieldViolation(field, f"must be at most {MAX_CONTEXT_LIMIT}")]
    return []


def _provider_options_violations(
    po: ProviderOptions, provider_type: ProviderType, prefix: str
) -> list[FieldViolation]:
    expected = OPTIONS_FAMILY.get(provider_type)
    given_field = prefix + po.family
    if expected is None:
        return [FieldViolation(
            given_field, f"{provider_type} providers take no provider-specific options; remove it")]
    if po.family != expected:
        return [FieldViolation(
            given_field, f"a {provider_type} provider takes {expected} options ({prefix}{expected}), "
                         f"not {po.family}")]
    found = []
    for key, value in po.values.items():
        d = OPTIONS_BY_PATH.get(f"{expected}.{key}")
        if d is None:
            known = ", ".join(o.field_name for o in FAMILY_OPTIONS[expected])
            found.append(FieldViolation(f"{given_field}.{key}", f"is not an option; {expected} options are {known}"))
        elif value is not None:
            found += option_value_violations(d, value, prefix + d.path)
    return found


def _valid_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cross_field_violations(m: Model, provider_type: ProviderType, prefix: str) -> list[FieldViolation]:
    """Rules spanning several fields, each one an upstream's documented rule.

    No rule ties openai.max_completion_tokens to options.max_output_tokens:
    OpenAI documents none; the upstream mapping decides which one is sent.
    """
    found = []
    opts = m.options
    max_output = _valid_int(opts.max_output_tokens)
    context_limit = _valid_int(m.context_limit)
    if max_output is not None and context_limit is not None and 0 < context_limit < max_output:
        found.append(FieldViolation(
            prefix + "options.max_output_tokens",
            f"must not exceed context_limit ({context_limit}): the response has to fit in the context window"))

    po = m.provider_options
    family = OPTIONS_FAMILY.get(provider_type)
    if po is None or po.family != family:
        return found
    if family == "anthropic":
        found += _anthropic_violations(m, po, prefix)
    elif family == "openai":
        found += _openai_violations(m, po, prefix)
    elif family == "google" and po.values.get("thinking_level") and po.values.get("thinking_budget") is not None:
        found.append(FieldViolation(prefix + "google.thinking_level", "must be unset when google.thinking_budget "
                                    "is set: Gemini refuses both together"))
    return found


def _anthropic_violations(m: Model, po: ProviderOptions, prefix: str) -> list[FieldViolation]:
    """Claude's documented request rules (Anthropic and Bedrock alike)."""
    found = []
    opts = m.options
    max_output = _valid_int(opts.max_output_tokens)
    budget = _valid_int(po.values.get("thinking_budget_tokens"))
    mode = po.values.get("thinking")
    budget_field = prefix + "anthropic.thinking_budget_tokens"
    if mode and budget is not None:
        found.append(FieldViolation(prefix + "anthropic.thinking", f"must be unset when {budget_field} is set: "
                                    "a budget means enabled thinking"))
    if budget is not None and max_output is not None and budget >= max_output:
        found.append(FieldViolation(
            budget_field, f"must be below options.max_output_tokens ({max_output}): "
                          "Anthropic requires budget_tokens < max_tokens"))
    effort = po.values.get("effort")
    if effort in ("xhigh", "max") and mode in ("disabled", "between_tools"):
        found.append(FieldViolation(prefix + "anthropic.effort", f"must be low, medium or high when "
                                    f"anthropic.thinking is {mode}: with thinking off, effort is capped at high"))
    thinking = mode == "adaptive" or (not mode and budget is not None)
    if not thinking:
        if opts.temperature is not None and opts.top_p is not None:
            found.append(FieldViolation(prefix + "options.top_p", "must be unset when options.temperature is "
                                        "set: current Claude models accept only one of temperature and top_p"))
        return found
    # Anthropic's extended-thinking docs: temperature and top_k cannot be
    # changed while thinking, top_p only within [0.95, 1].
    why = "while anthropic.thinking_budget_tokens (or anthropic.thinking adaptive) is set: Claude refuses it"
    if opts.temperature is not None and opts.temperature != 1:
        found.append(FieldViolation(prefix + "options.temperature", f"must be unset or 1 {why}"))
    if opts.top_k is not None:
        found.append(FieldViolation(prefix + "options.top_k", f"must be unset {why}"))
    if opts.top_p is not None and opts.top_p < 0.95:
        found.append(FieldViolation(prefix + "options.top_p", f"must be unset or between 0.95 and 1 {why}"))
    return found


def _openai_violations(m: Model, po: ProviderOptions, prefix: str) -> list[FieldViolation]:
    """OpenAI reasoning models refuse sampling parameters (effort "none"
    turns reasoning off, and with it the restriction)."""
    effort = po.values.get("reasoning_effort")
    if effort in (None, "", "none"):
        return []
    return [FieldViolation(prefix + f"options.{name}",
                           f"must be unset while openai.reasoning_effort is {effort}: OpenAI reasoning models "
                           "refuse it")
            for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty")
            if getattr(m.options, name) is not None]


def model_violations(m: Model, provider_type: ProviderType, field_prefix: str = "model.") -> list[FieldViolation]:
    found = _name_violations(m.name, field_prefix + "name")
    if not m.provider:
        found.append(FieldViolation(field_prefix + "provider", "is required"))
    found += _model_identifier_violations(m.model_identifier, field_prefix + "model_identifier")
    found += _label_violations(m.display_name, field_prefix + "display_name",
                               required=True, max_length=MAX_DISPLAY_NAME_LENGTH)
    found += _context_limit_violations(m.context_limit, field_prefix + "context_limit")
    sections = {"options": m.options, "pricing": m.pricing}
    for d in GENERAL_OPTIONS:
        value = getattr(sections[d.group], d.field_name)
        if value is not None:
            found += option_value_violations(d, value, field_prefix + d.path)
    if m.provider_options is not None:
        found += _provider_options_violations(m.provider_options, provider_type, field_prefix)
    found += _cross_field_violations(m, provider_type, field_prefix)
    return found


def validate_model(m: Model, provider_type: ProviderType, field_prefix: str = "model.") -> None:
    raise_if_any(model_violations(m, provider_type, field_prefix))


def derive_model_name(provider: str, model_identifier: str) -> str:
    """A valid model name from provider + identifier ("anthropic",
    "claude-opus-4.6" -> "anthropic-claude-opus-4-6"). Over-long slugs keep a
    hash of the full input so distinct long identifiers stay distinct."""
    ascii_text = unicodedata.normalize("NFKD", f"{provider}-{model_identifier}").encode("ascii", "ignore")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.decode().lower()).strip("-") or "model"
    if len(slug) <= MAX_NAME_LENGTH:
        return slug
    digest = hashlib.sha256(f"{provider}\0{model_identifier}".encode()).hexdigest()[:8]
    return slug[: MAX_NAME_LENGTH - len(digest) - 1].rstrip("-") + "-" + digest


# ---------------------------------------------------------------- requests


def validate_override_context(
    ctx: OverrideContext | str | None, allowed: Collection[OverrideContext], field: str
) -> OverrideContext:
    choices = ", ".join(c.value for c in OverrideContext if c in allowed)
    if not ctx:
        raise InvalidArgument.one(field, f"is required: one of {choices}")
    try:
        context = OverrideContext(ctx)
    except ValueError:
        context = None
    if context is None or context not in allowed:
        raise InvalidArgument.one(field, f"must be one of {choices} here")
    return context


def validate_page_size(n: int, field: str = "page_size") -> int:
    """The page size to use: 0 means the default."""
    if n == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= n <= MAX_PAGE_SIZE:
        raise InvalidArgument.one(field, f"must be between 1 and {MAX_PAGE_SIZE}, or 0 for the default")
    return n


def update_mask_violations(paths: Sequence[str], allowed: Collection[str], field: str = "update_mask") -> list[FieldViolation]:
    if not paths:
        return [FieldViolation(field, "must name at least one field to update, e.g. " + ", ".join(sorted(allowed)[:3]))]
    known = ", ".join(sorted(allowed))
    return [FieldViolation(field, f"{p!r} cannot be updated; updatable fields: {known}")
            for p in dict.fromkeys(paths) if p not in allowed]


def validate_update_mask(paths: Sequence[str], allowed: Collection[str], field: str = "update_mask") -> frozenset[str]:
    """The mask's paths as a set, once every one is updatable."""
    raise_if_any(update_mask_violations(paths, allowed, field))
    return frozenset(paths)
