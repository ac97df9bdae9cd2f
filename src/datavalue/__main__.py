"""``python -m datavalue`` is the ``datavalue`` command."""

from .cli import main

raise SystemExit(main())
