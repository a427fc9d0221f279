"""Returning-user evaluation and the persona memory checked against rules worked out by hand or by brute
force: the oracle's prior for every active slot (slot 0 included) and for a persona the ranker lacks,
the policy's setting and the caller's user arguments in every session, the new persona never tracked,
true personas the ranker lacks (or a user without interactions) left unmatched, per-session intervals of
the run seed, the update rule recorded for the update only, the run seed's upper bound, the spec's
bounds and ranker folder, the default output folder and the overall interval over users; and the
memory's corner cases: one persona per user, evidence that rules out every believed persona, restores
with and without a home state, bad users and homes refused, and the rankers a mode cannot use."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crs.app.sessions import (
    SessionPolicyError,
    SessionSpec,
    evaluate_returning,
    match_personas,
    run_session_evaluation,
)
from crs.app.settings import MAX_SEED
from envs.metrics import summarize
from envs.ranker import ExplainablePersonaRanker
from envs.registry import make_env
from envs.rollout import ConversationPolicy
from envs.setting import Setting
from policies.baseline_rankers import uniform_ranker
from policies.memory import (
    DEFAULT_RULE,
    ORACLE_MASS,
    PersonaMemory,
    PersonaMemoryError,
    SessionEvidence,
    UpdateRule,
    rule_of,
)
from policies.pretrain.ranker import PersonaRanker
from policies.rules import make_rule_policy
from simulators import Catalog
from simulators.catalog import Interactions
from tests.crs.test_sessions_eval import SESSIONS, ranker, run, world
from tests.crs.tiny_runs import pretrain_tiny
from tests.policies.test_memory import NO_HOME, tiny_ranker


@dataclass
class RecordingPolicy:
    """Not the thing under test: ask-2 over each session's view, keeping the view's prior row of the
    session's user (what the memory handed the session)."""

    name: str = "ask-2"
    setting: Setting | None = None
    rows: list[np.ndarray] = field(default_factory=list)
    settings: set[str] = field(default_factory=set)

    def for_session(self, view: ExplainablePersonaRanker, user: int) -> ConversationPolicy:
        self.rows.append(np.exp(np.asarray(view.log_prior, dtype=np.float64)[user]))
        return SettingSpy(make_rule_policy(self.name, view), self.settings)


@dataclass
class SettingSpy:
    """Not the thing under test: a rule policy that notes the setting of every env it acts in."""

    inner: ConversationPolicy
    settings: set[str]

    def reset(self, rng: np.random.Generator) -> None:
        self.inner.reset(rng)

    def act(self, env: Any) -> dict[str, Any]:
        self.settings.add(env.setting)
        return self.inner.act(env)


def test_the_oracle_hands_each_session_its_active_slot_slot_0_included() -> None:
    """Guards against the oracle reading slot 0 as "no persona" (``active > 0``): a session whose true
    active persona is the ranker's persona 0 must get ORACLE_MASS on 0, not the uniform row."""
    spy = RecordingPolicy()
    result = evaluate_returning(
        world(), ranker(), spy, regime="switch", sessions=SESSIONS, sequences=12, memory="oracle", seed=2
    )
    k = 3  # the ranker's personas
    assert len(spy.rows) == len(result.tracking)
    actives = [t.active for t in result.tracking]
    assert 0 in actives and any(a > 0 for a in actives) and -1 in actives
    for t, row in zip(result.tracking, spy.rows, strict=True):
        if t.active < 0:  # a true persona the ranker has no slot for: the oracle knows nothing more
            np.testing.assert_allclose(row, np.full(k, 1 / k), rtol=1e-12)
        else:
            expected = np.full(k, (1 - ORACLE_MASS) / (k - 1))
            expected[t.active] = ORACLE_MASS
            np.testing.assert_allclose(row, expected, rtol=1e-12)


def test_every_session_is_played_in_the_policys_setting() -> None:
    """Guards against making the sessions' envs in the world's default setting whatever the policy
    acts in: a trained run of another setting would be handed questions it never learned."""
    default = make_env(catalog=world(), split="test").setting
    other = next(setting for setting in ("binary", "enumerated", "multiple_choice") if setting != default)
    spy = RecordingPolicy(setting=other)  # type: ignore[arg-type]
    evaluate_returning(
        world(), ranker(), spy, regime="switch", sessions=2, sequences=3, memory="frozen", seed=2
    )
    assert spy.settings == {other}
    plain = RecordingPolicy()
    evaluate_returning(
        world(), ranker(), plain, regime="switch", sessions=2, sequences=3, memory="frozen", seed=2
    )
    assert plain.settings == {default}


def test_a_new_persona_is_never_a_slot_of_the_ranker() -> None:
    """Guards against a session driven by the regime's new persona (a true slot past the user's own)
    being matched to a ranker slot: its active slot is -1, so the memory never tracks it correctly."""
    result = evaluate_returning(
        world(), ranker(), "ask-2", regime="new", sessions=SESSIONS, sequences=12, memory="frozen", seed=2
    )
    matched = match_personas(ranker(), world())
    k_true = matched.shape[1]
    new_sessions = 0
    for t in result.tracking:
        sequence = result.sequences[t.sequence]
        true_active = int(sequence.active[t.session])
        if true_active >= k_true:
            new_sessions += 1
            assert t.active == -1
        else:
            assert t.active == matched[sequence.user, true_active]
    assert new_sessions > 0
    for row in result.summary.rows:
        seen = [t for t in result.tracking if t.session == row.session]
        assert row.tracking is not None
        assert row.tracking.mean == pytest.approx(np.mean([t.believed == t.active for t in seen]))


class MergingRanker:
    """Not the thing under test: two persona slots for the world's four true ones; true slot 0 is the
    ranker's persona 0, every other true slot its persona 1 (its persona_of reads the ground truth)."""

    def __init__(self, catalog: Catalog) -> None:
        truth = catalog.truth
        assert truth is not None
        self.truth, self.log_prior = truth, np.zeros((catalog.n_users, 2))
        train = catalog.split("train")
        assert train.personas is not None
        self.labels = {
            (int(u), int(i)): int(p) for u, i, p in zip(train.users, train.items, train.personas, strict=True)
        }

    def true_slot(self, user: int, item: int) -> int:
        return list(self.truth.user_personas[user]).index(self.labels[(user, item)])

    def persona_of(self, user: int, items: np.ndarray) -> np.ndarray:
        return np.array([0 if self.true_slot(user, int(i)) == 0 else 1 for i in items])


def test_true_personas_the_ranker_lacks_are_left_unmatched() -> None:
    """Guards against the matching's table sized by the true personas, or unmatched true slots left at
    0 (read as the ranker's persona 0): with two ranker personas for four true ones, the best one-to-one
    matching (found here by brute force over every pair of true slots) pairs two, the others get -1."""
    catalog = world()
    merging = MergingRanker(catalog)
    matched = match_personas(merging, catalog)  # type: ignore[arg-type]
    k_true = catalog.truth.user_personas.shape[1]  # type: ignore[union-attr]
    assert matched.shape == (catalog.n_users, k_true) and k_true == 4
    train = catalog.split("train")
    checked = 0
    for user in range(catalog.n_users):
        items = train.items[train.users == user]
        table = np.zeros((2, k_true))
        for item in items:
            true = merging.true_slot(user, int(item))
            table[0 if true == 0 else 1, true] += 1
        scores = {(a, b): table[0, a] + table[1, b] for a, b in itertools.permutations(range(k_true), 2)}
        best = max(scores.values())
        winners = [pair for pair, score in scores.items() if score == best]
        if len(winners) != 1:
            continue
        (a, b), expected = winners[0], [-1] * k_true
        expected[a], expected[b] = 0, 1
        assert matched[user].tolist() == expected
        checked += 1
    assert checked > catalog.n_users // 2


def test_a_user_without_interactions_has_no_match() -> None:
    """Guards against matching a user who has no interactions in the split: with nothing counted, every
    pairing ties, so none is meaningful and each true slot gets -1."""
    catalog = world()
    train = catalog.split("train")
    keep = train.users != 5
    assert train.personas is not None
    emptied = Interactions(train.users[keep], train.items[keep], train.personas[keep])
    catalog = dataclasses.replace(catalog, splits={**catalog.splits, "train": emptied})
    matched = match_personas(ranker(), catalog)
    assert matched[5].tolist() == [-1] * matched.shape[1]
    assert (matched[4] >= 0).sum() == 3  # the ranker's three personas matched for a user with items


def test_per_session_intervals_are_drawn_with_the_run_seed() -> None:
    """Guards against the per-session bootstrap ignoring the run's seed (always seed 0): the seed makes a
    run's intervals reproducible, so two seeds' intervals must be those seeds'."""
    result = run("update")  # seed 2
    differs = False
    for row in result.summary.rows:
        mine = [r.episode for r in result.records if r.session == row.session]
        assert row.metrics == summarize(mine, seed=2)
        differs = differs or summarize(mine, seed=2) != summarize(mine, seed=0)
    assert differs  # the seed matters for these rows, so the check above can tell


def test_the_callers_user_arguments_play_every_session() -> None:
    """Guards against dropping the caller's `PersonaUser` arguments: a user of patience 1 leaves at the
    first failed slate, so no failed session holds two recommendations (the world's users, patience 2,
    do hold them)."""
    result = evaluate_returning(
        world(), ranker(), "ask-2", regime="switch", sessions=SESSIONS, sequences=12, memory="frozen",
        seed=2, user_kwargs={"patience": 1},
    )  # fmt: skip
    failed = [r.episode for r in result.records if not r.episode.success]
    assert failed and all(episode.kinds.count("recommend") <= 1 for episode in failed)
    patient = [r.episode for r in run("frozen").records if not r.episode.success]
    assert any(episode.kinds.count("recommend") >= 2 for episode in patient)


def test_the_update_rule_is_recorded_for_the_update_memory_only() -> None:
    """Guards against recording the update's constants for memory "frozen", which moves nothing: a
    reader of summary.json would take them for constants the run used."""
    assert run("frozen").summary.rule == {}
    assert run("update").summary.rule == dataclasses.asdict(DEFAULT_RULE)


def test_the_largest_run_seed_is_taken() -> None:
    """Guards against an off-by-one at the documented upper bound of --seed (0-MAX_SEED): MAX_SEED gets
    past the seed check to the next one (no persona ranker), MAX_SEED + 1 does not."""
    options: dict[str, Any] = {"policy": "ask-2", "ranker": None, "regime": "switch", "sessions": 3}
    options |= {"sequences": 2, "memory": "update", "show_progress": False}
    with pytest.raises(SessionPolicyError, match="needs a persona ranker"):
        run_session_evaluation(**options, seed=MAX_SEED)
    with pytest.raises(Exception, match=f"--seed {MAX_SEED + 1} must lie in 0-{MAX_SEED}"):
        run_session_evaluation(**options, seed=MAX_SEED + 1)


def test_a_session_spec_takes_two_sessions_and_no_fewer() -> None:
    """Guards against the spec's lower bound on sessions: a returning user has two at least."""
    assert SessionSpec(sessions=2).sessions == 2
    with pytest.raises(ValueError, match="greater than or equal to 2"):
        SessionSpec(sessions=1)


@pytest.mark.slow  # the tiny `crs pretrain` artifact takes ~20 s on a shared 2-core machine
def test_crs_eval_sessions_names_its_folder_by_the_variant_and_resamples_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards against the default output folder leaving out --memory-update (two variants of one run
    would claim the same folder) and against the overall interval resampling sessions instead of whole
    returning users, whose sessions are correlated."""
    artifact = pretrain_tiny(tmp_path / "art")
    monkeypatch.chdir(tmp_path)
    summary, result, out = run_session_evaluation(
        policy="ask-2", ranker=str(artifact), regime="switch", sessions=3, sequences=6, memory="update",
        memory_update="both", seed=3, show_progress=False,
    )  # fmt: skip
    assert out == Path("out/eval/persona_world-ask-2-switch-update-both-S3-s3")
    assert (tmp_path / out / "summary.json").is_file()
    episodes = [r.episode for r in result.records]
    users = [r.sequence for r in result.records]
    assert summary.metrics == summarize(episodes, seed=3, clusters=users)
    assert summarize(episodes, seed=3, clusters=users) != summarize(episodes, seed=3)  # it can tell


def test_a_session_spec_refuses_a_ranker_folder_that_is_not_there(tmp_path: Path) -> None:
    """Guards against a sweep's sessions block taking a ranker path that names no folder: every task
    would start and then fail, instead of the sweep refusing it before any task starts."""
    missing = tmp_path / "no-ranker"
    with pytest.raises(ValueError, match="is not a folder; pass a `crs pretrain` artifact folder"):
        SessionSpec(ranker=str(missing))
    missing.mkdir()
    assert SessionSpec(ranker=str(missing)).ranker == str(missing)


# ------------------------------------------------------------------------------------- the memory
def test_a_ranker_of_one_persona_per_user_keeps_a_memory_of_one() -> None:
    """Guards against the K = 1 cases of the emission, transition, oracle prior and inversion: with one
    persona per user (`uniform_ranker`) each is the 1 x 1 certainty, not a division by K − 1 = 0."""
    one = uniform_ranker(world())
    session = SessionEvidence(user=3, accepted=np.array([1]), accepted_item=7)
    for mode in ("frozen", "update", "oracle"):
        memory = PersonaMemory(one, mode, NO_HOME)  # type: ignore[arg-type]
        assert memory.update(session).after.tolist() == [1.0]
        assert memory.prior(3).tolist() == [1.0] and memory.most_likely(3) == 0
    oracle = PersonaMemory(one, "oracle")
    assert oracle.oracle_prior(0).tolist() == [1.0]
    assert oracle.ranker_for(3, active=0).log_prior[3].tolist() == [0.0]
    memory = PersonaMemory(one, "update", NO_HOME)
    memory.restore(3, [2.0])
    assert memory.prior(3).tolist() == [1.0]
    assert memory.update(session).after.tolist() == [1.0]


def test_evidence_that_rules_out_every_believed_persona_leaves_a_distribution() -> None:
    """Guards against dropping the filter's fallback: with dominance 1 and a belief surely on persona 0,
    a session whose item rules persona 0 out (ℓ = (−800, 0): exp underflows to 0) leaves no mass at all;
    the update then keeps the belief as it was (responsibilities (1, 0)) and moves it by the switch rate
    alone: the next prior is (1 − h, h), not NaN."""
    rule = UpdateRule(switch_rate=0.2, dominance=1.0, aspect_weight=0.0, item_weight=400.0)
    memory = PersonaMemory(tiny_ranker(), "update", rule)
    memory.restore(0, [1.0, 0.0])
    update = memory.update(SessionEvidence(user=0, accepted_item=1))  # item 1's logits (0, 2)
    np.testing.assert_allclose(update.log_likelihood, [-800.0, 0.0])
    np.testing.assert_allclose(update.responsibilities, [1.0, 0.0])
    np.testing.assert_allclose(update.after, [0.8, 0.2], rtol=1e-12)
    assert np.isfinite(memory.prior(0)).all() and memory.most_likely(0) == 0


def test_a_restored_prior_continues_a_filter_without_a_home_state_exactly() -> None:
    """Guards against `restore` keeping the stored prior itself as the belief over the dominant persona
    (without a home state): the belief is the prior with the emission inverted, so the next session moves
    the restored user exactly as it moves the user of the memory that wrote the prior."""
    session = SessionEvidence(user=1, accepted=np.array([0]), accepted_item=0)
    one = PersonaMemory(tiny_ranker((0.6, 0.4)), "update", NO_HOME)
    one.update(SessionEvidence(user=1, accepted=np.array([1]), accepted_item=1))
    other = PersonaMemory(tiny_ranker((0.6, 0.4)), "update", NO_HOME)
    other.restore(1, [float(p) for p in one.prior(1)])
    a, b = one.update(session), other.update(session)
    np.testing.assert_allclose(b.responsibilities, a.responsibilities, rtol=0, atol=1e-14)
    np.testing.assert_allclose(b.after, a.after, rtol=0, atol=1e-14)


def test_a_filter_without_a_home_state_reports_no_home() -> None:
    """Guards against an update without a home state reporting the last persona's belief as its chance
    of being home (what a memory file would keep as the user's home)."""
    memory = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", NO_HOME)
    assert memory.update(SessionEvidence(user=0, accepted_item=1)).home is None
    assert memory.home(0) == 0.0
    with_home = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", DEFAULT_RULE)
    home = with_home.update(SessionEvidence(user=0, accepted_item=1)).home
    assert home == pytest.approx(1 - DEFAULT_RULE.home_rate)


def test_a_user_restored_as_surely_home_continues_as_a_new_one() -> None:
    """Guards against inverting the emission for a user surely home (home 1): nothing is away from home,
    so the belief is home alone (not 0/0), and the next session moves them as a user the memory never
    met (whose first session is had at home)."""
    ranker_ = tiny_ranker((0.7, 0.3))
    session = SessionEvidence(user=1, accepted=np.array([1]), accepted_item=1)
    restored = PersonaMemory(ranker_, "update", DEFAULT_RULE)
    restored.restore(1, [0.7, 0.3], home=1.0)
    assert restored.home(1) == 1.0
    fresh = PersonaMemory(tiny_ranker((0.7, 0.3)), "update", DEFAULT_RULE)
    again, first = restored.update(session), fresh.update(session)
    np.testing.assert_allclose(again.after, first.after, rtol=0, atol=1e-15)
    np.testing.assert_allclose(again.responsibilities, first.responsibilities, rtol=0, atol=1e-15)
    assert again.home == pytest.approx(first.home, abs=1e-15)


def test_a_negative_home_is_refused() -> None:
    """Guards against reading only the upper bound of a restored home: −0.1 is no probability."""
    memory = PersonaMemory(tiny_ranker(), "update", DEFAULT_RULE)
    with pytest.raises(PersonaMemoryError, match=r"home -0.1 of user 0 must lie in \[0, 1\]"):
        memory.restore(0, [0.5, 0.5], home=-0.1)
    memory.restore(0, [0.5, 0.5], home=0.0)  # both ends are probabilities
    memory.restore(0, [0.5, 0.5], home=1.0)


def test_remembered_users_are_listed_in_ascending_order() -> None:
    """Guards against listing the remembered users in the order their sessions came, not ascending as
    documented."""
    memory = PersonaMemory(tiny_ranker(), "update", NO_HOME)
    memory.update(SessionEvidence(user=1, accepted_item=1))
    memory.update(SessionEvidence(user=0, accepted_item=0))
    assert memory.remembered_users() == (0, 1)


def test_a_user_outside_the_ranker_has_no_home_nor_aspect_weights() -> None:
    """Guards against `home` and `aspect_weights` answering for a user the ranker lacks (home 1, or 0
    under a rule without a home state; no weights) where every other reading of the memory names the
    bad id."""
    memory = PersonaMemory(tiny_ranker(), "update", rule_of("both"))
    homeless = PersonaMemory(tiny_ranker(), "update", NO_HOME)
    for user in (2, -1):
        for read in (memory.home, memory.aspect_weights, homeless.home):
            with pytest.raises(PersonaMemoryError, match=f"user {user} outside"):
                read(user)


def test_an_infinite_view_power_is_refused() -> None:
    """Guards against taking view_power inf, which sharpens every view to a point mass (and NaNs)."""
    with pytest.raises(PersonaMemoryError, match="view_power=inf must be finite and > 0"):
        UpdateRule(view_power=float("inf"))


class NoItemLogits(PersonaRanker):
    """Not the thing under test: a persona ranker without per-persona item logits."""

    persona_item_logits = None  # type: ignore[assignment]


class NoAspectWeights(PersonaRanker):
    """Not the thing under test: a persona ranker whose views cannot apply aspect weights."""

    with_aspect_weights = None  # type: ignore[assignment]


def ranker_like(kind: type[PersonaRanker]) -> PersonaRanker:
    plain = tiny_ranker()
    other = kind.__new__(kind)
    other.__dict__.update(plain.__dict__)
    return other


def test_a_ranker_the_update_cannot_read_is_refused_when_the_memory_is_made() -> None:
    """Guards against the update mode taking a ranker without per-persona item logits, or the aspect
    variants one that cannot apply aspect weights: the first session would fail, not the setup."""
    with pytest.raises(PersonaMemoryError, match="has no persona_item_logits"):
        PersonaMemory(ranker_like(NoItemLogits), "update")
    PersonaMemory(ranker_like(NoItemLogits), "frozen")  # frozen reads no item logits
    with pytest.raises(PersonaMemoryError, match="cannot apply"):
        PersonaMemory(ranker_like(NoAspectWeights), "update", rule_of("both"))
    PersonaMemory(ranker_like(NoAspectWeights), "update", rule_of("prior"))
