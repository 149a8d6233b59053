"""Browsing sessions: cleanup-stale-sessions and update-metrics (the active-session gauge)."""
