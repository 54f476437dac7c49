"""``python -m deel_ebm`` runs the ``deel-ebm`` command."""

import sys

from deel_ebm.app.cli import main

sys.exit(main())
