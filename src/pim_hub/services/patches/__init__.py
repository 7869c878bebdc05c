"""The patch service: producers' patches by identifier -> snapshots keyed by entity."""
