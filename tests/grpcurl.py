"""A stand-in for grpcurl for tests: the same command line, resolved through
the server's reflection service exactly as grpcurl resolves it, with the
request parsed from JSON by protobuf's JSON mapping (grpcurl's too).

grpcurl itself cannot be installed on the build machines, so the README's
grpcurl lines are replayed through this to prove they work as printed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


@dataclass
class GrpcurlCall:
    address: str
    method: str  # package.Service/Method
    headers: list[tuple[str, str]]
    data: str


def parse(command: str, env: dict[str, str]) -> GrpcurlCall:
    expanded = command
    for name in sorted(env, key=len, reverse=True):
        expanded = expanded.replace(f'"${name}"', shlex.quote(env[name])).replace(f"${name}", env[name])
    argv = shlex.split(expanded)
    assert argv[0] == "grpcurl", argv
    headers: list[tuple[str, str]] = []
    data = "{}"
    positional: list[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-plaintext":
            i += 1
        elif arg == "-H":
            name, _, value = argv[i + 1].partition(":")
            headers.append((name.strip().lower(), value.strip()))
            i += 2
        elif arg == "-d":
            data = argv[i + 1]
            i += 2
        elif arg.startswith("-"):
            raise AssertionError(f"grpcurl flag {arg} is not supported by the stand-in")
        else:
            positional.append(arg)
            i += 1
    assert len(positional) == 2, f"expected ADDRESS METHOD, got {positional}"
    return GrpcurlCall(positional[0], positional[1], headers, data)


def invoke(call: GrpcurlCall) -> dict[str, object] | list[dict[str, object]]:
    """Run the call; returns the response as JSON (a list for server streams).
    Raises grpc.RpcError like grpcurl would report it."""
    with grpc.insecure_channel(call.address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service_name, _, method_name = call.method.rpartition("/")
        service_name = service_name.replace("/", ".")
        method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(call.data, request_cls())
        path = f"/{service_name}/{method_name}"
        to_json = lambda m: json.loads(json_format.MessageToJson(m))  # noqa: E731
        if method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=response_cls.FromString)
            return [to_json(m) for m in stream(request, metadata=call.headers, timeout=30)]
        unary = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=response_cls.FromString)
        return to_json(unary(request, metadata=call.headers, timeout=30))  # type: ignore[no-any-return]
