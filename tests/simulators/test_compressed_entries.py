"""`compressed_entries`: the numpy gather of CSR rows / CSC columns used by the env, wrapper and ranker."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.catalog import compressed_entries


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n_majors=st.integers(0, 12))
def test_entries_are_exactly_the_rows_and_columns_scipy_slices(seed: int, n_majors: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = sp.random(15, 9, density=0.3, random_state=seed, format="csr")
    for compressed, size in ((matrix, 15), (matrix.tocsc(), 9)):
        majors = rng.integers(0, size, n_majors)  # repeats allowed
        position, minor = compressed_entries(compressed, majors)
        assert position.dtype == minor.dtype == np.int64
        for k, major in enumerate(majors):
            line = compressed[major] if compressed.format == "csr" else compressed[:, major].T
            expected = np.sort(line.nonzero()[1])
            np.testing.assert_array_equal(np.sort(minor[position == k]), expected)
        assert position.size == sum((compressed.indptr[m + 1] - compressed.indptr[m]) for m in majors)
