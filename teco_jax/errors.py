"""Errors the user can fix by changing a flag, a file or a path.

The command-line tools print a `UserError` as one line, `error: <message>`, with no
traceback, and exit with status 1. The message names the thing (config key, file,
directory) and the problem, and where it helps, what to do instead.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: a config key, a path, a file or a flag the user gave. One line, no traceback."""
