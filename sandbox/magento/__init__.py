"""In-memory Magento 2.4 REST simulator that enforces the official admin document."""

from sandbox.magento.app import create_app
from sandbox.magento.config import AttributeSeed, SandboxConfig, StoreView, Website
from sandbox.magento.faults import FaultConfig, FaultInjector
from sandbox.magento.server import running_server
from sandbox.magento.spec import DEFAULT_SPEC_PATH, load_spec
from sandbox.magento.state import MagentoState

__all__ = [
    "DEFAULT_SPEC_PATH",
    "AttributeSeed",
    "FaultConfig",
    "FaultInjector",
    "MagentoState",
    "SandboxConfig",
    "StoreView",
    "Website",
    "create_app",
    "load_spec",
    "running_server",
]
