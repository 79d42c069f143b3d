"""``python -m abcore``: the command-line interface."""

from abcore.cli.main import main

raise SystemExit(main())
