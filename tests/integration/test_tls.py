"""config_svc over TLS and mutual TLS, with certificates made at test time:
a client that trusts the CA gets through, a plaintext client does not, and
with mutual TLS a client without a certificate, or with one from another CA,
is refused. Bad TLS settings stop start-up with the variable's name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import grpc
import pytest

from modelplane_server.config_svc.server import ConfigServer, build_server
from modelplane_server.config_svc.settings import ConfigServiceSettings
from modelplane_server.runtime import healthcheck, tokens
from modelplane_server.domain.types import Role
from modelplane_server.runtime.env import Env, SettingsError
from modelplane_server.runtime.tls import ClientTLS, ServerTLS, client_channel
from modelplane.client import TLS, AsyncModelplaneClient
from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import config_service_pb2_grpc
from tests.certs import CertificateAuthority, Pem
from tests.harness import config_settings, keyring_env

pytestmark = pytest.mark.integration


class Pki:
    def __init__(self, folder: Path) -> None:
        self.ca = CertificateAuthority(folder / "ca")
        self.server = self.ca.issue("config-svc", server=True)
        self.client = self.ca.issue("resolver", server=False)
        self.rogue_ca = CertificateAuthority(folder / "rogue", name="rogue CA")
        self.rogue_client = self.rogue_ca.issue("intruder", server=False)

    def server_tls(self, *, mutual: bool) -> ServerTLS:
        return ServerTLS(str(self.server.cert), str(self.server.key),
                         str(self.ca.cert_file) if mutual else None)

    def client_tls(self, client: Pem | None = None) -> ClientTLS:
        return ClientTLS(str(self.ca.cert_file), str(client.cert) if client else None,
                         str(client.key) if client else None)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


async def _serve(database_url: str, tls: ServerTLS) -> AsyncIterator[tuple[ConfigServer, str]]:
    server = await build_server(config_settings(database_url, tls=tls))
    try:
        minted = tokens.mint()
        await server.store.create_token("test", minted.token_id, Role.ADMIN, "tls-admin", "", minted.secret_hash)
        yield server, minted.token
    finally:
        await server.stop(0)


@pytest.fixture
async def tls_server(database_url: str, pki: Pki) -> AsyncIterator[tuple[ConfigServer, str]]:
    async for served in _serve(database_url, pki.server_tls(mutual=False)):
        yield served


@pytest.fixture
async def mtls_server(database_url: str, pki: Pki) -> AsyncIterator[tuple[ConfigServer, str]]:
    async for served in _serve(database_url, pki.server_tls(mutual=True)):
        yield served


async def _get_settings(address: str, tls: ClientTLS | None, token: str) -> object:
    channel = client_channel(address, tls)
    try:
        stub = config_service_pb2_grpc.ConfigServiceStub(channel)
        return await stub.GetSettings(cs.GetSettingsRequest(), metadata=(("authorization", f"Bearer {token}"),),
                                      timeout=5)
    finally:
        await channel.close(None)


async def _refused(address: str, tls: ClientTLS | None, token: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _get_settings(address, tls, token)
    # The handshake fails, so the call never reaches the service.
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value


async def test_tls_client_gets_through_and_plaintext_is_refused(tls_server: tuple[ConfigServer, str],
                                                              pki: Pki) -> None:
    server, token = tls_server
    address = f"127.0.0.1:{server.port}"
    assert await _get_settings(address, pki.client_tls(), token)
    # The hostname is checked too: "localhost" is in the certificate.
    assert await _get_settings(f"localhost:{server.port}", pki.client_tls(), token)
    await _refused(address, None, token)
    # A client that does not trust the issuing CA refuses the server.
    await _refused(address, ClientTLS(str(pki.rogue_ca.cert_file)), token)


async def test_client_library_speaks_tls(tls_server: tuple[ConfigServer, str], pki: Pki) -> None:
    server, token = tls_server
    async with AsyncModelplaneClient(f"127.0.0.1:{server.port}", None, token=token,
                                     tls=TLS(root_certificates=str(pki.ca.cert_file))) as client:
        assert (await client.get_settings()).etag


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(mtls_server: tuple[ConfigServer, str],
                                                                   pki: Pki) -> None:
    server, token = mtls_server
    address = f"127.0.0.1:{server.port}"
    assert await _get_settings(address, pki.client_tls(pki.client), token)
    await _refused(address, pki.client_tls(), token)  # no client certificate
    await _refused(address, pki.client_tls(pki.rogue_client), token)  # signed by another CA
    await _refused(address, None, token)


async def test_healthcheck_probe_speaks_tls(mtls_server: tuple[ConfigServer, str], pki: Pki) -> None:
    server, _ = mtls_server
    address = f"127.0.0.1:{server.port}"
    probe = ["--tls-ca", str(pki.ca.cert_file), "--tls-cert", str(pki.client.cert),
             "--tls-key", str(pki.client.key), address, "modelplane.v1.ConfigService"]
    assert await asyncio.to_thread(healthcheck.main, probe, {}) == 0
    # The same options from the environment, as a compose file sets them.
    environ = {"HEALTHCHECK_TLS_CA": str(pki.ca.cert_file), "HEALTHCHECK_TLS_CERT": str(pki.client.cert),
               "HEALTHCHECK_TLS_KEY": str(pki.client.key)}
    assert await asyncio.to_thread(healthcheck.main, [address], environ) == 0
    assert await asyncio.to_thread(healthcheck.main, ["--tls-ca", str(pki.ca.cert_file), address], {}) == 1
    assert await asyncio.to_thread(healthcheck.main, [address], {}) == 1


# -- start-up validation ------------------------------------------------------------------------


def _settings(pki: Pki, **tls_env: str) -> ConfigServiceSettings:
    environ = {"DATABASE_URL": "postgresql://x@127.0.0.1/x", "MODELPLANE_ENCRYPTION_KEYS": keyring_env("k1"),
               **tls_env}
    return ConfigServiceSettings.from_env(Env(environ=environ))


def test_tls_settings_read_from_the_environment(pki: Pki) -> None:
    settings = _settings(pki, CONFIG_SVC_TLS_CERT=str(pki.server.cert), CONFIG_SVC_TLS_KEY=str(pki.server.key),
                         CONFIG_SVC_TLS_CLIENT_CA=str(pki.ca.cert_file))
    assert settings.tls == pki.server_tls(mutual=True) and settings.tls.mutual
    assert _settings(pki).tls is None


@pytest.mark.parametrize(("env", "named"), [
    ({"CONFIG_SVC_TLS_CERT": "server"}, "CONFIG_SVC_TLS_KEY"),
    ({"CONFIG_SVC_TLS_KEY": "server-key"}, "CONFIG_SVC_TLS_CERT"),
    ({"CONFIG_SVC_TLS_CLIENT_CA": "ca"}, "CONFIG_SVC_TLS_CERT"),
    ({"CONFIG_SVC_TLS_CERT": "missing", "CONFIG_SVC_TLS_KEY": "server-key"}, "CONFIG_SVC_TLS_CERT"),
    ({"CONFIG_SVC_TLS_CERT": "server", "CONFIG_SVC_TLS_KEY": "client-key"}, "CONFIG_SVC_TLS_KEY"),
    ({"CONFIG_SVC_TLS_CERT": "server", "CONFIG_SVC_TLS_KEY": "server"}, "CONFIG_SVC_TLS_KEY"),
    ({"CONFIG_SVC_TLS_CERT": "server", "CONFIG_SVC_TLS_KEY": "server-key", "CONFIG_SVC_TLS_CLIENT_CA": "server-key"},
     "CONFIG_SVC_TLS_CLIENT_CA"),
])
def test_bad_tls_settings_name_the_variable(pki: Pki, env: dict[str, str], named: str) -> None:
    files = {"server": pki.server.cert, "server-key": pki.server.key, "client-key": pki.client.key,
             "ca": pki.ca.cert_file, "missing": pki.ca.cert_file.parent / "missing.pem"}
    with pytest.raises(SettingsError, match=named) as caught:
        _settings(pki, **{name: str(files[value]) for name, value in env.items()})
    assert "PRIVATE KEY" not in str(caught.value)
