"""modelplane's servers, installed as one namespace (`modelplane_server`).

- `domain`: pure types and rules (no gRPC, no I/O).
- `runtime`: the gRPC plumbing both services share (interceptors, status
  codec, logs, metrics, TLS, settings, shutdown, health, keyring, tokens).
- `convert`: the contract's shared resource messages <-> domain types.
- `config_svc`, `resolver_svc`: the two services; `devstack`: `make run`.
"""
