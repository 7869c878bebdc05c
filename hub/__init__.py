"""pim-hub command line."""
