"""modelplane client: generated stubs (modelplane.v1), typed client and operator CLI."""
