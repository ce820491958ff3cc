"""TLS and mutual TLS from PEM files, for both servers and for the
resolver's channel to config_svc.

Settings name the files, never their contents: certificates are mounted
files (Docker/Kubernetes secrets), and a restart picks up renewed ones.
Everything is checked when settings are read, so a wrong path or a key that
does not belong to its certificate stops the process at start-up with a
message naming the variable, rather than failing on the first handshake.

Wiring, for a service whose variables start with PREFIX:

    tls = server_tls_from_env(env, "PREFIX")            # in Settings.from_env
    port = add_port(server, settings.listen, settings.tls)  # in build_server

and for a client channel:

    tls = client_tls_from_env(env, "PREFIX")
    channel = client_channel(address, tls, options)
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Sequence

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from modelplane_server.runtime.env import Env, SettingsError, env_str


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate chain and key; with client_ca_file, mutual TLS:
    every client must present a certificate signed by that CA."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def credentials(self) -> grpc.ServerCredentials:
        client_ca = _read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(_read(self.key_file), _read(self.cert_file))],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


@dataclass(frozen=True)
class ClientTLS:
    """What a client needs to reach a TLS server.

    ca_file: the CA that signed the server's certificate (None: the system's
    roots). cert_file/key_file: this client's certificate, for servers that
    require mutual TLS. server_name: the name to verify in the server's
    certificate when it differs from the host being dialled.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file) if self.ca_file else None,
            private_key=_read(self.key_file) if self.key_file else None,
            certificate_chain=_read(self.cert_file) if self.cert_file else None,
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


class ListenError(Exception):
    """The server cannot listen on its address (say another process holds it)."""


def add_port(server: grpc.aio.Server, listen: str, tls: ServerTLS | None) -> int:
    """Listen on `listen` with TLS when configured; returns the bound port.
    ListenError when the address cannot be bound, saying why."""
    try:
        if tls is None:
            return server.add_insecure_port(listen)
        return server.add_secure_port(listen, tls.credentials())
    except RuntimeError:  # gRPC says only "Failed to bind to address"
        why = unbindable(listen) or "gRPC could not bind it"
        raise ListenError(f"cannot listen on {listen}: {why}") from None


def unbindable(listen: str, *, server_like: bool = False) -> str | None:
    """What the OS says about binding `listen` (host:port) now, e.g. "address
    already in use" (gRPC's own error does not say); None when it binds.
    server_like: with SO_REUSEADDR, as gRPC's listeners bind, so that only a
    listener makes the port taken (not connections lingering in TIME_WAIT)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        return f"not a usable address ({exc})"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            if server_like:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                return reason[:1].lower() + reason[1:]
    return None


def client_channel(address: str, tls: ClientTLS | None, options: Sequence[tuple[str, Any]] = (),
                   interceptors: Sequence[grpc.aio.ClientInterceptor] = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to `address`, over TLS when `tls` is given."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=list(options), interceptors=list(interceptors) or None)
    return grpc.aio.secure_channel(address, tls.credentials(), options=[*options, *tls.channel_options()],
                                   interceptors=list(interceptors) or None)


# -- settings ------------------------------------------------------------------------------


def server_tls_from_env(env: Env, prefix: str) -> ServerTLS | None:
    """{prefix}_TLS_CERT, {prefix}_TLS_KEY, {prefix}_TLS_CLIENT_CA; None when
    TLS is off (neither certificate nor key set)."""
    cert_var, key_var, ca_var = f"{prefix}_TLS_CERT", f"{prefix}_TLS_KEY", f"{prefix}_TLS_CLIENT_CA"
    cert = env_str(env, cert_var, "", f"PEM certificate chain to serve TLS with (needs {key_var}); "
                                      "empty serves plaintext")
    key = env_str(env, key_var, "", f"PEM private key of {cert_var}")
    client_ca = env_str(env, ca_var, "", "PEM CA bundle; when set, clients must present a certificate it "
                                         f"signed (mutual TLS). Needs {cert_var}")
    if env.describe_only or not (cert or key or client_ca):
        return None
    if not cert:
        raise SettingsError(f"{cert_var} is required when {key_var if key else ca_var} is set")
    if not key:
        raise SettingsError(f"{key_var} is required when {cert_var} is set")
    _check_key_pair(cert_var, cert, key_var, key)
    if client_ca:
        _load_certificates(ca_var, client_ca)
    return ServerTLS(cert, key, client_ca or None)


def client_tls_from_env(env: Env, prefix: str, server: str) -> ClientTLS | None:
    """{prefix}_TLS_CA, {prefix}_TLS_CERT, {prefix}_TLS_KEY,
    {prefix}_TLS_SERVER_NAME for a channel to `server` (used in descriptions);
    None (plaintext) unless the CA is set."""
    ca_var, cert_var = f"{prefix}_TLS_CA", f"{prefix}_TLS_CERT"
    key_var, name_var = f"{prefix}_TLS_KEY", f"{prefix}_TLS_SERVER_NAME"
    ca = env_str(env, ca_var, "", f"PEM CA bundle that signed {server}'s certificate; set to reach it over "
                                  "TLS, empty for plaintext")
    cert = env_str(env, cert_var, "", f"PEM client certificate for {server}'s mutual TLS (needs {key_var})")
    key = env_str(env, key_var, "", f"PEM private key of {cert_var}")
    server_name = env_str(env, name_var, "", f"Name to verify in {server}'s certificate, when it differs "
                                             "from the host dialled")
    if env.describe_only or not (ca or cert or key or server_name):
        return None
    if not ca:
        set_var = next(name for name, value in ((cert_var, cert), (key_var, key), (name_var, server_name)) if value)
        raise SettingsError(f"{ca_var} is required when {set_var} is set")
    _load_certificates(ca_var, ca)
    if bool(cert) != bool(key):
        missing, present = (key_var, cert_var) if cert else (cert_var, key_var)
        raise SettingsError(f"{missing} is required when {present} is set")
    if cert:
        _check_key_pair(cert_var, cert, key_var, key)
    return ClientTLS(ca, cert or None, key or None, server_name or None)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_setting(var: str, path: str) -> bytes:
    try:
        return _read(path)
    except OSError as e:
        raise SettingsError(f"{var}: cannot read {path!r}: {e.strerror}") from None


def _load_certificates(var: str, path: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_read_setting(var, path))
    except ValueError:
        certs = []
    if not certs:
        raise SettingsError(f"{var}: {path!r} holds no PEM certificate")
    return certs


def _check_key_pair(cert_var: str, cert_path: str, key_var: str, key_path: str) -> None:
    """The key must be the certificate's, or every handshake would fail."""
    leaf = _load_certificates(cert_var, cert_path)[0]
    try:
        key = serialization.load_pem_private_key(_read_setting(key_var, key_path), password=None)
    except (ValueError, TypeError):
        # The key's bytes never go into the message.
        raise SettingsError(f"{key_var}: {key_path!r} holds no unencrypted PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.PEM, public)
            != leaf.public_key().public_bytes(serialization.Encoding.PEM, public)):
        raise SettingsError(f"{key_var}: the key in {key_path!r} does not belong to the certificate in "
                            f"{cert_var} ({cert_path!r})")
