"""`python -m reconciler.cli` runs the pcompose command."""

import sys

from reconciler.cli import main

sys.exit(main())
