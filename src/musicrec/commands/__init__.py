"""CLI command groups beyond the core stages; each module registers itself on ``musicrec.cli.app``.

A module here imports ``app`` (and ``friendly_errors``) from :mod:`musicrec.cli` and decorates
its commands; :mod:`musicrec.cli` imports every module of this package once, at the end.
Heavy imports belong inside the command functions so ``musicrec --help`` stays fast.
"""
