"""Every table of the service. Importing this module registers each job family's models on
`Base.metadata`: Alembic's target, and what the migration tests compare a database with."""

from __future__ import annotations

from learning_platform.core.models import Base
from learning_platform.jobs.ai_processing import models as ai_processing
from learning_platform.jobs.browsing_sessions import models as browsing_sessions
from learning_platform.jobs.learn_stats import models as learn_stats
from learning_platform.jobs.outbox_relay import models as outbox_relay
from learning_platform.jobs.question_sets import models as question_sets

FAMILY_MODELS = (ai_processing, browsing_sessions, learn_stats, outbox_relay, question_sets)
metadata = Base.metadata
