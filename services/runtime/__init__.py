"""gRPC runtime shared by both services: the interceptor pipeline and its stages, the status codec, per-call context, auth checks, health, logs, metrics, TLS, settings, shutdown, keyring, tokens."""
