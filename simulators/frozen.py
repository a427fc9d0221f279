"""Read-only arrays for the frozen dataclasses that hold data (catalogues, MCMIPL releases, returning
users, question types): immutable once built, in the process that built them and in every process
that receives a pickled copy."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def read_only_array(array: Any, dtype: type | np.dtype) -> np.ndarray:
    """A read-only C-contiguous copy of `array` as `dtype` (the caller's array stays its own)."""
    out: np.ndarray = np.array(array, dtype=dtype, order="C", copy=True)
    out.setflags(write=False)
    return out


def read_only_csr(matrix: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """A read-only boolean CSR copy of `matrix`, duplicates summed and indices sorted."""
    csr = sp.csr_matrix(matrix, dtype=np.bool_, copy=True)
    csr.sum_duplicates()
    csr.sort_indices()
    _mark_read_only(csr)
    return csr


def _mark_read_only(value: Any) -> None:
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif sp.issparse(value):
        for part in (value.data, value.indices, value.indptr):
            part.setflags(write=False)


class ReadOnlyWhenUnpickled:
    """Base of a frozen dataclass whose arrays are read-only. Pickle does not keep numpy's write flag,
    so a copy unpickled in another process (a `SubprocVecEnv`, sweep or evaluation worker's) marks its
    arrays and sparse matrices read-only again."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
            _mark_read_only(value)
