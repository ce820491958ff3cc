"""Typed Python clients for modelplane: `ModelplaneClient` (blocking) and
`AsyncModelplaneClient` (grpc.aio), with the same methods.

    from modelplane.client import ModelplaneClient, TLS

    with ModelplaneClient(config_address="config:50051", resolver_address="resolver:50052",
                          token=os.environ["MODELPLANE_TOKEN"], tls=TLS(root_certificates="ca.pem")) as mp:
        mp.create_provider("openai", "openai", api_key=key)
        for provider in mp.list_providers():
            print(provider.name)
        alice = mp.acting_for("alice")          # a service token acting for a user
        print(alice.resolve_model("general").model.name)
        mp.get_settings(timeout=2.0, metadata=[("x-request-id", "deploy-42")])  # this call only

Every RPC of ConfigService and ResolverService is a method taking plain
keyword arguments (see modelplane.calls for each one's arguments), plus
`timeout=` and `metadata=` for that call alone, and returning the response
message; list methods iterate every page (list_available_models joins its
pages into one answer). Failures raise
modelplane.errors.ModelplaneError subclasses carrying the ErrorInfo reason
and field violations. Reads (Get*, List*, Resolve*, health) are retried on
UNAVAILABLE with capped exponential backoff (CallRetry); writes and chats
never are.
"""

from modelplane.calls import UNSET, CallOptions, Unset
from modelplane.client._aio import AsyncModelplaneClient
from modelplane.client._base import DEFAULT_CONFIG_ADDRESS, DEFAULT_RESOLVER_ADDRESS, NO_RETRY, TLS, CallRetry
from modelplane.client._sync import ModelplaneClient
from modelplane.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ModelplaneError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AsyncModelplaneClient",
    "ModelplaneClient",
    "TLS",
    "CallRetry",
    "CallOptions",
    "NO_RETRY",
    "DEFAULT_CONFIG_ADDRESS",
    "DEFAULT_RESOLVER_ADDRESS",
    "UNSET",
    "Unset",
    "ModelplaneError",
    "InvalidArgument",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "AlreadyExists",
    "Aborted",
    "FailedPrecondition",
    "Unavailable",
]
