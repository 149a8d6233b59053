"""retention: rows past their age deleted in bounded batches."""
