"""Local development stack: embedded Postgres plus both services (`make run`)."""
