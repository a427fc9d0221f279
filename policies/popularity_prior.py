"""An item popularity prior: how often everybody chose an item, as a small term of every item score.

    prior(v) = weight · log(1 + n_v)

where n_v counts item v among the interactions `crs pretrain` learns from with the same seed
(`pretrain_split`, as the tag profiles of `policies.content_profile`): the ``train`` split where there is
one, else (Yelp*) ``valid`` minus the seeded hold-out that pre-training validates on. So the hold-out
stays unseen, and `crs train` converses only about it there.

It enters a persona ranker's item score for every user alike (`PersonaRanker.with_item_prior`, a ranker
name's ``+pop``). With the default `POPULARITY_WEIGHT` it is small beside the dialogue's rules (a
rejected aspect costs 5): it orders what the answers and the tag profile leave nearly tied, so that of
two items equally consistent with the dialogue the one more people chose comes first. On Yelp* binary,
where a failed conversation ends with a few hundred consistent candidates, that lifts ask-10 over
``uniform+profile+split`` by about 0.05 SR@15 (BENCHMARKS.md, "A popularity prior").
"""

from __future__ import annotations

import numpy as np

from policies.content_profile import DEFAULT_SPLIT
from policies.pretrain.graph import pretrain_split
from simulators.catalog import Catalog
from simulators.errors import CRSError

POPULARITY_WEIGHT: float = 0.01
"""The prior's weight in a persona ranker's item score (`PersonaRanker.with_item_prior`).

Chosen on Yelp*'s pre-training hold-out (valid interactions no profile or count saw) with ask-10 over
``uniform+profile+pop+split`` (BENCHMARKS.md, "A popularity prior")."""


def popularity_prior(
    catalog: Catalog,
    weight: float = POPULARITY_WEIGHT,
    seed: int = DEFAULT_SPLIT.seed,
    holdout_fraction: float = DEFAULT_SPLIT.holdout_fraction,
    holdout_unit: str = DEFAULT_SPLIT.holdout_unit,
) -> np.ndarray:
    """weight · log(1 + n_v) of every item of `catalog`, from the interactions `crs pretrain` with
    `seed`, `holdout_fraction` and `holdout_unit` learns from (module docstring); float64, shape (I,).

    Raises:
        CRSError: `weight` is not a finite number >= 0.
    """
    if not (np.isfinite(weight) and weight >= 0.0):
        raise CRSError(f"popularity weight {weight!r} must be a finite number >= 0, e.g. {POPULARITY_WEIGHT}")
    chosen = pretrain_split(catalog, seed, holdout_fraction, holdout_unit).train
    counts = np.bincount(chosen.items, minlength=catalog.n_items).astype(np.float64)
    prior: np.ndarray = weight * np.log1p(counts)
    return prior
