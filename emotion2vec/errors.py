"""The one base class of every error caused by bad input or a bad option.

Each stage raises its own subclass (``AudioError``, ``ManifestError``, ``CheckpointError``, ...) whose message names
the file, key or value at fault. The command line prints that message and exits with status 2; anything else that
escapes is a bug (status 3, traceback with ``-v``).
"""

from __future__ import annotations

__all__ = ["Emotion2VecError"]


class Emotion2VecError(Exception):
    """Bad input or option; ``str()`` says what and where."""
