"""modelplane resolver service: in-memory snapshot, resolution, upstream calls."""
