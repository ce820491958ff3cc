"""Pure domain: types, errors, options, validation, base URLs, and the resolution rules. No gRPC, no I/O."""
