"""Errors raised when a file the user gave cannot be read safely.

Every loader raises a `ModelFileError` (a ValueError) whose message names the
file and, where there is one, the member or field; the command lines print that
message as one line. `ResourceLimitError` is the refusal of a file that would
need more memory or time than the resource budget allows (see
`hack_model.io.safe_pickle.budget`).
"""

from __future__ import annotations

import os


class ModelFileError(ValueError):
    """A model, parameter, mesh or scan file that is corrupt, hostile or not what it claims."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, field: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.field = field
        prefix = ""
        if self.path and not message.startswith(self.path):
            prefix = f"{self.path}: "
        if field and f"'{field}'" not in message:
            prefix += f"'{field}': "
        super().__init__(prefix + message)

    def __reduce__(self):  # pickles (multiprocessing) with its attributes
        return _rebuild_error, (type(self), self.args[0], self.path, self.field)


def _rebuild_error(cls, message, path, field):
    err = cls.__new__(cls)
    ValueError.__init__(err, message)
    err.path, err.field = path, field
    return err


class ResourceLimitError(ModelFileError):
    """The file would need more memory (elements, bytes, nesting, memo) than its budget allows."""


def clean_message(message: str) -> str:
    """A library message with any advice to load pickles unsafely removed."""
    if "allow_pickle" in message or "pickled data" in message:
        return "the file holds pickled data or is not an array file; refused"
    return message
