"""``python -m datavalue.cli``: the same as the ``datavalue`` command."""

from . import main

raise SystemExit(main())
