"""Shared pydantic building blocks of the Stack model: base class, scalar types, small objects."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reconciler.spec import units

_PORT_RANGE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")

NAME_PATTERN = r"^[a-zA-Z0-9._-]+$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


def _is_extension(key) -> bool:
    return isinstance(key, str) and key.startswith("x-")


class Spec(BaseModel):
    """Every Compose object: unknown keys refused, `x-*` keys set aside, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(),
                              hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_extensions(cls, data):
        if isinstance(data, dict) and any(_is_extension(k) for k in data):
            return {k: v for k, v in data.items() if not _is_extension(k)}
        return data


class Extensible(Spec):
    """An object whose `x-*` keys are kept (top level and services), out of the config hash."""

    extensions: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_extensions(cls, data):
        if isinstance(data, dict) and any(_is_extension(k) for k in data):
            ext = {k: v for k, v in data.items() if _is_extension(k)}
            data = {k: v for k, v in data.items() if not _is_extension(k)}
            data["extensions"] = ext
        return data


def _check_duration(value: str) -> str:
    try:
        units.parse_duration(value)
    except ValueError as err:
        raise PydanticCustomError("duration", str(err)) from None
    return value


def _to_bytes(value):
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return units.parse_bytes(value)
        except ValueError as err:
            raise PydanticCustomError("bytes", str(err)) from None
    raise PydanticCustomError("bytes", "must be a byte size such as 512m or 1.5G")


def _to_bytes_or_unlimited(value):
    if value in (-1, "-1"):
        return -1
    return _to_bytes(value)


def _scalar_to_str(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise PydanticCustomError("scalar", "must be a boolean, null, number or string")


def _file_mode(value):
    if isinstance(value, str):
        try:
            return int(value, 8)  # modes are written in octal, as chmod takes them
        except ValueError:
            raise PydanticCustomError("mode", "must be an octal file mode such as 0440") from None
    return value


def _int_to_str(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _port_number(value: int) -> int:
    if not 1 <= value <= 65535:
        raise PydanticCustomError("port", f"{value} is not a port in 1-65535")
    return value


def _port_range(value: str) -> str:
    match = _PORT_RANGE.match(value)
    if match:
        first, last = int(match[1]), int(match[2] or match[1])
        if 1 <= first <= last <= 65535:
            return value
    raise PydanticCustomError("port", f"{value!r} is not a port or range of ports in 1-65535")


PublishedPort = Annotated[str, BeforeValidator(_int_to_str), AfterValidator(_port_range)]
Duration = Annotated[str, AfterValidator(_check_duration)]
Bytes = Annotated[int, BeforeValidator(_to_bytes)]
BytesOrUnlimited = Annotated[int, BeforeValidator(_to_bytes_or_unlimited)]
ScalarStr = Annotated[str | None, BeforeValidator(_scalar_to_str)]
StrMap = dict[str, ScalarStr]
FileMode = Annotated[int, BeforeValidator(_file_mode)]
Port = Annotated[int, AfterValidator(_port_number)]


class Ulimit(Spec):
    soft: int
    hard: int


class DeviceRequest(Spec):
    """A GPU or other device reservation (`deploy...devices`, `gpus`)."""

    capabilities: list[str] = Field(default_factory=list)
    count: int | Literal["all"] | None = None
    device_ids: list[str] | None = None
    driver: str | None = None
    options: StrMap = Field(default_factory=dict)


class ServiceSecret(Spec):
    """A secret or config as a service uses it (long syntax)."""

    source: str
    target: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: FileMode | None = None


class ServiceHook(Spec):
    command: list[str]
    user: str | None = None
    privileged: bool | None = None
    working_dir: str | None = None
    environment: StrMap = Field(default_factory=dict)


class IpamPool(Spec):
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: dict[str, str] = Field(default_factory=dict)


class Ipam(Spec):
    driver: str | None = None
    config: list[IpamPool] = Field(default_factory=list)
    options: dict[str, str] = Field(default_factory=dict)


DriverOpts = dict[str, ScalarStr]
Strict = StrictBool
