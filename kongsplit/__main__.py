"""``python -m kongsplit``."""

import sys

from kongsplit.cli import main

sys.exit(main())
