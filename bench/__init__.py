"""Benchmarks of pim-hub; `make bench` runs them all and rewrites docs/benchmarks.md."""

import os

from pim_hub.runtime import outbound

# Benchmarks deliver to receivers on this machine, which the outgoing URL policy refuses by
# default: they are opened here, for this process and the hub processes it starts.
os.environ.setdefault("HUB_OUTBOUND_ALLOW", outbound.LOCAL_ALLOW)
outbound.configure(os.environ["HUB_OUTBOUND_ALLOW"])
