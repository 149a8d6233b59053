"""Deterministic orchestration, one module per job family. No I/O, no database imports.

`workflows.registry.ALL_WORKFLOWS` lists what the worker registers.
"""
