"""A driver package whose import fails (like a missing dependency)."""

raise ImportError("No module named 'some_missing_sdk'")
