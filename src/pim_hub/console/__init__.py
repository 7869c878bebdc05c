"""The operations console: `hub console`, a web application over the hub's read models and
topics whose actions go through the same operator code as the CLI (`pim_hub.ops`, the registry).
"""
