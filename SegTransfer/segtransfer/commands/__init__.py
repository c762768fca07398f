"""Subcommands of the ``segtransfer`` CLI; every module here with a ``register(subparsers)`` is loaded."""
