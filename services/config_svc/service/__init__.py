"""The use cases behind ConfigService, one function per call: read, patch,
validate and save, each write in one transaction of the store. Domain
values in, domain values out; no gRPC below the servicer."""
