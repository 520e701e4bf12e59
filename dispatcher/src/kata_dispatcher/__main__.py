"""`python -m kata_dispatcher`: the same as the kata-dispatcher script."""

from kata_dispatcher import cli

cli.main()
