"""The `hub` command line (the top layer: nothing imports it)."""
