"""The one restricted unpickler for third-party data pickles (UNICORN's ``transe.pkl``, MCMIPL's release).

A pickle can call any global it names, so a data file read with `pickle.load` could run code. This
reader admits only what those files need, and checks every value before numpy builds from it:

- builtin containers and scalars, written by pickle's own opcodes; of the globals that protocols 0-3
  name to rebuild them, only ``set``, ``frozenset``, ``complex``, ``bytes()`` (empty) and
  ``_codecs.encode(text, "latin1")``, each called with values already in the file;
- numpy scalars and arrays of a plain numeric dtype (bool, integer, unsigned, float, complex; no
  object, string, structured or sub-array dtype), whose size must match the raw bytes the file holds.
  A pickled dtype is read as its type code and byte order only, never as a numpy dtype whose state
  the file sets (a state can flag an ``f8`` as holding objects); an array takes one state, once.
  A numpy object array rebuilt from a pickle can crash the interpreter or read memory as objects, and
  ``numpy.ndarray((3e8,), "O")`` or ``bytes(6e9)`` would allocate gigabytes from a few dozen bytes, so
  none of these is ever built.

Before anything is unpickled, the opcode stream is read once (`_scan`): a memo index beyond the file's
size (the C unpickler allocates its memo up to the index) and values nested deeper than `MAX_DEPTH`
(hashing a tuple nested 300,000 deep overflows the C stack) are refused. Any other global raises
`UnsafePickleError` before it is imported or called; every other fault raises a `DatasetError` naming
the file. Not guarded: a file of keys that share one hash loads in time quadratic in its size.
"""

from __future__ import annotations

import importlib
import io
import math
import pickle
import pickletools
from collections.abc import Callable, Iterable
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


class _PickledDtype:
    """A dtype as a pickle states it: a type code (``dtype("f8", False, True)``) and the byte order its
    state sets; `_plain_dtype` turns it into a fresh numpy dtype where an array or scalar needs one."""

    __slots__ = ("code", "order")

    def __init__(self, code: str) -> None:
        self.code, self.order = code, "="

    def __setstate__(self, state: Any) -> None:
        # numpy's state of a plain dtype: (3, byte order, None, None, None, -1, -1, 0); nothing else
        if (
            type(state) is not tuple
            or len(state) != 8
            or state[0] != 3
            or state[1] not in ("<", ">", "|", "=")
            or state[2:] != (None, None, None, -1, -1, 0)
        ):
            raise _RefusedError("dtype", "a plain numeric dtype's state (a byte order only)", "another state")
        self.order = state[1]


def _plain_dtype(value: object) -> np.dtype:
    """A fresh numpy dtype of a `_PickledDtype` of a plain numeric type."""
    expected = "a numeric dtype (bool, integer, unsigned, float or complex)"
    if not isinstance(value, _PickledDtype):
        raise _RefusedError("dtype", expected, f"a {type(value).__name__}")
    fresh = np.dtype(value.code)
    if fresh.kind not in _NUMERIC_KINDS or fresh.names is not None or fresh.subdtype is not None:
        raise _RefusedError("dtype", expected, f"type code {value.code!r}")
    if value.order == "=" or value.order == "|":
        return fresh
    return fresh.newbyteorder("<" if value.order == "<" else ">")


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


class _StandIn:
    """A checked stand-in for a global a pickle calls, shared by every read: a pickle's BUILD on it is
    refused (its slot would otherwise take the state's value, for every later read in the process)."""

    __slots__ = ("_call",)

    def __init__(self, call: Callable[..., Any]) -> None:
        self._call = call

    def __call__(self, *args: Any) -> Any:
        return self._call(*args)

    def __setstate__(self, state: Any) -> None:
        raise _RefusedError("global", "a global called, never given a state", "a state set on a global")


def _dtype(spec: object, align: object = False, copy: object = True) -> _PickledDtype:
    """numpy.dtype as a pickle calls it, read as its type code (checked when an array uses it)."""
    if not isinstance(spec, str) or len(spec) > 8:
        raise _RefusedError("dtype", _TYPE_CODE, f"a {type(spec).__name__}")
    try:
        _plain_dtype(_PickledDtype(spec))
    except TypeError:
        raise _RefusedError("dtype", _TYPE_CODE, "an unknown code") from None
    return _PickledDtype(spec)


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


class _CheckedArray(np.ndarray):
    """An array whose one pickled state is checked before numpy reads it; `_plain` makes it a plain
    `np.ndarray` once the file is loaded."""

    _built = False  # set on the instance once it holds its data: a second state is refused

    def __setstate__(self, state: Any) -> None:
        if self._built:
            raise _RefusedError("array", "one state per array", "a second state")
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
        self._built = True


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    fresh = _plain_dtype(dtype)
    if not isinstance(buffer, (bytes, bytearray)) or order not in ("C", "F"):
        raise _RefusedError("array", "in-band raw bytes in C or F order", f"a {type(buffer).__name__}")
    shape = _checked_shape(shape, fresh, len(buffer))
    # a copy of its own, writable as pickle.loads gives it (bytes would make it read-only)
    array = np.frombuffer(bytearray(buffer), dtype=fresh).reshape(shape, order="F" if order == "F" else "C")
    checked = array.view(_CheckedArray)
    checked._built = True  # it holds its data: a state a pickle sets on it afterwards is refused
    return checked


class _ArrayType:
    """Stands for ``numpy.ndarray`` in a pickle: passed to ``_reconstruct``, never called."""

    __slots__ = ()

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise _RefusedError(
            "global numpy.ndarray",
            "arrays rebuilt from their raw bytes, as numpy pickles them",
            "a direct numpy.ndarray(...) call (it allocates whatever shape it is given)",
        )


_ARRAY_TYPE = _ArrayType()


def _reconstruct(array_type: object, shape: object, code: object) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") followed by its state.
    if array_type is not _ARRAY_TYPE or type(shape) is not tuple or shape != (0,):
        expected = "numpy's array reconstruction (ndarray, (0,), code)"
        raise _RefusedError("array", expected, "other arguments")
    return _RECONSTRUCT(_CheckedArray, (0,), b"b")


_BUILTINS = {"set": set, "frozenset": frozenset, "complex": complex, "bytes": _bytes}
_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, name): value for module in ("builtins", "__builtin__") for name, value in _BUILTINS.items()},
    ("_codecs", "encode"): _latin1,
    ("numpy", "dtype"): _dtype,
    ("numpy", "ndarray"): _ARRAY_TYPE,
    **{
        (f"{package}.{module}", name): value
        for package in ("numpy.core", "numpy._core")
        for module, name, value in (
            ("multiarray", "scalar", _scalar),
            ("multiarray", "_reconstruct", _reconstruct),
            ("numeric", "_frombuffer", _frombuffer),
        )
    },
}
_STAND_INS = {key: value if value is _ARRAY_TYPE else _StandIn(value) for key, value in _GLOBALS.items()}


class _Reader(pickle.Unpickler):
    """`pickle.Unpickler` whose globals are checked stand-ins for the few callables data pickles use."""

    builds_arrays = False  # set once the pickle names a global that builds arrays (`_plain` is then due)

    def find_class(self, module: str, name: str) -> Any:
        value = _STAND_INS.get((module, name))
        if name in ("_reconstruct", "_frombuffer"):
            self.builds_arrays = True
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


MAX_DEPTH = 64
"""How deep a pickle's values may nest (the releases' are at most 4 deep)."""
# What `_scan` does with each opcode besides skipping its argument.
_PUSH, _OTHER, _FILL, _MARK, _STOP, _PUT, _MEMOIZE, _GET = range(8)
# How an opcode's argument is laid out (pickletools' `ArgumentDescriptor.n`): none, a fixed number of
# bytes, one or two lines, or bytes whose count comes first, in `size` bytes (signed or not).
_NO_ARGUMENT, _FIXED, _LINE, _TWO_LINES, _COUNTED, _SIGNED_COUNTED = range(6)
_COUNTED_LAYOUTS = {
    pickletools.TAKEN_FROM_ARGUMENT1: (_COUNTED, 1),
    pickletools.TAKEN_FROM_ARGUMENT4: (_SIGNED_COUNTED, 4),
    pickletools.TAKEN_FROM_ARGUMENT4U: (_COUNTED, 4),
    pickletools.TAKEN_FROM_ARGUMENT8U: (_COUNTED, 8),
}
# Opcodes that add to a container below them on the stack, which stays the same object.
_FILLING = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_ACTIONS = {"MARK": _MARK, "STOP": _STOP, "MEMOIZE": _MEMOIZE}
_ACTIONS |= {name: _PUT for name in ("PUT", "BINPUT", "LONG_BINPUT")}
_ACTIONS |= {name: _GET for name in ("GET", "BINGET", "LONG_BINGET")}
_ACTIONS |= {name: _FILL for name in _FILLING}


_Opcode = tuple[int, int, int, bool, int, int, Callable[[io.BytesIO], object] | None]


def _opcode_table() -> list[_Opcode | None]:
    """For each byte, its opcode's (argument layout, its size in bytes, action, whether it pops down to
    a MARK, items it pops below that MARK or in all, items it pushes, pickletools' reader of a text
    argument); None for a byte that is no opcode. Read from pickletools' own descriptions, so `_scan`
    reads a stream as `pickletools.genops` does."""
    table: list[_Opcode | None] = [None] * 256
    mark = pickletools.markobject
    for op in pickletools.opcodes:
        arg = op.arg
        if arg is None:
            layout, size = _NO_ARGUMENT, 0
        elif arg.n >= 0:
            layout, size = _FIXED, arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:  # GLOBAL and INST name a module and a name, a line each
            layout, size = (_TWO_LINES if arg is pickletools.stringnl_noescape_pair else _LINE), 0
        else:
            layout, size = _COUNTED_LAYOUTS[arg.n]
        before = op.stack_before
        to_mark = mark in before
        below = before.index(mark) if to_mark else len(before)
        action = _ACTIONS.get(op.name, _OTHER)
        if action == _OTHER and not to_mark and below == 0 and len(op.stack_after) == 1:
            action = _PUSH  # a new value of its own (an int, a string, an empty list)
        reader = arg.reader if arg is not None and layout in (_LINE, _TWO_LINES) else None
        table[op.code.encode("latin-1")[0]] = (
            layout,
            size,
            action,
            to_mark,
            below,
            len(op.stack_after),
            reader,
        )
    return table


_OPCODES = _opcode_table()


def _scan(data: bytes) -> None:
    """Read the opcode stream once, without building anything: refuse a memo index beyond the file's
    size and values nested deeper than `MAX_DEPTH` (each stack item's depth is simulated).

    The stream is walked as `pickletools.genops` walks it, opcode by opcode with the argument layouts
    pickletools describes, and text arguments (protocol 0's) are checked by pickletools' readers, but
    binary ones are skipped, not decoded (the unpickler that follows decodes, and refuses, them): a
    third of genops' time on MCMIPL's release.

    Raises:
        _RefusedError: Either.
        ValueError: A truncated stream, or a byte that is no opcode.
    """
    stack: list[int | None] = []  # depth of each stack item; None marks a MARK
    memo: dict[int, int] = {}
    end, at = len(data), 0
    while True:
        if at >= end:
            raise ValueError("pickle exhausted before seeing STOP")
        entry = _OPCODES[data[at]]
        if entry is None:
            raise ValueError(f"at position {at}, opcode {data[at : at + 1]!r} unknown")
        layout, size, action, to_mark, below, pushed, reader = entry
        start = at = at + 1
        if layout == _FIXED:
            at += size
        elif layout in (_LINE, _TWO_LINES):
            for _ in range(1 if layout == _LINE else 2):
                newline = data.find(b"\n", at)
                if newline < 0:
                    raise ValueError(f"no newline after the opcode at position {start - 1}")
                at = newline + 1
            assert reader is not None
            reader(io.BytesIO(data[start:at]))  # pickletools' check of the text (a NUL in a LONG's digits)
        elif layout != _NO_ARGUMENT:
            count = int.from_bytes(data[at : at + size], "little", signed=layout == _SIGNED_COUNTED)
            if at + size > end or count < 0:
                raise ValueError(f"a bad byte count after the opcode at position {start - 1}")
            at += size + count
        if at > end:
            raise ValueError(f"the argument of the opcode at position {start - 1} runs past the end")
        if action == _PUSH:
            stack.append(0)
        elif action == _MARK:
            stack.append(None)
        elif action == _STOP:  # hands the value over: no level of its own
            return
        elif action in (_PUT, _MEMOIZE):
            index = len(memo) if action == _MEMOIZE else _memo_index(data, start, at, layout)
            if index > end:
                raise _RefusedError("memo", "memo indices within the file's size", f"index {index:,}")
            memo[index] = stack[-1] or 0 if stack else 0
        elif action == _GET:
            stack.append(memo.get(_memo_index(data, start, at, layout), 0))
        else:
            popped: list[int] = []
            if to_mark:  # the items above the last MARK, the MARK, then those below it
                while stack and stack[-1] is not None:
                    popped.append(stack.pop() or 0)
                if stack:
                    stack.pop()
            popped += [stack.pop() or 0 if stack else 0 for _ in range(below)]
            if action == _FILL:  # the container (bottom-most) keeps its identity, and holds the rest
                depth = max(popped[-1], 1 + max(popped[:-1], default=0))
            else:
                depth = 1 + max(popped, default=-1)
            if depth > MAX_DEPTH:
                raise _RefusedError("nesting", f"values nested at most {MAX_DEPTH} deep", f"{depth} deep")
            stack += [depth] * pushed


def _memo_index(data: bytes, start: int, end: int, layout: int) -> int:
    """The memo index of a PUT or GET at ``data[start:end]``: a decimal line (PUT, GET) or little-endian
    bytes (BINPUT, LONG_BINPUT, BINGET, LONG_BINGET).

    Raises:
        ValueError: A line that is no decimal integer.
    """
    return int(data[start : end - 1]) if layout == _LINE else int.from_bytes(data[start:end], "little")


_CONTAINERS = (list, tuple, dict, set, frozenset)
"""The values `_check_depth` walks into (everything else a pickle may hold is a leaf)."""


def _check_depth(value: object) -> None:
    """Refuse a loaded value whose containers nest deeper than `MAX_DEPTH`, counted as `_scan` counts
    (an empty container 0, one of plain values 1).

    `_scan`'s depths are those of values when they were memoised: a list filled after that (GET it,
    then APPEND) deepens every value holding it unseen, so a 2,000-deep chain passed the scan. This
    walk of what was built counts each container once (shared parts by their identity; a container
    that holds itself adds nothing more), without recursion.

    Raises:
        _RefusedError: Too deep.
    """
    if not isinstance(value, _CONTAINERS):
        return
    depth_of: dict[int, int] = {}
    open_: set[int] = set()  # containers whose items are being walked (one met again holds itself)
    # (a container, None to walk it, or the containers it holds once they are walked)
    pending: list[tuple[object, list[object] | None]] = [(value, None)]
    while pending:
        item, inner = pending.pop()
        key = id(item)
        if inner is not None:  # its containers are done
            open_.discard(key)
            depth = 1 + max((depth_of.get(id(held), 0) for held in inner), default=0) if item else 0
            if depth > MAX_DEPTH:
                raise _RefusedError("nesting", f"values nested at most {MAX_DEPTH} deep", "deeper")
            depth_of[key] = depth
            continue
        if key in depth_of or key in open_:
            continue
        open_.add(key)
        items = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        assert isinstance(items, Iterable)
        held: list[object] = [part for part in items if isinstance(part, _CONTAINERS)]
        pending.append((item, held))
        pending += [(part, None) for part in held]


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
    try:
        _scan(data)
        reader = _Reader(io.BytesIO(data))
        loaded = reader.load()
        _check_depth(loaded)
        return _plain(loaded, {}) if reader.builds_arrays else loaded
    except _RefusedError as refusal:
        found = f"{refusal.found}: refused, nothing was loaded"
        raise UnsafePickleError(path, refusal.field, refusal.expected, found) from None
    except RecursionError:
        raise DatasetError(path, "", f"{what}, as pickled", "nesting too deep to load") from None
    except Exception as error:  # pickle raises many types on corrupt input
        found = f"{type(error).__name__}: {error} (truncated or corrupt file?)"
        raise DatasetError(path, "", f"a readable pickle ({what})", found) from None
