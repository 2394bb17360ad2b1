"""Demo: small steps to try Shepherd end to end and to measure it (no-op, echo, append, sleep, fail)."""
