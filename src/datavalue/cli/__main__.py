"""``python -m datavalue.cli``: the same as the ``datavalue`` command."""

from datavalue.cli import main

raise SystemExit(main())
