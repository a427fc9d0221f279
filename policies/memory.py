"""A per-user persona memory: what the recommender believes about a returning user's personas (#16).

The pre-trained persona ranker (`envs.ranker.ExplainablePersonaRanker`, e.g.
`policies.pretrain.ranker.PersonaRanker`) holds each user's persona prior ``log_prior`` (U, K),
frozen after pre-training; within a conversation its posterior β moves from that prior, and every
conversation starts again from it. A `PersonaMemory` keeps one prior per user across conversations,
in one of three modes (`MemoryMode`):

- ``"frozen"``: the ranker's prior, never updated (today's behaviour);
- ``"update"``: after each session, the prior moves towards what that session's feedback says about
  which persona was active (`UpdateRule`, below);
- ``"oracle"``: a prior concentrated on the session's true active persona (`ORACLE_MASS` on it), handed
  in by an evaluation that knows it: the upper bound of what a memory can give.

A session runs with ``memory.ranker_for(user)``: a view of the shared ranker whose ``log_prior`` row of
that user is the memory's, so a rule policy built on it (``make_rule_policy("ask-4", view)``) and the
ranker's own dialogue posterior start from the memory's belief. The shared ranker is never written;
another user's row in a view is the ranker's own.

## The update (mode "update"), closed form

A session's feedback (`SessionEvidence`: the accepted and rejected aspects, the opening and probe
answers included; the rejected slates' items; the accepted item) gives each of the user's K personas
a log-likelihood

    ℓ_k = w_a · (Σ_{a ∈ acc} c_{k,a} − Σ_{a ∈ rej} c_{k,a})      aspects (the ranker's own evidence)
        + w_i · s_k(v*)                                         the accepted item v*, if any
        − w_r · mean_{v ∈ rejected items} (s_k(v) − mean_k' s_k'(v))   rejected slates

where c_{k,a} is the ranker's relative aspect affinity (what moves β within a conversation, read as
``log β − log π`` from `persona_posterior`) and s_k(v) the ranker's per-persona item logit
(`MemoryRanker.persona_item_logits`: AMP-CF's ``p_k·e_v`` plus the persona's aspect-attention term),
whose softmax over k is AMP-CF's persona attention α_k(v). The session's responsibilities
``r = softmax(log π + ℓ)`` are the posterior of "persona k was active this session", and the prior
moves by one step of online EM (stochastic EM for mixture weights) with a forgetting factor ρ:

    π ← (1 − ρ) · π + ρ · r,   then every π_k ≥ `UpdateRule.floor` and renormalised,

so a persona that stops showing fades geometrically (weight (1 − ρ)^n after n sessions) and a switch
can be followed; the floor keeps every persona recoverable. The constants (`DEFAULT_RULE`) were
chosen by measurement on the persona world's valid split (see `DEFAULT_RULE`).

Cost: one ``persona_posterior`` and one ``persona_item_logits`` call of the ranker (its per-user
cache, O(K · I) the first time) and O(K) arithmetic; measured well under the 50 ms bound.
Deterministic: no randomness at all. Only `update` writes, and only the evidence's user's entry.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args, runtime_checkable

import numpy as np

from envs.ranker import DialogueFacts, ExplainablePersonaRanker
from envs.rollout import ConversationPolicy
from envs.setting import Setting
from envs.state import DialogueState, TurnRecord
from policies.rules import make_rule_policy
from simulators.errors import CRSError

MemoryMode = Literal["frozen", "update", "oracle"]
"""How a `PersonaMemory` treats a returning user's persona prior (see the module docstring)."""

MEMORY_MODES: tuple[MemoryMode, ...] = get_args(MemoryMode)
"""The modes, in order: ("frozen", "update", "oracle")."""

ORACLE_MASS: float = 0.95
"""Prior mass the oracle puts on the true active persona; the other K - 1 share the rest equally.
(Measured on the persona world's test split with ask-4, 600 conversations: SR@15 0.785 with the
pre-trained prior, 0.797 / 0.803 / 0.808 / 0.812 with mass 0.6 / 0.8 / 0.95 / 0.99 on the true one.)"""


class PersonaMemoryError(CRSError):
    """A persona memory was used wrongly: a bad mode, user, slot, rule constant or ranker."""


@runtime_checkable
class MemoryRanker(ExplainablePersonaRanker, Protocol):
    """An explainable persona ranker that also gives its per-persona item logits (what the update reads).

    `policies.pretrain.ranker.PersonaRanker` is one.
    """

    def persona_item_logits(self, user: int, items: np.ndarray) -> np.ndarray:
        """s_k(v): persona k's logit for each of `items` (shape (n,), int64), float64 of shape (K, n);
        softmax over k (plus the log prior) is the persona attention α_k(v)."""
        ...


class BeliefPolicy(Protocol):
    """A policy that plays each session of a returning user from the memory's belief.

    `for_session` gets the session's ranker view (`PersonaMemory.ranker_for`, whose ``log_prior`` row
    of `user` is the memory's prior) and returns the policy that plays the session: a rule policy over
    the view (`RuleBeliefPolicy`), or a trained RL policy whose wrapper reads the view and whose encoder
    reads the same prior row (`policies.rl.acting.RLPolicy.for_session`).

    Attributes:
        name: Display name.
        setting: The question setting the policy must act in (None: the world's default).
    """

    @property
    def name(self) -> str: ...

    @property
    def setting(self) -> Setting | None: ...

    def for_session(self, ranker: ExplainablePersonaRanker, user: int) -> ConversationPolicy:
        """The policy of one session of `user`, acting with `ranker` (the memory's view)."""
        ...


@dataclass(frozen=True)
class RuleBeliefPolicy:
    """A rule policy (`policies.rules.make_rule_policy`) as a `BeliefPolicy`: built afresh over each
    session's ranker view, so its scores and the ranker's posterior start from the memory's prior.

    Attributes:
        name: The rule's name, e.g. "ask-4".
        setting: Always None (rules act in any setting).
    """

    name: str
    setting: Setting | None = None

    def for_session(self, ranker: ExplainablePersonaRanker, user: int) -> ConversationPolicy:
        """``make_rule_policy(name, ranker)``; `user` is the view's business, not the rule's."""
        return make_rule_policy(self.name, ranker)


@dataclass(frozen=True)
class UpdateRule:
    """The constants of the closed-form update (module docstring).

    Attributes:
        forgetting: ρ in (0, 1]: the weight of one session's responsibilities in the new prior.
        aspect_weight: w_a >= 0, weight of the aspect evidence.
        item_weight: w_i >= 0, weight of the accepted item's evidence.
        rejected_item_weight: w_r >= 0, weight of the rejected slates' evidence.
        floor: Least prior probability of any persona, in [0, 1/K).
    """

    forgetting: float = 0.1
    aspect_weight: float = 1.0
    item_weight: float = 0.1
    rejected_item_weight: float = 0.0
    floor: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.forgetting <= 1.0:
            raise PersonaMemoryError(f"UpdateRule forgetting={self.forgetting} must lie in (0, 1]")
        for name in ("aspect_weight", "item_weight", "rejected_item_weight"):
            if not getattr(self, name) >= 0.0:
                raise PersonaMemoryError(f"UpdateRule {name}={getattr(self, name)} must be >= 0")
        if not 0.0 <= self.floor < 0.5:
            raise PersonaMemoryError(f"UpdateRule floor={self.floor} must lie in [0, 0.5)")


DEFAULT_RULE = UpdateRule(forgetting=0.3, aspect_weight=4.0, item_weight=1.0, floor=0.05)
"""The update's constants, chosen by measurement on the persona world's *valid* split (the reported
figures use test), after the returning-user simulator changed (#16: targets drawn the same way every
session, and a switch that gives the minor persona 0.9 of the mass), with
``benchmarks/tune_memory_update.py --ranker runs/issue16/pw-ranker --users 500``: ask-4 with the
world's pre-trained ranker played 500 returning users x 8 sessions (seed 100, valid targets) of the
switch and of the stable regime with the frozen prior; each session's evidence was replayed through the
update for a grid (ρ 0.1/0.2/0.3/0.5/0.7/0.9, w_a 0.5/1/2/3/4, w_i 0/0.1/0.5/1, floor 0.02/0.05, w_r 0),
scoring the memory's mean log-probability of the true active persona before each session (switch:
sessions from the change on; stable: every session), summed over the two regimes. Best: ρ = 0.3,
w_a = 4, w_i = 1, floor 0.05 (−2.313; w_a = 4 is the grid's edge, w_a 3 and 4 within 0.01): switch
−1.193 (frozen −1.709), stable −1.120 (frozen −1.016); the memory's top persona is the true active one
in 57% of the sessions after the switch (frozen 10%, the previous constants ρ = 0.1, w_a = 1,
w_i = 0.1 24%) and in 44% of stable sessions (frozen 49%). Faster forgetting tracks the switch better
(ρ = 0.9, w_a = 2, w_i = 1: 67%) and costs the stable user more (log-probability −1.575).

The previous constants (ρ = 0.1, w_a = 1, w_i = 0.1, floor 0.05) were chosen the same way on the
first simulator, whose switch swapped the top and minor weights."""


def _frozen(values: np.ndarray | Sequence[int], dtype: type) -> np.ndarray:
    out: np.ndarray = np.array(values, dtype=dtype, copy=True).reshape(-1)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class SessionEvidence:
    """What one finished session says about its user, as the recommender saw it (no hidden goal).

    Attributes:
        user: User id.
        accepted: Aspects the user accepted (opening, questions, probes), int64, shape (n_acc,).
        rejected: Aspects recorded as rejected, int64, shape (n_rej,).
        rejected_items: Items of the rejected slates, int64, shape (n_items,).
        accepted_item: The item the user accepted, or None (the session failed).
    """

    user: int
    accepted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rejected: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rejected_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    accepted_item: int | None = None

    def __post_init__(self) -> None:
        for name in ("accepted", "rejected", "rejected_items"):
            object.__setattr__(self, name, _frozen(getattr(self, name), np.int64))

    @classmethod
    def from_state(cls, state: DialogueState) -> SessionEvidence:
        """The evidence of a finished conversation's state (`envs.ConversationEnv.state`)."""
        facts = state.facts()
        return cls(
            user=facts.user,
            accepted=facts.accepted,
            rejected=facts.rejected,
            rejected_items=facts.rejected_items,
            accepted_item=accepted_item(state.history),
        )

    @property
    def facts(self) -> DialogueFacts:
        """The aspects (and rejected items) as dialogue facts."""
        return DialogueFacts(self.user, self.accepted, self.rejected, self.rejected_items)


def accepted_item(history: Sequence[TurnRecord]) -> int | None:
    """The item accepted in a dialogue's turns, or None."""
    for record in reversed(history):
        if record.accepted_item is not None:
            return int(record.accepted_item)
    return None


@dataclass(frozen=True)
class MemoryUpdate:
    """What one session did to a user's prior.

    Attributes:
        user: User id.
        before: The prior before the session, shape (K,), sums to 1.
        log_likelihood: ℓ_k of the session's evidence, shape (K,) (zeros when the mode does not update).
        responsibilities: r, the posterior of the session's active persona, shape (K,).
        after: The prior after the session, shape (K,), sums to 1.
    """

    user: int
    before: np.ndarray
    log_likelihood: np.ndarray
    responsibilities: np.ndarray
    after: np.ndarray


class PersonaMemory:
    """Per-user persona priors kept across sessions over one shared, never-written persona ranker.

    Args:
        ranker: The pre-trained persona ranker (mode "update" needs a `MemoryRanker`).
        mode: "frozen", "update" or "oracle" (`MEMORY_MODES`).
        rule: The update's constants (mode "update").

    Raises:
        PersonaMemoryError: An unknown mode, or a ranker without the persona interface the mode needs.
    """

    def __init__(
        self, ranker: ExplainablePersonaRanker, mode: MemoryMode = "update", rule: UpdateRule = DEFAULT_RULE
    ) -> None:
        if mode not in MEMORY_MODES:
            raise PersonaMemoryError(f"unknown memory mode {mode!r}; use one of {MEMORY_MODES}")
        if not isinstance(ranker, ExplainablePersonaRanker):
            raise PersonaMemoryError(
                "a persona memory needs a persona ranker (log_prior, personas), not "
                f"{type(ranker).__name__}; use a `crs pretrain` artifact"
            )
        if mode == "update" and not isinstance(ranker, MemoryRanker):
            raise PersonaMemoryError(
                f"memory mode 'update' reads per-persona item logits; {type(ranker).__name__} has no "
                "persona_item_logits (a `crs pretrain` artifact's PersonaRanker has)"
            )
        self.ranker = ranker
        self.mode: MemoryMode = mode
        self.rule = rule
        self._shared_log_prior = np.asarray(ranker.log_prior)
        self._priors: dict[int, np.ndarray] = {}

    @property
    def personas_per_user(self) -> int:
        return int(self._shared_log_prior.shape[1])

    def _check_user(self, user: int) -> int:
        if not 0 <= user < self._shared_log_prior.shape[0]:
            raise PersonaMemoryError(
                f"user {user} outside [0, {self._shared_log_prior.shape[0]}) of the ranker"
            )
        return int(user)

    def prior(self, user: int) -> np.ndarray:
        """The memory's persona prior of `user` (the ranker's until a session updates it), shape (K,)."""
        user = self._check_user(user)
        kept = self._priors.get(user)
        if kept is not None:
            return kept
        return _frozen(_softmax(self._shared_log_prior[user]), np.float64)

    def most_likely(self, user: int) -> int:
        """The persona slot the memory believes most likely for `user`'s next session (first on ties)."""
        return int(np.argmax(self.prior(user)))

    def oracle_prior(self, slot: int) -> np.ndarray:
        """The oracle's prior: `ORACLE_MASS` on `slot`, the rest shared equally, shape (K,).

        Raises:
            PersonaMemoryError: `slot` outside [0, K).
        """
        k = self.personas_per_user
        if not 0 <= slot < k:
            raise PersonaMemoryError(f"oracle slot {slot} outside [0, {k}) of the ranker's personas")
        if k == 1:
            return np.ones(1)
        prior = np.full(k, (1.0 - ORACLE_MASS) / (k - 1))
        prior[slot] = ORACLE_MASS
        return prior

    def ranker_for(self, user: int, active: int | None = None) -> ExplainablePersonaRanker:
        """The ranker a session of `user` runs with: the shared ranker with `user`'s prior row replaced.

        A shallow copy: it shares the ranker's arrays and per-user caches (none depends on the prior)
        and owns a new ``log_prior`` array, read-only, equal to the ranker's except row `user`. While
        the memory holds the ranker's own prior for `user` (mode "frozen", or "update" before the
        user's first session) that row is the ranker's too, exactly: the view plays as the ranker.

        Args:
            user: User id.
            active: Mode "oracle" only: the session's true active persona as a slot of the ranker's
                personas, or None when the ranker has none for it (a persona the user never showed):
                then the oracle knows nothing more and the row is uniform.

        Raises:
            PersonaMemoryError: `user` out of range; `active` given outside mode "oracle" or out of range.
        """
        user = self._check_user(user)
        row: np.ndarray | None = None
        if self.mode == "oracle":
            row = self.oracle_prior(active) if active is not None else np.full(self.personas_per_user, 1.0)
        elif active is not None:
            raise PersonaMemoryError(f"the true active persona is for mode 'oracle' only, not {self.mode!r}")
        else:
            row = self._priors.get(user)  # None: the ranker's prior, whose row is kept bit for bit
        log_prior = np.array(self._shared_log_prior, dtype=np.float64, copy=True)
        if row is not None:
            log_prior[user] = np.log(row / row.sum())
        log_prior.setflags(write=False)
        view = copy.copy(self.ranker)
        view.log_prior = log_prior
        return view

    def log_likelihood(self, evidence: SessionEvidence) -> np.ndarray:
        """ℓ_k of a session's evidence under each of the user's K personas, shape (K,) (docstring)."""
        user = self._check_user(evidence.user)
        rule, k = self.rule, self.personas_per_user
        total = np.zeros(k)
        if rule.aspect_weight and (evidence.accepted.size or evidence.rejected.size):
            # log β − log π = the ranker's aspect evidence (up to a constant, which softmax drops)
            posterior = self.ranker.persona_posterior(evidence.facts)
            total += rule.aspect_weight * (
                np.log(np.maximum(posterior, 1e-300)) - _log_softmax(self._shared_log_prior[user])
            )
        needs_items = (rule.item_weight and evidence.accepted_item is not None) or (
            rule.rejected_item_weight and evidence.rejected_items.size
        )
        if needs_items:
            ranker = self.ranker
            assert isinstance(ranker, MemoryRanker)  # checked in __init__ for mode "update"
            if rule.item_weight and evidence.accepted_item is not None:
                item = np.array([evidence.accepted_item], dtype=np.int64)
                total += rule.item_weight * ranker.persona_item_logits(user, item)[:, 0]
            if rule.rejected_item_weight and evidence.rejected_items.size:
                logits = ranker.persona_item_logits(user, evidence.rejected_items)
                relative = logits - logits.mean(axis=0, keepdims=True)
                total -= rule.rejected_item_weight * relative.mean(axis=1)
        return total - total.max()

    def update(self, evidence: SessionEvidence) -> MemoryUpdate:
        """Move `evidence.user`'s prior by one session's feedback (mode "update"; the others keep it).

        Raises:
            PersonaMemoryError: The user is outside the ranker.
        """
        user = self._check_user(evidence.user)
        before = self.prior(user)
        if self.mode != "update":
            zero = np.zeros(self.personas_per_user)
            return MemoryUpdate(user, before, zero, before, before)
        rule = self.rule
        likelihood = self.log_likelihood(evidence)
        responsibilities = _softmax(np.log(np.maximum(before, 1e-300)) + likelihood)
        after = (1.0 - rule.forgetting) * before + rule.forgetting * responsibilities
        after = np.maximum(after, rule.floor)
        after = _frozen(after / after.sum(), np.float64)
        self._priors[user] = after
        return MemoryUpdate(
            user,
            before,
            _frozen(likelihood, np.float64),
            _frozen(responsibilities, np.float64),
            after,
        )

    def remembered_users(self) -> tuple[int, ...]:
        """Users whose prior a session has updated, ascending."""
        return tuple(sorted(self._priors))

    def forget(self, user: int) -> None:
        """Drop `user`'s memory: their prior is the ranker's again."""
        self._priors.pop(self._check_user(user), None)

    def restore(self, user: int, prior: Sequence[float] | np.ndarray) -> None:
        """Set `user`'s prior to one an earlier memory reached (mode "update"), e.g. read from a memory
        file (`policies.memory_file`); the next `update` moves it from there.

        Raises:
            PersonaMemoryError: Another mode than "update", `user` out of range, or `prior` not K finite
                weights >= 0 with a positive sum (it is normalised).
        """
        user = self._check_user(user)
        if self.mode != "update":
            raise PersonaMemoryError(f"a memory in mode {self.mode!r} keeps no prior; restore needs 'update'")
        row = np.asarray(prior, dtype=np.float64).reshape(-1)
        k = self.personas_per_user
        if row.shape[0] != k or not np.isfinite(row).all() or (row < 0).any() or not row.sum() > 0:
            raise PersonaMemoryError(
                f"prior {row.tolist()} of user {user} must be {k} finite weights >= 0 with a positive sum"
            )
        self._priors[user] = _frozen(row / row.sum(), np.float64)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    out: np.ndarray = z / z.sum()
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out: np.ndarray = x - np.logaddexp.reduce(x)
    return out
