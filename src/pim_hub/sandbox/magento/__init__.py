"""In-memory Magento 2.4 REST simulator that enforces the official admin document."""

from pim_hub.sandbox.magento.app import create_app
from pim_hub.sandbox.magento.config import AttributeSeed, SandboxConfig, StoreView, Website
from pim_hub.sandbox.magento.faults import FaultConfig, FaultInjector
from pim_hub.sandbox.magento.server import running_server
from pim_hub.sandbox.magento.spec import DEFAULT_SPEC_PATH, load_spec
from pim_hub.sandbox.magento.state import MagentoState

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
