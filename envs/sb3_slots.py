"""Slot builders of the SB3 wrapper: one turn's candidate ranking, question, probe and item slots, and
the dialogue-level (facts) features, each with its feature block.

Sizes: Q = question slots, P = probe slots, M = probe size, N = item slots, F = facts kept,
A = aspects, C = first-layer categories, n_c = candidate items, n_top = min(N, n_c). Feature columns
are written by name (`envs.sb3_features.write`); `envs.sb3_features` says what each feature means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.question_types import QuestionTypes
from envs.ranker import DialogueFacts, PersonaAwareRanker, PreferenceRanker
from envs.sb3_features import (
    ANSWER_FEATURES,
    FACT_COUNT_SCALE,
    GLOBAL_FEATURES,
    ITEM_FEATURES,
    PROBE_FEATURES,
    QUESTION_FEATURES,
    REJECTED_ASPECTS_SCALE,
    write,
)
from envs.state import DialogueState
from simulators.catalog import Catalog, compressed_entries


# ---------------------------------------------------------------------------------------- array helpers
def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax of a 1-D array, same shape."""
    z = np.exp(x - x.max())
    out: np.ndarray = z / z.sum()  # numpy types arithmetic on np.ndarray as Any
    return out


def zscore(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std of a 1-D array (std 1 when it is ~0), same shape."""
    if x.size == 0:
        return x
    std = x.std()
    out: np.ndarray = (x - x.mean()) / (std if std > 1e-9 else 1.0)  # numpy types this as Any
    return out


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of Bernoulli(p), elementwise, same shape."""
    p = np.clip(p, 1e-9, 1 - 1e-9)
    out: np.ndarray = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))  # numpy types this as Any
    return out


def membership(
    position: np.ndarray, cols: np.ndarray, targets: np.ndarray, n_rows: int, n_cols: int
) -> np.ndarray:
    """held[r, j] = row r has column targets[j]; from gathered pairs; shape (n_rows, len(targets))."""
    slot = np.full(n_cols, -1, dtype=np.int64)
    slot[targets] = np.arange(targets.size)
    hit = slot[cols]
    keep = hit >= 0
    held = np.zeros((n_rows, targets.size), dtype=np.float32)
    held[position[keep], hit[keep]] = 1.0
    return held


def top_positions(ids: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n best scores, best first, ties broken by lower id (exact at the cut too)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if ids.size > n:
        kth = np.partition(scores, ids.size - n)[ids.size - n]
        keep = np.flatnonzero(scores >= kth)
    else:
        keep = np.arange(ids.size)
    return keep[np.lexsort((ids[keep], -scores[keep]))][:n]


def pad(values: np.ndarray, size: int) -> np.ndarray:
    """The first `size` values as float32, padded with -1; shape (size,)."""
    out = np.full(size, -1.0, dtype=np.float32)
    n = min(size, values.size)
    out[:n] = values[:n]
    return out


# ------------------------------------------------------------------------------------------ candidates
@dataclass(frozen=True)
class RankedCandidates:
    """The fixed ranker's view of one turn's candidate items.

    Attributes:
        ids: Candidate item ids, ascending, shape (n_c,), int64.
        scores: Ranker scores, float64 (n_c,).
        z: The scores z-scored, float64 (n_c,).
        weights: softmax(z), float64 (n_c,), sums to 1.
        top: Positions in `ids` of the item slots, best first (ties: lower id), int64 (n_top,).
        items: The item slots' ids, ``ids[top]``, int64 (n_top,).
        pos: Candidate position of each (candidate, aspect) pair, int64 (nnz,).
        asp: Aspect of each (candidate, aspect) pair, int64 (nnz,).
        top_pos: Item slot of each (item slot, aspect) pair, int64 (nnz_top,).
        top_asp: Aspect of each (item slot, aspect) pair, int64 (nnz_top,).
        counts: Candidates holding each aspect, float64 (A,).
        open_aspects: Aspects a candidate holds, neither accepted nor rejected, bool (A,).
    """

    ids: np.ndarray
    scores: np.ndarray
    z: np.ndarray
    weights: np.ndarray
    top: np.ndarray
    items: np.ndarray
    pos: np.ndarray
    asp: np.ndarray
    top_pos: np.ndarray
    top_asp: np.ndarray
    counts: np.ndarray
    open_aspects: np.ndarray

    @property
    def n(self) -> int:
        """n_c, the number of candidates."""
        return int(self.ids.size)


def rank_candidates(
    ranker: PreferenceRanker, state: DialogueState, facts: DialogueFacts, candidates: np.ndarray, n_items: int
) -> RankedCandidates:
    """Score the candidates (shape (n_c,), n_c >= 1) and keep the best `n_items` as the item slots."""
    scores = np.asarray(ranker.item_scores(facts, candidates), dtype=np.float64)
    z = zscore(scores)
    top = top_positions(candidates, scores, min(n_items, candidates.size))
    items = candidates[top]
    item_aspects = state.catalog.item_aspects
    pos, asp = compressed_entries(item_aspects, candidates)
    top_pos, top_asp = compressed_entries(item_aspects, items)
    counts = np.bincount(asp, minlength=state.catalog.n_aspects).astype(np.float64)
    return RankedCandidates(
        ids=candidates,
        scores=scores,
        z=z,
        weights=softmax(z),
        top=top,
        items=items,
        pos=pos,
        asp=asp,
        top_pos=top_pos,
        top_asp=top_asp,
        counts=counts,
        open_aspects=(counts > 0) & ~state.accepted & ~state.rejected,
    )


# ------------------------------------------------------------------------------------------- questions
class CategoryIndex:
    """Which first-layer categories hold which aspects and items (enumerated envs).

    Args:
        catalog: A catalogue with a taxonomy.

    Attributes:
        members: members[a, c] = aspect a is in category c, bool (A, C).
        item_categories: Item -> categories it has an aspect of, CSR (n_items, C), sorted indices.
    """

    def __init__(self, catalog: Catalog) -> None:
        taxonomy = catalog.taxonomy
        assert taxonomy is not None, "enumerated questions need a taxonomy"
        assert taxonomy.members is not None  # set in Taxonomy.__post_init__
        members = taxonomy.members.T.tocsr().astype(np.float64)  # (A, C)
        self.members = members.toarray().astype(np.bool_)
        self.item_categories = (catalog.item_aspects.astype(np.float64) @ members).tocsr()
        self.item_categories.sort_indices()

    def held(self, items: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """held[r, j] = item items[r] has an aspect of category categories[j]; bool (n, len(categories))."""
        position, category = compressed_entries(self.item_categories, items)
        return membership(position, category, categories, items.size, self.members.shape[1]) > 0


@dataclass(frozen=True)
class QuestionSlots:
    """The question slots of one turn.

    Attributes:
        ids: Aspect (or category) ids in slot order, int64 (<= Q,).
        feats: `QUESTION_FEATURES` of each slot, zero rows past ``ids.size``, float32 (Q, 6).
    """

    ids: np.ndarray
    feats: np.ndarray


def pick_questions(
    ids: np.ndarray, scores: np.ndarray, entropy: np.ndarray, n_questions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Half the slots (rounded up) by ranker score, the rest by entropy.

    Args:
        ids: Candidate question ids, ascending, shape (n,).
        scores: Their ranker scores, shape (n,).
        entropy: Their split entropies, shape (n,).
        n_questions: Q.

    Returns:
        (chosen ids (min(n, Q),), float32 flags (min(n, Q),): 1 for a ranker pick).
    """
    Q = n_questions
    if ids.size <= Q:
        order = np.lexsort((ids, -scores))
        return ids[order], np.ones(ids.size, dtype=np.float32)
    n_rank = (Q + 1) // 2
    by_score = top_positions(ids, scores, n_rank)
    rest = entropy.copy()
    rest[by_score] = -np.inf
    by_entropy = top_positions(ids, rest, Q - n_rank)
    chosen = np.concatenate([by_score, by_entropy])
    flags = np.concatenate([np.ones(n_rank), np.zeros(Q - n_rank)]).astype(np.float32)
    return ids[chosen], flags


def weighted_shares(cands: RankedCandidates) -> np.ndarray:
    """Each aspect's score-weighted share of the candidates (Σ weights of those holding it), float64 (A,)."""
    return np.bincount(cands.asp, weights=cands.weights[cands.pos], minlength=cands.counts.size)


def aspect_questions(
    ranker: PreferenceRanker, facts: DialogueFacts, cands: RankedCandidates, n_questions: int
) -> QuestionSlots:
    """Question slots over the reachable aspects (`pick_questions` of their scores and entropies)."""
    feats = np.zeros((n_questions, len(QUESTION_FEATURES)), dtype=np.float32)
    reachable = np.flatnonzero(cands.open_aspects)
    if reachable.size == 0:
        return QuestionSlots(reachable, feats)
    weighted = weighted_shares(cands)
    scores = np.asarray(ranker.aspect_scores(facts, reachable), dtype=np.float64)
    entropy = binary_entropy(weighted[reachable])
    chosen, is_pick = pick_questions(reachable, scores, entropy, n_questions)
    index = np.searchsorted(reachable, chosen)
    rows = feats[: chosen.size]
    counts = cands.counts[chosen]
    write(rows, "question_feats", "score_z", zscore(scores)[index])
    write(rows, "question_feats", "share_weighted", weighted[chosen])
    write(rows, "question_feats", "share", counts / cands.n)
    write(rows, "question_feats", "entropy_weighted", entropy[index])
    write(rows, "question_feats", "ranker_pick", is_pick)
    write(rows, "question_feats", "log_count", np.log1p(counts) / np.log1p(cands.n))
    return QuestionSlots(chosen, feats)


def category_scores(
    ranker: PreferenceRanker,
    facts: DialogueFacts,
    members: np.ndarray,
    reachable: np.ndarray,
    categories: np.ndarray,
) -> np.ndarray:
    """Each category's score: its best reachable member aspect's (the lowest finite one when it has none).

    Args:
        ranker: The ranker.
        facts: The dialogue facts.
        members: Aspect-category membership, bool (A, C).
        reachable: Reachable aspect ids, int64 (n_r,), n_r >= 1.
        categories: The categories scored, int64 (n_cat,).

    Returns:
        float64 (n_cat,).
    """
    aspect_scores = np.full(members.shape[0], -np.inf)
    aspect_scores[reachable] = ranker.aspect_scores(facts, reachable)
    scores: np.ndarray = np.where(members[:, categories], aspect_scores[:, None], -np.inf).max(axis=0)
    scores[~np.isfinite(scores)] = np.nanmin(np.where(np.isfinite(scores), scores, np.nan))
    return scores


def category_questions(
    ranker: PreferenceRanker,
    facts: DialogueFacts,
    cands: RankedCandidates,
    index: CategoryIndex,
    asked_categories: np.ndarray,
    n_questions: int,
) -> QuestionSlots:
    """Question slots over first-layer categories with a reachable aspect, not yet asked (enumerated envs).

    Args:
        ranker: The ranker.
        facts: The dialogue facts.
        cands: The turn's ranked candidates.
        index: The catalogue's `CategoryIndex`.
        asked_categories: Categories already asked, bool (C,).
        n_questions: Q.
    """
    feats = np.zeros((n_questions, len(QUESTION_FEATURES)), dtype=np.float32)
    reachable = np.flatnonzero(cands.open_aspects)
    if reachable.size == 0:
        return QuestionSlots(reachable, feats)
    categories = np.flatnonzero(index.members[reachable].any(axis=0) & ~asked_categories)
    if categories.size == 0:
        return QuestionSlots(categories, feats)
    held = index.held(cands.ids, categories)  # (n_c, n_cat)
    share_w = cands.weights @ held
    scores = category_scores(ranker, facts, index.members, reachable, categories)
    entropy = binary_entropy(share_w)
    chosen, is_pick = pick_questions(categories, scores, entropy, n_questions)
    at = np.searchsorted(categories, chosen)
    rows = feats[: chosen.size]
    write(rows, "question_feats", "score_z", zscore(scores)[at])
    write(rows, "question_feats", "share_weighted", share_w[at])
    write(rows, "question_feats", "share", held.mean(axis=0)[at])
    write(rows, "question_feats", "entropy_weighted", entropy[at])
    write(rows, "question_feats", "ranker_pick", is_pick)
    write(rows, "question_feats", "log_count", np.log1p(held.sum(axis=0)[at]) / np.log1p(held.shape[0]))
    return QuestionSlots(chosen, feats)


# ---------------------------------------------------------------------------------------------- probes
@dataclass(frozen=True)
class ProbeSlots:
    """The persona probe slots of one turn.

    Attributes:
        aspects: The aspects each persona's probe lists, int64 (<= M,) each (empty: no probe); P arrays.
        padded: The same, padded with -1, float32 (P, M).
        feats: `PROBE_FEATURES` of each probe (zero row for an empty one), float32 (P, 4).
    """

    aspects: list[np.ndarray]
    padded: np.ndarray
    feats: np.ndarray


PROBE_POOL = 16
"""A probe chooses among this many reachable aspects: those the ranker's favoured candidates hold most."""


def probe_slots(
    ranker: PersonaAwareRanker | None,
    facts: DialogueFacts,
    cands: RankedCandidates,
    n_probes: int,
    probe_size: int,
    types: QuestionTypes | None = None,
) -> ProbeSlots:
    """One probe per persona: up to M of its signature aspects among the plausible reachable ones.

    The pool is the `PROBE_POOL` reachable aspects with the largest score-weighted share of the
    candidates (the aspects a question could sensibly ask); each persona lists its most distinctive
    aspects of that pool. A persona's rarest signature aspects are mostly rejected: on MCMIPL LastFM*,
    18% of such probes had a value accepted against 65% of the question slots (with the pool of 16:
    54%; persona world: 45%, against 39% without the pool). With `types` (typed multiple-choice envs) a
    probe lists values of one question type, as an ask does: the type of the persona's most distinctive
    pool aspect.

    Args:
        ranker: The persona ranker (read only when ``n_probes > 0``).
        facts: The dialogue facts.
        cands: The turn's ranked candidates.
        n_probes: P (0: no probes).
        probe_size: M.
        types: The env's question types (None: a probe may list aspects of several types).
    """
    P, M = n_probes, probe_size
    padded = np.full((P, M), -1.0, dtype=np.float32)
    feats = np.zeros((P, len(PROBE_FEATURES)), dtype=np.float32)
    listed_aspects: list[np.ndarray] = []
    if P == 0 or ranker is None:
        return ProbeSlots(listed_aspects, padded, feats)
    reachable = np.flatnonzero(cands.open_aspects)
    weighted = weighted_shares(cands)
    pool = top_positions(reachable, weighted[reachable], PROBE_POOL)
    pool = np.sort(reachable[pool])
    posterior = np.asarray(ranker.persona_posterior(facts), dtype=np.float64)
    for k in range(P):
        ranked = np.asarray(ranker.signature_aspects(facts.user, k, pool.size, among=pool), dtype=np.int64)
        if types is not None and ranked.size:
            ranked = ranked[types.of_aspect[ranked] == types.of_aspect[ranked[0]]]
        aspects = ranked[:M]
        listed_aspects.append(aspects)
        padded[k, : aspects.size] = aspects
        if aspects.size == 0:
            continue
        listed = np.zeros(cands.open_aspects.size, dtype=np.bool_)
        listed[aspects] = True
        has_any = np.bincount(cands.pos[listed[cands.asp]], minlength=cands.n) > 0  # (n_c,)
        write(feats[k], "probe_feats", "posterior", posterior[k])
        write(feats[k], "probe_feats", "share_weighted", cands.weights[has_any].sum())
        write(feats[k], "probe_feats", "share", has_any.mean())
        write(feats[k], "probe_feats", "n_aspects", aspects.size / M)
    return ProbeSlots(listed_aspects, padded, feats)


# ----------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class ItemSlots:
    """The item slots of one turn and their edges in the local graph.

    Attributes:
        feats: `ITEM_FEATURES` of each slot, zero rows past n_top, float32 (N, 5).
        question: question[r, j] = slot r's item holds question j's aspect (or an aspect of its
            category), float32 (N, Q).
        rejected: rejected[r, j] = slot r's item holds the j-th kept rejected aspect, float32 (N, F).
    """

    feats: np.ndarray
    question: np.ndarray
    rejected: np.ndarray


def question_edges(
    cands: RankedCandidates, questions: np.ndarray, categories: CategoryIndex | None, shape: tuple[int, int]
) -> np.ndarray:
    """edges[r, j] = item slot r holds question slot j's aspect (or an aspect of its category).

    Args:
        cands: The turn's ranked candidates.
        questions: The question slot ids, int64 (<= Q,).
        categories: The `CategoryIndex` when questions are categories, else None.
        shape: (N, Q).

    Returns:
        float32 of shape (N, Q), zero past n_top rows and past ``questions.size`` columns.
    """
    edges = np.zeros(shape, dtype=np.float32)
    if questions.size == 0:
        return edges
    n_top = cands.items.size
    if categories is not None:
        held = categories.held(cands.items, questions)
    else:
        held = membership(cands.top_pos, cands.top_asp, questions, n_top, cands.open_aspects.size)
    edges[:n_top, : questions.size] = held
    return edges


def item_slots(
    cands: RankedCandidates,
    questions: np.ndarray,
    rejected_ids: np.ndarray,
    categories: CategoryIndex | None,
    sizes: tuple[int, int, int],
) -> ItemSlots:
    """Features of the item slots and their edges to the question slots and to the rejected aspects.

    Args:
        cands: The turn's ranked candidates.
        questions: The question slot ids, int64 (<= Q,).
        rejected_ids: The kept (latest) rejected aspects, int64 (<= F,).
        categories: The `CategoryIndex` when questions are categories, else None.
        sizes: (N, Q, F).
    """
    N, Q, F = sizes
    n_top = cands.items.size
    rejected = np.zeros((N, F), dtype=np.float32)
    if rejected_ids.size:
        held = membership(cands.top_pos, cands.top_asp, rejected_ids, n_top, cands.open_aspects.size)
        rejected[:n_top, : rejected_ids.size] = held
    feats = np.zeros((N, len(ITEM_FEATURES)), dtype=np.float32)
    prob = cands.weights[cands.top]  # (n_top,)
    rows = feats[:n_top]
    write(rows, "item_feats", "score_z", cands.z[cands.top])
    write(rows, "item_feats", "rank", np.arange(n_top) / N)
    write(rows, "item_feats", "prob", prob)
    write(rows, "item_feats", "rejected_aspects", rejected[:n_top].sum(axis=1) / REJECTED_ASPECTS_SCALE)
    write(rows, "item_feats", "cum_prob", np.cumsum(prob))
    return ItemSlots(feats, question_edges(cands, questions, categories, (N, Q)), rejected)


# ----------------------------------------------------------------------------------------------- facts
def global_features(
    state: DialogueState, facts: DialogueFacts, cands: RankedCandidates, max_turns: int, slate_size: int
) -> np.ndarray:
    """`GLOBAL_FEATURES` of the dialogue so far, float32 (14,).

    Args:
        state: The env's dialogue state.
        facts: Its facts.
        cands: The turn's ranked candidates.
        max_turns: T, the env's turn limit.
        slate_size: k, the env's slate size.
    """
    g = np.zeros(len(GLOBAL_FEATURES), dtype=np.float32)
    T, n_c = max_turns, cands.n
    prob = cands.weights[cands.top]
    weights = cands.weights
    write(g, "global", "turn", state.turn / T)
    write(g, "global", "turns_left", (T - state.turn) / T)
    write(g, "global", "log_candidates", np.log1p(n_c) / np.log1p(state.catalog.n_items))
    write(g, "global", "few_candidates", float(n_c <= slate_size))
    write(g, "global", ANSWER_FEATURES[int(state.last_answer)], 1.0)
    write(g, "global", "n_accepted", facts.accepted.size / FACT_COUNT_SCALE)
    write(g, "global", "n_rejected", facts.rejected.size / FACT_COUNT_SCALE)
    write(g, "global", "n_rejected_items", facts.rejected_items.size / (slate_size * T))
    write(g, "global", "topk_mass", prob[:slate_size].sum())
    write(g, "global", "top1_prob", prob[0])
    write(g, "global", "score_entropy", -(weights * np.log(weights + 1e-12)).sum() / np.log(max(n_c, 2)))
    return g
