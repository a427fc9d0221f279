"""The persona ranker protocols: which rankers satisfy them, and who decides on them (wrapper, report)."""

from __future__ import annotations

import numpy as np
import pytest

from crs.report.persona import has_personas
from envs import DialogueFacts, ExplainablePersonaRanker, PersonaAwareRanker, PreferenceRanker, make_env
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.baseline_rankers import PopularityRanker, TransERanker
from policies.pretrain.ranker import PersonaRanker
from simulators.catalog import Catalog
from simulators.datasets import load_catalog
from tests.envs.test_sb3_wrapper import WORLD, TruthPersonaRanker
from tests.policies.test_rl_policy import random_persona_ranker

EMPTY = np.zeros(0, dtype=np.int64)


@pytest.fixture(scope="module")
def world() -> Catalog:
    return load_catalog("persona_world", **WORLD)


def persona_ranker(catalog: Catalog) -> PersonaRanker:
    """A `PersonaRanker` over random weights with 2 personas per user."""
    return random_persona_ranker(catalog, k=2, d=4, prototypes=3)


def transe_ranker(catalog: Catalog, d: int = 4) -> TransERanker:
    rng = np.random.default_rng(0)
    sizes = (catalog.n_users, catalog.n_items, catalog.n_aspects)
    return TransERanker(*(rng.normal(size=(n, d)) for n in sizes), catalog)


def test_persona_ranker_satisfies_both_persona_protocols(world: Catalog) -> None:
    ranker = persona_ranker(world)
    assert isinstance(ranker, PreferenceRanker)
    assert isinstance(ranker, PersonaAwareRanker)
    assert isinstance(ranker, ExplainablePersonaRanker)
    assert has_personas(ranker)
    # the members the protocols name behave as documented
    facts = DialogueFacts(0, EMPTY, EMPTY, EMPTY)
    posterior = ranker.persona_posterior(facts)
    assert posterior.shape == (ranker.personas_per_user,) and posterior.sum() == pytest.approx(1.0)
    assert ranker.signature_aspects(0, 1, 3, among=np.arange(5)).shape == (3,)
    assert ranker.prototype_of(0).shape == (ranker.personas_per_user,)
    assert len(ranker.explain(facts, np.arange(4))) == 4


def test_probe_only_rankers_are_persona_aware_but_not_explainable(world: Catalog) -> None:
    ranker = TruthPersonaRanker(world)
    assert isinstance(ranker, PersonaAwareRanker)
    assert not isinstance(ranker, ExplainablePersonaRanker) and not has_personas(ranker)


@pytest.mark.parametrize("build", [PopularityRanker, transe_ranker])
def test_rankers_without_personas_satisfy_neither(world: Catalog, build) -> None:
    ranker = build(world)
    assert isinstance(ranker, PreferenceRanker)
    assert not isinstance(ranker, PersonaAwareRanker) and not isinstance(ranker, ExplainablePersonaRanker)
    assert not has_personas(ranker)


def test_the_wrapper_offers_probes_exactly_to_persona_aware_rankers(world: Catalog) -> None:
    def n_probes(ranker: PreferenceRanker, **env_kwargs) -> int:
        env = make_env(catalog=world, split="valid", **env_kwargs)
        return SlateActionWrapper(env, ranker, WrapperConfig()).n_probes

    assert n_probes(persona_ranker(world)) == 2
    assert n_probes(TruthPersonaRanker(world)) == world.truth.personas_per_user
    assert n_probes(PopularityRanker(world)) == 0
    assert n_probes(transe_ranker(world)) == 0
    # binary questions never probe, whatever the ranker
    assert n_probes(persona_ranker(world), setting="binary") == 0


class NoPersonaCount(PopularityRanker):
    """Every persona member but ``personas_per_user``: the wrapper could not size its probe slots."""

    def persona_posterior(self, facts: DialogueFacts) -> np.ndarray:
        return np.ones(2) / 2

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        return EMPTY


def test_a_ranker_without_personas_per_user_is_not_persona_aware(world: Catalog) -> None:
    ranker = NoPersonaCount(world)
    assert isinstance(ranker, PreferenceRanker) and not isinstance(ranker, PersonaAwareRanker)
    env = make_env(catalog=world, split="valid")
    assert SlateActionWrapper(env, ranker, WrapperConfig()).n_probes == 0
