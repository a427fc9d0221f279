"""The restricted reader of third-party data pickles: what it admits, and the values it refuses to build."""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulators.errors import DatasetError
from simulators.safe_pickle import MAX_DEPTH, UnsafePickleError, read_pickle

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's multiarray._reconstruct


class _Reduce:
    """Pickles as ``function(*args)``, then ``__setstate__(state)`` when a state is given."""

    def __init__(self, function: object, args: tuple[object, ...], state: object = None) -> None:
        self.reduced = (function, args) if state is None else (function, args, state)

    def __reduce__(self) -> tuple[object, ...]:
        return self.reduced


def _array_state(shape: tuple[int, ...], dtype: object, raw: object) -> _Reduce:
    """An array pickled the way numpy pickles one, with the given state."""
    return _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, raw))


def _write(tmp_path: Path, obj: object, protocol: int = 4) -> Path:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _refusal(path: Path) -> UnsafePickleError:
    with pytest.raises(UnsafePickleError) as info:
        read_pickle(path, "a test file")
    assert info.value.path == str(path) and "refused, nothing was loaded" in str(info.value)
    return info.value


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numeric_arrays_scalars_and_sets_read_back_equal_and_plain(tmp_path: Path, protocol: int) -> None:
    shared = np.arange(6, dtype=np.float32).reshape(2, 3)
    value = {
        "c": shared,
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "big_endian": np.arange(3, dtype=">i8"),
        "flags": np.array([True, False]),
        "complex": np.array([1 + 2j]),
        "empty": np.zeros((0, 4)),
        "scalar": np.int64(7),
        "set": {1, 2},
        "frozen": frozenset({3}),
        "tuple": (shared, 2.5, "a", b"b", None),
    }
    path = _write(tmp_path, value, protocol)
    loaded, reference = read_pickle(path, "a test file"), pickle.loads(path.read_bytes())
    assert isinstance(loaded, dict) and loaded.keys() == value.keys()
    for key in ("c", "fortran", "big_endian", "flags", "complex", "empty"):
        # the dtype pickle itself reads (numpy reads a big-endian array back native below protocol 5)
        assert type(loaded[key]) is np.ndarray and loaded[key].dtype == reference[key].dtype
        np.testing.assert_array_equal(loaded[key], value[key])
    assert loaded["tuple"][0] is loaded["c"] and loaded["tuple"][1:] == (2.5, "a", b"b", None)
    assert type(loaded["scalar"]) is np.int64 and loaded["scalar"] == 7
    assert loaded["set"] == {1, 2} and loaded["frozen"] == frozenset({3})
    assert np.dtype("i8").str == "<i8"  # numpy's own dtype is never the one a pickle's state changes


def test_an_object_array_whose_shape_disagrees_with_its_list_is_refused_not_a_crash(tmp_path: Path) -> None:
    # numpy 2.4 segfaults on this state; run it in a child so a crash fails this test only.
    path = _write(tmp_path, {"x": _array_state((10**6,), np.dtype("O"), [])})
    code = (
        "import sys\nfrom simulators.safe_pickle import UnsafePickleError, read_pickle\n"
        f"try:\n    read_pickle({str(path)!r}, 'a test file')\n"
        "except UnsafePickleError as error:\n    print(error)\n    sys.exit(0)\nsys.exit(3)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, (child.returncode, child.stderr[-500:])
    assert "[dtype]" in child.stdout and "numeric dtype" in child.stdout


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        # a few dozen bytes that would allocate a million-element object array
        (_Reduce(np.ndarray, ((10**6,), "O")), "global numpy.ndarray"),
        # ... or a megabyte of zeros
        (_Reduce(bytes, (10**6,)), "global builtins.bytes"),
        (_Reduce(np.dtype, ("i4,O", False, True)), "dtype"),
        (_Reduce(np.dtype, ("U3", False, True)), "dtype"),
        # a float64 whose pickled state flags it as holding objects
        (
            _array_state(
                (1,), _Reduce(np.dtype, ("f8", False, True), (3, "<", None, None, None, 8, 8, 63)), b"\0" * 8
            ),
            "dtype",
        ),
        # a shape far larger than the raw bytes given for it
        (_array_state((10**9,), np.dtype("f8"), b"\0" * 8), "array"),
        (_array_state((2, -1), np.dtype("f8"), b"\0" * 8), "array"),
        (_Reduce(_RECONSTRUCT, (np.ndarray, (10**6,), b"b")), "array"),
    ],
)
def test_a_value_that_could_crash_or_exhaust_memory_is_refused_before_it_is_built(
    tmp_path: Path, obj: object, field: str
) -> None:
    error = _refusal(_write(tmp_path, {"x": obj}))
    assert error.field == field


def test_a_python_2_pickle_of_a_set_reads(tmp_path: Path) -> None:
    path = _write(tmp_path, {"s": {1, 2}}, protocol=2)
    assert b"__builtin__" in path.read_bytes()
    assert read_pickle(path, "a test file") == {"s": {1, 2}}


def test_a_list_holding_itself_reads(tmp_path: Path) -> None:
    loop: list[object] = [np.ones(2)]
    loop.append(loop)
    loaded = read_pickle(_write(tmp_path, loop), "a test file")
    assert isinstance(loaded, list) and loaded[1] is loaded and type(loaded[0]) is np.ndarray


def test_a_missing_file_says_what_it_should_be(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        read_pickle(tmp_path / "nothing.pkl", "UNICORN's transe.pkl")
    assert "UNICORN's transe.pkl" in str(info.value) and info.value.found == "missing"


_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # numpy's numeric._frombuffer


def _raw(tmp_path: Path, stream: bytes) -> Path:
    path = tmp_path / "raw.pkl"
    path.write_bytes(stream)
    return path


def test_an_array_takes_one_state_so_a_second_cannot_make_it_an_object_array(tmp_path: Path) -> None:
    built = _Reduce(
        _FROMBUFFER, (b"", np.dtype("f8"), (0,), "C"), (1, (1,), np.dtype("f8"), False, b"\0" * 8)
    )
    assert _refusal(_write(tmp_path, {"x": built})).field == "array"


def test_a_memo_index_beyond_the_file_is_refused_before_the_unpickler_allocates_it(tmp_path: Path) -> None:
    # 9 bytes: None, then LONG_BINPUT 2**26 (the C unpickler would grow its memo to 2**26 entries)
    stream = b"\x80\x04N" + b"r" + (2**26).to_bytes(4, "little") + b"."
    assert _refusal(_raw(tmp_path, stream)).field == "memo"


def test_values_nested_deeper_than_the_bound_are_refused_before_anything_is_built(tmp_path: Path) -> None:
    deep = b"\x80\x02)" + b"\x85" * (MAX_DEPTH + 1) + b"."  # () in MAX_DEPTH + 1 one-tuples
    assert _refusal(_raw(tmp_path, deep)).field == "nesting"
    shallow = b"\x80\x02)" + b"\x85" * (MAX_DEPTH - 1) + b"."
    assert read_pickle(_raw(tmp_path, shallow), "a test file") is not None


def test_a_pickle_cannot_change_the_readers_own_callables(tmp_path: Path) -> None:
    # GLOBAL _codecs.encode, then BUILD (None, {"__defaults__": ()}): setattr on the callable itself
    stream = b"\x80\x02c_codecs\nencode\nN}X\x0c\x00\x00\x00__defaults__)s\x86b."
    with pytest.raises(DatasetError):
        read_pickle(_raw(tmp_path, stream), "a test file")
    assert read_pickle(_write(tmp_path, {"b": b"\x00\xff"}, protocol=2), "a test file") == {"b": b"\x00\xff"}


def test_a_pickle_cannot_swap_the_call_of_a_stand_in_for_later_reads(tmp_path: Path) -> None:
    """GLOBAL frozenset, then BUILD (None, {"_call": set}): the stand-in's own slot, shared by every read
    in the process, took the state (an audit found it), so a later file's frozensets read as sets."""
    stream = b"\x80\x02c__builtin__\nfrozenset\nN}X\x05\x00\x00\x00_callc__builtin__\nset\ns\x86b."
    with pytest.raises(UnsafePickleError, match="a state set on a global"):
        read_pickle(_raw(tmp_path, stream), "a test file")
    later = read_pickle(_write(tmp_path, {"a": frozenset([1, 2])}, protocol=2), "a test file")
    assert type(later["a"]) is frozenset and later["a"] == frozenset([1, 2])


def test_an_array_whose_global_name_is_escaped_in_the_file_still_reads_back_plain(tmp_path: Path) -> None:
    # protocol 0's UNICODE opcode decodes escapes: the name _reconstruct need not appear in the bytes
    raw = pickle.dumps(np.arange(3), protocol=2)
    named = re.search(rb"c(numpy\.[_a-z.]*multiarray)\n_reconstruct\n", raw)
    assert named is not None
    hidden = raw.replace(named.group(0), b"V" + named.group(1) + b"\nV\\u005freconstruct\n\x93")
    assert b"_reconstruct" not in hidden
    path = tmp_path / "data.pkl"
    path.write_bytes(hidden)
    loaded = read_pickle(path, "a test file")
    assert type(loaded) is np.ndarray
    np.testing.assert_array_equal(loaded, np.arange(3))


_SCALAR = np.float64(1).__reduce__()[0]  # numpy's multiarray.scalar


@pytest.mark.parametrize(
    "obj",
    [
        # raw bytes for two float64s under a one-element shape, and for one under a two-element shape
        _array_state((1,), np.dtype("f8"), b"\0" * 16),
        _array_state((2,), np.dtype("f8"), b"\0" * 8),
        _Reduce(_FROMBUFFER, (b"\0" * 16, np.dtype("f8"), (1,), "C")),
        _Reduce(_FROMBUFFER, (b"\0" * 8, np.dtype("f8"), (2,), "C")),
    ],
)
def test_an_array_whose_raw_bytes_differ_from_its_shape_is_refused(tmp_path: Path, obj: object) -> None:
    # refused by the reader (UnsafePickleError), not left for numpy to fail on (a plain DatasetError)
    assert _refusal(_write(tmp_path, {"x": obj})).field == "array"


@pytest.mark.parametrize("raw", [b"\0" * 4, b"\0" * 16])
def test_a_scalar_whose_raw_bytes_differ_from_its_itemsize_is_refused(tmp_path: Path, raw: bytes) -> None:
    assert _refusal(_write(tmp_path, {"x": _Reduce(_SCALAR, (np.dtype("f8"), raw))})).field == "scalar"
    exact = read_pickle(_write(tmp_path, {"x": _Reduce(_SCALAR, (np.dtype("f8"), b"\0" * 8))}), "a test file")
    assert exact == {"x": 0.0}


class _Persistent(pickle.Pickler):
    """Writes every string as a persistent id (BINPERSID), which an unpickler resolves however it likes."""

    def persistent_id(self, obj: object) -> object:
        return "outside" if obj == "payload" else None


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_persistent_id_is_refused_not_handed_back(tmp_path: Path, protocol: int) -> None:
    buffer = io.BytesIO()
    _Persistent(buffer, protocol=protocol).dump({"x": "payload"})
    stream = buffer.getvalue()
    assert any(op.name in ("PERSID", "BINPERSID") for op, _, _ in pickletools.genops(stream))
    assert _refusal(_raw(tmp_path, stream)).field == "persistent id"
