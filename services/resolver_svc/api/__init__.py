"""ResolverService over gRPC: one servicer composed of the resolution use
cases and the chat gateway, and the proto conversion for its messages."""
