"""`python -m proxy` is the `diglot` command."""

import sys

from proxy.cli import main

sys.exit(main())
