"""`python -m kata_installer` runs the CLI."""

from kata_installer import cli

cli.main()
