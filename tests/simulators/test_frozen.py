"""The data types stay immutable in every process: built read-only, and read-only again when a worker
unpickles them (pickle does not keep numpy's write flag)."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from envs.question_types import QuestionTypes
from simulators.catalog import Catalog, Taxonomy
from simulators.frozen import read_only_array, read_only_csr
from simulators.mcmipl import AttributeTypes, TargetGroups
from simulators.mcmipl_groups import PartnerCandidates
from simulators.persona_world import make_persona_world
from simulators.returning import returning_sequences


def _arrays(value: Any) -> Iterator[np.ndarray]:
    """Every numpy array `value` holds: itself, a sparse matrix's parts, and those of its attributes,
    mapping values and sequence items, recursively."""
    if isinstance(value, np.ndarray):
        yield value
    elif sp.issparse(value):
        yield from (value.data, value.indices, value.indptr)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays(item)
    elif hasattr(value, "values") and callable(value.values):  # a mapping (a catalogue's splits)
        for item in value.values():
            yield from _arrays(item)
    elif dataclasses.is_dataclass(value):
        for item in vars(value).values():
            yield from _arrays(item)


def _world_with_taxonomy() -> Catalog:
    world = make_persona_world()
    n_aspects = world.n_aspects
    members = sp.csr_matrix(np.eye(2, n_aspects, dtype=bool))
    return dataclasses.replace(
        world, taxonomy=Taxonomy(np.r_[0, 1, np.full(n_aspects - 2, -1)], ("a", "b"), members=members)
    )


def _data_objects() -> dict[str, Any]:
    world = make_persona_world()
    return {
        "catalogue with truth and taxonomy": _world_with_taxonomy(),
        "returning sequence": returning_sequences(world, 2, 3, "switch", np.random.default_rng(0))[0],
        "target groups": TargetGroups(
            "groups.pkl", np.array([0, 1]), np.array([0, 2, 3]), np.array([4, 5, 6])
        ),
        "attribute types": AttributeTypes(
            sp.csr_matrix([[1, 0, 1], [0, 1, 0]]), np.array([0, 1, -1]), ("x", "y")
        ),
        "partner candidates": PartnerCandidates(np.array([0, 2, 2]), np.array([3, 4]), np.array([1, 2])),
        "question types": QuestionTypes(np.array([1, 0, 1]), ("p", "q")),
    }


@pytest.mark.parametrize("name", list(_data_objects()))
def test_every_array_is_read_only_when_built_and_after_unpickling(name: str) -> None:
    """Guards against a data type whose arrays a worker process could write into: the copy a
    `SubprocVecEnv` or sweep worker unpickles must refuse writes as the original does, and hold the
    same values."""
    built = _data_objects()[name]
    again = pickle.loads(pickle.dumps(built))
    arrays, copies = list(_arrays(built)), list(_arrays(again))
    assert len(arrays) == len(copies) >= 3
    for array, copy in zip(arrays, copies, strict=True):
        assert not array.flags.writeable and not copy.flags.writeable
        assert np.array_equal(array, copy) and array.dtype == copy.dtype
    with pytest.raises(ValueError, match="read-only"):
        copies[0][...] = 0


def test_read_only_copies_leave_the_callers_array_writable_and_unchanged() -> None:
    """Guards against freezing the caller's own array in place, or sharing memory with it: the caller
    keeps a writable array, and writing into it does not change the frozen copy."""
    given = np.array([[3, 1], [2, 2]], dtype=np.int32)
    frozen = read_only_array(given.T, np.int64)  # a non-contiguous view
    assert given.flags.writeable and frozen.flags.c_contiguous and frozen.dtype == np.int64
    given[0, 0] = 9
    assert frozen.tolist() == [[3, 2], [1, 2]]
    matrix = sp.csr_matrix(np.array([[0, 1], [1, 0]]))
    csr = read_only_csr(matrix)
    assert matrix.data.flags.writeable and not csr.indices.flags.writeable and csr.dtype == np.bool_
