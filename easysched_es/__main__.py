"""`python -m easysched_es` is the `easysched` command."""

import sys

from easysched_es.cli import main

sys.exit(main())
