"""Generated from proto/modelplane/v1 by `make proto`; do not edit."""
