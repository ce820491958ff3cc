"""Shared plumbing and domain types for both services."""
