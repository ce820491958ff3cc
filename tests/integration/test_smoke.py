from __future__ import annotations

import grpc
import pytest

from modelplane.v1 import config_service_pb2 as cs
from modelplane.v1 import resources_pb2 as pb
from tests.harness import ConfigHarness

pytestmark = pytest.mark.integration


async def test_create_provider_and_model(cfg: ConfigHarness) -> None:
    p = await cfg.stub.CreateProvider(cs.CreateProviderRequest(provider=pb.Provider(
        name="anthropic", type=pb.PROVIDER_TYPE_ANTHROPIC, api_key="sk-ant-canary")), metadata=cfg.admin)
    assert p.api_key_set and p.effective_base_url == "https://api.anthropic.com"
    m = await cfg.stub.CreateModel(cs.CreateModelRequest(model=pb.Model(
        provider="anthropic", model_identifier="claude-opus-4-6", display_name="Claude Opus",
        context_limit=200000)), metadata=cfg.admin)
    assert m.is_default and m.name
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cfg.stub.GetProvider(cs.GetProviderRequest(name="anthropic"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
