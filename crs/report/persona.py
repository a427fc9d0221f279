"""Persona analysis of a persona ranker: usage, persona × aspect-group attention, agreement with the
ground truth, and an explanation-faithfulness deletion test.

All of it is read through the ranker's public interface (`PersonaRanker`: ``persona_of``,
``prototype_of``, ``explain``, ``item_scores``, and a ranker built from its exported weight arrays with
one persona or one item aspect removed) on the (user, target) pairs of the evaluated conversations,
without dialogue facts; nothing re-derives the ranker's internal formulas.

- **Usage**: share of pairs whose arg-max persona (AMP-CF's α) maps to each shared prototype.
- **Heatmap**: each user's top `TOP_ITEMS` items are explained (persona k* = arg-max α, aspect a* =
  arg-max of k*'s aspect attention); cell (j, g) = share of prototype j's explanations whose aspect is
  in group g (rows sum to 1).
- **Ground truth** (persona world): the arg-max persona's prototype against the persona that really
  produced the interaction, after the best one-to-one matching (Hungarian); chance = the same score
  with the model's labels shuffled.
- **Deletion test**: remove the explaining persona (its prior weight set to −∞, so α renormalises over
  the others) or the explaining aspect (dropped from the item) and re-score the item; faithful when the
  score falls more than when a random other persona / aspect of the same item is removed. Rate = share
  of pairs where it does (ties count one half), 95% bootstrap CI over pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from crs.report.inputs import EvalRun
from envs.metrics import MetricSummary, bootstrap_ci
from envs.ranker import DialogueFacts, ExplainablePersonaRanker
from simulators.catalog import Catalog

DELETED_LOG_PRIOR = -1.0e9
MAX_PAIRS = 300
TOP_ITEMS = 20
CHANCE_SHUFFLES = 50


@dataclass(frozen=True)
class DeletionResult:
    """A deletion test over pairs.

    Attributes:
        rate: Share of pairs where removing the explaining unit lowers the score more than removing a
            random other one (ties count 1/2), mean and 95% CI.
        drop_explained: Mean score drop when the explaining unit is removed.
        drop_random: Mean score drop when a random other unit is removed.
        n: Pairs tested.
    """

    rate: MetricSummary
    drop_explained: float
    drop_random: float
    n: int


@dataclass(frozen=True)
class PersonaAnalysis:
    """What the persona analysis found for one ranker.

    Attributes:
        source: The ranker (artifact path) analysed.
        dataset: Dataset label.
        n_pairs: (user, target) pairs analysed.
        prototype_names: Display name of each shared prototype ("P3 · jazz, calm").
        usage: Share of pairs explained by each prototype, shape (P,).
        group_names: Aspect-group names (None when the catalogue has no groups).
        heatmap: Prototype × aspect-group shares of explanations, rows sum to 1 (0 for unused prototypes),
            shape (P, G).
        agreement: Matched accuracy against the ground-truth personas, when known.
        chance: Its value with shuffled model labels.
        n_truth_personas: Ground-truth personas present in the pairs.
        deletion_persona: Deletion test of the explaining persona.
        deletion_aspect: Deletion test of the explaining aspect.
        notes: What could not be computed, and why.
    """

    source: str
    dataset: str
    n_pairs: int
    prototype_names: tuple[str, ...]
    usage: np.ndarray
    group_names: tuple[str, ...] | None
    heatmap: np.ndarray | None
    agreement: MetricSummary | None
    chance: float | None
    n_truth_personas: int
    deletion_persona: DeletionResult | None
    deletion_aspect: DeletionResult | None
    notes: tuple[str, ...] = ()


def has_personas(ranker: object) -> TypeGuard[ExplainablePersonaRanker]:
    """Whether `ranker` exposes the persona interface this analysis reads (`ExplainablePersonaRanker`)."""
    return isinstance(ranker, ExplainablePersonaRanker)


def analysis_pairs(runs: Sequence[EvalRun], rng: np.random.Generator, limit: int = MAX_PAIRS) -> np.ndarray:
    """Distinct (user, first target, goal index) triples of the runs' conversations; shape (n, 3)."""
    seen: dict[tuple[int, int], int] = {}
    for run in runs:
        for record in run.records:
            if record.targets:
                seen.setdefault((record.user, record.targets[0]), record.goal_index)
    pairs = np.array([(u, v, g) for (u, v), g in seen.items()], dtype=np.int64).reshape(-1, 3)
    if pairs.shape[0] > limit:
        pairs = pairs[np.sort(rng.choice(pairs.shape[0], size=limit, replace=False))]
    return pairs


def prototype_names(ranker, catalog: Catalog, top: int = 2) -> tuple[str, ...]:
    """Each prototype named by the aspects its vector points to most."""
    prototypes = np.asarray(ranker.prototypes, dtype=np.float64)
    sims = prototypes @ np.asarray(ranker.aspect, dtype=np.float64).T
    names = []
    for j in range(prototypes.shape[0]):
        words = [catalog.aspect_names[a] for a in np.argsort(-sims[j], kind="stable")[:top]]
        names.append(f"P{j} · {', '.join(words)}")
    return tuple(names)


def aspect_groups(catalog: Catalog) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """Group of each aspect and the group names: persona-world groups, else the taxonomy, else None."""
    if catalog.truth is not None:
        return np.asarray(catalog.truth.aspect_group), tuple(catalog.truth.group_names)
    if catalog.taxonomy is not None:
        return np.asarray(catalog.taxonomy.parent_of), tuple(catalog.taxonomy.parent_names)
    return None


def persona_heatmap(
    ranker, pairs: np.ndarray, groups: np.ndarray, n_groups: int, top: int = TOP_ITEMS
) -> np.ndarray:
    """Prototype × aspect-group shares of the explanations of each user's top items; shape (P, G).

    Args:
        ranker: The persona ranker.
        pairs: (user, item, goal) rows; each distinct user is explained once.
        groups: Group of each aspect, shape (A,).
        n_groups: G.
        top: Items explained per user (the ranker's best-scored ones, no dialogue facts).
    """
    n_prototypes = np.asarray(ranker.prototypes).shape[0]
    heat = np.zeros((n_prototypes, n_groups))
    empty = np.zeros(0, dtype=np.int64)
    every_item = np.arange(np.asarray(ranker.item).shape[0])
    for user in np.unique(pairs[:, 0]).tolist():
        facts = DialogueFacts(int(user), empty, empty, empty)
        scores = ranker.item_scores(facts, every_item)
        best = np.argsort(-scores, kind="stable")[:top]
        prototypes = ranker.prototype_of(int(user))
        for persona, aspect in ranker.explain(facts, best):
            if aspect >= 0:
                heat[prototypes[persona], groups[aspect]] += 1.0
    totals = heat.sum(axis=1, keepdims=True)
    return np.divide(heat, totals, out=np.zeros_like(heat), where=totals > 0)


def truth_agreement(
    labels: np.ndarray, truth: np.ndarray, rng: np.random.Generator
) -> tuple[MetricSummary, float]:
    """Matched accuracy of model labels against true labels, its 95% bootstrap CI, and shuffled chance."""

    def matched(model: np.ndarray, true: np.ndarray) -> float:
        confusion = np.zeros((int(labels.max()) + 1, int(truth.max()) + 1))
        np.add.at(confusion, (model, true), 1.0)
        r, c = linear_sum_assignment(-confusion)
        return float(confusion[r, c].sum() / model.size)

    score = matched(labels, truth)
    resampled = []
    for _ in range(200):
        idx = rng.integers(0, labels.size, size=labels.size)
        resampled.append(matched(labels[idx], truth[idx]))
    low, high = np.percentile(resampled, [2.5, 97.5])
    chance = float(np.mean([matched(rng.permutation(labels), truth) for _ in range(CHANCE_SHUFFLES)]))
    return MetricSummary(score, float(low), float(high)), chance


def _rounds(keys: np.ndarray) -> list[np.ndarray]:
    """Split positions into rounds where every key appears at most once (rankers are edited per key)."""
    occurrence = np.zeros(keys.size, dtype=np.int64)
    seen: dict[int, int] = {}
    for i, key in enumerate(keys.tolist()):
        occurrence[i] = seen.get(key, 0)
        seen[key] = occurrence[i] + 1
    return [np.flatnonzero(occurrence == r) for r in range(int(occurrence.max()) + 1)] if keys.size else []


def _clone(ranker, *, log_prior: np.ndarray | None = None, item_aspects: sp.csr_matrix | None = None):
    """The same ranker over edited weights: a ranker of its class (the constructor re-validates them and
    rebuilds its caches), with every weight of the original (the shared persona included) and what a
    view of it adds (a profile, a temperature, an item prior...), so that an unedited clone scores
    exactly as the original."""
    weights = {
        "user": ranker.user,
        "item": ranker.item,
        "aspect": ranker.aspect,
        "personas": ranker.personas,
        "log_prior": ranker.log_prior if log_prior is None else log_prior,
        "mixtures": ranker.mixtures,
        "prototypes": ranker.prototypes,
        "shared": ranker.shared,
    }
    matrix = ranker.item_aspects if item_aspects is None else item_aspects
    clone = type(ranker)(weights, matrix, ranker.aspect_mode)
    for name, value in vars(ranker).items():  # a view's own settings (`PersonaRanker.with_*`)
        if name not in vars(clone) and name != "item_prior":
            setattr(clone, name, value)
    prior = getattr(ranker, "item_prior", None)  # folded into the base scores the constructor rebuilt
    return clone if prior is None else clone.with_item_prior(prior)


def _score(ranker, user: int, item: int) -> float:
    empty = np.zeros(0, dtype=np.int64)
    return float(ranker.item_scores(DialogueFacts(user, empty, empty, empty), np.array([item]))[0])


def _deletion(explained: np.ndarray, random: np.ndarray, seed: int) -> DeletionResult:
    wins = np.where(
        np.isclose(explained, random, rtol=1e-9, atol=1e-12), 0.5, (explained > random).astype(float)
    )
    return DeletionResult(
        rate=bootstrap_ci(wins, seed=seed),
        drop_explained=float(explained.mean()),
        drop_random=float(random.mean()),
        n=int(explained.size),
    )


def persona_deletion(
    ranker, pairs: np.ndarray, rng: np.random.Generator, seed: int = 0
) -> DeletionResult | None:
    """Deletion test of the explaining persona against a random other persona of the same user."""
    K = np.asarray(ranker.log_prior).shape[1]
    if K < 2 or pairs.shape[0] == 0:
        return None
    empty = np.zeros(0, dtype=np.int64)
    users, items = pairs[:, 0], pairs[:, 1]
    explaining = np.array(
        [
            ranker.explain(DialogueFacts(int(u), empty, empty, empty), np.array([v]))[0][0]
            for u, v in zip(users, items, strict=True)
        ]
    )
    others = (explaining + rng.integers(1, K, size=explaining.size)) % K  # uniform over the K−1 others
    base = np.array([_score(ranker, int(u), int(v)) for u, v in zip(users, items, strict=True)])
    drop_explained, drop_random = np.zeros(users.size), np.zeros(users.size)
    for positions in _rounds(users):
        for chosen, out in ((explaining, drop_explained), (others, drop_random)):
            log_prior = np.array(ranker.log_prior, dtype=np.float64, copy=True)
            log_prior[users[positions], chosen[positions]] = DELETED_LOG_PRIOR
            edited = _clone(ranker, log_prior=log_prior)
            for p in positions.tolist():
                out[p] = base[p] - _score(edited, int(users[p]), int(items[p]))
    return _deletion(drop_explained, drop_random, seed)


def aspect_deletion(
    ranker, pairs: np.ndarray, rng: np.random.Generator, seed: int = 0
) -> DeletionResult | None:
    """Deletion test of the explaining aspect against a random other aspect of the same item (items with
    fewer than two aspects are skipped)."""
    empty = np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix(ranker.item_aspects)
    keep, explaining, others = [], [], []
    for index, (user, item, _) in enumerate(pairs.tolist()):
        aspects = matrix.indices[matrix.indptr[item] : matrix.indptr[item + 1]]
        aspect = ranker.explain(DialogueFacts(user, empty, empty, empty), np.array([item]))[0][1]
        if aspects.size < 2 or aspect < 0:
            continue
        rest = aspects[aspects != aspect]
        keep.append(index)
        explaining.append(aspect)
        others.append(int(rest[rng.integers(rest.size)]))
    if not keep:
        return None
    chosen_pairs = pairs[np.array(keep)]
    users, items = chosen_pairs[:, 0], chosen_pairs[:, 1]
    base = np.array([_score(ranker, int(u), int(v)) for u, v in zip(users, items, strict=True)])
    drop_explained, drop_random = np.zeros(users.size), np.zeros(users.size)
    original = sp.csr_matrix(ranker.item_aspects, dtype=np.float64, copy=True)
    for positions in _rounds(items):
        for chosen, out in ((np.array(explaining), drop_explained), (np.array(others), drop_random)):
            matrix = original.tolil(copy=True)
            for p in positions.tolist():
                matrix[items[p], chosen[p]] = 0.0
            edited = _clone(ranker, item_aspects=sp.csr_matrix(matrix))
            for p in positions.tolist():
                out[p] = base[p] - _score(edited, int(users[p]), int(items[p]))
    return _deletion(drop_explained, drop_random, seed)


def analyse_personas(
    ranker, catalog: Catalog, runs: Sequence[EvalRun], source: str, dataset: str, seed: int = 0
) -> PersonaAnalysis:
    """Every persona figure of `ranker` on the conversations of `runs` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    pairs = analysis_pairs(runs, rng)
    names = prototype_names(ranker, catalog)
    n_prototypes = len(names)
    slots = np.array(
        [int(ranker.persona_of(int(u), np.array([v]))[0]) for u, v, _ in pairs.tolist()], dtype=np.int64
    )
    labels = np.array(
        [int(ranker.prototype_of(int(u))[k]) for (u, _, _), k in zip(pairs.tolist(), slots, strict=True)],
        dtype=np.int64,
    )
    usage = np.bincount(labels, minlength=n_prototypes) / max(labels.size, 1)

    grouping = aspect_groups(catalog)
    heatmap, group_names = None, None
    if grouping is None:
        notes.append(f"{catalog.name} has no aspect groups (no taxonomy): no persona × aspect-group heatmap")
    elif getattr(ranker, "aspect_mode", "attention") == "none":
        notes.append("this ranker was trained without aspect attention: no persona × aspect-group heatmap")
    else:
        groups, group_names = grouping
        heatmap = persona_heatmap(ranker, pairs, groups, len(group_names))

    agreement, chance, n_truth = None, None, 0
    split = runs[0].split
    interactions = catalog.splits.get(split)
    if catalog.truth is None or interactions is None or interactions.personas is None:
        notes.append(f"{catalog.name} has no ground-truth personas: agreement with the truth not measured")
    else:
        goals = pairs[:, 2]
        valid = (goals < len(interactions)) & (
            interactions.users[np.minimum(goals, len(interactions) - 1)] == pairs[:, 0]
        )
        truth = np.asarray(interactions.personas)[goals[valid]]
        if valid.sum() >= 2:
            agreement, chance = truth_agreement(labels[valid], truth, rng)
            n_truth = int(np.unique(truth).size)
        else:
            notes.append("too few conversations matched their ground-truth interaction to score agreement")
    deletion_persona = persona_deletion(ranker, pairs, rng, seed)
    if deletion_persona is None:
        notes.append("one persona per user: no persona deletion test")
    deletion_aspect = aspect_deletion(ranker, pairs, rng, seed)
    if deletion_aspect is None:
        notes.append("no item with two or more aspects among the targets: no aspect deletion test")
    elif getattr(ranker, "aspect_mode", "attention") == "none":
        notes.append(
            "aspect attention is off in this ranker: removing an aspect changes no score (rate 0.5 = ties)"
        )
    return PersonaAnalysis(
        source=source,
        dataset=dataset,
        n_pairs=int(pairs.shape[0]),
        prototype_names=names,
        usage=usage,
        group_names=group_names,
        heatmap=heatmap,
        agreement=agreement,
        chance=chance,
        n_truth_personas=n_truth,
        deletion_persona=deletion_persona,
        deletion_aspect=deletion_aspect,
        notes=tuple(notes),
    )
