"""Domain package of the learning platform's background jobs.

Models, migrations, settings and the adapters (database, Temporal connection, metrics) that
activities use. It imports neither `workflows` nor `activities`.
"""
