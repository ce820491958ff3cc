"""What the resolver knows: config_svc's pushed configuration (client,
watcher, immutable snapshot) and the ambient AWS check. No caller-facing
gRPC here; everything above reads the Snapshot."""
