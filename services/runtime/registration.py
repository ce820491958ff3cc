"""Registering a servicer from its service descriptor, with one serializer
that also sends answers already serialized.

The generated add_*Servicer_to_server functions fix each method's
serializer to the message's SerializeToString. Registered from the
descriptor instead, a handler may return an `Encoded` answer (bytes a memo
kept from an earlier call), which goes out as it is: a large answer that
is asked for again costs no serialization.
"""

from __future__ import annotations


import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from modelplane_server.runtime.pipeline import handler_factory


class Encoded:
    """A response message, already serialized (gRPC sends exact bytes
    objects only, so the bytes are held rather than subclassed)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)


def encode(answer: Message | Encoded) -> bytes:
    return answer.data if isinstance(answer, Encoded) else answer.SerializeToString()


def add_servicer(server: grpc.aio.Server, service: ServiceDescriptor, servicer: object) -> None:
    """Serve every method of `service` by the servicer's method of the same name."""
    handlers = {
        method.name: handler_factory(method.client_streaming, method.server_streaming)(
            getattr(servicer, method.name),
            request_deserializer=message_factory.GetMessageClass(method.input_type).FromString,
            response_serializer=encode)
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    # As the generated code does (grpcio 1.62+; not in grpc-stubs): the method is found without a lookup.
    server.add_registered_method_handlers(service.full_name, handlers)  # type: ignore[attr-defined]
