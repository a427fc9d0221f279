"""`ConversationEnv`: a Gymnasium environment of conversational recommendation (UNICORN rules)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import ActionKind, InvalidActionError, NoProbeSpace, ParsedAction, parse_action, show_value
from envs.metrics import TURN_LIMITS
from envs.question_types import QuestionTypes, TypedQuestionSpace, check_one_type
from envs.setting import SETTINGS, Setting, offers_probes
from envs.state import KIND_NAMES, DialogueState, TurnRecord
from simulators.catalog import Catalog
from simulators.errors import CRSError
from simulators.goals import GoalSampler
from simulators.users import UserModel

QuestionMode = Literal["binary", "multiple_choice"]
CandidateRule = Literal["all", "any", "mcmipl"]
CANDIDATE_RULES: tuple[CandidateRule, ...] = ("all", "any", "mcmipl")
EpisodeOrder = Literal["random", "sequential"]
# An observation: arrays per the Box/MultiBinary spaces, and the Discrete "last_answer" as an np.int64
Observation = dict[str, np.ndarray | np.int64]

# last_answer codes in the observation
ANSWER_NONE, ANSWER_ACCEPTED, ANSWER_REJECTED, ANSWER_SLATE_REJECTED = 0, 1, 2, 3
# info["rank"] and info["accepted_item"] when no item was accepted (ranks are 1-based, ids 0-based)
NO_RANK, NO_ITEM = 0, -1
# the keys reset(options=...) reads
RESET_OPTIONS: tuple[str, ...] = ("goal_index",)


class ResetOptionsError(CRSError, ValueError):
    """``reset(options=...)`` is not None or a mapping of known keys with valid values."""


@dataclass(frozen=True)
class Rewards:
    """UNICORN's reward table."""

    recommend_success: float = 1.0
    recommend_fail: float = -0.1
    ask_accepted: float = 0.01
    ask_rejected: float = -0.1
    quit_at_limit: float = -0.3  # also when a user with patience leaves
    no_candidates: float = -0.1

    @classmethod
    def of(cls, value: Rewards | Mapping[str, float] | None) -> Rewards:
        """The table `value` gives: itself, UNICORN's for None, or UNICORN's with a mapping's entries
        (e.g. ``{"ask_rejected": -0.5}``, as a `crs train` config's ``rewards`` block).

        Raises:
            CRSError: A mapping with an unknown entry or a value that is not a finite number, or a value
                of another type; the message names it and the entries.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = ", ".join(cls.__dataclass_fields__)
        if not isinstance(value, Mapping):
            raise CRSError(f"rewards must be a Rewards or a mapping of its entries ({known}), got {value!r}")
        for key, number in value.items():
            if key not in cls.__dataclass_fields__:
                raise CRSError(f"rewards: unknown entry {key!r}; the entries are {known}")
            if isinstance(number, bool) or not isinstance(number, int | float) or not np.isfinite(number):
                raise CRSError(f"rewards[{key!r}] must be a finite number, got {show_value(number)}")
        return cls(**{key: float(number) for key, number in value.items()})


class ConversationEnv(gym.Env):
    """A conversation between a recommender (the agent) and a simulated user.

    One episode is one conversation about one goal (a user and hidden target item(s)) drawn from a
    split. Turn 1 is the user's: they state one aspect of the target, which is accepted, and the
    candidates become the items having it (enumerated setting: they name a category of the target,
    answered like an enumerated question, as UNICORN's YELP env opens). Then the agent acts, up to
    ``max_turns - 1`` times.

    ## Action Space
    ``Dict(kind=Discrete(3), aspects=MultiDiscrete([n_aspects] * max_choices), persona=Discrete(n_personas),
    items=MultiDiscrete([n_items] * slate_size))`` plus ``category=Discrete(n_categories)`` when
    the setting is "enumerated". ``kind`` 0 = ask, 1 = probe, 2 = recommend. Only the multiple-choice
    setting offers probes (``env.offers_probes``, `envs.setting.offers_probes`): in the binary and
    enumerated settings a probe raises `InvalidActionError`, and the space (`envs.actions.NoProbeSpace`)
    never samples one. Repeated ids count once,
    so every sample is valid; build actions with `envs.ask`, `envs.probe`, `envs.recommend`. Ids are
    never coerced: anything outside the action space (a float, bool, None, string, NaN, a value
    outside int64, a nested list, a wrong shape, an unknown entry) raises `InvalidActionError` and
    leaves the dialogue unchanged (details in `envs.actions`).

    - ask aspects A: each accepted aspect filters the candidates (``candidate_rule="all"``: items
      having every accepted aspect; ``"any"``: items having at least one, MCMIPL's union); the rest are
      recorded as rejected (items are scored down by rankers, not removed). ``"mcmipl"``: MCMIPL's
      own update (``_update_cand_items``): C' = (∪_{a accepted} C ∩ items(a)) minus the items having
      a rejected aspect (C minus those when none is accepted); C is kept when C' would be empty.
    - typed questions (``question_types`` given, MCMIPL): the aspects of an ask share one question
      type, else `InvalidActionError` names the types (`envs.question_types`); probes may mix types.
    - enumerated ask of category c (UNICORN's YELP): the user answers with the fine aspects of c the target
      has; those are accepted (candidates filtered by each), c's other fine aspects are rejected; if
      none fits, c and all its fine aspects are rejected.
    - probe persona p with aspects A (multiple-choice setting only): one multiple-choice question,
      answered like an ask; the persona slot is kept for explanations.
    - recommend slate S: success iff a target is in S; otherwise S leaves the candidates (with
      ``candidate_rule="mcmipl"`` only when more than ``slate_size`` candidates are left, as MCMIPL's
      ``_recommend_update``; S is recorded as rejected either way).

    ## Observation Space
    ``Dict`` of fixed-size arrays: ``user`` (1,), ``turn`` (1,), ``accepted`` / ``rejected``
    (MultiBinary(n_aspects)), ``rejected_items`` (MultiBinary(n_items)), ``n_candidates`` (1,),
    ``last_answer`` (Discrete(4): none, accepted, rejected, slate rejected). The full
    `DialogueState`, candidates included, is ``env.unwrapped.state``.

    ## Rewards
    recommend success +1, recommend fail -0.1, question with an accepted aspect +0.01, question
    rejected -0.1, no candidates left -0.1 (replaces the question's reward), and -0.3 added when the
    user quits: at the turn limit, or out of patience (the slate that makes them leave). With
    ``candidate_rule="mcmipl"`` a question pays per listed value, as MCMIPL: +0.01 per accepted and
    -0.1 per rejected aspect, summed (the candidates never empty there). Success is read from
    ``info["success"]``, never from the reward.

    ## Episode End
    ``terminated`` when the user accepts an item, leaves (patience), or no candidate is left;
    ``truncated`` when the agent has taken ``max_turns - 1`` actions without success.

    ## Info
    Every key is present after ``reset`` and after every ``step``, always with the same type, so
    ``gymnasium.vector`` envs can stack infos (they type a key's array by its first value):

    - ``success`` (bool): the user accepted a recommended item this turn.
    - ``rank`` (int): 1-based slate rank of the accepted item; 0 when no item was accepted.
    - ``accepted_item`` (int): the item the user accepted; -1 when none was.
    - ``turn`` (int): turns so far, the user's opening included (1 after reset).
    - ``agent_actions`` (int): actions the agent has taken (``turn - 1``).
    - ``kind`` (str): kind of the turn: "open" (after reset), "ask", "probe" or "recommend".
    - ``answer`` (tuple[int, ...]): aspects the user accepted this turn (after reset: the opening).
    - ``rejected`` (tuple[int, ...]): aspects recorded as rejected this turn.
    - ``n_candidates`` (int): candidate items left.
    - ``goal_index`` (int): index of the conversation's goal in its split.
    - ``targets`` (tuple[int, ...]): the hidden target item(s), revealed once the episode has ended
      (terminated or truncated); ``()`` before that.

    ## Arguments
    catalog: the catalogue. user: the simulated user model. goals: the goal sampler of a split.
    setting: "binary" (one aspect per question), "enumerated" (a question asks a first-layer category;
    the catalogue needs a taxonomy) or "multiple_choice" (several aspects per question, persona
    probes); see `envs.setting`.
    candidate_rule: "all", "any" or "mcmipl" (see above; "mcmipl" only in the multiple-choice setting).
    question_types: `envs.question_types.QuestionTypes` making asks typed (multiple-choice setting
    only), or None. max_turns: T, counting the opening (15). slate_size: k (10). max_choices: aspects
    per multiple-choice question (5). n_personas: persona slots a probe may name (4). episode_order:
    "random" draws each goal with the sampler's ``sample_index`` (uniform over the goals, user-uniform
    for MCMIPL's `GroupGoals`); "sequential" walks them in an order drawn from the seed of the last
    ``reset(seed=...)``. rewards: the reward table (a `Rewards`, or a mapping of some of its entries:
    `Rewards.of`). render_mode: None or "ansi".
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        catalog: Catalog,
        user: UserModel,
        goals: GoalSampler,
        *,
        setting: Setting = "binary",
        candidate_rule: CandidateRule = "all",
        question_types: QuestionTypes | None = None,
        max_turns: int = 15,
        slate_size: int = 10,
        max_choices: int = 5,
        n_personas: int = 4,
        episode_order: EpisodeOrder = "random",
        rewards: Rewards | Mapping[str, float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        _check_choice("setting", setting, SETTINGS)
        _check_choice("candidate_rule", candidate_rule, CANDIDATE_RULES)
        _check_choice("episode_order", episode_order, ("random", "sequential"))
        _check_choice("render_mode", render_mode, (None, "ansi"))
        max_turns = _check_count(
            "max_turns",
            max_turns,
            TURN_LIMITS[0],
            "UNICORN: 15; 2 leaves the agent one action",
            TURN_LIMITS[-1],
        )
        slate_size = _check_count("slate_size", slate_size, 1, "UNICORN: 10")
        max_choices = _check_count("max_choices", max_choices, 1, "5; MCMIPL: 2")
        n_personas = _check_count("n_personas", n_personas, 1, "4")
        if goals.catalog is not catalog or user.catalog is not catalog:
            raise CRSError("user model, goal sampler and env must share one Catalog instance")
        if setting == "enumerated" and catalog.taxonomy is None:
            raise CRSError(
                f"the enumerated setting asks categories and needs a catalogue with a taxonomy; "
                f"{catalog.name} has none: use the binary setting (`--setting binary`)"
            )
        if setting != "multiple_choice" and (candidate_rule == "mcmipl" or question_types is not None):
            raise CRSError(
                f"candidate_rule='mcmipl' and question_types are MCMIPL's multiple-choice rules; "
                f"setting={setting!r} asks one aspect or a category per question: use "
                "setting='multiple_choice'"
            )
        if question_types is not None and question_types.n_aspects != catalog.n_aspects:
            raise CRSError(
                f"question_types cover {question_types.n_aspects} aspects, {catalog.name} has "
                f"{catalog.n_aspects}: build them from this catalogue's release"
            )
        self.catalog = catalog
        self.user = user
        self.goals = goals
        self.setting: Setting = setting
        self.question_mode: QuestionMode = "multiple_choice" if setting == "multiple_choice" else "binary"
        self.enumerated = setting == "enumerated"
        self.offers_probes = offers_probes(setting)
        self.candidate_rule: CandidateRule = candidate_rule
        self.question_types = question_types
        self.max_turns = max_turns
        self.slate_size = slate_size
        self.max_choices = 1 if self.question_mode == "binary" else max_choices
        self.n_personas = n_personas
        self.episode_order: EpisodeOrder = episode_order
        self.rewards = Rewards.of(rewards)
        self.render_mode = render_mode
        self.n_categories = catalog.taxonomy.n_parents if self.enumerated and catalog.taxonomy else 0

        action = {
            "kind": spaces.Discrete(3),
            "aspects": spaces.MultiDiscrete([catalog.n_aspects] * self.max_choices),
            "persona": spaces.Discrete(n_personas),
            "items": spaces.MultiDiscrete([catalog.n_items] * slate_size),
        }
        if self.enumerated:
            action["category"] = spaces.Discrete(self.n_categories)
        self.action_space: spaces.Dict
        if question_types is not None:  # the multiple-choice setting only (checked above)
            self.action_space = TypedQuestionSpace(action, question_types)
        elif not self.offers_probes:
            self.action_space = NoProbeSpace(action)
        else:
            self.action_space = spaces.Dict(action)
        count = spaces.Box(0, np.iinfo(np.int64).max, shape=(1,), dtype=np.int64)
        self.observation_space = spaces.Dict(
            {
                "user": spaces.Box(0, max(catalog.n_users - 1, 0), shape=(1,), dtype=np.int64),
                "turn": spaces.Box(0, max_turns, shape=(1,), dtype=np.int64),
                "accepted": spaces.MultiBinary(catalog.n_aspects),
                "rejected": spaces.MultiBinary(catalog.n_aspects),
                "rejected_items": spaces.MultiBinary(catalog.n_items),
                "n_candidates": count,
                "last_answer": spaces.Discrete(4),
            }
        )
        self._state: DialogueState | None = None
        self._order: np.ndarray | None = None
        self._cursor = 0
        self._goal_index = -1
        self._done = False

    # ----------------------------------------------------------------------------------------- API
    @property
    def state(self) -> DialogueState:
        """The full dialogue state (candidates included). Raises before the first reset."""
        if self._state is None:
            raise CRSError("the env has no dialogue yet: call reset() first")
        return self._state

    @property
    def done(self) -> bool:
        """True once the current episode has terminated or been truncated."""
        return self._done

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start a conversation.

        Args:
            seed: Seeds the env's generator (and the sequential goal order).
            options: None, or a mapping whose only key is ``"goal_index"``: ``{"goal_index": i}``
                picks goal i of the split directly (i an integer in [0, n_goals), not a bool).

        Raises:
            ResetOptionsError: `options` is not None or a mapping, has another key, or its goal index is
                not an integer in range (never coerced); the env is left as it was.
        """
        goal_index = self._goal_option(options)
        super().reset(seed=seed)
        index = self._next_goal_index(seed, goal_index)
        goal = self.goals.goal(index, self.np_random)
        self.user.reset(goal, self.np_random)
        state = DialogueState(self.catalog, goal.user)
        self._state = state
        state.turn = 1
        if self.enumerated:
            category = self.user.opening_category()
            accepted, rejected = self._answer(self._ask_category(category))
            opening = TurnRecord(
                turn=1,
                kind="open",
                asked=(category,),
                accepted=accepted,
                rejected=rejected,
                n_candidates=state.n_candidates,
            )
        else:
            aspect = self.user.opening_aspect()
            state.accepted[aspect] = True
            state.keep_items_with(aspect)
            opening = TurnRecord(turn=1, kind="open", accepted=(aspect,), n_candidates=state.n_candidates)
        state.history.append(opening)
        self._goal_index = index
        self._done = False
        info = self._info(state.history[-1], success=False)
        return self._observation(), info

    def step(self, action: dict[str, Any]) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Carry out one agent action. Invalid actions (a probe where `offers_probes` is False among
        them) raise InvalidActionError, state unchanged."""
        if self._state is None:
            raise InvalidActionError("step() before reset(): call reset() to start a conversation")
        if self._done:
            raise InvalidActionError("the conversation has ended; call reset() to start a new one")
        parsed = self.parse(action)
        state = self._state
        state.turn += 1
        if parsed.kind is ActionKind.RECOMMEND:
            record, success, leaves = self._recommend(parsed)
        else:
            record, success, leaves = self._question(parsed), False, False
        reward = record.reward
        # MCMIPL's rules never empty the candidates (its cand_none never fires)
        assert self.candidate_rule != "mcmipl" or state.n_candidates > 0
        terminated = success or leaves or state.n_candidates == 0
        truncated = not terminated and state.turn >= self.max_turns
        if truncated or leaves:  # a user who runs out of patience quits, as one at the turn limit
            reward += self.rewards.quit_at_limit
            record = replace(record, reward=reward)
        state.history.append(record)
        self._done = terminated or truncated
        info = self._info(record, success=success)
        return self._observation(), float(reward), bool(terminated), bool(truncated), info

    def parse(self, action: dict[str, Any]) -> ParsedAction:
        """Validate `action` against this env's sizes and setting, without acting on it.

        Raises:
            InvalidActionError: the action is not valid here (see `envs.actions.parse_action`; a probe
                in the binary or enumerated setting among them), or an ask of a typed env lists aspects
                of several question types.
        """
        parsed = parse_action(
            action,
            n_aspects=self.catalog.n_aspects,
            n_categories=self.n_categories,
            n_items=self.catalog.n_items,
            n_personas=self.n_personas,
            max_choices=self.max_choices,
            slate_size=self.slate_size,
            probes=self.offers_probes,
        )
        if self.question_types is not None and parsed.kind is ActionKind.ASK:
            check_one_type(parsed.aspects, self.question_types)
        return parsed

    def render(self) -> str | None:
        """The dialogue so far as text (render_mode="ansi")."""
        if self.render_mode != "ansi" or self._state is None:
            return None
        return render_dialogue(self.catalog, self._state.history, self.setting)

    # ------------------------------------------------------------------------------------ internals
    def _goal_option(self, options: object) -> int | None:
        """The goal index `options` asks for (None: none asked), or ResetOptionsError."""
        if options is None:
            return None
        if not isinstance(options, Mapping):
            raise ResetOptionsError(
                f"reset(options=...) must be None or a dict like {{'goal_index': 3}}, got "
                f"{show_value(options)}"
            )
        unknown = [key for key in options if key not in RESET_OPTIONS]
        if unknown:
            raise ResetOptionsError(
                f"unknown reset option(s) {unknown!r}; the only option is 'goal_index' (an int goal index)"
            )
        if "goal_index" not in options:
            return None
        value = options["goal_index"]
        n = self.goals.n_goals
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise ResetOptionsError(
                f"options['goal_index'] must be an integer in [0, {n}) (never a float, bool, string or "
                f"None), got {show_value(value)}"
            )
        if not 0 <= value < n:
            raise ResetOptionsError(
                f"options['goal_index']={int(value)} outside [0, {n}) ({n} goals in the split)"
            )
        return int(value)

    def _next_goal_index(self, seed: int | None, goal_index: int | None) -> int:
        n = self.goals.n_goals
        if goal_index is not None:
            return goal_index
        if self.episode_order == "random":
            return self.goals.sample_index(self.np_random)
        if seed is not None or self._order is None:
            self._order = self.np_random.permutation(n)
            self._cursor = 0
        index = int(self._order[self._cursor % n])
        self._cursor += 1
        return index

    def _question(self, parsed: ParsedAction) -> TurnRecord:
        state = self._state
        assert state is not None
        if parsed.kind is ActionKind.ASK and self.enumerated:
            asked = self._ask_category(parsed.aspects[0])
        else:
            asked = parsed.aspects
        accepted, rejected = self._answer(asked)
        state.last_answer = ANSWER_ACCEPTED if accepted else ANSWER_REJECTED
        if self.candidate_rule == "mcmipl":  # MCMIPL pays each listed value
            reward = len(accepted) * self.rewards.ask_accepted + len(rejected) * self.rewards.ask_rejected
        else:
            reward = self.rewards.ask_accepted if accepted else self.rewards.ask_rejected
        if state.n_candidates == 0:
            reward = self.rewards.no_candidates
        return TurnRecord(
            turn=state.turn,
            kind=KIND_NAMES[parsed.kind],
            asked=parsed.aspects,
            persona=parsed.persona,
            accepted=accepted,
            rejected=rejected,
            reward=reward,
            n_candidates=state.n_candidates,
        )

    def _ask_category(self, category: int) -> tuple[int, ...]:
        """Mark `category` asked; return the fine aspects an enumerated question about it lists."""
        taxonomy = self.catalog.taxonomy
        assert taxonomy is not None  # an enumerated env's catalogue has a taxonomy
        self.state.asked_categories[category] = True
        return tuple(int(a) for a in taxonomy.children(category))

    def _answer(self, asked: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Put `asked` to the user; record the answer and filter the candidates by it.

        Returns:
            (accepted, rejected) aspects, accepted ascending, rejected in the order asked.
        """
        state = self.state
        accepted = tuple(sorted(self.user.answer(asked)))
        rejected = tuple(a for a in asked if a not in set(accepted))
        state.accepted[list(accepted)] = True
        state.rejected[list(rejected)] = True
        if self.candidate_rule == "mcmipl":
            state.candidates[:] = state.mcmipl_candidates(accepted, rejected)
        elif accepted:
            if self.candidate_rule == "all":
                for aspect in accepted:
                    state.keep_items_with(aspect)
            else:
                state.keep_items_with_any(accepted)
        return accepted, rejected

    def _recommend(self, parsed: ParsedAction) -> tuple[TurnRecord, bool, bool]:
        state = self._state
        assert state is not None
        reaction = self.user.react(parsed.items)
        success = reaction.accepted is not None
        if not success:
            slate = list(parsed.items)
            # MCMIPL removes a failed slate only when more than slate_size candidates are left
            if self.candidate_rule != "mcmipl" or state.n_candidates > self.slate_size:
                state.candidates[slate] = False
            state.rejected_items[slate] = True
        state.last_answer = ANSWER_ACCEPTED if success else ANSWER_SLATE_REJECTED
        reward = self.rewards.recommend_success if success else self.rewards.recommend_fail
        record = TurnRecord(
            turn=state.turn,
            kind="recommend",
            slate=parsed.items,
            accepted_item=reaction.accepted,
            rank=reaction.rank,
            reward=reward,
            n_candidates=state.n_candidates,
        )
        return record, success, reaction.leaves

    def _observation(self) -> Observation:
        state = self.state
        return {
            "user": np.array([state.user], dtype=np.int64),
            "turn": np.array([state.turn], dtype=np.int64),
            "accepted": state.accepted.astype(np.int8),
            "rejected": state.rejected.astype(np.int8),
            "rejected_items": state.rejected_items.astype(np.int8),
            "n_candidates": np.array([state.n_candidates], dtype=np.int64),
            "last_answer": np.int64(state.last_answer),
        }

    def _info(self, record: TurnRecord, *, success: bool) -> dict[str, Any]:
        """The info of a turn: every key always present with one type (see the class docstring)."""
        state = self.state
        return {
            "success": bool(success),
            "rank": NO_RANK if record.rank is None else int(record.rank),
            "accepted_item": NO_ITEM if record.accepted_item is None else int(record.accepted_item),
            "turn": int(state.turn),
            "agent_actions": int(state.agent_actions),
            "kind": str(record.kind),
            "answer": tuple(int(a) for a in record.accepted),
            "rejected": tuple(int(a) for a in record.rejected),
            "n_candidates": int(state.n_candidates),
            "goal_index": int(self._goal_index),
            "targets": tuple(int(t) for t in self.user.targets) if self._done else (),
        }


def _check_count(name: str, value: object, least: int, usual: str, most: int | None = None) -> int:
    """`value` as an int if it is an integer (python or numpy, not a bool) in [least, most], else CRSError."""
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | np.integer)
        or value < least
        or (most is not None and value > most)
    ):
        bound = f">= {least}" if most is None else f"between {least} and {most}"
        raise CRSError(f"{name}={value!r} must be an integer {bound} (not a float or bool; {usual})")
    return int(value)


def _check_choice(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise CRSError(f"{name}={value!r} is not one of {allowed}")


def render_dialogue(catalog: Catalog, history: list[TurnRecord], setting: Setting = "multiple_choice") -> str:
    """The turns of a dialogue as plain text, one line per turn, as asked and answered in `setting`: an
    enumerated question names its category, and a binary one is answered "yes" or "no", as the user of
    `crs chat` says it."""
    aspect = catalog.aspect_names
    lines = []
    for record in history:
        if record.kind == "open" and record.asked and catalog.taxonomy is not None:  # enumerated opening
            category = catalog.taxonomy.parent_names[record.asked[0]]
            said = ", ".join(aspect[a] for a in record.accepted)
            lines.append(f"[{record.turn:2d}] user: I'd like something in {category!r}: {said}.")
        elif record.kind == "open":
            lines.append(f"[{record.turn:2d}] user: I'd like something {aspect[record.accepted[0]]!r}.")
        elif record.kind == "recommend":
            names = ", ".join(catalog.item_names[i] for i in record.slate[:3])
            more = f" (+{len(record.slate) - 3} more)" if len(record.slate) > 3 else ""
            outcome = (
                f"user accepts {catalog.item_names[record.accepted_item]!r} (rank {record.rank})"
                if record.accepted_item is not None
                else "user rejects the slate"
            )
            lines.append(f"[{record.turn:2d}] agent recommends {names}{more} -> {outcome}")
        else:
            if setting == "enumerated" and record.kind == "ask" and catalog.taxonomy is not None:
                asked = catalog.taxonomy.parent_names[record.asked[0]]
            else:
                asked = ", ".join(aspect[a] for a in record.asked)
            said = ", ".join(aspect[a] for a in record.accepted) or "none of these"
            if setting == "binary" and record.kind == "ask":
                said = "yes" if record.accepted else "no"
            who = f" (persona {record.persona})" if record.kind == "probe" else ""
            lines.append(f"[{record.turn:2d}] agent {record.kind}s{who}: {asked}? -> user: {said}")
        lines[-1] += f"   [{record.n_candidates} candidates]"
    return "\n".join(lines) + "\n"
