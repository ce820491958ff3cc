"""Where a provider's requests go: the effective base URL, and the egress
checks an administrator's base URL must pass.

The checks refuse URLs that would turn modelplane into a proxy to cloud
metadata endpoints (which hand out instance credentials) or make it call
itself (its own listen addresses, or its AI-gateway route). Hosts are
compared the way an HTTP client would connect to them: legacy IPv4 forms,
IPv6 literals embedding an IPv4 address and full-width digits are decoded
first. No DNS lookups: the checks stay pure.
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import unquote, urlsplit

from modelplane_server.domain.errors import FieldViolation
from modelplane_server.domain.text import has_control_chars
from modelplane_server.domain.types import (
    BEDROCK_BEARER_DEFAULT_REGION,
    DEFAULT_BASE_URLS,
    Provider,
    ProviderType,
    bedrock_base_url,
)

MAX_BASE_URL_LENGTH = 2048

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


def effective_base_url(p: Provider, env_region: str | None) -> str:
    """The URL requests go to: the provider's own, else its type's default
    ("" for azure-openai and openai-compatible, which validation requires to set one)."""
    if p.base_url:
        return p.base_url
    if p.type == ProviderType.BEDROCK:
        return bedrock_base_url(p.region or env_region or BEDROCK_BEARER_DEFAULT_REGION)
    return DEFAULT_BASE_URLS.get(p.type, "")


# ---------------------------------------------------------------- hosts as an HTTP client reads them


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


# ---------------------------------------------------------------- the check


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
