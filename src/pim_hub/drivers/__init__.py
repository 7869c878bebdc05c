"""Drivers: the driver contract (base), discovery through entry points, the shipped drivers."""
