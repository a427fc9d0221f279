"""`PersonaRanker`: numpy inference from exported persona-model weights (a `PreferenceRanker`).

Everything is computed from the arrays `PersonaModel.export` returns; no torch and no graph at
inference. Per user the ranker caches the item-side arrays it needs (persona affinities, aspect
terms, base scores for every item), so repeated calls during one conversation cost O(n K). Per
dialogue state it also keeps the last `FACTS_CACHE_SIZE` full score vectors (every item, every
aspect): one turn asks for item and aspect scores several times with the same facts (candidate
ranking, question slots, the chosen question), and each item's or aspect's score depends only on
itself and the facts, so a later call gathers from the vector computed first (bit-identical).

Dialogue conditioning (facts = accepted / rejected aspects, rejected items):

* persona posterior ``log β_k = log π_k + Σ_{a ∈ acc} c_{k,a} − Σ_{a ∈ rej} c_{k,a}`` (normalised),
  where ``c_{k,a} = q_k·e_a − mean_k' q_k'·e_a`` is persona k's affinity to aspect a relative to
  the user's other personas (so evidence moves β only where personas disagree);
* item score ``g_u·e_v + ⟨c₀, e_v + h₀(v)⟩ + Σ_k α'_k(v) (⟨p_k, e_v⟩ + ⟨q_k, h_k(v)⟩)
  + e_v·(Σ_acc e_a − Σ_rej e_a) − REJECTED_ASPECT_PENALTY · |A(v) ∩ rej|``
  with ``α'_k(v) = softmax_k(log β_k + ⟨p_k, e_v⟩ + ⟨q_k, h_k(v)⟩)`` (the training-time α when
  there are no facts); an item holding an aspect the user rejected is very unlikely to be the wanted
  one (a truthful user rejects the aspects the item lacks), so each such aspect costs
  ``REJECTED_ASPECT_PENALTY`` (a likelihood ratio of e^-5 per aspect: soft, so a noisy answer is
  not fatal); items already rejected are pushed below every other item by ``REJECTED_PENALTY``;
* aspect score: how likely the wanted item has aspect a, ``log Σ_{v ∈ C, a ∈ A(v)} softmax_{v ∈ C}(s(v))``
  over the items C still consistent with the dialogue (every accepted aspect, not rejected), with
  ``s`` the item score above; ties (and an empty C) are broken by the affinity
  ``Σ_k β_k q_k·e_a + (g_u + c₀)·e_a + e_a·(Σ_acc e_a' − Σ_rej e_a')``,

where ``c₀`` is the shared persona (zeros for models trained without it, or artifacts older than it).
Asking the aspect the wanted item most likely has (rather than the one the user is most similar to)
is what makes a binary question pay off: a rare aspect the user likes is usually answered "no".
With ``with_temperature(T)`` the learned preference part of the item score (every term but the two
rejection rules) is divided by T before the rules are applied: T > 1 flattens the softmax over items
that the slates, the "likely" mass and the "split" entropy read, T → ∞ approaches no preferences. On
Yelp* binary T 4 lifts ask-12 with splitting questions by +0.053 SR@15 (`benchmarks/tempered_ranker.py`).
`full_scores` (offline Recall/NDCG) ignores T.
With ``with_questions("split")`` the aspect score is instead the binary entropy (nats) of that mass m,
``−m log m − (1 − m) log(1 − m)``: the question whose answer splits the consistent items most evenly
(SCPR's rule, under the ranker's belief), with the same affinity tie-break. ``with_questions("split",
T)`` weighs the consistent items by softmax(item scores / T) instead: a sharper belief (T < 1) splits what
the ranker finds likely, and its rejection rules then all but exclude the items they penalise, while the
slates keep the ranker's order.

Learned aspect weights (a persona memory's, `policies.memory`, #16): `with_aspect_weights(user, W)`
returns a shallow-copy view in which one user's per-persona aspect weights W (K, A) shift that user's
per-user arrays: ``c_{k,a}`` becomes ``c_{k,a} + W_{k,a} − mean_k' W_{k',a}`` (the posterior's aspect
evidence, and the probes' signature aspects) and each persona's item term gains the mean of W_k over
the item's aspects (``⟨p_k, e_v⟩ + ⟨q_k, h_k(v)⟩ + mean_{a ∈ A(v)} W_{k,a}``; +0 for an item without
aspects). The view builds that user's adjusted arrays once, from the shared per-user cache, in
O(K · nnz) of the aspects W touches (plus an O(K · I) copy), and keeps them to itself: the shared
ranker's caches are never written with them, other users read the shared ones, and the per-dialogue
score cache's key carries a digest of W, so a view and the plain ranker never share an entry.
`full_scores` (offline Recall/NDCG) ignores W.

A tag profile (`policies.content_profile`, a ranker name's ``+profile``): `with_profile(profile)` returns
a view whose base score of every item gains the user's profile score, weight · cos(profile_u, x_v), in
the dialogue and in `full_scores` alike. It is part of the preference (a tempered view divides it by T
too). The view keeps caches of its own, since its per-user base scores differ from the plain ranker's.
An item prior, the same for every user: `with_item_prior(prior)` returns a view whose base score of every
item gains prior(v), in the dialogue and in `full_scores`; tempered like the profile, with caches of its
own. Two are named: a popularity prior (`policies.popularity_prior`, a ranker name's ``+pop``),
weight · log(1 + n_v), and the opening's likelihood (`policies.opening_prior`, ``+open``).
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from envs.ranker import DialogueFacts, check_facts, check_user
from policies.content_profile import ContentProfile
from policies.pretrain.config import ASPECT_MODES
from simulators.catalog import compressed_entries
from simulators.errors import CRSError

REJECTED_PENALTY = 1.0e6
FACTS_CACHE_SIZE = 32  # more than the 2 dialogue states per env x 8 envs that one rollout step touches
REJECTED_ASPECT_PENALTY = 5.0
QUESTION_RULES = ("likely", "split")
"""How aspects are scored: "likely" (the aspect the wanted item most likely has) or "split" (the
question whose answer splits the consistent items most evenly); module docstring."""
WEIGHT_KEYS: tuple[str, ...] = ("user", "item", "aspect", "personas", "log_prior", "mixtures", "prototypes")
OPTIONAL_KEYS: tuple[str, ...] = ("shared",)
"""Weights a model may lack (treated as zeros): the shared persona c₀ [d]."""


def _check_positive(value: float, what: str) -> None:
    """Raise a CRSError naming `what` unless `value` is a finite number above 0."""
    if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
        raise CRSError(f"{what} must be a finite number above 0, got {value!r}")


@dataclass(frozen=True)
class _UserCache:
    per_persona: np.ndarray  # (K, I) p_k·e_v + ⟨q_k, h_k(v)⟩
    base: np.ndarray  # (I,) g_u·e_v + ⟨c₀, e_v + h₀(v)⟩
    aspect_sims: np.ndarray  # (K, A) q_k·e_a with q_k = m_k C, the persona's prototype part
    relative: np.ndarray  # (K, A) c_{k,a}


@dataclass(frozen=True)
class _AspectWeights:
    """One user's learned per-persona aspect weights, as a view of `PersonaRanker` applies them."""

    user: int
    weights: np.ndarray  # (K, A) W, read-only
    token: bytes  # digest of W: part of the per-dialogue score cache's key for `user`


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


class PersonaRanker:
    """Scores items and aspects for a dialogue from exported persona-model weights.

    Args:
        weights: Arrays named as `PersonaModel.export` returns them ("user" [U, d], "item" [I, d],
            "aspect" [A, d], "personas" [U, K, d], "log_prior" [U, K], "mixtures" [U, K, P],
            "prototypes" [P, d]; optional "shared" [d], zeros when absent).
        item_aspects: Item x aspect boolean CSR matrix, shape (I, A).
        aspect_mode: "attention", "uniform" or "none" (as trained).
        cache_size: Users whose item-side arrays are kept (more than the 64 conversations that
            `crs eval` runs side by side).
        facts_cache_size: Dialogue states whose full item and aspect scores are kept (0: none, every
            call recomputes; benchmarks/bench_train.py compares the two).
    """

    # a view's learned aspect weights of one user (`with_aspect_weights`) and that user's arrays, built
    # on first use; class defaults, so a ranker made without them (the plain one) has none
    _aspect_weights: _AspectWeights | None = None
    _adjusted: _UserCache | None = None
    questions: str = "likely"  # how aspects are scored, one of QUESTION_RULES (`with_questions`)
    question_temperature: float = 1.0  # the "split" mass is of softmax(item scores / it) (`with_questions`)
    temperature: float = 1.0  # the preference part of item scores is divided by it (`with_temperature`)
    profile: ContentProfile | None = None  # a tag profile added to every item's base score (`with_profile`)
    item_prior: np.ndarray | None = None  # what `with_item_prior` added to every item's base score, (I,)

    def __init__(
        self,
        weights: dict[str, np.ndarray],
        item_aspects: sp.csr_matrix,
        aspect_mode: str = "attention",
        cache_size: int = 80,
        facts_cache_size: int = FACTS_CACHE_SIZE,
    ) -> None:
        missing = [k for k in WEIGHT_KEYS if k not in weights]
        if missing:
            raise CRSError(f"persona weights lack {missing}; expected keys {WEIGHT_KEYS}")
        if aspect_mode not in ASPECT_MODES:
            raise CRSError(f"aspect_mode must be one of {ASPECT_MODES}, got {aspect_mode!r}")
        self.user = np.asarray(weights["user"], dtype=np.float64)
        self.item = np.asarray(weights["item"], dtype=np.float64)
        self.aspect = np.asarray(weights["aspect"], dtype=np.float64)
        self.personas = np.asarray(weights["personas"], dtype=np.float64)
        self.log_prior = np.asarray(weights["log_prior"], dtype=np.float64)
        self.mixtures = np.asarray(weights["mixtures"], dtype=np.float64)
        self.prototypes = np.asarray(weights["prototypes"], dtype=np.float64)
        self.aspect_mode = aspect_mode
        d = self.item.shape[1]
        self.shared = np.asarray(weights.get("shared", np.zeros(d)), dtype=np.float64).reshape(-1)
        if self.shared.shape != (d,):
            raise CRSError(f"shared persona has shape {self.shared.shape}, expected ({d},)")
        U, I, A = self.user.shape[0], self.item.shape[0], self.aspect.shape[0]
        if item_aspects.shape != (I, A):
            raise CRSError(f"item_aspects has shape {item_aspects.shape}, weights need ({I}, {A})")
        if self.personas.shape[0] != U or self.log_prior.shape != self.personas.shape[:2]:
            raise CRSError(
                f"persona arrays {self.personas.shape} / {self.log_prior.shape} do not match {U} users"
            )
        self.item_aspects = sp.csr_matrix(item_aspects, dtype=np.float64)
        self._aspect_counts = np.asarray(self.item_aspects.sum(axis=1)).ravel()
        self._aspect_items = self.item_aspects.tocsc()
        # ⟨c₀, e_v + h₀(v)⟩ of every item, shape (I,): the same for every user.
        shared_sims = (self.aspect @ self.shared)[None, :]
        self._shared_item = self.item @ self.shared + self._aspect_terms(shared_sims)[0]
        self._cache: OrderedDict[int, _UserCache] = OrderedDict()
        self._cache_size = cache_size
        self._scored: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()
        self._scored_size = facts_cache_size

    @property
    def n_users(self) -> int:
        return int(self.user.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item.shape[0])

    @property
    def n_aspects(self) -> int:
        return int(self.aspect.shape[0])

    @property
    def personas_per_user(self) -> int:
        return int(self.personas.shape[1])

    @property
    def has_preferences(self) -> bool:
        """Whether scores hold any preference: a non-zero weight, a tag profile or an item prior. False
        for `policies.baseline_rankers.uniform_ranker` (the dialogue logic alone), whose aspect scores
        only say how many of the items left have the aspect."""
        weights = (self.user, self.item, self.aspect, self.personas, self.prototypes, self.shared)
        return self.profile is not None or self.item_prior is not None or any(np.any(w) for w in weights)

    # ----------------------------------------------------------------------------------- internals
    def _aspect_terms(self, sims: np.ndarray) -> np.ndarray:
        """⟨q_k, h_k(v)⟩ for every item, from sims = q·e_a of shape (R, A); returns (R, I)."""
        if self.aspect_mode == "none":
            return np.zeros((sims.shape[0], self.n_items))
        if self.aspect_mode == "uniform":
            total = (self.item_aspects @ sims.T).T
            return total / np.maximum(self._aspect_counts, 1.0)
        w = np.exp(np.maximum(sims - sims.max(axis=1, keepdims=True), -700.0))
        num = (self.item_aspects @ (w * sims).T).T
        den = (self.item_aspects @ w.T).T
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    def _user(self, user: int) -> _UserCache:
        adjustment = self._aspect_weights
        if adjustment is not None and user == adjustment.user:
            if self._adjusted is None:  # this view's own arrays, never in the shared cache
                self._adjusted = self._adjusted_user(self._shared_user(user), adjustment.weights)
            return self._adjusted
        return self._shared_user(user)

    def _shared_user(self, user: int) -> _UserCache:
        """`user`'s arrays as the plain ranker has them, from the per-user cache shared with its views."""
        check_user(user, self.n_users)
        cached = self._cache.get(user)
        if cached is not None:
            self._cache.move_to_end(user)
            return cached
        p = self.personas[user]  # (K, d)
        sims = (self.mixtures[user] @ self.prototypes) @ self.aspect.T  # q_k·e_a, (K, A)
        cached = _UserCache(
            per_persona=p @ self.item.T + self._aspect_terms(sims),
            base=self.item @ self.user[user] + self._shared_item + self._profile_scores(np.array([user]))[0],
            aspect_sims=sims,
            relative=sims - sims.mean(axis=0, keepdims=True),
        )
        self._cache[user] = cached
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return cached

    def _adjusted_user(self, plain: _UserCache, weights: np.ndarray) -> _UserCache:
        """`plain` with learned aspect weights W (K, A) applied (module docstring); new arrays, read-only."""
        relative = plain.relative + (weights - weights.mean(axis=0, keepdims=True))
        per_persona = plain.per_persona.copy()
        touched = np.flatnonzero(np.any(weights != 0.0, axis=0))
        if touched.size:
            # Σ_{a ∈ A(v)} W_{k,a} over the touched aspects' columns only, then the mean over |A(v)|
            held = self._aspect_items[:, touched]  # (I, n) CSC: O(nnz of those columns)
            total = np.asarray(held @ weights[:, touched].T).T  # (K, I)
            per_persona += total / np.maximum(self._aspect_counts, 1.0)
        for values in (per_persona, relative):
            values.setflags(write=False)
        return _UserCache(per_persona, plain.base, plain.aspect_sims, relative)

    def with_aspect_weights(self, user: int, weights: np.ndarray) -> PersonaRanker:
        """A view of this ranker in which `user` has learned per-persona aspect weights `weights` (K, A).

        A shallow copy (it shares the weights and the per-user and per-dialogue caches, which it never
        writes with adjusted values): `user`'s posterior evidence uses ``c_{k,a} + W_{k,a} −
        mean_k' W_{k',a}`` and persona k's item term gains ``mean_{a ∈ A(v)} W_{k,a}`` (module
        docstring); every other user scores as in this ranker. Replaces the aspect weights this ranker
        may already apply (a view holds one user's). All-zero weights give a view that scores as this
        ranker, bit for bit.

        Raises:
            CRSError: `user` out of range, or `weights` not a finite (K, A) array.
        """
        if not 0 <= user < self.n_users:
            raise CRSError(f"user {user} outside [0, {self.n_users})")
        values = np.array(weights, dtype=np.float64, copy=True)
        shape = (self.personas_per_user, self.n_aspects)
        if values.shape != shape or not np.isfinite(values).all():
            raise CRSError(
                f"aspect weights of user {user} must be a finite array of shape {shape} (got {values.shape})"
            )
        values.setflags(write=False)
        view = copy.copy(self)
        view._adjusted = None
        if not values.any():
            view._aspect_weights = None
            return view
        token = hashlib.blake2b(values.tobytes(), digest_size=16).digest()
        view._aspect_weights = _AspectWeights(int(user), values, token)
        return view

    def with_questions(self, questions: str, temperature: float = 1.0) -> PersonaRanker:
        """A view of this ranker that scores questions by `questions`, one of `QUESTION_RULES`
        ("likely": the aspect the wanted item most likely has; "split": the one whose answer splits the
        consistent items most evenly, weighted by softmax(item scores / `temperature`); module
        docstring). Item scores are unchanged; a shallow copy that shares every cache (aspect scores are
        kept per rule and temperature).

        Raises:
            CRSError: `questions` is not one of `QUESTION_RULES`; `temperature` is not a finite number
                above 0, or not 1 with "likely".
        """
        if questions not in QUESTION_RULES:
            raise CRSError(f"questions must be one of {QUESTION_RULES}, got {questions!r}")
        _check_positive(temperature, "question temperature")
        if temperature != 1.0 and questions != "split":
            raise CRSError(f"a question temperature ({temperature}) weighs splitting questions only")
        view = copy.copy(self)
        view.questions = questions
        view.question_temperature = float(temperature)
        return view

    def with_temperature(self, temperature: float) -> PersonaRanker:
        """A view of this ranker whose learned preference part of every item score is divided by
        `temperature` (the rejection rules are not; module docstring). A shallow copy that shares every
        cache (scores are kept per temperature).

        Raises:
            CRSError: `temperature` is not a finite number above 0.
        """
        _check_positive(temperature, "temperature")
        view = copy.copy(self)
        view.temperature = float(temperature)
        return view

    def with_profile(self, profile: ContentProfile) -> PersonaRanker:
        """A view of this ranker whose base score of every item gains the user's tag profile score
        (`policies.content_profile`; module docstring), with per-user and per-dialogue caches of its own.

        Raises:
            CRSError: The profile is of another number of users or aspects.
        """
        if profile.n_users != self.n_users or profile.items.shape != (self.n_aspects, self.n_items):
            raise CRSError(
                f"a tag profile of {profile.n_users} users over {profile.items.shape} (aspects, items) "
                f"does not fit this ranker's {self.n_users} users, {self.n_aspects} aspects and "
                f"{self.n_items} items"
            )
        view = copy.copy(self)
        view.profile = profile
        view._cache = OrderedDict()
        view._scored = OrderedDict()
        return view

    def with_item_prior(self, prior: np.ndarray) -> PersonaRanker:
        """A view of this ranker whose base score of every item gains `prior` (the same for every user,
        e.g. `policies.popularity_prior`; module docstring), with per-user and per-dialogue caches of its
        own.

        Args:
            prior: Every item's prior, finite float64 of shape (I,).

        Raises:
            CRSError: `prior` is not one finite number per item.
        """
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (self.n_items,) or not np.isfinite(prior).all():
            raise CRSError(
                f"an item prior needs one finite number per item ({self.n_items}), got shape {prior.shape}"
            )
        view = copy.copy(self)
        view._shared_item = self._shared_item + prior
        view.item_prior = prior if self.item_prior is None else self.item_prior + prior
        view._cache = OrderedDict()
        view._scored = OrderedDict()
        return view

    def _holding(self, aspects: np.ndarray) -> np.ndarray:
        """How many of `aspects` (int64, shape (n,)) each item holds, shape (I,), int64."""
        _, holders = compressed_entries(self._aspect_items, aspects)
        return np.bincount(holders, minlength=self.n_items)

    def _log_posterior(self, facts: DialogueFacts, cache: _UserCache) -> np.ndarray:
        evidence = cache.relative[:, np.asarray(facts.accepted, dtype=np.int64)].sum(axis=1)
        evidence -= cache.relative[:, np.asarray(facts.rejected, dtype=np.int64)].sum(axis=1)
        logits = self.log_prior[facts.user] + evidence
        return logits - np.logaddexp.reduce(logits)

    def _dialogue_vector(self, facts: DialogueFacts) -> np.ndarray:
        acc = self.aspect[np.asarray(facts.accepted, dtype=np.int64)].sum(axis=0)
        rej = self.aspect[np.asarray(facts.rejected, dtype=np.int64)].sum(axis=0)
        return acc - rej

    def _alpha(self, facts: DialogueFacts, cache: _UserCache, per_persona: np.ndarray) -> np.ndarray:
        """α_k(v) given the dialogue, from the items' per-persona logits (K, n); shape (K, n)."""
        return _softmax(self._log_posterior(facts, cache)[:, None] + per_persona, axis=0)

    # --------------------------------------------------------------------------- PreferenceRanker
    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        """Scores of `items` (shape (n,), int64) given the dialogue; float64, shape (n,)."""
        scores: np.ndarray = self._remembered("items", facts, self._all_item_scores)[
            np.asarray(items, dtype=np.int64)
        ]
        return scores

    def _check_facts(self, facts: DialogueFacts) -> None:
        check_facts(facts, self.n_users, self.n_aspects, self.n_items)

    def _remembered(
        self, kind: str, facts: DialogueFacts, compute: Callable[[DialogueFacts], np.ndarray]
    ) -> np.ndarray:
        """`compute(facts)`, kept for the last ``facts_cache_size`` (kind, facts, prior) keys.

        Raises:
            CRSError: `facts` names a user, aspect or item outside this ranker.
        """
        check_user(facts.user, self.n_users)  # before its prior row goes into the key
        key = (
            kind,
            self.questions if kind == "aspects" else "",  # a `with_questions` view shares this cache
            self.question_temperature if kind == "aspects" else 1.0,
            self.temperature,  # ... and so does a `with_temperature` view
            facts.user,
            self.log_prior[facts.user].tobytes(),  # a persona memory's view has its own prior row
            self._weights_token(facts.user),  # ... and maybe the user's learned aspect weights
            *(np.asarray(a, dtype=np.int64).tobytes() for a in (facts.accepted, facts.rejected)),
            np.asarray(facts.rejected_items, dtype=np.int64).tobytes(),
        )
        cached = self._scored.get(key)
        if cached is not None:
            self._scored.move_to_end(key)
            return cached
        self._check_facts(facts)  # a key seen before held facts already checked
        values = compute(facts)
        values.flags.writeable = False
        self._scored[key] = values
        if len(self._scored) > self._scored_size:
            self._scored.popitem(last=False)
        return values

    def _weights_token(self, user: int) -> bytes:
        """The digest of `user`'s learned aspect weights in this view; b"" for none (the plain ranker)."""
        adjustment = self._aspect_weights
        return adjustment.token if adjustment is not None and adjustment.user == user else b""

    def _all_item_scores(self, facts: DialogueFacts) -> np.ndarray:
        """The score of every item given the dialogue, float64, shape (I,)."""
        cache = self._user(facts.user)
        alpha = self._alpha(facts, cache, cache.per_persona)
        scores: np.ndarray = cache.base + (alpha * cache.per_persona).sum(axis=0)
        if len(facts.accepted) or len(facts.rejected):
            scores += self.item @ self._dialogue_vector(facts)
        if self.temperature != 1.0:
            scores /= self.temperature
        rejected = np.asarray(facts.rejected, dtype=np.int64)
        if rejected.size:
            scores -= REJECTED_ASPECT_PENALTY * self._holding(rejected)
        if len(facts.rejected_items):
            scores[np.asarray(facts.rejected_items, dtype=np.int64)] -= REJECTED_PENALTY
        return scores

    def consistent_items(self, facts: DialogueFacts) -> np.ndarray:
        """Items holding every accepted aspect and not rejected, shape (n,), int64 ascending."""
        self._check_facts(facts)
        accepted = np.asarray(facts.accepted, dtype=np.int64)
        if accepted.size:
            keep = self._holding(accepted) >= accepted.size
        else:
            keep = np.ones(self.n_items, dtype=bool)
        if len(facts.rejected_items):
            keep[np.asarray(facts.rejected_items, dtype=np.int64)] = False
        return np.flatnonzero(keep)

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        """Scores of `aspects` (shape (n,), int64) given the dialogue; float64, shape (n,).

        log of the dialogue-conditioned item distribution's mass on items having the aspect, plus
        1e-6 × the persona/user affinity to break ties (see the module docstring).
        """
        scores: np.ndarray = self._remembered("aspects", facts, self._all_aspect_scores)[
            np.asarray(aspects, dtype=np.int64)
        ]
        return scores

    def _all_aspect_scores(self, facts: DialogueFacts) -> np.ndarray:
        """The score of every aspect given the dialogue, float64, shape (A,)."""
        cache = self._user(facts.user)
        beta = np.exp(self._log_posterior(facts, cache))
        # whole-vocabulary products, then a gather: cheaper than gathering (n, d) rows when n is large
        affinity = beta @ cache.aspect_sims
        affinity += self.aspect @ (self.user[facts.user] + self.shared + self._dialogue_vector(facts))
        items = self.consistent_items(facts)
        if items.size == 0:
            return affinity
        p = _softmax(self.item_scores(facts, items) / self.question_temperature, axis=0)
        owner, held = compressed_entries(self.item_aspects, items)
        mass = np.bincount(held, weights=p[owner], minlength=self.n_aspects)
        if self.questions == "split":
            m = np.clip(mass, 1e-300, 1.0)
            rest = np.clip(1.0 - mass, 1e-300, 1.0)
            split: np.ndarray = -(m * np.log(m) + rest * np.log(rest)) + 1e-6 * affinity
            return split
        out: np.ndarray = np.log(np.maximum(mass, 1e-300)) + 1e-6 * affinity
        return out

    # ------------------------------------------------------------------------- persona interface
    def persona_posterior(self, facts: DialogueFacts) -> np.ndarray:
        """β over the user's K personas given the dialogue, shape (K,), sums to 1."""
        self._check_facts(facts)
        return np.exp(self._log_posterior(facts, self._user(facts.user)))

    def signature_aspects(self, user: int, k: int, m: int, among: np.ndarray | None = None) -> np.ndarray:
        """The m aspects that most distinguish persona k of `user` (what a probe of k asks about).

        Ranked by the relative affinity c_{k,a} (by q_k·e_a when K = 1).

        Args:
            user: User id.
            k: Persona index in [0, K).
            m: How many aspects.
            among: Optional candidate aspect ids to choose from (e.g. the reachable ones).

        Returns:
            Aspect ids, shape (min(m, n_candidates),), best first.
        """
        if not 0 <= k < self.personas_per_user:
            raise CRSError(f"persona {k} outside [0, {self.personas_per_user})")
        cache = self._user(user)
        key = cache.relative[k] if self.personas_per_user > 1 else cache.aspect_sims[k]
        pool = np.arange(self.n_aspects) if among is None else np.asarray(among, dtype=np.int64)
        order = np.argsort(-key[pool], kind="stable")[:m]
        return pool[order]

    def explain(self, facts: DialogueFacts, items: np.ndarray) -> list[tuple[int, int]]:
        """An explanation pair per item: (persona k* = argmax_k α'_k(v), aspect a* = argmax ω_{k*,a}(v)).

        The aspect is -1 for an item without aspects.
        """
        self._check_facts(facts)
        items = np.asarray(items, dtype=np.int64)
        cache = self._user(facts.user)
        best = self._alpha(facts, cache, cache.per_persona[:, items]).argmax(axis=0)
        ia = self.item_aspects
        out: list[tuple[int, int]] = []
        for item, k in zip(items.tolist(), best.tolist(), strict=True):
            aspects = ia.indices[ia.indptr[item] : ia.indptr[item + 1]]
            if aspects.size == 0:
                out.append((int(k), -1))
                continue
            out.append((int(k), int(aspects[np.argmax(cache.aspect_sims[k, aspects])])))
        return out

    def persona_of(self, user: int, items: np.ndarray) -> np.ndarray:
        """Arg-max persona (no dialogue facts) of `user` for each of `items`, shape (n,), int64."""
        cache = self._user(user)
        items = np.asarray(items, dtype=np.int64)
        return np.argmax(self.log_prior[user][:, None] + cache.per_persona[:, items], axis=0)

    def persona_item_logits(self, user: int, items: np.ndarray) -> np.ndarray:
        """Persona k's logit for each of `items`, ``⟨p_k, e_v⟩ + ⟨q_k, h_k(v)⟩``, shape (K, n), float64.

        ``softmax_k(log_prior[user] + logits)`` is the persona attention α_k(v) without dialogue facts;
        a persona memory reads it as the evidence an accepted item gives (`policies.memory`).
        """
        cache = self._user(user)
        out: np.ndarray = cache.per_persona[:, np.asarray(items, dtype=np.int64)].copy()
        return out

    def prototype_of(self, user: int) -> np.ndarray:
        """The prototype each of `user`'s K personas draws most from, shape (K,), int64.

        Raises:
            CRSError: `user` outside this ranker.
        """
        check_user(user, self.n_users)
        return np.argmax(self.mixtures[user], axis=1)

    # ---------------------------------------------------------------------------- full ranking
    def full_scores(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for `users` without dialogue facts (for Recall/NDCG), shape (b, I).

        Raises:
            CRSError: A user outside this ranker.
        """
        users = np.asarray(users, dtype=np.int64)
        outside = users[(users < 0) | (users >= self.n_users)]
        if outside.size:
            check_user(int(outside[0]), self.n_users)
        b, K = users.shape[0], self.personas_per_user
        p = self.personas[users].reshape(b * K, -1)
        affinity = (p @ self.item.T).reshape(b, K, -1)
        q = (self.mixtures[users] @ self.prototypes).reshape(b * K, -1)
        terms = self._aspect_terms(q @ self.aspect.T).reshape(b, K, -1)
        per_persona = affinity + terms
        alpha = _softmax(self.log_prior[users][:, :, None] + per_persona, axis=1)
        base = self.user[users] @ self.item.T + self._shared_item + self._profile_scores(users)
        return base + (alpha * per_persona).sum(axis=1)

    def _profile_scores(self, users: np.ndarray) -> np.ndarray:
        """The tag profile's scores of every item for `users` (b,), shape (b, I); zeros of shape (b, 1)
        without a profile."""
        if self.profile is None:
            return np.zeros((np.asarray(users).size, 1))
        return self.profile.scores(users)
