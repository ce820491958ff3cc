"""modelplane config service: owns Postgres, the keyring, tokens and the audit log."""
