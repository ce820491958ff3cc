"""The standard grpc.health.v1 service and server reflection (so grpcurl works without proto files).

The probe that asks it, runtime.healthcheck, stays a command of its own that
imports only grpc and the health stubs: docker-compose starts it every 5 s.
"""

from __future__ import annotations

from typing import Sequence

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
# grpc.aio's health servicer; grpc_health.v1.health re-exports it as `aio`
# at runtime, which the type checker cannot see.
from grpc_health.v1 import _async as health_aio
from grpc_reflection.v1alpha import reflection


class Health:
    """The standard grpc.health.v1 service, reporting per service name and
    overall ("")."""

    def __init__(self, servicer: health_aio.HealthServicer, service_names: Sequence[str]) -> None:
        self.servicer = servicer
        self.service_names = tuple(service_names)

    async def set_serving(self, serving: bool, *service_names: str) -> None:
        """Set the named services (default: all of them and overall "")."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in service_names or ("", *self.service_names):
            await self.servicer.set(name, status)

    async def shutting_down(self) -> None:
        """Report NOT_SERVING for everything from now on (graceful shutdown)."""
        await self.servicer.enter_graceful_shutdown()


def add_health_and_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> Health:
    """Add health and reflection for `service_names` (full names, e.g.
    "modelplane.v1.ConfigService"), so grpcurl works without proto files.

    Health starts as SERVING for "" only (grpc's default); call
    `await health.set_serving(...)` once the service is ready.
    """
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflected = [
        *service_names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(reflected, server)
    return Health(servicer, service_names)
