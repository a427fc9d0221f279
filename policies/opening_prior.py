"""The opening's likelihood as an item prior: what the user's first words say about how many aspects the
wanted item has.

In the binary setting (UNICORN's, `simulators.users`) the user opens by stating one aspect of the target
drawn uniformly among its n_v aspects. So an item v holding the stated aspect would have produced that
opening with probability 1 / n_v: of two items equally consistent with the dialogue, the one with fewer
aspects is the likelier target. The prior adds that log-likelihood to every item score,

    prior(v) = −weight · log n_v          (0 for an item without aspects)

the same for every user. The exact Bayesian weight is the ranker's belief temperature (log belief =
score / T − log n_v); a smaller one hedges against a prior that already favours items with many
aspects. It reads the catalogue alone: no interaction, so no split can leak into it.

It enters a persona ranker's item score through `PersonaRanker.with_item_prior` (a ranker name's
``+open``). It models the binary setting's opening only: an enumerated opening (a category) or a
multi-interest one (MCMIPL) has another likelihood.
"""

from __future__ import annotations

import numpy as np

from simulators.catalog import Catalog
from simulators.errors import CRSError

OPENING_WEIGHT: float = 0.005
"""The prior's weight in a persona ranker's item score (``+open``).

Chosen on LastFM* valid (5,000 conversations, seed 1) over ``uniform+profile+split``: 0.003 to 0.005
shortened lookahead-2x1t0.015 and ask-until-120 by about 0.2 turns, 0.01 lost success (BENCHMARKS.md,
"The opening's likelihood")."""


def opening_prior(catalog: Catalog, weight: float = OPENING_WEIGHT) -> np.ndarray:
    """−weight · log n_v of every item of `catalog` (n_v its aspect count; 0 without aspects); float64,
    shape (I,).

    Raises:
        CRSError: `weight` is not a finite number >= 0.
    """
    if not (np.isfinite(weight) and weight >= 0.0):
        raise CRSError(f"opening weight {weight!r} must be a finite number >= 0, e.g. {OPENING_WEIGHT}")
    holds = catalog.item_aspects.tocsr()
    counts = np.diff(holds.indptr).astype(np.float64)
    prior: np.ndarray = -weight * np.log(np.maximum(counts, 1.0))
    return prior
