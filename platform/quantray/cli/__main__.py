"""`python -m quantray.cli`: what a Ray job runs."""

import sys

from quantray.cli import main

sys.exit(main())
