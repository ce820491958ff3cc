"""gRPC runtime shared by both services: interceptors, status codec, logs, metrics, TLS, settings, shutdown, health, keyring, tokens."""
