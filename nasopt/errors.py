"""Errors a user can act on: each names the file, the field, the bad value and what is allowed."""

from __future__ import annotations


class SpecError(ValueError):
    """An invalid preset or argument; the CLI prints it on one line and exits 2."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        value: object = None,
        allowed: object = None,
        has_value: bool = False,
    ) -> None:
        self.file = file
        self.field = field
        self.value = value
        self.allowed = allowed
        self.has_value = has_value or value is not None
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(part for part in (self.file, self.field) if part)
        text = f"{where}: {self.detail}" if where else self.detail
        if self.has_value:
            text += f" (got {self.value!r})"
        if self.allowed is not None:
            text += f"; allowed: {_format_allowed(self.allowed)}"
        return text

    def in_file(self, file: str) -> SpecError:
        """The same error, attributed to `file` when it does not name one yet."""
        if self.file:
            return self
        return SpecError(
            self.detail,
            file=file,
            field=self.field,
            value=self.value,
            allowed=self.allowed,
            has_value=self.has_value,
        )


def _format_allowed(allowed: object) -> str:
    if isinstance(allowed, (list, tuple, set, frozenset)):
        items = sorted(allowed, key=str) if isinstance(allowed, (set, frozenset)) else allowed
        return ", ".join(str(item) for item in items)
    return str(allowed)
