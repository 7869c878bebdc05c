"""Simulators of the Akeneo and Magento APIs (development only; they import nothing of the hub)."""
