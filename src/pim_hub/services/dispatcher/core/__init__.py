"""Pure dispatcher logic: version guard, rate limits, offset tracking (no I/O imports)."""
