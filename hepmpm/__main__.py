"""``python -m hepmpm`` is the same as the ``hepmpm`` console script."""

from hepmpm.cli import main

raise SystemExit(main())
