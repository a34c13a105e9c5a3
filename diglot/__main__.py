"""`python -m diglot` is the `diglot` command."""

import sys

from diglot.proxy.cli import main

sys.exit(main())
