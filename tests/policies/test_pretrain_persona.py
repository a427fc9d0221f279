"""Personas are real: on the persona world, learned personas match the ground truth (slow)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from typer.testing import CliRunner

from envs.ranker import DialogueFacts
from policies.pretrain.artifact import load_ranker
from policies.pretrain.baselines import popularity_scores
from policies.pretrain.config import TrainConfig
from policies.pretrain.metrics import evaluation_users, rank_metrics
from policies.pretrain.train import PretrainResult, pretrain
from simulators.catalog import Catalog, Interactions
from simulators.persona_world import make_persona_world

pytestmark = pytest.mark.slow

EMPTY = np.zeros(0, dtype=np.int64)
CONFIG = TrainConfig(personas=3, prototypes=8, epochs=8, patience=3, seed=0)
MAIN_GROUP_SHARE = 0.2
"""A persona's "aspect groups" are those with at least this share of its group distribution: its main
group (>= 0.9 * 0.55) and its optional second group (>= 0.9 * 0.25); the spread over the other groups
totals 0.1, so no spread group reaches 0.2."""


@pytest.fixture(scope="module")
def world() -> Catalog:
    # K = 3 true personas per user, as many as the model has: recovery is measured where K matches
    return make_persona_world(n_users=400, n_items=1500, personas_per_user=3, seed=0)


@pytest.fixture(scope="module")
def result(world: Catalog) -> PretrainResult:
    return pretrain(world, CONFIG)


def learned_prototypes(result: PretrainResult, world: Catalog, inter: Interactions) -> np.ndarray:
    """Prototype of the arg-max persona α_k(v) of each interaction, shape (n,)."""
    ranker = result.ranker(world)
    out = np.empty(len(inter), dtype=np.int64)
    for user in np.unique(inter.users):
        rows = inter.users == user
        out[rows] = ranker.prototype_of(int(user))[ranker.persona_of(int(user), inter.items[rows])]
    return out


def test_learned_personas_match_the_true_ones(world: Catalog, result: PretrainResult) -> None:
    truth = world.truth
    train, test = world.split("train"), world.split("test")
    P = result.model_config.prototypes
    # Hungarian matching on training interactions: learned prototype j <-> true persona t,
    # maximising the number of training interactions on which they co-occur.
    confusion = np.zeros((P, truth.n_personas))
    np.add.at(confusion, (learned_prototypes(result, world, train), train.personas), 1.0)
    rows, cols = linear_sum_assignment(-confusion)
    mapping = np.full(P, -1)
    mapping[rows] = cols
    predicted = mapping[learned_prototypes(result, world, test)]
    agreement = float(np.mean(predicted == test.personas))
    assert agreement >= 0.85, f"arg-max persona agrees with the truth on {agreement:.3f} of test interactions"
    share = np.bincount(predicted[predicted >= 0], minlength=truth.n_personas) / len(test)
    assert share.min() >= 0.05, f"some persona is almost never the arg-max: shares {np.round(share, 3)}"


def test_explanation_aspect_belongs_to_the_true_personas_groups(
    world: Catalog, result: PretrainResult
) -> None:
    truth = world.truth
    ranker = result.ranker(world)
    test = world.split("test")
    allowed = truth.persona_groups >= MAIN_GROUP_SHARE  # (n_personas, n_groups)
    ok = []
    for user in np.unique(test.users):
        rows = test.users == user
        pairs = ranker.explain(DialogueFacts(int(user), EMPTY, EMPTY, EMPTY), test.items[rows])
        for (_, aspect), persona in zip(pairs, test.personas[rows], strict=True):
            ok.append(bool(allowed[persona, truth.aspect_group[aspect]]))
    assert np.mean(ok) >= 0.80, f"explanation aspect in the true persona's groups for {np.mean(ok):.3f}"


def test_beats_popularity_on_test_recall(world: Catalog, result: PretrainResult) -> None:
    U, I = world.n_users, world.n_items
    train = world.split("train")
    exclude, truth = train.by_user(U, I), world.split("test").by_user(U, I)
    users = evaluation_users(truth, None, None)
    pop = popularity_scores(train, I)
    popular = rank_metrics(lambda b: np.tile(pop, (b.size, 1)), exclude, truth, users)
    model = rank_metrics(result.ranker(world).full_scores, exclude, truth, users)
    # A clear margin, not a tie: at least 1.5x popularity's Recall@10.
    assert model.recall >= 1.5 * popular.recall, (model, popular)


def test_crs_pretrain_writes_a_loadable_artifact(tmp_path) -> None:
    from crs.cli import app

    out = tmp_path / "ranker"
    result = CliRunner().invoke(
        app, ["pretrain", "--epochs", "1", "--dim", "16", "--personas", "2", "--seed", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "pre-training summary" in result.output
    ranker = load_ranker(out, make_persona_world())
    assert ranker.personas_per_user == 2
    bad = CliRunner().invoke(app, ["pretrain", "--personas", "9", "--prototypes", "8", "--out", str(out)])
    assert bad.exit_code == 2 and "prototypes (8) must be >= personas per user (9)" in bad.output
    bad = CliRunner().invoke(app, ["pretrain", "--negatives-from", "cold", "--out", str(out)])
    assert bad.exit_code == 2 and "--negatives-from must be one of all, warm, got 'cold'" in bad.output
