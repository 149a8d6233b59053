"""The replay corpus: recorded workflow histories (`histories/`) and their recorder."""
