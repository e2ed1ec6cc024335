"""`python -m bot` is `leadbot`."""

from .cli import main

raise SystemExit(main())
