"""What every job family and process uses: settings, the database, errors, logs, metrics,
tracing, notifications, batch checkpoints and stored gauges."""
