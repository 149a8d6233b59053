"""AI providers: the OpenAI-compatible JSON client (`llm`), the offline extractive provider
(`offline`) and the tasks built on them (`session_ai`: page summaries and mind maps)."""
