"""``python -m depthq.cli``: the ``depthq`` command."""

from depthq.cli import main

raise SystemExit(main())
