"""Question sets and sources: generation, question-set-cleanup, question-set-retry and
source-cleanup."""
