"""Rule policies: the field's non-learned baselines, on the same env and metrics (numpy only).

- ``random``: ask a random reachable aspect or recommend random candidates, with equal odds.
- ``always-recommend``: recommend the ranker's top-k candidates every turn.
- ``ask-N``: ask the ranker's best reachable aspect N times, then recommend the top-k every turn.
- ``ask-until-K``: ask the ranker's best reachable aspect while more than K candidates are consistent
  with every answer (they hold no rejected aspect), then recommend the top-k every turn; with the
  ``uniform+split`` ranker this is "halve the consistent candidates until K are left".
- ``max-entropy``: SCPR's rule: recommend when at most k candidates are left, otherwise ask the
  aspect whose presence splits the (score-weighted) candidates most evenly.
- ``abs-greedy``: recommend only (Christakopoulou et al.'s absolute greedy), updating online from
  rejected slates: candidates sharing aspects with rejected items move down.
- ``lookahead-D``: ask-N's question or ask-N's slate each turn, whichever a depth-D search of the
  questions' yes/no answers values more under the ranker's belief about the target (binary setting
  only; `LookaheadPolicy`): it stops asking when no answer would shrink the candidates enough.
  ``lookahead-DxQ`` weighs the ranker's Q best questions that way and asks the one worth most;
  ``lookahead-DxQtT`` (e.g. ``lookahead-2x3t0.01``) does so under a belief at temperature T.
- ``probe-K-ask-N``: probe the user's most likely persona K times, then ask-N, then recommend every
  turn. A probe is the one the RL policy's persona slot lists (`envs.sb3_slots.probe_slots`, the
  wrapper's default probe size): the multiple-choice setting and a persona ranker only.

In envs with enumerated questions (Yelp*) "asking an aspect" asks a category that lists it. In envs
with typed multiple-choice questions (MCMIPL's protocol, ``env.question_types``) it asks that aspect
and the next best reachable values of its type by the policy's own score (the ranker's for ask-N,
the split entropy for max-entropy, a random one for random), up to ``env.max_choices`` values
(`envs.question_types.typed_question`); so every rule runs unchanged by name there.
"""

from __future__ import annotations

import re
from typing import Any, cast

import numpy as np

from envs.actions import ask, probe, recommend
from envs.answer_search import AnswerSearch, check_temperature, top_k
from envs.env import ConversationEnv
from envs.question_types import typed_question
from envs.ranker import PersonaAwareRanker, PreferenceRanker
from envs.sb3_slots import probe_slots, rank_candidates
from envs.sb3_wrapper import WrapperConfig
from envs.setting import Setting, offers_probes
from simulators.errors import CRSError

RULE_POLICY_NAMES = (
    "random",
    "always-recommend",
    "ask-N",
    "ask-until-K",
    "max-entropy",
    "abs-greedy",
    "lookahead-D[xQ[tT]]",
    "probe-K-ask-N",
)

EVERY_SETTING_RULES = ", ".join(
    name for name in RULE_POLICY_NAMES if not name.startswith(("lookahead", "probe"))
)
"""The rules that act in every setting (lookahead-D needs the binary one, probe-K-ask-N probes)."""


class SettingRefusedError(CRSError):
    """A rule that the env's question setting does not suit.

    Attributes:
        reason: Why, in words (the rule and the env's setting).
        setting: The setting the rule needs.
    """

    def __init__(self, reason: str, setting: str) -> None:
        self.reason = reason
        self.setting = setting
        super().__init__(
            f"{reason}; pass --setting {setting} where the dataset has it, or use a rule of every setting "
            f"({EVERY_SETTING_RULES})"
        )


class RulePolicy:
    """Base of the rule policies: a fixed preference ranker and helpers over the env's state."""

    name = "rule"

    def __init__(self, ranker: PreferenceRanker | None = None) -> None:
        self.ranker = ranker
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def act(self, env: ConversationEnv) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_env(self, env: ConversationEnv) -> None:
        """Raise CRSError when the rule cannot play in `env`'s setting (checked at each turn too, so that
        a caller can refuse before the first conversation). Every setting suits the base rules."""
        self.check_setting(env.setting)

    def check_setting(self, setting: str) -> None:
        """`check_env` by the setting's name alone, before any data is loaded (a config's check).

        Raises:
            SettingRefusedError: The rule cannot act in `setting`.
        """

    # helpers -----------------------------------------------------------------------------------
    def _require_ranker(self) -> PreferenceRanker:
        if self.ranker is None:
            raise CRSError(f"policy {self.name!r} needs a preference ranker (--ranker)")
        return self.ranker

    def slate(self, env: ConversationEnv) -> dict[str, Any]:
        """Recommend the ranker's top-k candidates."""
        state = env.state
        candidates = state.candidate_items()
        scores = self._require_ranker().item_scores(state.facts(), candidates)
        return recommend(top_k(candidates, scores, env.slate_size))

    def best_aspect(self, env: ConversationEnv) -> int | None:
        """The ranker's best-scored reachable aspect, or None when nothing is left to ask."""
        state = env.state
        aspects = self.askable_aspects(env)
        if aspects.size == 0:
            return None
        scores = self._require_ranker().aspect_scores(state.facts(), aspects)
        return int(top_k(aspects, scores, 1)[0])

    @staticmethod
    def askable_aspects(env: ConversationEnv) -> np.ndarray:
        """Reachable aspects; with enumerated questions, only those under a not-yet-asked category."""
        state = env.state
        aspects = state.reachable_aspects()
        if env.enumerated and aspects.size:
            taxonomy = env.catalog.taxonomy
            assert taxonomy is not None and taxonomy.members is not None  # enumerated: set in __post_init__
            open_categories = taxonomy.members[~state.asked_categories].tocsc()
            aspects = aspects[np.diff(open_categories[:, aspects].tocsc().indptr) > 0]
        return aspects

    def question(self, env: ConversationEnv, aspect: int, scores: np.ndarray | None = None) -> dict[str, Any]:
        """Ask `aspect`; in an enumerated env the first unasked category listing it; in a typed
        multiple-choice env (MCMIPL) `aspect` and the best-scored askable values of its type.

        Args:
            env: The env.
            aspect: The aspect the policy chose.
            scores: The policy's score of each of ``askable_aspects(env)``, shape (n,); read only in a
                typed env (None: the ranker's aspect scores).
        """
        if env.question_types is not None:
            pool = self.askable_aspects(env)
            if scores is None:
                scores = self._require_ranker().aspect_scores(env.state.facts(), pool)
            return ask(typed_question(aspect, pool, scores, env.question_types, env.max_choices))
        if not env.enumerated:
            return ask(aspect)
        taxonomy = env.catalog.taxonomy
        assert taxonomy is not None
        parents = taxonomy.parents_of(np.array([aspect]))
        parents = parents[~env.state.asked_categories[parents]]
        return ask(int(parents[0]))


class RandomPolicy(RulePolicy):
    name = "random"

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        aspects = self.askable_aspects(env)
        if aspects.size and self.rng.random() < 0.5:
            aspect = int(self.rng.choice(aspects))
            # a typed question's other values: random ones of its type (drawn only in typed envs)
            scores = self.rng.random(aspects.size) if env.question_types is not None else None
            return self.question(env, aspect, scores)
        candidates = env.state.candidate_items()
        size = min(env.slate_size, candidates.size)
        return recommend(self.rng.choice(candidates, size=size, replace=False))


class AlwaysRecommendPolicy(RulePolicy):
    name = "always-recommend"

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return self.slate(env)


class AskThenRecommendPolicy(RulePolicy):
    """Ask the best aspect `n_asks` times (while any is reachable), then recommend every turn."""

    def __init__(self, ranker: PreferenceRanker | None, n_asks: int) -> None:
        super().__init__(ranker)
        if n_asks < 0:
            raise CRSError(f"ask-N needs N >= 0, got {n_asks}")
        self.n_asks = n_asks
        self.name = f"ask-{n_asks}"

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        questions = sum(1 for r in env.state.history if r.kind in ("ask", "probe"))
        if questions < self.n_asks:
            aspect = self.best_aspect(env)
            if aspect is not None:
                return self.question(env, aspect)
        return self.slate(env)


class ProbeThenAskPolicy(RulePolicy):
    """Probe the most likely persona `n_probes` times, then ask the best aspect `n_asks` times, then
    recommend every turn.

    Each probe lists what the RL policy's slot for that persona would list this turn, so a copy of this
    rule (`policies.rl.imitation`) is expressed exactly. The persona is the posterior's most likely one
    among those with a non-empty probe; with none, the turn asks instead (it still counts as a probe).

    Raises:
        CRSError: The ranker is not persona-aware (at construction), or the env offers no probes (the
            binary and enumerated settings: `check_env`, and at the first probe).
    """

    def __init__(self, ranker: PreferenceRanker | None, n_probes: int, n_asks: int) -> None:
        super().__init__(ranker)
        self.name = f"probe-{n_probes}-ask-{n_asks}"
        if ranker is not None and not isinstance(ranker, PersonaAwareRanker):
            raise CRSError(
                f"{self.name} probes personas, which the ranker given ({type(ranker).__name__}) does not "
                "model: pass --ranker with a `crs pretrain` artifact folder pre-trained on the dataset you "
                "evaluate (e.g. `crs pretrain -d DATASET --out runs/ranker`, with --data-dir for real data, "
                "then --ranker runs/ranker), or --ranker uniform (personas without learned preferences)"
            )
        self.n_probes = n_probes
        self.n_asks = n_asks

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        questions = sum(1 for r in env.state.history if r.kind in ("ask", "probe"))
        if questions < self.n_probes:
            chosen = self.best_probe(env)
            if chosen is not None:
                return chosen
        if questions < self.n_probes + self.n_asks:
            aspect = self.best_aspect(env)
            if aspect is not None:
                return self.question(env, aspect)
        return self.slate(env)

    def check_setting(self, setting: str) -> None:
        if not offers_probes(cast(Setting, setting)):
            raise SettingRefusedError(
                f"{self.name} probes personas, which only the multiple-choice setting offers; this env is "
                f"{setting!r}",
                "multiple_choice",
            )

    def best_probe(self, env: ConversationEnv) -> dict[str, Any] | None:
        """The probe of the most likely persona with something to list, or None when none has."""
        self.check_env(env)
        ranker = self._require_ranker()
        assert isinstance(ranker, PersonaAwareRanker)  # checked at construction
        state = env.state
        facts = state.facts()
        candidates = state.candidate_items()
        cands = rank_candidates(ranker, state, facts, candidates, env.slate_size)
        n_personas = min(int(ranker.personas_per_user), env.n_personas)
        size = min(WrapperConfig.probe_size, env.max_choices)
        probes = probe_slots(ranker, facts, cands, n_personas, size, env.question_types).aspects
        posterior = np.asarray(ranker.persona_posterior(facts), dtype=np.float64)[:n_personas]
        offered = np.array([aspects.size > 0 for aspects in probes])
        if not offered.any():
            return None
        persona = int(np.argmax(np.where(offered, posterior, -np.inf)))
        return probe(persona, probes[persona])


class AskUntilPolicy(RulePolicy):
    """Ask the best aspect while more than `k` candidates hold no rejected aspect, then recommend."""

    def __init__(self, ranker: PreferenceRanker | None, k: int) -> None:
        super().__init__(ranker)
        if k < 1:
            raise CRSError(f"ask-until-K needs K >= 1, got {k}")
        self.k = k
        self.name = f"ask-until-{k}"

    @staticmethod
    def n_consistent(env: ConversationEnv) -> int:
        """Candidates holding none of the rejected aspects (those a truthful user's answers allow)."""
        state = env.state
        candidates = state.candidate_items()
        rejected = np.flatnonzero(state.rejected)
        if rejected.size == 0 or candidates.size == 0:
            return int(candidates.size)
        holding = env.catalog.item_aspects[candidates][:, rejected].getnnz(axis=1)
        return int(np.count_nonzero(holding == 0))

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        if self.n_consistent(env) > self.k:
            aspect = self.best_aspect(env)
            if aspect is not None:
                return self.question(env, aspect)
        return self.slate(env)


class MaxEntropyPolicy(RulePolicy):
    name = "max-entropy"

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        state = env.state
        candidates = state.candidate_items()
        aspects = self.askable_aspects(env)
        if candidates.size <= env.slate_size or aspects.size == 0:
            return self.slate(env)
        scores = self._require_ranker().item_scores(state.facts(), candidates)
        # standardised first: raw scores (e.g. popularity counts) would put all weight on one item
        z = (scores - scores.mean()) / (scores.std() + 1e-12)
        weights = np.exp(z - z.max())
        weights /= weights.sum()
        # share of candidate weight holding each aspect: (n_aspects,)
        share = env.catalog.item_aspects[candidates][:, aspects].T @ weights
        share = np.clip(share, 1e-12, 1 - 1e-12)
        entropy = -(share * np.log2(share) + (1 - share) * np.log2(1 - share))
        return self.question(env, int(top_k(aspects, entropy, 1)[0]), entropy)


class AbsGreedyPolicy(RulePolicy):
    """Recommend only; rejected items push down candidates that share their aspects."""

    name = "abs-greedy"

    def __init__(self, ranker: PreferenceRanker | None, penalty: float = 1.0) -> None:
        super().__init__(ranker)
        self.penalty = penalty

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        state = env.state
        candidates = state.candidate_items()
        scores = self._require_ranker().item_scores(state.facts(), candidates)
        rejected = np.flatnonzero(state.rejected_items)
        if rejected.size:
            rows = env.catalog.item_aspects[candidates].astype(np.float64)
            rejected_profile = np.asarray(env.catalog.item_aspects[rejected].sum(axis=0)).ravel()
            overlap = rows @ (rejected_profile / rejected.size)
            sizes = np.maximum(np.diff(rows.indptr), 1)
            scores = scores - self.penalty * scores.std() * overlap / sizes
        return recommend(top_k(candidates, scores, env.slate_size))


class LookaheadPolicy(RulePolicy):
    """ask-N's question or ask-N's slate, whichever a depth-`depth` search under the belief values more.

    The search (`envs.answer_search`) values each choice by the mass of the ranker's belief about the
    target that it would find; its deeper nodes ask the ranker's best aspect, as ask-N asks it.

    With `questions` Q > 1 (``lookahead-DxQ``) the turn weighs the ranker's Q best aspects the same way
    and asks the one worth most (deeper nodes still ask the best one), so it may ask another question
    than ask-N does.

    The turn asks when asking is worth more, or as much while the slates cannot yet cover everything
    the belief allows. Binary setting only: the search models yes/no answers and UNICORN's candidate rule.

    With `temperature` T != 1 (``lookahead-DxQtT``) the belief is softmax(scores / T): a sharper belief
    trusts the ranker's order more and stops asking sooner (`envs.answer_search`).

    Raises:
        CRSError: `depth` or `questions` < 1, or `temperature` is not a finite number > 0 (at
            construction); the env is not in the binary setting (`check_env`, and at each turn).
    """

    def __init__(
        self, ranker: PreferenceRanker | None, depth: int, questions: int = 1, temperature: float = 1.0
    ) -> None:
        super().__init__(ranker)
        if depth < 1 or questions < 1:
            raise CRSError(
                f"lookahead-DxQ needs a depth D >= 1 and Q >= 1 questions, got D {depth} and Q {questions}"
            )
        check_temperature(temperature)
        self.depth = depth
        self.questions = questions
        self.temperature = temperature
        self.name = (
            f"lookahead-{depth}"
            + (f"x{questions}" if questions > 1 or temperature != 1.0 else "")
            + (f"t{temperature:g}" if temperature != 1.0 else "")
        )

    def check_env(self, env: ConversationEnv) -> None:
        self.check_setting(env.setting)
        if env.candidate_rule != "all":
            raise SettingRefusedError(
                f"{self.name} plans yes/no questions: it needs the binary setting's candidate rule 'all' "
                f"(the items having every accepted aspect), not {env.candidate_rule!r}",
                "binary",
            )

    def check_setting(self, setting: str) -> None:
        if setting != "binary":
            raise SettingRefusedError(
                f"{self.name} plans yes/no questions: it needs the binary setting, not {setting!r}", "binary"
            )

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        self.check_env(env)
        state = env.state
        turns_left = env.max_turns - state.turn
        candidates = state.candidate_items()
        if turns_left <= 1 or candidates.size <= env.slate_size:
            return self.slate(env)
        search = AnswerSearch(
            env.catalog,
            self._require_ranker(),
            env.slate_size,
            self.depth,
            state.facts(),
            candidates,
            temperature=self.temperature,
        )
        options = search.best_aspects(search.root, self.questions)
        if options.size == 0:
            return self.slate(env)
        plan = search.plan(options, turns_left)
        if plan.ask is None:
            return self.slate(env)
        return self.question(env, int(options[plan.ask]))


def make_rule_policy(name: str, ranker: PreferenceRanker | None) -> RulePolicy:
    """A rule policy by name: random, always-recommend, ask-N (e.g. ask-4), ask-until-K (e.g.
    ask-until-80), max-entropy, abs-greedy, lookahead-D, lookahead-DxQ or lookahead-DxQtT (e.g.
    lookahead-2x3, lookahead-2x3t0.01), probe-K-ask-N (e.g. probe-1-ask-6)."""
    # ASCII digits only: "ask-４" (a full-width 4) would be a second name for ask-4
    match = re.fullmatch(r"probe-(\d+)-ask-(\d+)", name, re.ASCII)
    if match:
        if int(match.group(1)) == 0:  # it was refused in the binary setting as a rule that "probes personas"
            raise CRSError(
                f"{name} probes 0 times: use ask-{int(match.group(2))}, or probe-K-ask-N with K >= 1"
            )
        return ProbeThenAskPolicy(ranker, int(match.group(1)), int(match.group(2)))
    match = re.fullmatch(r"ask-(\d+)", name, re.ASCII)
    if match:
        return AskThenRecommendPolicy(ranker, int(match.group(1)))
    match = re.fullmatch(r"ask-until-(\d+)", name, re.ASCII)
    if match:
        return AskUntilPolicy(ranker, int(match.group(1)))
    match = re.fullmatch(r"lookahead-(\d+)(?:x(\d+)(?:t(\d*\.?\d+(?:e-?\d+)?))?)?", name, re.ASCII)
    if match:
        depth, questions, temperature = match.groups()
        return LookaheadPolicy(ranker, int(depth), int(questions or 1), float(temperature or 1.0))
    table = {
        "random": RandomPolicy,
        "always-recommend": AlwaysRecommendPolicy,
        "max-entropy": MaxEntropyPolicy,
        "abs-greedy": AbsGreedyPolicy,
    }
    if name not in table:
        run = " or a trained run's folder (none is there)" if "/" in name or "\\" in name else ""
        raise CRSError(
            f"unknown rule policy {name!r}; choose one of {', '.join(RULE_POLICY_NAMES)} (e.g. ask-4){run}"
        )
    return table[name](ranker)
