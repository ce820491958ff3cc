"""ShardedTransport: one origin's requests over several small pools, so
httpcore's per-request scan stays short; the per-origin limit still holds."""

from __future__ import annotations

import asyncio

import httpcore
import httpx
import pytest

from modelplane_server.resolver_svc.upstream import ChatMessage, TextDelta, UpstreamClient, UpstreamTarget
from modelplane_server.resolver_svc.upstream.pools import ShardedTransport
from tests.fakes import Canned, Fail, FakeUpstream


class Held(httpcore.AsyncConnectionPool):
    """A pool that answers each request with a body the test releases."""

    def __init__(self, name: int, size: int, log: list[tuple[int, int]], gate: asyncio.Event) -> None:
        super().__init__()
        self.name, self.size, self.log, self.gate = name, size, log, gate

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        self.log.append((self.name, self.size))
        gate = self.gate

        class Body:
            async def __aiter__(self):  # type: ignore[no-untyped-def]
                await gate.wait()
                yield b"ok"

        return httpcore.Response(200, content=Body())


@pytest.mark.parametrize("max_connections, sizes", [(40, [16, 16, 8]), (32, [16, 16]), (5, [5])])
async def test_pools_split_the_origin_limit(max_connections: int, sizes: list[int]) -> None:
    made: list[int] = []
    gate = asyncio.Event()
    transport = ShardedTransport(lambda n: made.append(n) or Held(len(made), n, [], gate), max_connections)
    async with httpx.AsyncClient(transport=transport) as http:
        responses = [await http.send(http.build_request("GET", "http://up/"), stream=True)
                     for _ in range(max_connections)]
        assert made == sizes and transport.in_flight == sizes
        gate.set()
        for r in responses:
            await r.aclose()
    assert transport.in_flight == [0] * len(sizes)


async def test_the_first_pool_with_room_takes_the_request() -> None:
    log: list[tuple[int, int]] = []
    gate = asyncio.Event()
    pools: list[Held] = []

    def make(n: int) -> Held:
        pools.append(Held(len(pools), n, log, gate))
        return pools[-1]

    transport = ShardedTransport(make, 6, per_pool=2)
    async with httpx.AsyncClient(transport=transport) as http:
        async def send() -> httpx.Response:
            return await http.send(http.build_request("GET", "http://up/"), stream=True)

        first = [await send() for _ in range(5)]
        assert transport.in_flight == [2, 2, 1]
        await first[0].aclose()  # room in pool 0 again: the next request goes there, not to pool 2
        await first[3].aclose()
        later = [await send(), await send()]
        assert transport.in_flight == [2, 2, 1]
        assert [name for name, _ in log] == [0, 0, 1, 1, 2, 0, 1]
        extra = await send()  # all full: waits in the least busy pool (2)
        assert transport.in_flight == [2, 2, 2] and log[-1][0] == 2
        gate.set()
        for r in first[1:3] + first[4:] + later + [extra]:
            await r.aclose()
    assert transport.in_flight == [0, 0, 0]


async def test_a_failed_request_frees_its_place() -> None:
    class Refusing(httpcore.AsyncConnectionPool):
        async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
            raise httpcore.ConnectError("refused")

    transport = ShardedTransport(lambda n: Refusing(), 10)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.ConnectError):  # httpcore's error, as httpx's
            await http.get("http://up/")
    assert transport.in_flight == [0]


async def test_many_streams_to_one_origin_through_the_client() -> None:
    upstream = UpstreamClient(trust_env=False, max_connections_per_origin=50)
    async with FakeUpstream.start("openai") as fake:
        fake.default = Canned(text="abcd", chunk_chars=1, delay_s=0.05)
        target = UpstreamTarget("openai", fake.base_url, fake.api_key, None, "model-a")

        async def text() -> str:
            return "".join([e.text async for e in upstream.stream(target, [ChatMessage("user", "hi")])
                            if isinstance(e, TextDelta)])
        try:
            assert await asyncio.gather(*(text() for _ in range(45))) == ["abcd"] * 45
            transport = upstream._pools[("http", fake.origin.removeprefix("http://"))]._transport
            assert isinstance(transport, ShardedTransport)
            assert transport.in_flight == [0, 0, 0]  # 16 + 16 + 13 at once: three pools, every place given back
        finally:
            await upstream.aclose()
    assert fake.connections_opened == 45


async def test_cookies_an_upstream_sets_are_never_sent_back(client: UpstreamClient) -> None:
    """One pool serves every user of an origin: a cookie set in one user's
    reply (a CDN's __cf_bm, say) must not ride along on anyone's next request."""
    async with FakeUpstream.start("openai") as fake:
        fake.script(Fail(429, headers={"retry-after": "0", "set-cookie": "__cf_bm=from-alice; Path=/"}),
                    Canned(text="ok"))
        target = UpstreamTarget("openai", fake.base_url, fake.api_key, None, "model-a")
        assert (await client.chat(target, [ChatMessage("user", "hi")])).text == "ok"
    assert [r.headers.get("cookie") for r in fake.requests] == [None, None]
