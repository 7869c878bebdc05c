"""Operator tools: replay, resync, trace, group offsets, the lag exporter, dead letters."""
