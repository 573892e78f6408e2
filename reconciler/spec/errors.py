"""The loader's one error type and its warnings, both carrying the place in the file they are about."""

from __future__ import annotations

import dataclasses


def format_path(path: tuple) -> str:
    """('services', 'web', 'ports', 0) -> 'services.web.ports[0]'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclasses.dataclass(frozen=True)
class Place:
    """Where something is: file, 1-based line and column, and the path inside the document."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: tuple = ()

    def __str__(self) -> str:
        parts = []
        if self.file:
            loc = self.file
            if self.line is not None:
                loc += f":{self.line}"
                if self.column is not None:
                    loc += f":{self.column}"
            parts.append(loc)
        if self.path:
            parts.append(format_path(self.path))
        return ": ".join(parts)


class SpecError(Exception):
    """A stack that cannot be loaded; str() reads `stack.yaml:12:7: services.web.ports[0]: <what>`."""

    def __init__(self, message: str, place: Place | None = None) -> None:
        self.place = place or Place()
        self.message = message
        super().__init__(str(self))

    @property
    def file(self) -> str | None:
        return self.place.file

    @property
    def line(self) -> int | None:
        return self.place.line

    @property
    def column(self) -> int | None:
        return self.place.column

    @property
    def path(self) -> str:
        return format_path(self.place.path)

    def __str__(self) -> str:
        where = str(self.place)
        return f"{where}: {self.message}" if where else self.message


@dataclasses.dataclass(frozen=True)
class Warning:  # the loader's own warning record, not the builtin category
    """Something the user should know that does not stop the load (obsolete or not applied yet)."""

    message: str
    place: Place = Place()

    def __str__(self) -> str:
        where = str(self.place)
        return f"{where}: {self.message}" if where else self.message
