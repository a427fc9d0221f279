"""Type checks of a dataclass's fields against their annotations, as YAML and Python callers write
values: a bool is no number, an int is a float, None only where the field is optional."""

from __future__ import annotations

import dataclasses
from typing import Any, get_args, get_type_hints

from simulators.errors import CRSError


def field_types(kind: type[Any]) -> dict[str, tuple[tuple[type, ...], bool]]:
    """Each field of the dataclass `kind`: (the types it takes besides None, whether None is allowed)."""
    hints = get_type_hints(kind)
    out = {}
    for field in dataclasses.fields(kind):
        args = get_args(hints[field.name]) or (hints[field.name],)
        out[field.name] = (tuple(t for t in args if t is not type(None)), type(None) in args)
    return out


def is_of(value: Any, types: tuple[type, ...]) -> bool:
    """Whether `value` is one of `types`: a bool is no number, an int is a float."""
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, tuple(t for t in types if t is not bool))


def check_field_types(instance: Any) -> None:
    """Refuse a field of the dataclass `instance` whose value is not of its annotated type.

    Raises:
        CRSError: Names the class, the field, the value and the type it needs.
    """
    kind = type(instance)
    for name, (types, optional) in field_types(kind).items():
        value = getattr(instance, name)
        if (value is None and optional) or is_of(value, types):
            continue
        need = " or ".join(t.__name__ for t in types) + (" or None" if optional else "")
        raise CRSError(f"{kind.__name__}.{name}={value!r} must be of type {need}")
