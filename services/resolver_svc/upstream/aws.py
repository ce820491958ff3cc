"""AWS SigV4 signing for bedrock when no bearer key is stored.

Credentials come from botocore's standard chain (environment, shared
config/credentials files, SSO, container and instance metadata). Looking
them up can block on the network, so it runs in a worker thread, and the
botocore Credentials object is kept because it refreshes itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from modelplane_server.resolver_svc.upstream.errors import UpstreamError
from modelplane_server.resolver_svc.upstream.protocol import WireRequest

CredentialsProvider = Callable[[], Awaitable[ReadOnlyCredentials]]


def standard_chain() -> CredentialsProvider:
    cached: list[Credentials] = []

    def load() -> ReadOnlyCredentials:
        if not cached:
            import botocore.session

            found = botocore.session.get_session().get_credentials()
            if found is None:
                raise UpstreamError(
                    "auth_failed", "no AWS credentials in the standard chain", should_retry=False
                )
            cached.append(found)
        return cached[0].get_frozen_credentials()

    async def provide() -> ReadOnlyCredentials:
        return await asyncio.to_thread(load)

    return provide


def static_credentials(access_key: str, secret_key: str, token: str | None = None) -> CredentialsProvider:
    frozen = ReadOnlyCredentials(access_key, secret_key, token)

    async def provide() -> ReadOnlyCredentials:
        return frozen

    return provide


def sign(wire: WireRequest, credentials: ReadOnlyCredentials) -> WireRequest:
    assert wire.sigv4 is not None
    service, region = wire.sigv4
    request = AWSRequest(method=wire.method, url=wire.url, data=wire.body or b"", headers=dict(wire.headers))
    creds = Credentials(credentials.access_key, credentials.secret_key, credentials.token)
    SigV4Auth(creds, service, region).add_auth(request)
    return replace(wire, headers=dict(request.headers.items()), sigv4=None)
