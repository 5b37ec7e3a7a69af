"""What to do with bad input: fail loudly, or skip it and say how much was skipped.

Also the one error boundary of the command-line tools: an ``InputError`` is a
mistake in what the user gave (a file, a split list, a video, a config, a
checkpoint) and prints as its message alone; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
import sys
from typing import Any, Callable

# Exit codes of ``run_cli``: 2 is what argparse uses for a bad command line, and
# 128 + SIGINT is what a shell reports for Ctrl-C.
INPUT_ERROR_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130

# The two problems of ``video_file_problem`` that readers count apart; the others are "not a video file".
VIDEO_NOT_FOUND = "video file not found"
EMPTY_VIDEO = "empty video file (0 bytes)"


class InputError(ValueError):
    """The base of every error the project raises on purpose about user input.

    Its message alone is what a user sees (``run_cli`` prints no traceback), so
    it names the file or the field, says what is wrong and, where it can, what
    to do. A ``ValueError`` so that callers catching that keep working.
    """


class DatasetError(InputError):
    """A dataset root, split file or split line that cannot be used as given."""


class BadInputPolicy(str, enum.Enum):
    """``fail``: the first bad clip stops the run with an error naming it.
    ``skip``: bad clips are dropped, counted, and the count is reported at the
    end of the epoch. Never: train on a clip that did not decode."""

    FAIL = "fail"
    SKIP = "skip"

    @classmethod
    def parse(cls, value: "str | BadInputPolicy") -> "BadInputPolicy":
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"on_bad_input must be one of {[p.value for p in cls]}, got {value!r}") from None


def video_file_problem(path: str | os.PathLike) -> str | None:
    """What makes ``path`` unusable as a video file, or None if it is a non-empty regular file.

    The problems are worded to follow the path in a message: ``VIDEO_NOT_FOUND``,
    ``EMPTY_VIDEO``, "is a directory, not a video file", ...
    Never raises: a symlink loop or a permission error is a problem to report
    (or skip and count), not a crash.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return VIDEO_NOT_FOUND
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop: the link points back to itself, so there is no video file behind it"
        return f"cannot read the video file ({e.strerror or e})"
    if stat.S_ISDIR(status.st_mode):
        return "is a directory, not a video file"
    if not stat.S_ISREG(status.st_mode):
        return "is not a regular file (a device, pipe or socket), not a video file"
    if status.st_size == 0:
        return EMPTY_VIDEO
    return None


def run_cli(main: Callable[..., int | None], *args: Any, verbose: bool, prog: str | None = None,
            exit_code: int = INPUT_ERROR_EXIT_CODE) -> int:
    """Runs a command-line tool's ``main(*args)`` behind the project's error boundary.

    Returns ``main``'s exit code (None counts as 0). An ``InputError`` prints
    ``[prog: ]error: <message>`` on stderr, with no traceback, and returns
    ``exit_code``; Ctrl-C prints ``interrupted`` and returns 130. With
    ``verbose`` both are re-raised instead, so the traceback shows. Any other
    exception propagates unchanged: it is a bug, and its traceback is the report.

    Typical use, after parsing the command line (so that ``--verbose`` is known)::

        args = parser.parse_args(argv)
        return run_cli(_run, args, verbose=args.verbose)
    """
    prefix = f"{prog}: error" if prog else "error"
    try:
        return main(*args) or 0
    except InputError as e:
        if verbose:
            raise
        print(f"{prefix}: {e}", file=sys.stderr)
        return exit_code
    except KeyboardInterrupt:
        if verbose:
            raise
        print(f"{prog + ': ' if prog else ''}interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
