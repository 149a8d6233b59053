"""The operator commands: `learning-jobs <command>` (`cli.py`), one module per command, and
what every entry point shares (argument parsing, error reporting, process exit)."""
