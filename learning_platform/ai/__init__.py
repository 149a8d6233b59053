"""AI providers shared by the job families: the OpenAI-compatible JSON client (`llm`) and the
offline extractive tools (`offline`). What each job asks of them is in its family:
`jobs/ai_processing/ai.py` (summaries, mind maps), `jobs/question_sets/ai.py` (questions)."""
