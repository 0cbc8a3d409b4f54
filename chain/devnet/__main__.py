"""``python -m chain.devnet``: the devnet's own entry point (see ``chain.devnet.cli``)."""

import sys

from chain.devnet.cli import main

sys.exit(main())
