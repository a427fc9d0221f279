"""`SlateActionWrapper`: adapts `ConversationEnv` to Stable-Baselines3 / sb3-contrib MaskablePPO.

SB3 needs flat spaces: a ``MultiDiscrete`` action and a ``Dict`` of ``Box`` observations. The wrapper
builds, every turn, a small set of *candidate actions* from a fixed preference ranker (injected by the
caller; never updated here) and a padded local dialogue graph around them:

- question slots: the ranker's best reachable aspects (half the slots) completed by the aspects that
  split the score-weighted candidates most evenly; in envs with enumerated questions (Yelp*) the
  slots hold first-layer categories instead;
- persona slots: one probe per persona of the user (only with a ranker that offers
  ``signature_aspects`` and an env that asks multiple-choice questions); a probe lists up to
  ``probe_size`` of that persona's signature aspects among the reachable ones;
- one "recommend" choice; its slate is chosen by the policy among the ranker's top
  ``n_items`` candidate items.

## Action Space
``MultiDiscrete([n_choices] + [n_items] * slate_size)`` = [choice, slot_1 .. slot_k]. Choices are
ordered: question slots ``[0, n_questions)``, persona slots ``[n_questions, n_questions + n_probes)``,
recommend ``n_choices - 1``. The item slots index the candidate items of the observation; they are
read only when the choice is "recommend" (masked or repeated slots are dropped from the slate).

## Observation Space
A ``Dict`` of float32 ``Box`` arrays (ids travel as float32 and are cast back by the policy; padding
is -1). Q = n_questions, P = n_probes, M = probe_size, N = n_items, F = max_facts:

- ``choice_mask`` (Q+P+1,), ``item_mask`` (N,): the action mask, also returned by `action_masks`;
- ``user`` (1,); ``question_ids`` (Q,); ``probe_aspects`` (P, M) (only when P > 0); ``item_ids`` (N,);
  ``accepted_ids`` / ``rejected_ids`` (F,): the latest accepted / rejected aspects;
- ``question_feats`` (Q, 6), ``probe_feats`` (P, 4) (when P > 0), ``item_feats`` (N, 5), ``global`` (14,):
  hand features (see `QUESTION_FEATURES`, `PROBE_FEATURES`, `ITEM_FEATURES`, `GLOBAL_FEATURES`);
- ``item_question`` (N, Q), ``item_rejected`` (N, F): the local graph's item–aspect edges.

`action_masks()` returns ``choice_mask`` followed by ``item_mask`` repeated ``slate_size`` times
(sb3-contrib expects sum(nvec) entries). At least one choice is always valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import ask, probe, recommend
from envs.env import ConversationEnv
from envs.ranker import DialogueFacts, PreferenceRanker
from simulators.catalog import compressed_entries
from simulators.errors import CRSError

QUESTION_FEATURES = ("score_z", "share_weighted", "share", "entropy_weighted", "ranker_pick", "log_count")
PROBE_FEATURES = ("posterior", "share_weighted", "share", "n_aspects")
ITEM_FEATURES = ("score_z", "rank", "prob", "rejected_aspects", "cum_prob")
GLOBAL_FEATURES = (
    "turn",
    "turns_left",
    "log_candidates",
    "few_candidates",
    "answer_none",
    "answer_accepted",
    "answer_rejected",
    "answer_slate_rejected",
    "n_accepted",
    "n_rejected",
    "n_rejected_items",
    "topk_mass",
    "top1_prob",
    "score_entropy",
)
# hand features computed from the ranker's scores or posterior (zeroed without ranker features)
RANKER_DERIVED = {
    "question_feats": ("score_z", "share_weighted", "entropy_weighted", "ranker_pick"),
    "probe_feats": ("posterior", "share_weighted"),
    "item_feats": ("score_z", "rank", "prob", "cum_prob"),
    "global": ("topk_mass", "top1_prob", "score_entropy"),
}
FEATURE_NAMES = {
    "question_feats": QUESTION_FEATURES,
    "probe_feats": PROBE_FEATURES,
    "item_feats": ITEM_FEATURES,
    "global": GLOBAL_FEATURES,
}


class WrapperError(CRSError):
    """The SB3 wrapper was configured inconsistently with its env or ranker."""


@dataclass(frozen=True)
class WrapperConfig:
    """Sizes of the candidate action set and of the padded local graph.

    Attributes:
        n_questions: Question slots (aspects, or categories in enumerated envs).
        n_items: Candidate items the slate is chosen from (>= the env's slate size).
        probe_size: Aspects a probe lists (capped by the env's max_choices).
        max_facts: Accepted / rejected aspects kept in the observation (the latest ones).
        probes: Offer persona probes when the ranker and env allow them.
        ranker_features: Show the policy the hand features computed from the ranker's scores and
            persona posterior (`RANKER_DERIVED`). False zeroes them: the ranker still proposes the
            candidates, but only the policy's own encoder can tell them apart (ablations).
    """

    n_questions: int = 10
    n_items: int = 20
    probe_size: int = 3
    max_facts: int = 16
    probes: bool = True
    ranker_features: bool = True


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def _zscore(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    std = x.std()
    return (x - x.mean()) / (std if std > 1e-9 else 1.0)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def _membership(
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


def _top(ids: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n best scores, best first, ties broken by lower id (exact at the cut too)."""
    if ids.size > n:
        kth = np.partition(scores, ids.size - n)[ids.size - n]
        keep = np.flatnonzero(scores >= kth)
    else:
        keep = np.arange(ids.size)
    return keep[np.lexsort((ids[keep], -scores[keep]))][:n]


def _pad(values: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, -1.0, dtype=np.float32)
    n = min(size, values.size)
    out[:n] = values[:n]
    return out


class SlateActionWrapper(gym.Wrapper):
    """A `ConversationEnv` seen by SB3: flat MultiDiscrete actions, flat Dict-of-Box observations.

    Args:
        env: The conversation env (a `ConversationEnv`, possibly inside Gymnasium wrappers).
        ranker: A fixed `PreferenceRanker`. If it also has ``signature_aspects(user, k, m, among)``,
            ``persona_posterior(facts)`` and ``personas_per_user``, persona probes are offered.
        config: Slot counts (`WrapperConfig`).

    Raises:
        WrapperError: ``n_items`` is smaller than the env's slate size, or a size is not positive.
    """

    def __init__(self, env: gym.Env, ranker: PreferenceRanker, config: WrapperConfig | None = None) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, ConversationEnv):
            raise WrapperError(f"SlateActionWrapper needs a ConversationEnv, got {type(base).__name__}")
        cfg = config or WrapperConfig()
        if cfg.n_questions < 1 or cfg.max_facts < 1 or cfg.probe_size < 1:
            raise WrapperError(f"WrapperConfig sizes must be >= 1, got {cfg}")
        if cfg.n_items < base.slate_size:
            raise WrapperError(
                f"WrapperConfig.n_items={cfg.n_items} < slate size {base.slate_size}: the slate is chosen "
                f"among the candidate items, so use n_items >= {base.slate_size}"
            )
        self.base: ConversationEnv = base
        self.ranker = ranker
        self.config = cfg
        self.slate_size = base.slate_size
        has_personas = all(
            hasattr(ranker, name) for name in ("signature_aspects", "persona_posterior", "personas_per_user")
        )
        probes_allowed = cfg.probes and has_personas and base.question_mode == "multiple_choice"
        self.n_probes = int(ranker.personas_per_user) if probes_allowed else 0  # type: ignore[attr-defined]
        self.n_probes = min(self.n_probes, base.n_personas)
        self.probe_size = min(cfg.probe_size, base.max_choices)
        self.n_questions = cfg.n_questions
        self.n_items = cfg.n_items
        self.n_choices = self.n_questions + self.n_probes + 1
        self.recommend_choice = self.n_choices - 1
        self.action_space = spaces.MultiDiscrete([self.n_choices] + [self.n_items] * self.slate_size)
        Q, P, M, N, F = self.n_questions, self.n_probes, self.probe_size, self.n_items, cfg.max_facts
        catalog = base.catalog
        top_id = float(max(catalog.n_items, catalog.n_aspects, base.n_categories, catalog.n_users))

        def box(shape: tuple[int, ...], low: float = -np.inf, high: float = np.inf) -> spaces.Box:
            return spaces.Box(low, high, shape=shape, dtype=np.float32)

        self.observation_space = spaces.Dict(
            {
                "choice_mask": box((self.n_choices,), 0.0, 1.0),
                "item_mask": box((N,), 0.0, 1.0),
                "user": box((1,), 0.0, top_id),
                "question_ids": box((Q,), -1.0, top_id),
                "question_feats": box((Q, len(QUESTION_FEATURES))),
                "item_ids": box((N,), -1.0, top_id),
                "item_feats": box((N, len(ITEM_FEATURES))),
                "accepted_ids": box((F,), -1.0, top_id),
                "rejected_ids": box((F,), -1.0, top_id),
                "item_question": box((N, Q), 0.0, 1.0),
                "item_rejected": box((N, F), 0.0, 1.0),
                "global": box((len(GLOBAL_FEATURES),)),
            }
        )
        if P:
            self.observation_space["probe_aspects"] = box((P, M), -1.0, top_id)
            self.observation_space["probe_feats"] = box((P, len(PROBE_FEATURES)))
        if base.enumerated:
            taxonomy = catalog.taxonomy
            assert taxonomy is not None
            members = taxonomy.members.T.tocsr().astype(np.float64)  # (n_aspects, n_parents)
            self._members = members.toarray().astype(np.bool_)
            # item -> categories it has an aspect of, CSR (n_items, n_parents)
            self._item_categories = (catalog.item_aspects.astype(np.float64) @ members).tocsr()
            self._item_categories.sort_indices()
        self._hidden_columns = (
            {}
            if cfg.ranker_features
            else {
                key: [FEATURE_NAMES[key].index(name) for name in names]
                for key, names in RANKER_DERIVED.items()
            }
        )
        self._obs: dict[str, np.ndarray] = {}
        self._questions = np.zeros(0, dtype=np.int64)
        self._probes: list[np.ndarray] = []
        self._items = np.zeros(0, dtype=np.int64)

    # ----------------------------------------------------------------------------------------- API
    @property
    def sizes(self) -> dict[str, int]:
        """The catalogue and slot sizes a policy network needs (readable across processes)."""
        catalog = self.base.catalog
        return {
            "n_users": catalog.n_users,
            "n_items": catalog.n_items,
            "n_aspects": catalog.n_aspects,
            "n_categories": self.base.n_categories,
            "n_probes": self.n_probes,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        return self.observe(), info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Carry out a [choice, slot_1..slot_k] action (see the module docstring).

        A conversation that reaches the turn limit has ended for good (the user quits), so it is
        reported as ``terminated`` (no value bootstrapping past it), with ``info["turn_limit"]`` True
        (False on every other step: one type per info key).
        """
        _, reward, terminated, truncated, info = self.env.step(self.to_env_action(action))
        info["turn_limit"] = bool(truncated)
        if terminated or truncated:
            return self._final_observation(), reward, True, False, info
        return self.observe(), reward, False, False, info

    def action_masks(self) -> np.ndarray:
        """Choice mask then the item mask repeated slate_size times; bool, shape (sum(nvec),)."""
        choice = self._obs["choice_mask"] > 0.5
        items = self._obs["item_mask"] > 0.5
        return np.concatenate([choice, np.tile(items, self.slate_size)])

    def to_env_action(self, action: np.ndarray) -> dict[str, Any]:
        """The env's action dict for a [choice, slot_1..slot_k] action of the current turn."""
        action = np.asarray(action, dtype=np.int64).reshape(-1)
        choice = int(action[0])
        if not 0 <= choice < self.n_choices:
            raise WrapperError(f"choice {choice} outside [0, {self.n_choices})")
        if choice < self.n_questions and choice < self._questions.size:
            return ask(int(self._questions[choice]))
        if self.n_questions <= choice < self.recommend_choice:
            persona = choice - self.n_questions
            if persona < len(self._probes) and self._probes[persona].size:
                return probe(persona, self._probes[persona])
        slots = action[1:]
        valid = slots[(slots >= 0) & (slots < self._items.size)]
        slate = self._items[valid]
        if slate.size == 0:
            slate = self._items[: self.slate_size]
        return recommend(slate)

    @property
    def candidate_items(self) -> np.ndarray:
        """The current candidate item ids (what item slots index), shape (<= n_items,)."""
        return self._items

    @property
    def question_ids(self) -> np.ndarray:
        """The current question slot ids (aspects, or categories when enumerated)."""
        return self._questions

    # ------------------------------------------------------------------------------------ internals
    def _final_observation(self) -> dict[str, np.ndarray]:
        obs = {key: np.zeros(space.shape, dtype=np.float32) for key, space in self.observation_space.items()}
        for key in ("question_ids", "probe_aspects", "item_ids", "accepted_ids", "rejected_ids"):
            if key in obs:
                obs[key][...] = -1.0
        obs["choice_mask"][self.recommend_choice] = 1.0
        obs["item_mask"][0] = 1.0
        obs["user"][0] = float(self.base.state.user)
        self._obs = obs
        self._questions = np.zeros(0, dtype=np.int64)
        self._probes = []
        return obs

    def observe(self) -> dict[str, np.ndarray]:
        """The observation of the env's current state (also sets the action mask and the slots)."""
        base, cfg = self.base, self.config
        state = base.state
        catalog = base.catalog
        facts = state.facts()
        Q, N, F = self.n_questions, self.n_items, cfg.max_facts
        candidates = state.candidate_items()
        n_c = candidates.size
        if n_c == 0:
            return self._final_observation()

        # items: ranker scores over every candidate, the top N become the item slots
        scores = np.asarray(self.ranker.item_scores(facts, candidates), dtype=np.float64)
        z = _zscore(scores)
        weights = _softmax(z)
        n_top = min(N, n_c)
        top = _top(candidates, scores, n_top)
        items = candidates[top]
        self._items = items
        ia = catalog.item_aspects
        A = catalog.n_aspects
        # (candidate position, aspect) pairs of the candidates and of the top items
        c_pos, c_asp = compressed_entries(ia, candidates)
        t_pos, t_asp = compressed_entries(ia, items)

        # questions: reachable aspects (or categories), half by ranker score, half by entropy
        counts = np.bincount(c_asp, minlength=A).astype(np.float64)
        weighted = np.bincount(c_asp, weights=weights[c_pos], minlength=A)  # (A,)
        open_aspects = (counts > 0) & ~state.accepted & ~state.rejected
        if base.enumerated:
            questions, q_feats = self._category_slots(facts, candidates, weights, open_aspects)
        else:
            questions, q_feats = self._aspect_slots(facts, counts, weighted, open_aspects, n_c)
        self._questions = questions

        # probes: each persona's signature aspects among the reachable ones
        P, M = self.n_probes, self.probe_size
        probe_aspects = np.full((P, M), -1.0, dtype=np.float32)
        p_feats = np.zeros((P, len(PROBE_FEATURES)), dtype=np.float32)
        self._probes = []
        if P:
            reachable = np.flatnonzero(open_aspects)
            posterior = np.asarray(self.ranker.persona_posterior(facts), dtype=np.float64)  # type: ignore[attr-defined]
            for k in range(P):
                aspects = np.asarray(
                    self.ranker.signature_aspects(facts.user, k, M, among=reachable),  # type: ignore[attr-defined]
                    dtype=np.int64,
                )
                self._probes.append(aspects)
                probe_aspects[k, : aspects.size] = aspects
                if aspects.size:
                    listed = np.zeros(A, dtype=np.bool_)
                    listed[aspects] = True
                    has_any = np.bincount(c_pos[listed[c_asp]], minlength=n_c) > 0
                    p_feats[k] = (posterior[k], weights[has_any].sum(), has_any.mean(), aspects.size / M)

        # item features and the local graph's item-aspect edges
        order_prob = weights[top]
        i_feats = np.zeros((N, len(ITEM_FEATURES)), dtype=np.float32)
        rejected_ids = facts.rejected[-F:]
        item_rejected = np.zeros((N, F), dtype=np.float32)
        if rejected_ids.size:
            held_rejected = _membership(t_pos, t_asp, rejected_ids, n_top, A)
            item_rejected[:n_top, : rejected_ids.size] = held_rejected
        i_feats[:n_top, 0] = z[top]
        i_feats[:n_top, 1] = np.arange(n_top) / N
        i_feats[:n_top, 2] = order_prob
        i_feats[:n_top, 3] = item_rejected[:n_top].sum(axis=1) / 4.0
        i_feats[:n_top, 4] = np.cumsum(order_prob)
        item_question = np.zeros((N, Q), dtype=np.float32)
        if questions.size:
            if base.enumerated:
                held = self._categories_held(items, questions)
            else:
                held = _membership(t_pos, t_asp, questions, n_top, A)
            item_question[:n_top, : questions.size] = held

        # masks: questions present, probes with aspects, recommend always (items exist)
        choice_mask = np.zeros(self.n_choices, dtype=np.float32)
        choice_mask[: questions.size] = 1.0
        for k, aspects in enumerate(self._probes):
            choice_mask[Q + k] = float(aspects.size > 0)
        choice_mask[self.recommend_choice] = 1.0
        item_mask = np.zeros(N, dtype=np.float32)
        item_mask[:n_top] = 1.0

        g = np.zeros(len(GLOBAL_FEATURES), dtype=np.float32)
        T = base.max_turns
        g[0] = state.turn / T
        g[1] = (T - state.turn) / T
        g[2] = np.log1p(n_c) / np.log1p(catalog.n_items)
        g[3] = float(n_c <= self.slate_size)
        g[4 + int(state.last_answer)] = 1.0
        g[8] = facts.accepted.size / 8.0
        g[9] = facts.rejected.size / 8.0
        g[10] = facts.rejected_items.size / (self.slate_size * T)
        g[11] = order_prob[: self.slate_size].sum()
        g[12] = order_prob[0]
        g[13] = -(weights * np.log(weights + 1e-12)).sum() / np.log(max(n_c, 2))

        obs: dict[str, np.ndarray] = {
            "choice_mask": choice_mask,
            "item_mask": item_mask,
            "user": np.array([facts.user], dtype=np.float32),
            "question_ids": _pad(questions, Q),
            "question_feats": q_feats,
            "item_ids": _pad(items, N),
            "item_feats": i_feats,
            "accepted_ids": _pad(facts.accepted[-F:], F),
            "rejected_ids": _pad(rejected_ids, F),
            "item_question": item_question,
            "item_rejected": item_rejected,
            "global": g,
        }
        if P:
            obs["probe_aspects"] = probe_aspects
            obs["probe_feats"] = p_feats
        for key, columns in self._hidden_columns.items():
            if key in obs:
                obs[key][..., columns] = 0.0
        self._obs = obs
        return obs

    def _aspect_slots(
        self,
        facts: DialogueFacts,
        counts: np.ndarray,
        weighted: np.ndarray,
        open_aspects: np.ndarray,
        n_candidates: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Question slots over aspects: (ids (<= Q,), features (Q, 6))."""
        Q = self.n_questions
        reachable = np.flatnonzero(open_aspects)
        feats = np.zeros((Q, len(QUESTION_FEATURES)), dtype=np.float32)
        if reachable.size == 0:
            return reachable, feats
        scores = np.asarray(self.ranker.aspect_scores(facts, reachable), dtype=np.float64)
        entropy = _binary_entropy(weighted[reachable])
        chosen, is_pick = self._pick(reachable, scores, entropy)
        index = np.searchsorted(reachable, chosen)
        n = chosen.size
        feats[:n, 0] = _zscore(scores)[index]
        feats[:n, 1] = weighted[chosen]
        feats[:n, 2] = counts[chosen] / n_candidates
        feats[:n, 3] = entropy[index]
        feats[:n, 4] = is_pick
        feats[:n, 5] = np.log1p(counts[chosen]) / np.log1p(n_candidates)
        return chosen, feats

    def _categories_held(self, items: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """held[r, j] = item items[r] has an aspect of category categories[j]; bool, (n, len(categories))."""
        position, category = compressed_entries(self._item_categories, items)
        return _membership(position, category, categories, items.size, self._members.shape[1]) > 0

    def _category_slots(
        self,
        facts: DialogueFacts,
        candidates: np.ndarray,
        weights: np.ndarray,
        open_aspects: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Question slots over first-layer categories (enumerated envs): (ids, features (Q, 6)).

        Args:
            facts: The dialogue facts.
            candidates: Candidate item ids, shape (n_c,).
            weights: The candidates' ranker softmax weights, shape (n_c,).
            open_aspects: Reachable, unanswered aspects, bool, shape (A,).
        """
        Q = self.n_questions
        state = self.base.state
        feats = np.zeros((Q, len(QUESTION_FEATURES)), dtype=np.float32)
        reachable = np.flatnonzero(open_aspects)
        if reachable.size == 0:
            return reachable, feats
        members = self._members
        categories = np.flatnonzero(members[reachable].any(axis=0) & ~state.asked_categories)
        if categories.size == 0:
            return categories, feats
        held = self._categories_held(candidates, categories)  # (n_c, C)
        share_w = weights @ held
        share = held.mean(axis=0)
        aspect_scores = np.full(members.shape[0], -np.inf)
        aspect_scores[reachable] = self.ranker.aspect_scores(facts, reachable)
        # a category's score: its best member aspect's (-inf when none is reachable)
        cat_scores = np.where(members[:, categories], aspect_scores[:, None], -np.inf).max(axis=0)
        cat_scores[~np.isfinite(cat_scores)] = np.nanmin(
            np.where(np.isfinite(cat_scores), cat_scores, np.nan)
        )
        entropy = _binary_entropy(share_w)
        chosen, is_pick = self._pick(categories, cat_scores, entropy)
        index = np.searchsorted(categories, chosen)
        n = chosen.size
        feats[:n, 0] = _zscore(cat_scores)[index]
        feats[:n, 1] = share_w[index]
        feats[:n, 2] = share[index]
        feats[:n, 3] = entropy[index]
        feats[:n, 4] = is_pick
        feats[:n, 5] = np.log1p(held.sum(axis=0)[index]) / np.log1p(held.shape[0])
        return chosen, feats

    def _pick(
        self, ids: np.ndarray, scores: np.ndarray, entropy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Half the slots by ranker score, the rest by entropy; returns (ids, 1 for ranker picks)."""
        Q = self.n_questions
        if ids.size <= Q:
            order = np.lexsort((ids, -scores))
            return ids[order], np.ones(ids.size, dtype=np.float32)
        n_rank = (Q + 1) // 2
        by_score = _top(ids, scores, n_rank)
        rest = entropy.copy()
        rest[by_score] = -np.inf
        by_entropy = _top(ids, rest, Q - n_rank)
        chosen = np.concatenate([by_score, by_entropy])
        flags = np.concatenate([np.ones(n_rank), np.zeros(Q - n_rank)]).astype(np.float32)
        return ids[chosen], flags
