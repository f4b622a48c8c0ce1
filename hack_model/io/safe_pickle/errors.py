"""The two refusals of the restricted unpickler (both ModelFileError, so ValueError)."""

from __future__ import annotations

from ..errors import ModelFileError, ResourceLimitError

__all__ = ["CorruptPickleError", "ModelFileError", "ResourceLimitError", "UnsafePickleError"]


class UnsafePickleError(ModelFileError):
    """A pickle referenced a global that is not an allowed data type, or used an
    allowed one in a way that could run code or read memory."""

    def __init__(
        self, global_name: str, reason: str = "not an allowed data type", path: str | None = None
    ) -> None:
        self.global_name = global_name
        self.reason = reason
        where = f" from {path}" if path else ""
        ValueError.__init__(self, f"refused to load '{global_name}'{where}: {reason}")
        self.path, self.field = path, None

    def with_path(self, path: str | None) -> UnsafePickleError:
        return UnsafePickleError(self.global_name, self.reason, path)

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        return UnsafePickleError, (self.global_name, self.reason, self.path)


class CorruptPickleError(ModelFileError):
    """A file is missing pieces, is not a pickle, or holds malformed data."""
