"""``python3 -m tests.cluster``: see :mod:`tests.cluster.cli`."""

import sys

from tests.cluster import cli

sys.exit(cli.main())
