"""`SlateActionWrapper`: adapts `ConversationEnv` to Stable-Baselines3 / sb3-contrib MaskablePPO.

SB3 needs flat spaces: a ``MultiDiscrete`` action and a ``Dict`` of ``Box`` observations. The wrapper
builds, every turn, a small set of *candidate actions* from a fixed preference ranker (injected by the
caller; never updated here) and a padded local dialogue graph around them:

- question slots: the ranker's best reachable aspects (half the slots) completed by the aspects that
  split the score-weighted candidates most evenly; in envs with enumerated questions (Yelp*) the
  slots hold first-layer categories instead; in envs with typed multiple-choice questions (MCMIPL's
  protocol) a slot's question lists its aspect and the ranker's next best reachable values of the same
  type, up to the env's ``max_choices`` (`envs.question_types.typed_question`, as the rule baselines);
- persona slots: one probe per persona of the user (only with a `PersonaAwareRanker` and an env
  that asks multiple-choice questions); a probe lists up to
  ``probe_size`` of that persona's signature aspects among the reachable aspects of largest weighted
  share, of one question type in typed envs (`envs.sb3_slots.probe_slots`);
- one "recommend" choice; its slate is chosen by the policy among the ranker's top
  ``n_items`` candidate items.

## Action Space
``MultiDiscrete([n_choices] + [n_items] * slate_size)`` = [choice, slot_1 .. slot_k]. Choices are
ordered: question slots ``[0, n_questions)``, persona slots ``[n_questions, n_questions + n_probes)``,
recommend ``n_choices - 1``. The item slots index the candidate items of the observation; they are
read only when the choice is "recommend" (masked or repeated slots are dropped from the slate).
An action must be ``1 + slate_size`` whole numbers whose choice is valid in `action_masks`; anything
else raises `WrapperError` naming the value (never coerced, nothing carried out). A recommendation
with no valid item slot shows the first ``slate_size`` candidate items.

## Observation Space
A ``Dict`` of float32 ``Box`` arrays (ids travel as float32 and are cast back by the policy; padding
is -1). Q = n_questions, P = n_probes, M = probe_size, N = n_items, F = max_facts:

- ``choice_mask`` (Q+P+1,), ``item_mask`` (N,): the action mask, also returned by `action_masks`;
- ``user`` (1,); ``question_ids`` (Q,); ``probe_aspects`` (P, M) (only when P > 0); ``item_ids`` (N,);
  ``accepted_ids`` / ``rejected_ids`` (F,): the accepted / rejected aspects, the F highest ids when
  there are more (not the F latest answered: see `WrapperConfig.max_facts`);
- ``question_feats`` (Q, 6), ``probe_feats`` (P, 4) (when P > 0), ``item_feats`` (N, 5), ``global`` (14,):
  hand features (see `QUESTION_FEATURES`, `PROBE_FEATURES`, `ITEM_FEATURES`, `GLOBAL_FEATURES`), with
  ``plan_depth`` also `PLAN_FEATURES`: ``question_feats`` (Q, 8), ``global`` (15,);
- ``item_question`` (N, Q), ``item_rejected`` (N, F): the local graph's item–aspect edges.

`action_masks()` returns ``choice_mask`` followed by ``item_mask`` repeated ``slate_size`` times
(sb3-contrib expects sum(nvec) entries). At least one choice is always valid, and
``action_space.sample()`` draws within the current mask (`MaskedActionSpace`).

## Layout
This module holds the wrapper (spaces, actions, masks); `envs.sb3_slots` builds each turn's slots and
their feature blocks; `envs.sb3_features` names the features and their scales.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import ask, probe, recommend, show_value
from envs.answer_search import AnswerSearch, check_temperature
from envs.env import ConversationEnv
from envs.question_types import typed_question
from envs.ranker import DialogueFacts, PersonaAwareRanker, PreferenceRanker, ranker_misfit
from envs.sb3_features import (
    FEATURE_NAMES,
    GLOBAL_FEATURES,
    ITEM_FEATURES,
    PLAN_FEATURES,
    PROBE_FEATURES,
    QUESTION_FEATURES,
    RANKER_DERIVED,
    hide_ranker_derived,
)
from envs.sb3_slots import (
    CategoryIndex,
    QuestionSlots,
    RankedCandidates,
    aspect_questions,
    category_questions,
    global_features,
    item_slots,
    pad,
    probe_slots,
    rank_candidates,
)
from simulators.errors import CRSError
from simulators.field_types import check_field_types

__all__ = [
    "FEATURE_NAMES",
    "GLOBAL_FEATURES",
    "ITEM_FEATURES",
    "PLAN_FEATURES",
    "PROBE_FEATURES",
    "QUESTION_FEATURES",
    "RANKER_DERIVED",
    "MaskedActionSpace",
    "SlateActionWrapper",
    "WrapperConfig",
    "WrapperError",
]


class WrapperError(CRSError):
    """The SB3 wrapper was configured inconsistently with its env or ranker, or given an action outside
    its action space or its mask."""


@dataclass(frozen=True)
class WrapperConfig:
    """Sizes of the candidate action set and of the padded local graph.

    Attributes:
        n_questions: Question slots (aspects, or categories in enumerated envs).
        n_items: Candidate items the slate is chosen from (>= the env's slate size). The default, the
            slate size (10), is UNICORN's: the ranker's top 10 are shown and the policy orders them
            (20 until session 6: on the showcase world the policy then also had to learn which 10,
            and trained slower: valid SR@15 0.745 against 0.80 after 40k steps, BENCHMARKS.md).
        probe_size: Aspects a probe lists (capped by the env's max_choices).
        max_facts: Accepted / rejected aspects kept in the observation: the F highest aspect ids when
            a dialogue has more (ascending ids, not the F latest answered; trained policies learned
            with this rule, so keeping the latest would need retraining).
        probes: Offer persona probes when the ranker and env allow them.
        ranker_features: Show the policy the hand features computed from the ranker's scores and
            persona posterior (`RANKER_DERIVED`). False zeroes them: the ranker still proposes the
            candidates, but only the policy's own encoder can tell them apart (ablations).
        plan_depth: Show the policy the values of a depth-`plan_depth` search of the yes/no answers
            (`PLAN_FEATURES`, `envs.answer_search`; the binary setting only). None: no search. It costs
            a search per question slot per turn (about lookahead-DxQ's time).
        plan_temperature: The search's belief temperature (`envs.answer_search`; lookahead-DxQtT's T).
        max_slates_in_a_row: After this many rejected slates in a row, "recommend" is masked while a
            question or probe is available, so the next turn asks. None: no cap. `crs train` sets
            it to the training users' patience (`crs.app.settings.make_settings`): a policy trained
            on users who leave after that many failed slates never acted past it, and a person (or a
            user who never leaves) must not get slate after slate from an untrained state.
    """

    n_questions: int = 10
    n_items: int = 10
    probe_size: int = 3
    max_facts: int = 16
    probes: bool = True
    ranker_features: bool = True
    plan_depth: int | None = None
    plan_temperature: float = 1.0
    max_slates_in_a_row: int | None = None

    def __post_init__(self) -> None:
        optional = ("plan_depth", "max_slates_in_a_row")
        for name in ("n_questions", "n_items", "probe_size", "max_facts", *optional):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WrapperError(f"WrapperConfig.{name}={value!r} must be an integer >= 1")
        try:
            check_temperature(self.plan_temperature)
        except CRSError as error:
            raise WrapperError(f"WrapperConfig.plan_temperature: {error}") from None
        if self.plan_temperature != 1.0 and self.plan_depth is None:
            raise WrapperError(
                f"WrapperConfig.plan_temperature={self.plan_temperature} tempers the search that "
                "plan_depth asks for: set plan_depth too (e.g. 2)"
            )
        try:  # what the checks above leave: the switches
            check_field_types(self)
        except CRSError as error:
            raise WrapperError(str(error)) from None


def _already_wrapped(env: gym.Env) -> bool:
    """Whether a `SlateActionWrapper` is among `env`'s wrappers."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, SlateActionWrapper):
            return True
        env = env.env
    return False


class MaskedActionSpace(spaces.MultiDiscrete):
    """The wrapper's ``MultiDiscrete`` action space, whose plain `sample` draws a valid action of the
    current turn: each entry uniformly among those `masks` allows (the wrapper's `action_masks`), so
    Gymnasium's and SB3's env checkers and random agents step with actions the wrapper carries out.

    With an explicit `mask` or `probability`, before the first reset (`masks` returns None), and in a
    copy or unpickled space (the callable is not carried along) it samples as a plain
    ``MultiDiscrete``. Equality, bounds and `contains` are MultiDiscrete's. A Gymnasium vector env of
    wrappers batches it as a plain space, which samples without the masks (they differ per env): draw
    within each env's `action_masks` there.

    Args:
        nvec: Counts of the entries (as ``MultiDiscrete``).
        masks: Returns the current flat mask (``sum(nvec)`` bools), or None when there is none yet.
    """

    def __init__(self, nvec: list[int], masks: Callable[[], np.ndarray | None] | None = None) -> None:
        super().__init__(nvec, dtype=np.int64)
        self._masks = masks

    def sample(
        self, mask: tuple[np.ndarray, ...] | None = None, probability: tuple[np.ndarray, ...] | None = None
    ) -> np.ndarray:
        flat = self._masks() if self._masks is not None and mask is None and probability is None else None
        if flat is not None:
            bounds = np.cumsum(self.nvec)[:-1]
            mask = tuple(part.astype(np.int8) for part in np.split(np.asarray(flat, dtype=bool), bounds))
        return super().sample(mask=mask, probability=probability)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_masks"] = None  # a pickled or copied space samples plainly (the wrapper stays behind)
        return state


class SlateActionWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A `ConversationEnv` seen by SB3: flat MultiDiscrete actions, flat Dict-of-Box observations.

    Args:
        env: The conversation env (a `ConversationEnv`, possibly inside Gymnasium wrappers).
        ranker: A fixed `PreferenceRanker`. If it is also a `PersonaAwareRanker`
            (``signature_aspects(user, k, m, among)``, ``persona_posterior(facts)``,
            ``personas_per_user``), persona probes are offered.
        config: Slot counts (`WrapperConfig`).

    The wrapper records its arguments (`gymnasium.utils.RecordConstructorArgs`, the ranker by reference:
    it is fixed), so ``env.spec`` lists it and Gymnasium's ``check_env`` accepts it over a ``gym.make`` env.

    Raises:
        WrapperError: ``ranker`` scores no items or those of another catalogue (`ranker_misfit`), `env`
            is wrapped already, ``n_items`` is smaller than the env's slate size, or a
            size is not positive.
    """

    def __init__(self, env: gym.Env, ranker: PreferenceRanker, config: WrapperConfig | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, ranker=ranker, config=config, _disable_deepcopy=True)
        gym.Wrapper.__init__(self, env)
        base = env.unwrapped
        if not isinstance(base, ConversationEnv):
            raise WrapperError(f"SlateActionWrapper needs a ConversationEnv, got {type(base).__name__}")
        if _already_wrapped(env):
            raise WrapperError(
                "the env is a SlateActionWrapper already (or wraps one): wrap the ConversationEnv once, "
                "e.g. SlateActionWrapper(env.unwrapped, ranker)"
            )
        if not callable(getattr(ranker, "item_scores", None)):
            raise WrapperError(
                f"SlateActionWrapper's ranker must be a PreferenceRanker (it scores items with "
                f"item_scores), got {type(ranker).__name__} {ranker!r}: build one from its name, e.g. "
                "policies.rankers.build_ranker('popularity', env.unwrapped.catalog)"
            )
        misfit = ranker_misfit(ranker, base.catalog)
        if misfit:
            raise WrapperError(
                f"SlateActionWrapper's ranker {misfit}: build it from this env's catalogue, e.g. "
                "policies.rankers.build_ranker('popularity', env.unwrapped.catalog)"
            )
        cfg = config or WrapperConfig()
        if cfg.n_items < base.slate_size:
            raise WrapperError(
                f"WrapperConfig.n_items={cfg.n_items} < slate size {base.slate_size}: the slate is chosen "
                f"among the candidate items, so use n_items >= {base.slate_size}"
            )
        if cfg.plan_depth is not None and (base.setting != "binary" or base.candidate_rule != "all"):
            raise WrapperError(
                f"WrapperConfig.plan_depth={cfg.plan_depth} searches yes/no answers: it needs the binary "
                f"setting, not {base.setting!r}; set plan_depth to None (null) here"
            )
        if cfg.plan_depth is not None and not cfg.ranker_features:
            raise WrapperError(
                "WrapperConfig.plan_depth shows values computed from the ranker, which ranker_features="
                "False hides: set plan_depth to None (null) or ranker_features to True"
            )
        self.base: ConversationEnv = base
        self.ranker = ranker
        self.config = cfg
        self.slate_size = base.slate_size
        self._persona_ranker: PersonaAwareRanker | None = None
        if cfg.probes and isinstance(ranker, PersonaAwareRanker) and base.offers_probes:
            self._persona_ranker = ranker
        n_personas = 0 if self._persona_ranker is None else int(self._persona_ranker.personas_per_user)
        self.n_probes = min(n_personas, base.n_personas)
        self.probe_size = min(cfg.probe_size, base.max_choices)
        self.n_questions = cfg.n_questions
        self.n_items = cfg.n_items
        self.n_choices = self.n_questions + self.n_probes + 1
        self.recommend_choice = self.n_choices - 1
        self.action_space = MaskedActionSpace(
            [self.n_choices] + [self.n_items] * self.slate_size, masks=self._current_masks
        )
        self.observation_space = self._build_observation_space()
        self._categories = CategoryIndex(base.catalog) if base.enumerated else None
        self._obs: dict[str, np.ndarray] = {}
        self._questions = np.zeros(0, dtype=np.int64)
        self._probes: list[np.ndarray] = []
        self._items = np.zeros(0, dtype=np.int64)

    def _build_observation_space(self) -> spaces.Dict:
        """The Dict of float32 Boxes described in the module docstring."""
        Q, P, M, N, F = self.n_questions, self.n_probes, self.probe_size, self.n_items, self.config.max_facts
        catalog = self.base.catalog
        top_id = float(max(catalog.n_items, catalog.n_aspects, self.base.n_categories, catalog.n_users))

        def box(shape: tuple[int, ...], low: float = -np.inf, high: float = np.inf) -> spaces.Box:
            return spaces.Box(low, high, shape=shape, dtype=np.float32)

        space = spaces.Dict(
            {
                "choice_mask": box((self.n_choices,), 0.0, 1.0),
                "item_mask": box((N,), 0.0, 1.0),
                "user": box((1,), 0.0, top_id),
                "question_ids": box((Q,), -1.0, top_id),
                "question_feats": box((Q, len(QUESTION_FEATURES) + self._plan_columns("question_feats"))),
                "item_ids": box((N,), -1.0, top_id),
                "item_feats": box((N, len(ITEM_FEATURES))),
                "accepted_ids": box((F,), -1.0, top_id),
                "rejected_ids": box((F,), -1.0, top_id),
                "item_question": box((N, Q), 0.0, 1.0),
                "item_rejected": box((N, F), 0.0, 1.0),
                "global": box((len(GLOBAL_FEATURES) + self._plan_columns("global"),)),
            }
        )
        if P:
            space["probe_aspects"] = box((P, M), -1.0, top_id)
            space["probe_feats"] = box((P, len(PROBE_FEATURES)))
        return space

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
        """Start a conversation (see `ConversationEnv.reset`); ``info["turn_limit"]`` is False, so reset
        and step infos have the same keys."""
        _, info = self.env.reset(seed=seed, options=options)
        info["turn_limit"] = False
        return self.observe(), info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Carry out a [choice, slot_1..slot_k] action (see the module docstring).

        A conversation that reaches the turn limit has ended for good (the user quits), so it is
        reported as ``terminated`` (no value bootstrapping past it), with ``info["turn_limit"]`` True
        (False on every other step and after reset: one type per info key).

        Raises:
            WrapperError: The action is outside the action space or its mask (see `to_env_action`).
        """
        _, env_reward, terminated, truncated, info = self.env.step(self.to_env_action(action))
        reward = float(env_reward)  # already a float (ConversationEnv.step); gym types it SupportsFloat
        info["turn_limit"] = bool(truncated)
        if terminated or truncated:
            return self._final_observation(), reward, True, False, info
        return self.observe(), reward, False, False, info

    def action_masks(self) -> np.ndarray:
        """Choice mask then the item mask repeated slate_size times; bool, shape (sum(nvec),).

        Raises:
            WrapperError: No observation yet: call reset() first.
        """
        if not self._obs:
            raise WrapperError("the wrapper has no observation yet: call reset() before action_masks()")
        choice = self._obs["choice_mask"] > 0.5
        items = self._obs["item_mask"] > 0.5
        return np.concatenate([choice, np.tile(items, self.slate_size)])

    def _current_masks(self) -> np.ndarray | None:
        """`action_masks` once there is an observation, else None (what `MaskedActionSpace` samples by)."""
        return self.action_masks() if self._obs else None

    def to_env_action(self, action: np.ndarray) -> dict[str, Any]:
        """The env's action dict for a [choice, slot_1..slot_k] action of the current turn.

        The item slots of a recommendation that the item mask forbids (or that lie outside
        ``[0, n_items)``) are dropped from the slate; when none is left, the slate is the first
        ``slate_size`` candidate items (the ranker's best), as the module docstring says.

        Raises:
            WrapperError: No observation yet (call reset), the action is not ``1 + slate_size`` whole
                numbers, its choice lies outside ``[0, n_choices)``, or its choice is masked this turn.
                The message names the value and why; nothing is carried out.
        """
        if not self._obs:
            raise WrapperError("the wrapper has no observation yet: call reset() before step()")
        values = self._checked_action(action)
        choice = int(values[0])
        if not self._obs["choice_mask"][choice] > 0.5:  # the choice part of `action_masks`, no more
            raise WrapperError(f"choice {choice} is masked this turn: {self._masked_reason(choice)}")
        if choice < self.n_questions:
            return ask(self._question_aspects(int(self._questions[choice])))
        if choice < self.recommend_choice:
            persona = choice - self.n_questions
            return probe(persona, self._probes[persona])
        slots = values[1:]
        shown = slots[(slots >= 0) & (slots < self._items.size)].astype(np.int64)  # the unmasked slots
        slate = self._items[shown] if shown.size else self._items[: self.slate_size]
        return recommend(slate)

    @property
    def candidate_items(self) -> np.ndarray:
        """The current candidate item ids (what item slots index), shape (<= n_items,)."""
        return self._items

    @property
    def question_ids(self) -> np.ndarray:
        """The current question slot ids (aspects, or categories when enumerated)."""
        return self._questions

    @property
    def probe_aspects(self) -> list[np.ndarray]:
        """The aspects each persona slot's probe lists this turn, int64 (<= M,) each (empty: none)."""
        return self._probes

    # ------------------------------------------------------------------------------------ internals
    def _checked_action(self, action: object) -> np.ndarray:
        """`action` as an array of shape (1 + slate_size,) of whole numbers whose choice lies in
        ``[0, n_choices)``, or WrapperError naming the bad value.

        Integer arrays (and lists of ints) pass; float arrays pass only when every entry is a whole
        number (as SB3 may hand them over). Bools, NaN, fractions, strings and other shapes are
        refused, never coerced. Item slots are not range-checked here (`to_env_action` drops those
        outside the item mask).
        """
        shape = (1 + self.slate_size,)
        try:
            array = np.asarray(action)
        except (TypeError, ValueError):
            array = np.asarray(None)
        kind = array.dtype.kind
        if array.shape != shape or kind not in "iuf":
            raise WrapperError(
                f"action must be [choice, slot_1..slot_{self.slate_size}]: {shape[0]} integers "
                f"(shape {shape}), got {show_value(action)}"
            )
        if kind == "f" and not (np.isfinite(array).all() and (array == np.floor(array)).all()):
            raise WrapperError(f"action entries must be whole numbers, got {show_value(action)}")
        if not 0 <= array[0] < self.n_choices:
            raise WrapperError(
                f"action[0] (the choice) = {array[0].item()!r} lies outside [0, {self.n_choices}): "
                f"{self.n_questions} question slots, {self.n_probes} persona slots, then recommend"
            )
        return array

    def _masked_reason(self, choice: int) -> str:
        """Why `choice` is masked this turn (for error messages)."""
        if self.base.done:
            return (
                "the conversation has ended (only recommend is left in the final observation); call reset()"
            )
        if choice < self.n_questions:
            return (
                f"question slot {choice} is empty: {self._questions.size} question(s) open this turn, in "
                f"slots [0, {self._questions.size})"
            )
        if choice < self.recommend_choice:
            return f"persona slot {choice - self.n_questions} lists no aspects this turn (nothing to probe)"
        return (
            f"recommend is closed after {self._slates_in_a_row()} rejected slates in a row "
            f"(WrapperConfig.max_slates_in_a_row={self.config.max_slates_in_a_row}): ask or probe"
        )

    def _final_observation(self) -> dict[str, np.ndarray]:
        """The observation past the end (or of no candidate left): empty slots, only recommend valid."""
        observation_space = self.observation_space
        assert isinstance(observation_space, spaces.Dict)  # set by _build_observation_space
        obs: dict[str, np.ndarray] = {}
        for key, space in observation_space.items():
            assert space.shape is not None  # a Box: every space of the Dict is one
            obs[key] = np.zeros(space.shape, dtype=np.float32)
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
        state = self.base.state
        candidates = state.candidate_items()
        if candidates.size == 0:
            return self._final_observation()
        facts = state.facts()
        F = self.config.max_facts
        cands = rank_candidates(self.ranker, state, facts, candidates, self.n_items)
        questions = self._question_slots(facts, cands)
        probes = probe_slots(
            self._persona_ranker, facts, cands, self.n_probes, self.probe_size, self.base.question_types
        )
        rejected_ids = facts.rejected[-F:]
        items = item_slots(
            cands, questions.ids, rejected_ids, self._categories, (self.n_items, self.n_questions, F)
        )
        self._items, self._questions, self._probes = cands.items, questions.ids, probes.aspects
        obs: dict[str, np.ndarray] = {
            "choice_mask": self._choice_mask(questions.ids.size, probes.aspects),
            "item_mask": self._item_mask(cands.items.size),
            "user": np.array([facts.user], dtype=np.float32),
            "question_ids": pad(questions.ids, self.n_questions),
            "question_feats": questions.feats,
            "item_ids": pad(cands.items, self.n_items),
            "item_feats": items.feats,
            "accepted_ids": pad(facts.accepted[-F:], F),
            "rejected_ids": pad(rejected_ids, F),
            "item_question": items.question,
            "item_rejected": items.rejected,
            "global": global_features(state, facts, cands, self.base.max_turns, self.slate_size),
        }
        if self.n_probes:
            obs["probe_aspects"] = probes.padded
            obs["probe_feats"] = probes.feats
        if self.config.plan_depth is not None:
            plan_questions, plan_global = self._plan_features(facts, cands, questions.ids)
            obs["question_feats"] = np.concatenate([obs["question_feats"], plan_questions], axis=1)
            obs["global"] = np.concatenate([obs["global"], plan_global])
        if not self.config.ranker_features:
            hide_ranker_derived(obs)
        self._obs = obs
        return obs

    def _plan_columns(self, key: str) -> int:
        """How many `PLAN_FEATURES` columns the block `key` gets (0 without ``plan_depth``)."""
        return len(PLAN_FEATURES[key]) if self.config.plan_depth is not None else 0

    def _plan_features(
        self, facts: DialogueFacts, cands: RankedCandidates, question_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `PLAN_FEATURES` of the question slots, float32 (Q, 2), and the global ones, float32 (1,)."""
        assert self.config.plan_depth is not None  # only called with it
        questions = np.zeros((self.n_questions, len(PLAN_FEATURES["question_feats"])), dtype=np.float32)
        glob = np.zeros(len(PLAN_FEATURES["global"]), dtype=np.float32)
        turns_left = self.base.max_turns - self.base.state.turn
        if turns_left <= 1 or cands.ids.size <= self.slate_size:
            return questions, glob
        search = AnswerSearch(
            self.base.catalog,
            self.ranker,
            self.slate_size,
            self.config.plan_depth,
            facts,
            cands.ids,
            cands.scores,
            self.config.plan_temperature,
        )
        plan = search.plan(question_ids, turns_left)
        glob[0] = plan.recommend_value
        questions[: question_ids.size, 0] = plan.ask_values - plan.recommend_value
        if plan.ask is not None:
            questions[plan.ask, 1] = 1.0
        return questions, glob

    def _question_aspects(self, aspect: int) -> tuple[int, ...]:
        """What a question slot about `aspect` asks: the aspect alone, or in a typed env (MCMIPL) the
        aspect and the ranker's best reachable values of its type (`typed_question`)."""
        types = self.base.question_types
        if types is None:
            return (aspect,)
        state = self.base.state
        reachable = state.reachable_aspects()
        scores = self.ranker.aspect_scores(state.facts(), reachable)
        return typed_question(aspect, reachable, scores, types, self.base.max_choices)

    def _question_slots(self, facts: DialogueFacts, cands: RankedCandidates) -> QuestionSlots:
        """Aspect question slots, or category ones in enumerated envs."""
        if self._categories is None:
            return aspect_questions(self.ranker, facts, cands, self.n_questions)
        asked = self.base.state.asked_categories
        return category_questions(self.ranker, facts, cands, self._categories, asked, self.n_questions)

    def _choice_mask(self, n_questions: int, probes: list[np.ndarray]) -> np.ndarray:
        """Valid choices: the occupied question slots, probes that list aspects, and recommend (unless
        ``max_slates_in_a_row`` slates were just rejected and a question or probe is valid); (Q+P+1,)."""
        mask = np.zeros(self.n_choices, dtype=np.float32)
        mask[:n_questions] = 1.0
        for k, aspects in enumerate(probes):
            mask[self.n_questions + k] = float(aspects.size > 0)
        cap = self.config.max_slates_in_a_row
        if cap is None or not mask.any() or self._slates_in_a_row() < cap:
            mask[self.recommend_choice] = 1.0
        return mask

    def _slates_in_a_row(self) -> int:
        """Slates shown since the last question or probe (each rejected: the dialogue goes on)."""
        count = 0
        for record in reversed(self.base.state.history):
            if record.kind != "recommend":
                break
            count += 1
        return count

    def _item_mask(self, n_top: int) -> np.ndarray:
        """Valid item slots: the first n_top (one per candidate item shown); (N,)."""
        mask = np.zeros(self.n_items, dtype=np.float32)
        mask[:n_top] = 1.0
        return mask
