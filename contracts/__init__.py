"""What workflows and activities share: activity names and their dataclass inputs/outputs.

Modules here import only the standard library, so workflows can import them inside Temporal's
sandbox without pulling in SQLAlchemy, asyncpg, httpx or openai.
"""
