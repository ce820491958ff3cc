from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from modelplane_server.resolver_svc.upstream import ChatMessage, ModelOptions, ToolDefinition, UpstreamClient, UpstreamTarget
from modelplane_server.resolver_svc.upstream.aws import static_credentials
from modelplane_server.resolver_svc.upstream.retry import RetryPolicy
from tests.fakes import TEST_AWS_CREDENTIALS, FakeUpstream


class ManualClock:
    """A monotonic clock that only moves when the (fake) sleep says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def client(clock: ManualClock) -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(
        retry_policy=RetryPolicy(max_attempts=4),
        sleep=clock.sleep,
        clock=clock,
        aws_credentials=static_credentials(
            TEST_AWS_CREDENTIALS.access_key, TEST_AWS_CREDENTIALS.secret_key, TEST_AWS_CREDENTIALS.token
        ),
        trust_env=False,
    )
    yield c
    await c.aclose()


def target_for(
    fake: FakeUpstream,
    options: ModelOptions = ModelOptions(),
    model: str = "m-1",
    api_key: str | None = "from-fake",
) -> UpstreamTarget:
    return UpstreamTarget(
        provider_type=fake.kind,
        base_url=fake.base_url,
        api_key=fake.api_key if api_key == "from-fake" else api_key,
        model_identifier=model,
        options=options,
        region=fake.region,
    )


CONVERSATION = (
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "Weather in Paris?"),
)
WEATHER_TOOL = ToolDefinition(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

TargetFactory = Callable[..., UpstreamTarget]
