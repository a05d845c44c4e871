"""``python -m mlsec_jupyter scan NOTEBOOK.ipynb``: the same as the ``mlsec-jupyter`` command."""

import sys

from .cli import main

sys.exit(main())
