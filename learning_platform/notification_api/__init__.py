"""The notification API: an ASGI app streaming each user's notifications over SSE.

`app.py` builds it, `auth.py` checks bearer tokens, `hub.py` holds the one LISTEN connection of
the process and fans notifications out, `streams.py` is one client's stream, `store.py` the SQL.
"""

from learning_platform.notification_api.app import create_app

__all__ = ["create_app"]
