"""The restricted unpickler: refusals the other safe_pickle tests left open (mutation audit, area U).

Each test names the bug it guards against: non-numeric dtypes (void, datetime) let in, a second state
set on an array that ``_reconstruct`` built, nesting hidden behind the memo or behind APPEND, the memo
bound, and arguments of the allowed globals beyond those the file formats use.
"""

from __future__ import annotations

import codecs
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from simulators.safe_pickle import MAX_DEPTH, read_pickle
from tests.simulators.test_safe_pickle import (
    _FROMBUFFER,
    _RECONSTRUCT,
    _array_state,
    _raw,
    _Reduce,
    _refusal,
    _write,
)

_PLAIN_STATE = (3, "<", None, None, None, -1, -1, 0)  # a plain dtype's pickled state, byte order "<"
_ODD_ORDER = (3, "x", None, None, None, -1, -1, 0)  # the same with a byte order numpy has no name for


def _nested_tuple(inner: object, depth: int) -> object:
    """`inner` wrapped in `depth` one-tuples."""
    for _ in range(depth):
        inner = (inner,)
    return inner


@pytest.mark.parametrize("code", ["V8", "M8[D]", "m8[s]"])
def test_a_void_or_datetime_dtype_is_refused_even_with_a_plain_state(tmp_path: Path, code: str) -> None:
    """Guards against widening the numeric kinds (b, i, u, f, c) to raw void or datetime arrays: eight
    raw bytes under a plain state are still refused."""
    dtype = _Reduce(np.dtype, (code, False, True), _PLAIN_STATE)
    assert _refusal(_write(tmp_path, {"x": _array_state((1,), dtype, b"\0" * 8)})).field == "dtype"


def test_an_array_built_by_reconstruct_takes_one_state(tmp_path: Path) -> None:
    """Guards against an array from ``_reconstruct`` (protocols 0-4) accepting a second BUILD: the
    stream is numpy's own pickle of a float64 array, then a second state and BUILD before STOP."""
    first = pickle.dumps(np.arange(2.0), protocol=2)
    assert first.endswith(b"b.")
    second = pickle.dumps((1, (1,), np.dtype("f8"), False, b"\0" * 8), protocol=2)[2:-1]
    stream = first[:-1] + second + b"b."
    assert pickle.loads(stream).shape == (1,)  # plain pickle lets the second state replace the first
    assert _refusal(_raw(tmp_path, stream)).field == "array"
    np.testing.assert_array_equal(read_pickle(_raw(tmp_path, first), "a test file"), [0.0, 1.0])


def test_nesting_reached_through_the_memo_is_counted(tmp_path: Path) -> None:
    """Guards against a memo reference (BINGET) counted as depth 0: a value 40 deep, then the same value
    wrapped in 40 more tuples, is 80 deep though its second half reads the first from the memo."""
    inner = _nested_tuple((), 40)
    path = _write(tmp_path, [inner, _nested_tuple(inner, 40)], protocol=2)
    assert _refusal(path).field == "nesting"
    shallow = _nested_tuple((), 20)
    assert read_pickle(_write(tmp_path, [shallow, _nested_tuple(shallow, 20)], protocol=2), "a test file")


def test_nesting_built_by_filling_memoised_lists_is_refused(tmp_path: Path) -> None:
    """Lists memoised empty, then each appended to the one before (GET k, GET k + 1, APPEND): every
    memo depth stays 1, so a 2,000-deep chain passed the scan and came back (a security walkthrough).
    The built value is refused too deep."""
    n = 2_000
    stream = bytearray(b"\x80\x04")
    for k in range(n):
        stream += b"]r" + k.to_bytes(4, "little")  # EMPTY_LIST, LONG_BINPUT k
    for k in range(n - 1):  # LONG_BINGET k, LONG_BINGET k + 1, APPEND, POP
        stream += b"j" + k.to_bytes(4, "little") + b"j" + (k + 1).to_bytes(4, "little") + b"a0"
    stream += b"j" + (0).to_bytes(4, "little") + b"."
    assert len(pickle.loads(bytes(stream))) == 1  # a plain unpickler builds the chain
    refusal = _refusal(_raw(tmp_path, bytes(stream)))
    assert refusal.field == "nesting" and f"at most {MAX_DEPTH} deep" in str(refusal)
    shared = [1]  # one list held twice is no cycle
    assert read_pickle(_write(tmp_path, {"a": shared, "b": [shared, shared]}, protocol=2), "a test") == {
        "a": [1],
        "b": [[1], [1]],
    }


def test_nesting_built_by_append_is_counted(tmp_path: Path) -> None:
    """Guards against APPEND counted as leaving its list as deep as it was: lists nested MAX_DEPTH + 1
    deep, each filled by APPEND, are refused; MAX_DEPTH - 1 deep they read back."""

    def nested(depth: int) -> list[object]:
        value: list[object] = []
        for _ in range(depth):
            value = [value]
        return value

    assert _refusal(_write(tmp_path, nested(MAX_DEPTH + 1), protocol=2)).field == "nesting"
    assert read_pickle(_write(tmp_path, nested(MAX_DEPTH - 1), protocol=2), "a test file") == nested(
        MAX_DEPTH - 1
    )


def test_codecs_encode_is_allowed_for_latin1_only(tmp_path: Path) -> None:
    """Guards against letting ``_codecs.encode`` run with any encoding (protocols 0-2 only ever write
    ``encode(text, "latin1")``)."""
    refused = _refusal(_write(tmp_path, {"x": _Reduce(codecs.encode, ("\u00e9", "utf-8"))}, protocol=2))
    assert refused.field == "global _codecs.encode"


def test_reconstruct_of_anything_but_an_ndarray_is_refused(tmp_path: Path) -> None:
    """Guards against ``_reconstruct`` accepting another type than numpy.ndarray (here builtins.set)."""
    assert _refusal(_write(tmp_path, {"x": _Reduce(_RECONSTRUCT, (set, (0,), b"b"))})).field == "array"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        # (-1, -1) multiplies out to one element over 8 bytes of float64, yet is no shape
        (_array_state((-1, -1), np.dtype("f8"), b"\0" * 8), "array"),
        # more dimensions than numpy allows, though their product fits the bytes
        (_array_state((1,) * 65, np.dtype("f8"), b"\0" * 8), "array"),
        # an array state of four fields, not numpy's five
        (_Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), ((1,), np.dtype("f8"), False, b"\0" * 8)), "array"),
        # an array state whose Fortran flag is not a bool
        (_Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (1,), np.dtype("f8"), 1, b"\0" * 8)), "array"),
        # raw bytes in an order other than C or F
        (_Reduce(_FROMBUFFER, (b"\0" * 8, np.dtype("f8"), (1,), "K")), "array"),
        # a dtype state of no byte order numpy knows
        (_array_state((1,), _Reduce(np.dtype, ("f8", False, True), _ODD_ORDER), b"\0" * 8), "dtype"),
        # a numeric type code longer than the 8 characters numpy's pickles use ("c16" is its own)
        (_Reduce(np.dtype, ("complex128", False, True)), "dtype"),
    ],
)
def test_an_argument_beyond_what_numpy_pickles_is_refused_by_the_reader(
    tmp_path: Path, obj: object, field: str
) -> None:
    """Guards against dropping one of the reader's argument checks, leaving numpy to fail on the value
    (a plain `DatasetError`) or to build it under another reading."""
    assert _refusal(_write(tmp_path, {"x": obj})).field == field


def test_a_memo_index_just_past_the_files_size_is_refused(tmp_path: Path) -> None:
    """Guards against a looser memo bound than the file's size: 9 bytes, LONG_BINPUT 10."""
    stream = b"\x80\x04N" + b"r" + (10).to_bytes(4, "little") + b"."
    assert _refusal(_raw(tmp_path, stream)).field == "memo"


def test_nesting_built_after_a_mark_is_counted(tmp_path: Path) -> None:
    """Guards against leaving out the items above a MARK: 4-tuples (built by MARK ... TUPLE) nested
    MAX_DEPTH + 1 deep are refused; MAX_DEPTH - 1 deep they read back."""

    def nested(depth: int) -> object:
        value: object = ()
        for _ in range(depth):
            value = (value, 0, 0, 0)
        return value

    path = _write(tmp_path, nested(MAX_DEPTH + 1), protocol=2)
    assert any(op.name == "MARK" for op, _, _ in pickletools.genops(path.read_bytes()))
    assert _refusal(path).field == "nesting"
    assert read_pickle(_write(tmp_path, nested(MAX_DEPTH - 1), protocol=2), "a test file") == nested(
        MAX_DEPTH - 1
    )


def test_a_builtin_beyond_the_few_that_rebuild_containers_is_refused(tmp_path: Path) -> None:
    """Guards against admitting another builtin: ``bytearray(n)`` allocates n bytes from a few."""
    refused = _refusal(_write(tmp_path, {"x": _Reduce(bytearray, (10**6,))}))
    assert refused.field == "global builtins.bytearray"


def test_a_dict_holding_itself_reads(tmp_path: Path) -> None:
    """Guards against recursing into a dict that holds itself while turning its arrays plain."""
    loop: dict[str, object] = {"a": np.ones(2)}
    loop["self"] = loop
    loaded = read_pickle(_write(tmp_path, loop), "a test file")
    assert isinstance(loaded, dict) and loaded["self"] is loaded and type(loaded["a"]) is np.ndarray


def test_a_value_exactly_max_depth_deep_reads(tmp_path: Path) -> None:
    """Guards against the end of the stream (STOP) counted as one more level, which refused a value
    exactly `MAX_DEPTH` deep though only deeper ones are refused (session 40's fix)."""
    exact = b"\x80\x02)" + b"\x85" * MAX_DEPTH + b"."  # () in MAX_DEPTH one-tuples
    assert read_pickle(_raw(tmp_path, exact), "a test file") == _nested_tuple((), MAX_DEPTH)
    deeper = b"\x80\x02)" + b"\x85" * (MAX_DEPTH + 1) + b"."
    assert _refusal(_raw(tmp_path, deeper)).field == "nesting"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_arrays_read_back_writable_whatever_the_protocol(tmp_path: Path, protocol: int) -> None:
    """Guards against protocol 5's raw bytes read as a read-only array: code that changes a loaded array
    in place would fail on protocol-5 files only (pickle.loads gives a writable one)."""
    loaded = read_pickle(_write(tmp_path, {"a": np.arange(3.0)}, protocol=protocol), "a test file")
    assert loaded["a"].flags.writeable
    loaded["a"][0] = 7.0
    np.testing.assert_array_equal(loaded["a"], [7.0, 1.0, 2.0])
