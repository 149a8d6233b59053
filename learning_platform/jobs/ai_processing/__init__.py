"""ai-processing: crawling a session's pages, their summaries and the session's mind map."""
