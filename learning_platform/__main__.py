"""`python -m learning_platform COMMAND`: the `learning-jobs` console script."""

from learning_platform.commands.cli import main

main()
