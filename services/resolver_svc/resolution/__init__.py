"""Resolution use cases over the snapshot and the user cache: domain in,
domain out (modelplane_server.domain results, never proto)."""
