"""Side effects, one module per job family; classes that hold their dependencies.

`activities.registry` wires them to a worker.
"""
