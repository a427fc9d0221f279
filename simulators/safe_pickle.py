"""The one restricted unpickler for third-party data pickles (UNICORN's ``transe.pkl``, MCMIPL's release).

A pickle can call any global it names, so a data file read with `pickle.load` could run code. This
reader admits only what those files need, and checks every value before numpy builds from it:

- builtin containers and scalars, written by pickle's own opcodes; of the globals that protocols 0-3
  name to rebuild them, only ``set``, ``frozenset``, ``complex``, ``bytes()`` (empty) and
  ``_codecs.encode(text, "latin1")``, each called with values already in the file;
- numpy scalars, dtypes and arrays of a plain numeric dtype (bool, integer, unsigned, float, complex;
  no object, string, structured or sub-array dtype), whose size must match the raw bytes the file
  holds. A numpy object array rebuilt from a pickle can crash the interpreter (a shape that does not
  match its list segfaults numpy 2.4), and ``numpy.ndarray((3e8,), "O")`` or ``bytes(6e9)`` would
  allocate gigabytes from a few dozen bytes, so none of these is ever called.

Any other global raises `UnsafePickleError` before it is imported or called; every other fault raises
a `DatasetError` naming the file.
"""

from __future__ import annotations

import importlib
import io
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simulators.errors import DatasetError

# A sub-array of more dimensions than numpy allows is refused by numpy itself; this bounds the check.
_MAX_DIMENSIONS = 64
_NUMERIC_KINDS = frozenset("biufc")


class UnsafePickleError(DatasetError):
    """A third-party pickle names a global, or builds a value, that the restricted reader refuses.

    Raised before the global is imported or called, or before numpy builds the refused value.
    """


class _RefusedError(Exception):
    """A refusal inside the reader; `read_pickle` turns it into an `UnsafePickleError` naming the file."""

    def __init__(self, field: str, expected: str, found: str) -> None:
        super().__init__(field, expected, found)
        self.field, self.expected, self.found = field, expected, found


def _numpy_global(module: str, name: str) -> Any:
    """A numpy global from its current home (numpy._core, else numpy.core for numpy < 2)."""
    try:
        home = importlib.import_module(f"numpy._core.{module}")
    except ImportError:  # pragma: no cover - numpy < 2
        home = importlib.import_module(f"numpy.core.{module}")
    return getattr(home, name)


_SCALAR: Callable[..., Any] = _numpy_global("multiarray", "scalar")
_RECONSTRUCT: Callable[..., np.ndarray] = _numpy_global("multiarray", "_reconstruct")
_TYPE_CODE = "a numeric type code such as 'f8' or 'i8'"


def _plain_dtype(value: object) -> np.dtype:
    """`value` as a plain numeric dtype, rebuilt from its type string: a pickled dtype's state can set
    any fields and flags (an "f8" flagged as holding objects), so numpy only ever gets a fresh one."""
    expected = "a numeric dtype (bool, integer, unsigned, float or complex)"
    if not isinstance(value, np.dtype):
        raise _RefusedError("dtype", expected, f"a {type(value).__name__}")
    plain = value.kind in _NUMERIC_KINDS and value.names is None and value.subdtype is None
    if not plain or value.hasobject:
        raise _RefusedError(
            "dtype", expected, f"a dtype of kind {value.kind!r}, fields or flags beyond a number's"
        )
    fresh = np.dtype(value.str)
    if fresh.itemsize != value.itemsize:
        raise _RefusedError("dtype", expected, f"item size {value.itemsize} for type {value.str}")
    return fresh


def _checked_shape(shape: object, dtype: np.dtype, n_bytes: int) -> tuple[int, ...]:
    """`shape`, checked to be a shape whose array fills exactly the `n_bytes` raw bytes the file holds."""
    if (
        not isinstance(shape, tuple)
        or len(shape) > _MAX_DIMENSIONS
        or not all(type(n) is int and n >= 0 for n in shape)
    ):
        raise _RefusedError("array", "a shape of non-negative ints", f"a {type(shape).__name__}")
    if math.prod(shape) * dtype.itemsize != n_bytes:
        raise _RefusedError(
            "array",
            "an array exactly as large as the raw bytes the file holds for it",
            f"a {len(shape)}-dimensional shape over {n_bytes} bytes of {dtype}",
        )
    return shape


def _dtype(spec: object, align: object = False, copy: object = True) -> np.dtype:
    """numpy.dtype as a pickle calls it; always a copy (the state that follows may change it)."""
    if not isinstance(spec, str) or len(spec) > 8:
        raise _RefusedError("dtype", _TYPE_CODE, f"a {type(spec).__name__}")
    try:
        made = np.dtype(spec, align=False, copy=True)
    except TypeError:
        raise _RefusedError("dtype", _TYPE_CODE, "an unknown code") from None
    _plain_dtype(made)
    return made


def _bytes(*args: object) -> bytes:
    """builtins.bytes as protocols 0-2 call it: only ``bytes()``, for an empty byte string."""
    if args:
        raise _RefusedError(
            "global builtins.bytes", "bytes() for an empty byte string", "bytes(...) of a value"
        )
    return b""


def _latin1(text: object, encoding: object = "utf-8") -> bytes:
    """_codecs.encode as protocols 0-2 call it to rebuild a byte string: ``encode(text, "latin1")``."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _RefusedError(
            "global _codecs.encode", "encode(text, 'latin1') of a byte string", "other arguments"
        )
    return text.encode("latin1")


def _scalar(dtype: object, data: object = None) -> Any:
    fresh = _plain_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != fresh.itemsize:
        raise _RefusedError(
            "scalar", f"{fresh.itemsize} raw bytes for a {fresh} scalar", f"a {type(data).__name__}"
        )
    return _SCALAR(fresh, data)


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    fresh = _plain_dtype(dtype)
    if not isinstance(buffer, (bytes, bytearray)) or order not in ("C", "F"):
        raise _RefusedError("array", "in-band raw bytes in C or F order", f"a {type(buffer).__name__}")
    shape = _checked_shape(shape, fresh, len(buffer))
    return np.frombuffer(bytes(buffer), dtype=fresh).reshape(shape, order="F" if order == "F" else "C")


class _ArrayType:
    """Stands for ``numpy.ndarray`` in a pickle: passed to ``_reconstruct``, never called."""

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise _RefusedError(
            "global numpy.ndarray",
            "arrays rebuilt from their raw bytes, as numpy pickles them",
            "a direct numpy.ndarray(...) call (it allocates whatever shape it is given)",
        )


_ARRAY_TYPE = _ArrayType()


class _CheckedArray(np.ndarray):
    """An array whose pickled state is checked before numpy reads it; `_plain` makes it a plain
    `np.ndarray` once the file is loaded."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise _RefusedError(
                "array", "numpy's array state (version, shape, dtype, order, bytes)", "another state"
            )
        version, shape, dtype, fortran, raw = state
        fresh = _plain_dtype(dtype)
        if not isinstance(raw, bytes) or type(version) is not int or type(fortran) is not bool:
            raise _RefusedError("array", "an array's raw bytes", f"a {type(raw).__name__}")
        checked: Any = (version, _checked_shape(shape, fresh, len(raw)), fresh, fortran, raw)
        super().__setstate__(checked)  # numpy's stub wants numpy.bool; the C parser wants a Python bool


class _Reader(pickle.Unpickler):
    """`pickle.Unpickler` whose globals are checked stand-ins for the few callables data pickles use."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.rebuilt_arrays = False
        builtins = {"set": set, "frozenset": frozenset, "complex": complex, "bytes": _bytes}
        self._globals: dict[tuple[str, str], Any] = {
            **{
                (module, name): value
                for module in ("builtins", "__builtin__")
                for name, value in builtins.items()
            },
            ("_codecs", "encode"): _latin1,
            ("numpy", "dtype"): _dtype,
            ("numpy", "ndarray"): _ARRAY_TYPE,
            **{
                (f"{package}.{module}", name): value
                for package in ("numpy.core", "numpy._core")
                for module, name, value in (
                    ("multiarray", "scalar", _scalar),
                    ("multiarray", "_reconstruct", self._reconstruct),
                    ("numeric", "_frombuffer", _frombuffer),
                )
            },
        }

    def find_class(self, module: str, name: str) -> Any:
        value = self._globals.get((module, name))
        if value is None:
            raise _RefusedError(
                f"global {module}.{name}",
                "only builtin containers and scalars and numpy numeric scalars, dtypes and arrays in a "
                "third-party pickle",
                f"a reference to {module}.{name}",
            )
        return value

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedError("persistent id", "a self-contained pickle", "a persistent id")

    def _reconstruct(self, array_type: object, shape: object, code: object) -> np.ndarray:
        # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") followed by its state.
        if array_type is not _ARRAY_TYPE or type(shape) is not tuple or shape != (0,):
            raise _RefusedError(
                "array", "numpy's array reconstruction (ndarray, (0,), code)", "other arguments"
            )
        self.rebuilt_arrays = True
        return _RECONSTRUCT(_CheckedArray, (0,), b"b")


def _plain(value: object, done: dict[int, object]) -> object:
    """`value` with every `_CheckedArray` in it as a plain `np.ndarray` (shared parts stay shared)."""
    key = id(value)
    if key in done:
        return done[key]
    out: object = value
    if isinstance(value, _CheckedArray):
        out = value.view(np.ndarray)
    elif isinstance(value, list):
        done[key] = value  # a list may hold itself
        value[:] = [_plain(item, done) for item in value]
    elif isinstance(value, dict):
        done[key] = value
        for name in value:
            value[name] = _plain(value[name], done)
    elif isinstance(value, tuple):
        out = tuple(_plain(item, done) for item in value)
    done[key] = out
    return out


def read_pickle(path: Path | str, what: str) -> object:
    """Read a third-party pickle through the restricted reader.

    Args:
        path: The pickle file.
        what: What the file is, in words (e.g. "UNICORN's transe.pkl"), for the error of a missing
            or unreadable file.

    Returns:
        The unpickled object: builtin containers and scalars, numpy numeric scalars and arrays.

    Raises:
        UnsafePickleError: The pickle names any other global or builds a refused value (a
            `DatasetError` naming the file; the global is never imported or called).
        DatasetError: The file is missing, unreadable, truncated or otherwise not a pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "", what, "missing")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(path, "", "a readable file", str(error)) from None
    reader = _Reader(data)
    try:
        loaded = reader.load()
        return _plain(loaded, {}) if reader.rebuilt_arrays else loaded
    except _RefusedError as refusal:
        found = f"{refusal.found}: refused, nothing was loaded"
        raise UnsafePickleError(path, refusal.field, refusal.expected, found) from None
    except RecursionError:
        raise DatasetError(path, "", f"{what}, as pickled", "nesting too deep to load") from None
    except Exception as error:  # pickle raises many types on corrupt input
        found = f"{type(error).__name__}: {error} (truncated or corrupt file?)"
        raise DatasetError(path, "", f"a readable pickle ({what})", found) from None
