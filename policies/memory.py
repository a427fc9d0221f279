"""A per-user persona memory: what the recommender believes about a returning user's personas (#16).

The pre-trained persona ranker (`envs.ranker.ExplainablePersonaRanker`, e.g.
`policies.pretrain.ranker.PersonaRanker`) holds each user's persona prior ``log_prior`` (U, K),
frozen after pre-training; within a conversation its posterior β moves from that prior, and every
conversation starts again from it. A `PersonaMemory` keeps one prior per user across conversations,
in one of three modes (`MemoryMode`):

- ``"frozen"``: the ranker's prior, never updated (today's behaviour);
- ``"update"``: after each session, a switching filter moves the user's belief by what that session's
  feedback says about which persona was active (`UpdateRule`, below);
- ``"oracle"``: a prior concentrated on the session's true active persona (`ORACLE_MASS` on it), handed
  in by an evaluation that knows it: the upper bound of what a memory can give.

A session runs with ``memory.ranker_for(user)``: a view of the shared ranker whose ``log_prior`` row of
that user is the memory's (`PersonaMemory.view_prior`), so a rule policy built on it
(``make_rule_policy("ask-4", view)``) and the ranker's own dialogue posterior start from the memory's
belief. The shared ranker is never written; another user's row in a view is the ranker's own.

## The update (mode "update"): a switching (hidden Markov) filter, closed form

A returning user has a *dominant* persona, the largest of their mixture, and each session's *active*
persona is drawn from that mixture: mostly the dominant one, sometimes another. A switch is a change of
the dominant persona. The memory keeps, per user, a belief d (K,) over which persona is dominant now,
and two matrices of `UpdateRule` constants (m = ``dominance``, h = ``switch_rate``):

    E[d, a] = m if a == d else (1 − m)/(K − 1)      emission: the session's active persona a given d
    T[d, d'] = 1 − h if d' == d else h/(K − 1)      transition between sessions: a switch

A session's feedback (`SessionEvidence`: the accepted and rejected aspects, the opening and probe
answers included; the rejected slates' items; the accepted item) gives each active persona a
log-likelihood

    ℓ_k = w_a · (log β_k − log π_k)                              aspects (the ranker's own evidence)
        + w_i · s_k(v*)                                          the accepted item v*, if any
        + w_r · mean_{v ∈ rejected items} (s_k(v) − mean_k' s_k'(v))   the rejected slates

where log β − log π is what the aspects moved the ranker's posterior from its prior
(`persona_posterior`: the ranker's relative aspect affinities) and s_k(v) the ranker's per-persona
item logit (`MemoryRanker.persona_item_logits`: AMP-CF's ``p_k·e_v`` plus the persona's
aspect-attention term), whose softmax over k is AMP-CF's persona attention α_k(v). With L = exp(ℓ),
one step of the forward filter is

    d_post ∝ d ⊙ (E L)      (P(evidence | dominant d) = Σ_a E[d, a] L_a)
    d ← d_post T,           prior = d E  (the predicted active persona of the next session)

and the session's responsibilities (`MemoryUpdate.responsibilities`), the posterior of "persona a was
active this session", are ∝ (d E) ⊙ L. ``prior`` is what a memory file stores and what
`PersonaMemory.most_likely` takes the argmax of; a user the memory never updated keeps the ranker's
prior exactly, and their first update takes the ranker's prior as d.
`PersonaMemory.restore` recovers d from a stored prior by inverting E (E = a·I + c·11ᵀ, c = (1 − m)/(K
− 1), a = m − c: d = (q − c)/a, exact for a prior made by d E).

The session's ranker view holds ``prior`` sharpened, ``prior^p`` renormalised (p = ``view_power``,
`PersonaMemory.view_prior`): the filter's d E is its calibrated guess of the next active persona, and
with m = 0.8 and h = 0.3 it never puts more than about 0.6 on one persona, while the ranker's posterior
reads its prior as one more piece of evidence. Measured on valid (`DEFAULT_RULE`), trusting the belief
more (p = 2) pays after a switch and costs a stable user no more than p = 1 does; sharpening the
*ranker's* prior the same way does not help (frozen, p = 2), so the gain is the memory's. A user the
memory never updated keeps the ranker's row bit for bit.

Why a filter rather than the earlier step of online EM with forgetting: one session's evidence is
noisy about the active persona (aspects, accepted item and rejected slates, each with weight 1, name
the true one in 0.82 of the switch regime's sessions on the persona world's valid split, below) and
the active persona is itself
only a draw around the dominant one, so a single off-persona session should move the belief little
while two in a row should move it all the way: the filter weighs each session by how surprising it is
under the present belief and the switch rate, where EM with forgetting moved the prior by the same share
whatever the session said. The transition keeps every persona recoverable (no floor needed).

The rejected slates count *for* the personas that score their items high: the ranker recommended them
from the belief it held during the session, which the session's answers had moved towards the active
persona. Measured on valid (switch regime, 500 users x 8 sessions, `benchmarks/tune_memory_update.py`):
one session's evidence names the active persona (the only maximum of ℓ) in 0.75 of the sessions from
the aspects alone, 0.81 with the accepted item and 0.82 with the rejected slates too (stable regime:
0.76, 0.83, 0.86). Among the 39% of sessions with rejected slates, their items alone name it in 0.64
with this sign and 0.18 with the opposite one (the earlier rule's "rejected: not this persona"; chance
1/3); in failed sessions they name it in 0.59 of all, where the aspects alone name it in 0.53.

The constants (`DEFAULT_RULE`) were chosen by measurement on the persona world's valid split (see
`DEFAULT_RULE`).

## A home state (``UpdateRule.home_rate``)

The filter above starts from the ranker's prior as its belief over the dominant persona and, after a
few sessions of a stable user, predicts the most seen persona with about m = 0.8, sharper than the
user's real mixture (the persona world's users weigh their largest persona 0.47 on average with K = 4).
Every session of a stable user is a fresh draw from that mixture, which the ranker's prior already
estimates, so the evidence can only add noise (replayed on valid: no counting of the sessions'
responsibilities beats the ranker's prior there), and the sharper prediction cost the stable user SR@15.

With h₀ = ``home_rate`` > 0 the filter has one more state, *home*: the user is still in their
pre-trained mixture, and the session's active persona is drawn from the ranker's prior π (its emission
row is π). Every user starts home; between sessions home is left with chance h₀, for each dominant
persona alike (h₀/K), and never re-entered; the dominant states move as before. So

    E⁺ = [E; π] (K + 1, K),   T⁺ = [[T, 0], [h₀/K · 1ᵀ, 1 − h₀]] (K + 1, K + 1),   prior = b E⁺

for the belief b (K + 1,) over the K dominant personas and home. A stable user's sessions keep most of
b at home (a draw from π is likeliest under π), so the prior stays near the ranker's; a switched user's
sessions keep naming one persona and move b to it. The view sharpens the prior only as far as the user
has left home: prior^p' with p' = 1 + (p − 1)(1 − home) (`UpdateRule.view_of`), so a user surely home
plays from the memory's prior as it is, no sharper than the ranker's own. `PersonaMemory.home` gives
b's home entry, `MemoryUpdate.home` its value after a session, and a memory file keeps it
(`policies.memory_file`) so that `restore` continues exactly: d is recovered by inverting E on what is
not home, (prior − home·π)/(1 − home).

A user's first session is had at home for sure, so its evidence cannot move the belief: the next
session's prior is (1 − h₀)π + h₀ · (the mean of E's rows) whatever the session said, and the evidence
counts from the second session on. (The switch regime changes at session 1 at the earliest, so the
first session's evidence was only ever about the pre-trained mixture.) In `crs chat --memory` a new
person's first conversation therefore moves the belief only by the chance of leaving home.

## Learned per-persona aspect weights (``UpdateRule.aspect_rate``)

With ``aspect_rate`` η > 0 the memory also keeps, per user, aspect weights W (K, A), float64, zeros
until that user's first update. After each session, with r the session's responsibilities (above):

    W[:, a] += η · r    for each aspect a the session accepted (the opening and probes included)
    W[:, a] −= η · r    for each aspect a it rejected

(each aspect once per session, however often it was answered). The session's view
(`ranker_for`) applies W for its user only (`AspectWeightRanker.with_aspect_weights`; for
`policies.pretrain.ranker.PersonaRanker`: c_{k,a} + W_{k,a} − mean_k' W_{k',a} in the posterior's
aspect evidence, so a persona seen accepting aspect a gains belief when a is accepted again, and
mean_{a ∈ A(v)} W_{k,a} added to persona k's item term), so persona and aspect attention move together.
The evidence ℓ is always read through the shared ranker, without W: the filter's belief never feeds
on its own weights. ``update_prior`` False keeps the prior the ranker's (the filter's belief stays
the ranker's prior each session; it still gives the responsibilities) while W moves. The three
variants (`MEMORY_UPDATES`, `rule_of`): "prior" (η = 0, today's update bit for bit), "aspects"
(prior kept, W moves) and "both". W lives in this process only: a memory file stores the prior
(`policies.memory_file`).

Cost: one ``persona_posterior`` and one ``persona_item_logits`` call of the ranker (its per-user
cache, O(K · I) the first time) and O(K²) arithmetic; measured well under the 50 ms bound. With W
(kept per user as the n aspects its sessions touched, O(K · n)): O(K · n) more per update and, per
view, O(K · A) for W and the adjusted c plus one O(K · I) copy of the user's item terms and O(K · nnz)
of the item-aspect entries of the touched aspects, when the view first scores (median, one core, a
loaded machine: update + view + first scoring of every item about 0.6 ms on the persona world, prior
only 0.2-0.3 ms; 1.6 ms on LastFM*, prior only 0.3-0.45 ms).
Deterministic: no randomness at all. Only `update` (and `restore`, `forget`) write, and only the
evidence's user's entry.
"""

from __future__ import annotations

import copy
import dataclasses
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

MemoryUpdateVariant = Literal["prior", "aspects", "both"]
"""What mode "update" moves (module docstring): the persona prior only, the per-persona aspect
weights only, or both."""

MEMORY_UPDATES: tuple[MemoryUpdateVariant, ...] = get_args(MemoryUpdateVariant)
"""The update variants, in order: ("prior", "aspects", "both")."""

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


@runtime_checkable
class AspectWeightRanker(MemoryRanker, Protocol):
    """A memory ranker whose views can apply one user's learned per-persona aspect weights (what
    ``UpdateRule.aspect_rate`` > 0 needs). `policies.pretrain.ranker.PersonaRanker` is one."""

    @property
    def n_aspects(self) -> int: ...

    def with_aspect_weights(self, user: int, weights: np.ndarray) -> ExplainablePersonaRanker:
        """A shallow-copy view in which `user` has the aspect weights `weights` (K, A); the ranker itself
        and every other user unchanged."""
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
    """The constants of the switching filter (module docstring).

    Attributes:
        switch_rate: h in (0, 1): the chance that the dominant persona changes between two sessions.
        dominance: m in (0, 1]: the chance that a session's active persona is the dominant one; must
            exceed 1/K for a user's K personas (checked by `PersonaMemory`), or the sessions would say
            nothing about the dominant persona.
        aspect_weight: w_a >= 0, weight of the aspect evidence.
        item_weight: w_i >= 0, weight of the accepted item's evidence.
        rejected_item_weight: w_r >= 0, weight of the rejected slates' evidence (for the personas that
            score their items high).
        aspect_rate: η >= 0, the step of the learned per-persona aspect weights (module docstring; 0:
            none are learned).
        update_prior: Whether the filter moves the prior (False: the prior stays the ranker's and only
            the aspect weights move, which then needs aspect_rate > 0).
        view_power: p > 0: the session's ranker view holds the memory's prior raised to p and
            renormalised (`view_of`; 1: the filter's prior as it is, > 1: trusted more).
        home_rate: h₀ in [0, 1): with h₀ > 0 the filter has a *home* state, the user's pre-trained
            mixture (module docstring), which the user leaves with chance h₀ between two sessions;
            0: no home state.
    """

    switch_rate: float = 0.3
    dominance: float = 0.8
    aspect_weight: float = 1.0
    item_weight: float = 1.0
    rejected_item_weight: float = 0.25
    aspect_rate: float = 0.0
    update_prior: bool = True
    view_power: float = 1.0
    home_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.switch_rate < 1.0:
            raise PersonaMemoryError(
                f"UpdateRule switch_rate={self.switch_rate} must lie in (0, 1): the chance of a switch "
                "between two sessions (e.g. 0.3)"
            )
        if not 0.0 < self.dominance <= 1.0:
            raise PersonaMemoryError(
                f"UpdateRule dominance={self.dominance} must lie in (0, 1]: the chance that a session's "
                "active persona is the dominant one (e.g. 0.9)"
            )
        for name in ("aspect_weight", "item_weight", "rejected_item_weight"):
            if not getattr(self, name) >= 0.0:
                raise PersonaMemoryError(
                    f"UpdateRule {name}={getattr(self, name)} must be >= 0 (0 ignores that evidence)"
                )
        if not 0.0 <= self.aspect_rate < float("inf"):
            raise PersonaMemoryError(
                f"UpdateRule aspect_rate={self.aspect_rate} must be finite and >= 0 (0 learns no aspect "
                "weights)"
            )
        if not 0.0 < self.view_power < float("inf"):
            raise PersonaMemoryError(
                f"UpdateRule view_power={self.view_power} must be finite and > 0 (1 hands the view the "
                "memory's prior as it is; e.g. 2)"
            )
        if not 0.0 <= self.home_rate < 1.0:
            raise PersonaMemoryError(
                f"UpdateRule home_rate={self.home_rate} must lie in [0, 1): the chance that a user still "
                "in their pre-trained mixture leaves it before the next session (0: no home state)"
            )
        if not self.update_prior and not self.aspect_rate > 0.0:
            raise PersonaMemoryError(
                "UpdateRule update_prior=False with aspect_rate=0 updates nothing; use memory mode "
                "'frozen', or an aspect_rate > 0"
            )

    @property
    def variant(self) -> MemoryUpdateVariant:
        """What the rule moves: "prior", "aspects" or "both" (`MEMORY_UPDATES`)."""
        if not self.aspect_rate > 0.0:
            return "prior"
        return "both" if self.update_prior else "aspects"

    def view_of(self, prior: np.ndarray, home: float = 0.0) -> np.ndarray:
        """The row a session's ranker view holds for a remembered `prior` (K,) whose user is still home
        with probability `home`: prior^p' renormalised, p' = 1 + (p − 1)(1 − home), p = view_power
        (module docstring); `prior` itself when p' = 1. Read-only, shape (K,)."""
        power = 1.0 + (self.view_power - 1.0) * (1.0 - home)
        if power == 1.0:
            return _frozen(prior, np.float64)
        with np.errstate(divide="ignore"):  # a persona the filter rules out (dominance 1) stays out
            log_row = power * np.log(prior)
        return _frozen(_softmax(log_row), np.float64)

    def check_personas(self, k: int) -> None:
        """Raise unless the rule can filter a user's `k` personas: dominance above 1/k (k >= 2).

        Raises:
            PersonaMemoryError: dominance <= 1/k.
        """
        if k >= 2 and not self.dominance > 1.0 / k:
            raise PersonaMemoryError(
                f"UpdateRule dominance={self.dominance} must exceed 1/K = {1.0 / k:.4g} for the ranker's "
                f"{k} personas per user (a dominant persona no likelier than the others is never "
                "seen); use a larger dominance, e.g. 0.9"
            )

    def emission(self, k: int) -> np.ndarray:
        """E (k, k): E[d, a] = P(the session's active persona is a | the dominant one is d)."""
        if k == 1:
            return np.ones((1, 1))
        out = np.full((k, k), (1.0 - self.dominance) / (k - 1))
        np.fill_diagonal(out, self.dominance)
        return out

    def transition(self, k: int) -> np.ndarray:
        """T (k, k), or (k + 1, k + 1) with a home state (``home_rate`` > 0, the last state): T[d, d'] =
        P(the state of the next session is d' | it is d now). Home leaves for each dominant persona
        with h₀/k; no state returns home."""
        out = np.ones((1, 1))
        if k > 1:
            out = np.full((k, k), self.switch_rate / (k - 1))
            np.fill_diagonal(out, 1.0 - self.switch_rate)
        if not self.home_rate > 0.0:
            return out
        full = np.zeros((k + 1, k + 1))
        full[:k, :k] = out
        full[k, :k] = self.home_rate / k
        full[k, k] = 1.0 - self.home_rate
        return full

    def dominant_of(self, prior: np.ndarray) -> np.ndarray:
        """The belief d over the dominant persona whose predicted active distribution d E is `prior`
        (K,), normalised: E⁻¹ in closed form (E = a·I + c·11ᵀ, d = (q − c)/a), clipped at 0 and
        renormalised (exact for a `prior` made by d E, whose every entry is >= c)."""
        q = np.asarray(prior, dtype=np.float64).reshape(-1)
        q = q / q.sum()
        k = q.shape[0]
        if k == 1:
            return np.ones(1)
        c = (1.0 - self.dominance) / (k - 1)
        d = np.maximum((q - c) / (self.dominance - c), 0.0)
        out: np.ndarray = d / d.sum()
        return out


DEFAULT_RULE = UpdateRule(
    switch_rate=0.3,
    dominance=0.8,
    aspect_weight=1.0,
    item_weight=1.0,
    rejected_item_weight=0.25,
    aspect_rate=0.0,
    update_prior=True,
    view_power=4.0,
    home_rate=0.3,
)
"""The filter's constants, chosen by measurement on the persona world's *valid* split (the reported
figures use test) with ``benchmarks/tune_memory_update.py --ranker runs/main-s8/ranker --users 500``:
ask-4 with the world's pre-trained ranker played 500 returning users x 8 sessions (seed 100, valid
targets) of the switch and of the stable regime with the frozen prior; each session's evidence was
replayed through the filter for a grid (h 0.05-0.5, m 0.6-0.95, w_a 0.5/1/2/3, w_i 0/0.5/1/2, w_r
0/0.25/0.5/1; 3,584 rules), scoring the memory's mean log-probability of the true active persona before
each session (switch: sessions from the change on; stable: every session), summed over the two regimes.
Best: h = 0.3, m = 0.8, w_a = 1, w_i = 1 (every one inside the grid), with w_r = 0 (−2.0576) and w_r =
0.25 (−2.0578) tied within the replay's noise (paired, per user: switch −0.0007 [−0.0023, +0.0008],
stable +0.0006 [−0.0002, +0.0014]); w_r = 0.25 was kept for its tracking after the switch (0.668 vs
0.663). Its figures: switch log-probability −0.989 (frozen −1.709), stable −1.069 (frozen −1.016); the
memory's top persona is the true active one in 66.8% of the sessions after the switch (frozen 9.7%) and
in 42.7% of stable sessions (frozen 48.7%). A more confident m = 0.9 tracks the switch as well (h 0.2,
w_a 2, w_i 1, w_r 0.5: 67.7%, the grid's best) and costs the stable user more (log-probability −1.147).

The earlier rule, one step of online EM with forgetting (ρ 0.3, w_a 4, w_i 1, floor 0.05), replayed on
the same evidence reached 57.2% after the switch (log-probability −1.193) and 44.4% stable (−1.120).

It learns no per-persona aspect weights (aspect_rate 0: the update variant "prior"): on valid, no
aspect rate improved SR@15 beyond the noise (`ASPECT_RATE`).

``view_power`` 2 (session 25) was chosen on the same valid split with the four-persona world's ranker of
#16's later figures (``crs pretrain --personas 4 --persona-init mixture --epochs 10 --seed 0``): ask-4,
1,000 returning users x 8 sessions, seed 100, SR@15 from the change on (switch) plus SR@15 over all
sessions (stable), the filter's other constants as above. p = 1 / 2 / 3 / 4 / 8: switch 0.695 / 0.702 /
0.701 / 0.698 / 0.701, stable 0.752 / 0.751 / 0.752 / 0.747 / 0.738 (frozen: 0.681 and 0.754; the oracle
0.731 after the switch). Larger p gains in the sessions after the first one of a switch and loses in the
change session itself, where the memory is confidently wrong, and in the stable regime. Sharpening the
frozen ranker's own prior by p = 2 gives 0.673 and 0.755: no gain, so the gain is the memory's.

The home state (``home_rate`` 0.3, session 26) and ``view_power`` 4 were chosen on the same valid split
and ranker with ``benchmarks/compare_memory_rules.py --ranker runs/k4mix --split valid --seeds
100,101,102`` (ask-4, 3 x 1,000 returning users x 8 sessions per regime, paired with the frozen prior;
SR@15 from the change on / over every session; the share of the frozen-to-oracle gap closed at the
change session and the two after it):

| rule (h = 0.3, m = 0.8) | switch | stable | gap closed +0 / +1 / +2 |
|---|---:|---:|---|
| no home, p = 2 (session 25) | +0.0154 | −0.0020 | 11% / 34% / 31% |
| h₀ 0.3, prior^2 whatever home is | +0.0140 | −0.0004 | 2% / 32% / 27% |
| h₀ 0.3, p 2 | +0.0121 | −0.0013 | −1% / 28% / 26% |
| h₀ 0.3, p 3 | +0.0152 | −0.0011 | −5% / 34% / 44% |
| **h₀ 0.3, p 4** | **+0.0142** | **−0.0006** | **−17% / 40% / 52%** |
| h₀ 0.4, p 3 | +0.0162 | −0.0020 | −4% / 41% / 42% |
| h₀ 0.2, p 3 | +0.0112 | +0.0000 | −5% / 25% / 27% |
| h₀ 0.3, h 0.2, p 3 | +0.0136 | −0.0023 | −17% / 35% / 42% |

(p is sharpened by how far the user left home unless said otherwise.) Each difference's 95% CI is
about ±0.005 (switch) and ±0.002 (stable), so the rules differ by little more than noise; h₀ 0.3 with
p 4 is the only one that meets #16's three marks on valid together: a switch gain with a CI above 0,
half the gap closed two sessions after the change, and a stable CI across 0 ([−0.0027, +0.0016]).
Its price is the change session itself (−17%), where a user who has left home is confidently wrong."""

ASPECT_RATE: float = 0.25
"""η of the variants "aspects" and "both" (`rule_of`) when the base rule learns none (`DEFAULT_RULE`'s
aspect_rate is 0).

Chosen on the persona world's *valid* split: ask-4 with the world's pre-trained ranker
(``runs/main-s8/ranker``), `crs.app.sessions.evaluate_returning` with ``split="valid"``, seed 100, 500
returning users x 8 sessions, "both" with η 0.1 / 0.25 / 0.5 / 1 / 2 against "prior" (η = 0), paired per
user (SR@15 from the change on in the switch regime, every session in the stable one; mean of the
per-user differences, 95% bootstrap CI): switch −0.002 [−0.008, +0.003] / +0.003 [−0.004, +0.010] /
+0.002 [−0.007, +0.010] / −0.004 [−0.016, +0.008] / −0.006 [−0.019, +0.008]; stable +0.000 [−0.001,
+0.002] / +0.001 [−0.002, +0.005] / −0.002 [−0.006, +0.003] / −0.006 [−0.011, +0.001] / −0.016 [−0.023,
−0.009]. η = 0.25 is the best in both regimes, but no η helps beyond the noise, so `DEFAULT_RULE` keeps
aspect_rate 0 (the prior alone). "aspects" (the prior kept) at η 0.25 / 0.5 / 1: switch −0.006 /
−0.012 / −0.009 (0.5: CI [−0.024, −0.001]), stable +0.003 / −0.001 / −0.006, all others' CIs across 0."""


def rule_of(variant: MemoryUpdateVariant, base: UpdateRule = DEFAULT_RULE) -> UpdateRule:
    """`base` as update variant `variant` (`MEMORY_UPDATES`): "prior" with aspect_rate 0, "aspects" with
    update_prior False, "both" with both; the aspects' η is `base`'s, or `ASPECT_RATE` if it has none.
    The filter's other constants are `base`'s.

    Raises:
        PersonaMemoryError: An unknown variant.
    """
    if variant not in MEMORY_UPDATES:
        raise PersonaMemoryError(f"unknown memory update {variant!r}; use one of {', '.join(MEMORY_UPDATES)}")
    rate = base.aspect_rate if base.aspect_rate > 0.0 else ASPECT_RATE
    if variant == "prior":
        return dataclasses.replace(base, aspect_rate=0.0, update_prior=True)
    return dataclasses.replace(base, aspect_rate=rate, update_prior=variant == "both")


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
        responsibilities: The posterior of the session's active persona, ∝ (d E) ⊙ exp(ℓ), shape (K,)
            (mode "update"; the prior before it otherwise).
        after: The prior after the session (the next session's predicted active persona, d E), shape
            (K,), sums to 1.
        home: The filter's probability after the session that the user is still home (a rule with a
            home state), or None.
    """

    user: int
    before: np.ndarray
    log_likelihood: np.ndarray
    responsibilities: np.ndarray
    after: np.ndarray
    home: float | None = None


class PersonaMemory:
    """Per-user persona priors kept across sessions over one shared, never-written persona ranker.

    Args:
        ranker: The pre-trained persona ranker (mode "update" needs a `MemoryRanker`).
        mode: "frozen", "update" or "oracle" (`MEMORY_MODES`).
        rule: The update's constants (mode "update").

    Raises:
        PersonaMemoryError: An unknown mode, a ranker without the persona interface the mode needs, or
            (mode "update") a rule whose dominance is not above 1/K for the ranker's K personas.
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
        if mode == "update" and rule.aspect_rate > 0.0 and not isinstance(ranker, AspectWeightRanker):
            raise PersonaMemoryError(
                f"UpdateRule aspect_rate={rule.aspect_rate} learns aspect weights, which "
                f"{type(ranker).__name__} cannot apply (no with_aspect_weights; a `crs pretrain` "
                "artifact's PersonaRanker can); use aspect_rate 0 (update 'prior')"
            )
        self.ranker = ranker
        self.mode: MemoryMode = mode
        self.rule = rule
        self._shared_log_prior = np.asarray(ranker.log_prior)
        k = self.personas_per_user
        if mode == "update":
            rule.check_personas(k)
        self._emission = rule.emission(k)
        self._transition = rule.transition(k)
        self._home = rule.home_rate > 0.0
        # per updated user: the belief d over the dominant persona (and, last, home, with a home state),
        # and the prior d E it predicts
        self._dominant: dict[int, np.ndarray] = {}
        self._priors: dict[int, np.ndarray] = {}
        # per user whose sessions moved them (aspect_rate > 0): the learned aspect weights W, kept as
        # the aspects the sessions touched (ascending) and their columns of W (K, n): every other column
        # is 0, so a user costs O(K · n), not O(K · A) (A is 8,438 on LastFM*)
        self._aspect_weights: dict[int, tuple[np.ndarray, np.ndarray]] = {}

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
        """The memory's persona prior of `user`, shape (K,): the ranker's until a session updates it,
        then the predicted active persona of the next session, d E (module docstring)."""
        user = self._check_user(user)
        kept = self._priors.get(user)
        if kept is not None:
            return kept
        return _frozen(_softmax(self._shared_log_prior[user]), np.float64)

    def aspect_weights(self, user: int) -> np.ndarray | None:
        """`user`'s learned per-persona aspect weights W (K, A), read-only, or None while there are none
        (aspect_rate 0, or no session yet)."""
        kept = self._aspect_weights.get(self._check_user(user))
        if kept is None:
            return None
        ranker = self.ranker
        assert isinstance(ranker, AspectWeightRanker)  # checked in __init__ for aspect_rate > 0
        columns, values = kept
        out = np.zeros((self.personas_per_user, ranker.n_aspects))
        out[:, columns] = values
        out.setflags(write=False)
        return out

    def view_prior(self, user: int) -> np.ndarray:
        """The persona prior of `user` that a session's ranker view holds, shape (K,): in mode "update",
        once a session updated `user`, ``rule.view_of(prior, home(user))`` (`prior` sharpened, the more
        the less the user is still home); otherwise `prior` itself."""
        prior = self.prior(user)
        if self.mode != "update" or user not in self._priors:
            return prior
        return self.rule.view_of(prior, self.home(user))

    def home(self, user: int) -> float:
        """The filter's probability that `user` is still in their pre-trained mixture (the home state):
        1 until a session updates them, then the filter's; always 0 for a rule without a home state."""
        user = self._check_user(user)
        if not self._home:
            return 0.0
        state = self._dominant.get(user)
        return 1.0 if state is None else float(state[-1])

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
        and owns a new ``log_prior`` array, read-only, equal to the ranker's except row `user`, which
        is `view_prior` (mode "oracle": `oracle_prior`). While the memory holds the ranker's own prior
        for `user` (mode "frozen", or "update" before the user's first session) that row is the
        ranker's too, exactly: the view plays as the ranker.
        With learned aspect weights (``UpdateRule.aspect_rate`` > 0, after the user's first session)
        the view also applies `user`'s W (`AspectWeightRanker.with_aspect_weights`), for `user` only.

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
        elif user in self._priors:
            row = self.view_prior(user)  # otherwise the ranker's prior, whose row is kept bit for bit
        log_prior = np.array(self._shared_log_prior, dtype=np.float64, copy=True)
        if row is not None:
            log_prior[user] = np.log(row / row.sum())
        log_prior.setflags(write=False)
        view = copy.copy(self.ranker)
        view.log_prior = log_prior
        weights = self.aspect_weights(user) if self.mode == "update" else None
        if weights is not None:
            assert isinstance(view, AspectWeightRanker)  # checked in __init__ for aspect_rate > 0
            return view.with_aspect_weights(user, weights)
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
                # the ranker served these from the session's belief: evidence FOR the personas that
                # score them high (module docstring)
                logits = ranker.persona_item_logits(user, evidence.rejected_items)
                relative = logits - logits.mean(axis=0, keepdims=True)
                total += rule.rejected_item_weight * relative.mean(axis=1)
        return total - total.max()

    def update(self, evidence: SessionEvidence) -> MemoryUpdate:
        """Move `evidence.user`'s belief by one session's feedback, one step of the switching filter
        (mode "update"; the others keep the prior), and the user's aspect weights by the session's
        responsibilities (``aspect_rate`` > 0). With ``update_prior`` False the prior stays the
        ranker's (``after`` is ``before``).

        Raises:
            PersonaMemoryError: The user is outside the ranker, or (aspect_rate > 0) an aspect outside it.
        """
        user = self._check_user(evidence.user)
        before = self.prior(user)
        if self.mode != "update":
            zero = np.zeros(self.personas_per_user)
            return MemoryUpdate(user, before, zero, before, before)
        dominant = self._dominant.get(user)
        shared = _softmax(self._shared_log_prior[user])
        if dominant is None:  # the first update: home, or the ranker's prior as the belief over d
            dominant = np.append(np.zeros(len(shared)), 1.0) if self._home else shared
        emission = np.vstack([self._emission, shared]) if self._home else self._emission
        likelihood = self.log_likelihood(evidence)
        # joint[d, a] ∝ P(dominant d, active a, evidence) = d_d E[d, a] L_a; max L = 1 (ℓ's max is 0)
        joint = dominant[:, None] * emission * np.exp(likelihood)[None, :]
        if not joint.sum() > 0.0:  # only with dominance 1 and a prior that rules out every likely one
            joint = dominant[:, None] * emission
        posterior = joint.sum(axis=1)
        responsibilities = joint.sum(axis=0)
        responsibilities = _frozen(responsibilities / responsibilities.sum(), np.float64)
        if self.rule.aspect_rate > 0.0:
            self._learn_aspects(evidence, responsibilities)
        if not self.rule.update_prior:  # "aspects": the belief stays the ranker's prior
            return MemoryUpdate(user, before, _frozen(likelihood, np.float64), responsibilities, before)
        following = (posterior / posterior.sum()) @ self._transition
        following = following / following.sum()
        after = following @ emission
        after = _frozen(after / after.sum(), np.float64)
        self._dominant[user] = _frozen(following, np.float64)
        self._priors[user] = after
        home = float(following[-1]) if self._home else None
        return MemoryUpdate(user, before, _frozen(likelihood, np.float64), responsibilities, after, home)

    def _learn_aspects(self, evidence: SessionEvidence, responsibilities: np.ndarray) -> None:
        """W[:, a] ± η·r for each accepted (+) and rejected (−) aspect of the session (module docstring)."""
        user = evidence.user
        ranker = self.ranker
        assert isinstance(ranker, AspectWeightRanker)  # checked in __init__ for aspect_rate > 0
        n_aspects = ranker.n_aspects
        accepted, rejected = np.unique(evidence.accepted), np.unique(evidence.rejected)
        for aspects in (accepted, rejected):
            if aspects.size and not (aspects[0] >= 0 and aspects[-1] < n_aspects):
                raise PersonaMemoryError(
                    f"session of user {user}: aspects {aspects.tolist()} outside [0, {n_aspects}) of the "
                    "ranker"
                )
        if not (accepted.size or rejected.size):
            return
        columns = np.union1d(accepted, rejected)
        kept = self._aspect_weights.get(user)
        if kept is not None:
            columns = np.union1d(kept[0], columns)
        values = np.zeros((self.personas_per_user, columns.size))
        if kept is not None:
            values[:, np.searchsorted(columns, kept[0])] = kept[1]
        step = self.rule.aspect_rate * responsibilities[:, None]
        values[:, np.searchsorted(columns, accepted)] += step
        values[:, np.searchsorted(columns, rejected)] -= step
        self._aspect_weights[user] = (_frozen(columns, np.int64), _read_only(values))

    def remembered_users(self) -> tuple[int, ...]:
        """Users whose prior a session has updated (or `restore` set), ascending."""
        return tuple(sorted(self._priors))

    def forget(self, user: int) -> None:
        """Drop `user`'s memory: their prior is the ranker's again, and their aspect weights are gone."""
        user = self._check_user(user)
        self._priors.pop(user, None)
        self._dominant.pop(user, None)
        self._aspect_weights.pop(user, None)

    def restore(self, user: int, prior: Sequence[float] | np.ndarray, home: float | None = None) -> None:
        """Set `user`'s prior to one an earlier memory reached (mode "update"), e.g. read from a memory
        file (`policies.memory_file`); the next `update` moves it from there.

        The memory keeps `prior` (normalised) as the user's prior and recovers the belief over the
        dominant persona by inverting the emission (`UpdateRule.dominant_of`): for a prior that
        `prior` wrote, the next update is the one the writing memory would have made. With a home state
        (``home_rate`` > 0) `home` is the writing memory's `MemoryUpdate.home` (None: 0, as if the user
        had left home), and the emission is inverted on what is not home: (prior − home·π)/(1 − home).

        The user's aspect weights (``aspect_rate`` > 0) are left as they are (a file holds none).

        Raises:
            PersonaMemoryError: Another mode than "update" or a rule that keeps the ranker's prior
                (``update_prior`` False), `user` out of range, `prior` not K finite weights >= 0 with
                a positive sum (it is normalised), or `home` outside [0, 1].
        """
        user = self._check_user(user)
        if self.mode != "update":
            raise PersonaMemoryError(f"a memory in mode {self.mode!r} keeps no prior; restore needs 'update'")
        if not self.rule.update_prior:
            raise PersonaMemoryError(
                "this memory's rule keeps the ranker's prior (update_prior False, update 'aspects'); "
                "restore needs a rule that updates it"
            )
        row = np.asarray(prior, dtype=np.float64).reshape(-1)
        k = self.personas_per_user
        if row.shape[0] != k or not np.isfinite(row).all() or (row < 0).any() or not row.sum() > 0:
            raise PersonaMemoryError(
                f"prior {row.tolist()} of user {user} must be {k} finite weights >= 0 with a positive sum"
            )
        row = row / row.sum()
        if home is not None and not 0.0 <= home <= 1.0:
            raise PersonaMemoryError(f"home {home!r} of user {user} must lie in [0, 1]")
        if self._home:
            stay = 0.0 if home is None else float(home)
            away = np.zeros(k)
            if stay < 1.0:
                away = (1.0 - stay) * self.rule.dominant_of(
                    np.maximum(row - stay * _softmax(self._shared_log_prior[user]), 0.0)
                )
            self._dominant[user] = _frozen(np.append(away, stay), np.float64)
        else:
            self._dominant[user] = _frozen(self.rule.dominant_of(row), np.float64)
        self._priors[user] = _frozen(row, np.float64)


def _read_only(values: np.ndarray) -> np.ndarray:
    values.setflags(write=False)
    return values


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    out: np.ndarray = z / z.sum()
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out: np.ndarray = x - np.logaddexp.reduce(x)
    return out
