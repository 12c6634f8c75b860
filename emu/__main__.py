"""``python -m emu`` is the ``triplefault`` command."""

from .cli import main

raise SystemExit(main())
