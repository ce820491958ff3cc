"""`python -m modelplane_server.runtime.healthcheck [TLS options] ADDRESS [SERVICE]`: exit 0 when
the gRPC health service reports SERVING. The container image's health probe.

With TLS on, pass the CA that signed the server's certificate (--tls-ca), and
for mutual TLS a client certificate and key. The probe dials 127.0.0.1, which
a certificate rarely names: --tls-server-name says which name to verify.
Each option may also come from the environment (HEALTHCHECK_TLS_CA,
HEALTHCHECK_TLS_CERT, HEALTHCHECK_TLS_KEY, HEALTHCHECK_TLS_SERVER_NAME), so a
compose file can set them once for the service.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ENV_PREFIX = "HEALTHCHECK_TLS_"


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelplane_server.runtime.healthcheck",
                                     description="Exit 0 when ADDRESS reports SERVING over gRPC health.")
    parser.add_argument("address", help="host:port")
    parser.add_argument("service", nargs="?", default="", help="service name; default: the server overall")
    for option, what in (("ca", "PEM CA that signed the server's certificate (turns TLS on)"),
                         ("cert", "PEM client certificate (mutual TLS)"),
                         ("key", "PEM key of --tls-cert"),
                         ("server-name", "name to verify in the server's certificate")):
        var = ENV_PREFIX + option.upper().replace("-", "_")
        parser.add_argument(f"--tls-{option}", default=environ.get(var) or None, help=f"{what} [env {var}]")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    return parser


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if not (args.tls_ca or args.tls_cert):
        return grpc.insecure_channel(args.address)
    credentials = grpc.ssl_channel_credentials(root_certificates=_read(args.tls_ca),
                                               private_key=_read(args.tls_key),
                                               certificate_chain=_read(args.tls_cert))
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    return grpc.secure_channel(args.address, credentials, options=options)


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    args = _parser(environ).parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("healthcheck: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        channel = _channel(args)
    except OSError as exc:
        print(f"healthcheck: cannot read a TLS file: {exc}", file=sys.stderr)
        return 2
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"unhealthy: {exc.code().name}", file=sys.stderr)
            return 1
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
