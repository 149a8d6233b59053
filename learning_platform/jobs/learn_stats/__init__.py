"""Learning statistics: learn-stats-daily (streaks) and learn-stats-weekly."""
