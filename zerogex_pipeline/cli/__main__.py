"""``python -m zerogex_pipeline.cli`` runs the ``zerogex`` command."""

import sys

from zerogex_pipeline.cli import main

sys.exit(main())
