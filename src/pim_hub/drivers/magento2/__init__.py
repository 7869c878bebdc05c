"""Magento 2 driver: rules-based product builder and REST client (entry point `magento2`)."""

from pim_hub.drivers.magento2.config import Magento2Config
from pim_hub.drivers.magento2.driver import Magento2Driver

__all__ = ["Magento2Config", "Magento2Driver"]
