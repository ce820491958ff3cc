"""Pure domain: types, rules, options, validation, cost, errors. No gRPC, no I/O."""
