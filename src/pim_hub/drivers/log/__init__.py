"""The `log` driver: records each delivery in PostgreSQL (a dry-run target for operators)."""

from pim_hub.drivers.log.driver import LogConfig, LogDriver

__all__ = ["LogConfig", "LogDriver"]
