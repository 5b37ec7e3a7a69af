"""What to do with bad input: fail loudly, or skip it and say how much was skipped."""

from __future__ import annotations

import enum


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
            raise ValueError(f"on_bad_input must be one of {[p.value for p in cls]}, got {value!r}") from None


class DatasetError(ValueError):
    """A dataset root, split file or split line that cannot be used as given."""
