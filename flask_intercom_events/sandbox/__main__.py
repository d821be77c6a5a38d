"""``python -m flask_intercom_events.sandbox``: see :mod:`.cli` and ``--help``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
