"""``python -m datavalue`` is the ``datavalue`` command."""

from datavalue.cli import main

raise SystemExit(main())
