"""Deployment and operations files of pim-hub (not a runtime package)."""
