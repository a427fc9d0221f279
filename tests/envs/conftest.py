"""Tiny hand-built catalogues whose every candidate set can be worked out by hand, and a persona ranker
that reads the persona world's ground truth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import scipy.sparse as sp

from envs.ranker import DialogueFacts
from policies.baseline_rankers import PopularityRanker
from simulators.catalog import Catalog, Interactions, Taxonomy
from simulators.goals import PairGoals
from simulators.users import SingleTargetUser, SlateReaction, UserModel

# item -> aspects
TINY_ITEMS = {
    0: [0, 1],
    1: [0, 2],
    2: [0, 1, 3],
    3: [1, 2],
    4: [2, 3],
    5: [0, 3],
}


def tiny_catalog(taxonomy: Taxonomy | None = None, n_extra_items: int = 0) -> Catalog:
    """6 items x 4 aspects (plus `n_extra_items` items with aspect 0); user 0 likes item 2 in every split."""
    items = dict(TINY_ITEMS)
    for extra in range(n_extra_items):
        items[6 + extra] = [0]
    rows = [i for i, aspects in items.items() for _ in aspects]
    cols = [a for aspects in items.values() for a in aspects]
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(items), 4))
    split = Interactions(users=np.array([0]), items=np.array([2]))
    return Catalog(
        name="tiny",
        item_aspects=matrix,
        item_names=tuple(f"item{i}" for i in range(len(items))),
        aspect_names=("a0", "a1", "a2", "a3"),
        n_users=1,
        splits={"train": split, "valid": split, "test": split},
        taxonomy=taxonomy,
    )


class YesUser(UserModel):
    """A (legitimate) user model that accepts every aspect and no slate: it can empty the candidates."""

    def opening_aspect(self) -> int:
        return 0

    def answer(self, aspects: Sequence[int]) -> frozenset[int]:
        return frozenset(int(a) for a in aspects)

    def react(self, slate: Sequence[int]) -> SlateReaction:
        return SlateReaction(accepted=None, rank=None)


@pytest.fixture
def tiny() -> Catalog:
    return tiny_catalog()


@pytest.fixture
def tiny_parts(tiny: Catalog) -> tuple[Catalog, SingleTargetUser, PairGoals]:
    return tiny, SingleTargetUser(tiny), PairGoals(tiny, "test")


class TruthPersonaRanker(PopularityRanker):
    """Popularity scores plus the persona interface, read from the persona world's ground truth."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        assert catalog.truth is not None
        self.truth = catalog.truth
        self.personas_per_user = catalog.truth.personas_per_user

    def persona_posterior(self, facts: DialogueFacts) -> np.ndarray:
        return self.truth.user_weights[facts.user]

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        signature = np.flatnonzero(self.truth.persona_aspects[self.truth.user_personas[user, k]])
        if among is not None:
            signature = signature[np.isin(signature, among)]
        return signature[:m]
