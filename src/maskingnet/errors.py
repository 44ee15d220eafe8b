"""One base for the errors maskingnet raises on purpose, and the command line's exit-code policy.

Every such error carries a one-line message meant for the person running the command (usually
``"path: what is wrong"``). The exit codes of ``maskingnet`` are:

- 0: the verb did all of its work;
- 1: it could not (a bad option value, a missing or unusable checkpoint, data or output), or it finished
  but skipped some inputs as unusable (each named on stderr);
- 2: the command line itself could not be parsed (an unknown option, a missing argument: click's usage
  errors).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class MaskingnetError(Exception):
    """An error with a message for the user; the command line prints it on one line and exits 1."""

    exit_code = EXIT_FAILED
