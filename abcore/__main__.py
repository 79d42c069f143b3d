"""``python -m abcore``: the command-line interface."""

from abcore.cli import main

raise SystemExit(main())
