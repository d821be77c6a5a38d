"""Reading JSON that came from outside this process: an intake or spool line, a job's fields
in Redis, an answer from Intercom (or whatever answers in its place).

Python's decoder recurses, so a text nested deeper than the interpreter's stack (``[`` a
hundred thousand times: 100 KB) raises ``RecursionError``, which is no ``ValueError`` and went
past every ``except ValueError`` that guards a decoding. Here every way a text can fail to be
JSON is a ``ValueError``. Pure: no Redis, no HTTP.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_json"]


def parse_json(text: bytes | str) -> Any:
    """``json.loads(text)``; ``ValueError`` (``UnicodeDecodeError`` included) if ``text`` is
    not JSON, nested too deeply for the decoder included."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None
