"""``python -m descentlab`` -> the ``descentlab`` command."""

from descentlab.cli.main import main

raise SystemExit(main())
