"""The restricted reader's opcode scan (`simulators.safe_pickle._scan`) against the scan it replaced, which
walked `pickletools.genops` and decoded every argument: on the real releases and on thousands of damaged
and hostile streams, both refuse the same memo indices and nestings, and what one lets through the
unpickler reads as the other's does. The old scan is kept here, verbatim, as the oracle."""

from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from simulators.safe_pickle import MAX_DEPTH, _plain, _Reader, _RefusedError, _scan

_FILLING = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_MEMO_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})


def genops_scan(data: bytes) -> None:
    """The scan before session 46 (`pickletools.genops`, every argument decoded), the oracle."""
    stack: list[int | None] = []
    memo: dict[int, int] = {}
    mark = pickletools.markobject
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name == "MARK":
            stack.append(None)
            continue
        if name == "STOP":
            break
        if name in _MEMO_PUT or name == "MEMOIZE":
            index = len(memo) if arg is None else int(arg)
            if index > len(data):
                raise _RefusedError("memo", "memo indices within the file's size", f"index {index:,}")
            memo[index] = stack[-1] or 0 if stack else 0
            continue
        if name in _MEMO_GET:
            stack.append(memo.get(arg, 0) if isinstance(arg, int) else 0)
            continue
        popped: list[int] = []
        before = op.stack_before
        if mark in before:
            while stack and stack[-1] is not None:
                popped.append(stack.pop() or 0)
            if stack:
                stack.pop()
            below = before.index(mark)
        else:
            below = len(before)
        popped += [stack.pop() or 0 if stack else 0 for _ in range(below)]
        if name in _FILLING:
            depth = max(popped[-1], 1 + max(popped[:-1], default=0))
        else:
            depth = 1 + max(popped, default=-1)
        if depth > MAX_DEPTH:
            raise _RefusedError("nesting", f"values nested at most {MAX_DEPTH} deep", f"{depth} deep")
        stack += [depth] * len(op.stack_after)


def outcome(scan, data: bytes) -> tuple[str, object]:
    """What reading `data` with `scan` first gives: ("refused", field), ("loaded", the value's pickle) or
    ("failed", None) for a stream the scan or the unpickler finds corrupt."""
    try:
        scan(data)
        reader = _Reader(io.BytesIO(data))
        loaded = reader.load()
        value = _plain(loaded, {}) if reader.builds_arrays else loaded
    except _RefusedError as refusal:
        return "refused", refusal.field
    except RecursionError:
        return "failed", None
    except Exception:
        return "failed", None
    return "loaded", pickle.dumps(value, protocol=5)


def same_outcome(data: bytes) -> None:
    """`data` reads as it did: the same value or refusal. Where the old scan failed on an argument it
    decoded (a bad global name, a bad UTF-8 string), the new one skips it and the unpickler refuses or
    fails instead: the file is still not read."""
    new, old = outcome(_scan, data), outcome(genops_scan, data)
    if old[0] == "failed":
        assert new[0] in ("failed", "refused"), data
    else:
        assert new == old, data


VALUES = [
    {"a": [1, 2, (3, 4.5)], "b": {7, 8}, "c": frozenset({"x"}), "d": b"\x00\xff" * 5, "e": None, "f": True},
    [[[[1]]]] * 3,
    {"shared": (s := [1, 2]), "again": s, "text": "é" * 40, "big": 2**70, "neg": -(2**40)},
    {
        "array": np.arange(12, dtype=np.int64).reshape(3, 4),
        "scalar": np.float32(2.5),
        "bools": np.ones(3, bool),
    },
    [(i, str(i), float(i)) for i in range(50)],
    list(range(100)),  # protocol 0 fills it by 100 APPENDs, which leave it as deep as it was
]
STREAMS = [pickle.dumps(value, protocol=protocol) for value in VALUES for protocol in range(6)]


def test_every_stream_reads_as_before() -> None:
    for data in STREAMS:
        assert outcome(_scan, data)[0] == "loaded"
        same_outcome(data)


def test_truncated_and_damaged_streams_are_treated_as_before() -> None:
    """Each stream cut at 40 places, and with 80 of its bytes each replaced by another (seeded), reads
    or is refused as the old scan had it: a different walk of the opcodes would show here."""
    rng = np.random.default_rng(0)
    for data in STREAMS:
        for cut in rng.integers(0, len(data), 40):
            same_outcome(data[:cut])
        for at, byte in zip(rng.integers(0, len(data), 80), rng.integers(0, 256, 80), strict=True):
            same_outcome(data[:at] + bytes([int(byte)]) + data[at + 1 :])


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_deep_nesting_and_far_memo_indices_are_refused_as_before(protocol: int) -> None:
    value: object = 1
    for depth in range(MAX_DEPTH + 3):
        value = [value] if depth % 2 else (value,)
        data = pickle.dumps(value, protocol=protocol)
        assert outcome(_scan, data) == outcome(genops_scan, data)
    assert outcome(_scan, data) == ("refused", "nesting")
    for extra in (10, 30):  # a tuple 40 deep, then again from the memo inside `extra` more tuples
        inner: object = 1
        for _ in range(40):
            inner = (inner,)
        outer: object = inner
        for _ in range(extra):
            outer = (outer,)
        data = pickle.dumps([inner, outer], protocol=protocol)
        assert (
            outcome(_scan, data)
            == outcome(genops_scan, data)
            == (
                ("loaded", pickle.dumps([inner, outer], protocol=5))
                if extra == 10
                else ("refused", "nesting")
            )
        )
    far = {
        "BINPUT": b"\x80\x02N" + b"r" + (10**6).to_bytes(4, "little") + b".",
        "PUT": b"N" + b"p1000000\n.",
        "BINGET before": b"\x80\x02]q\x00h\x00" + b"a" * 3 + b".",
    }
    for data in far.values():
        same_outcome(data)
    assert outcome(_scan, far["PUT"]) == ("refused", "memo")


def test_mcmipls_lastfm_star_release_reads_as_before(real_data_dir: Path) -> None:
    """Its six pickles (the opcodes of MCMIPL's numpy scalars and arrays; its MovieLens files take the old
    scan 5 s) pass both scans."""
    files = sorted((real_data_dir / "mcmipl" / "lastfm_star").glob("**/*.pkl"))
    assert len(files) == 6
    for path in files:
        data = path.read_bytes()
        _scan(data)
        genops_scan(data)
