"""Schedules as code: the declared set (`declarations.py`), synced to Temporal (`sync.py`)."""
