"""Evaluating a policy on returning users: S sessions per user, with a persona memory (issue #16).

`evaluate_returning` draws N returning-user sequences of a regime on the persona world
(`simulators.returning.returning_sequences`) or, on a real single-target dataset (LastFM, LastFM*,
Yelp*; binary setting), from each user's held-out items grouped by the ranker's personas
(`simulators.returning.held_out_sequences`: a simulation protocol, not logged behaviour), plays
each session with a policy over the memory's ranker view (`policies.memory.PersonaMemory.ranker_for`;
a rule, or a trained run that reads the view's prior in its wrapper and its encoder,
`policies.memory.BeliefPolicy`), updates the memory from the session's
feedback, and summarises per session: SR@5/10/15, AT and hDCG with 95% bootstrap CIs
(`envs.metrics.summarize`), and persona-tracking accuracy. `run_session_evaluation` is
`crs eval --sessions`: the same, written into an output folder (``episodes.jsonl`` and
``summary.json`` with a ``sessions`` block); `SessionSpec` declares its settings for `crs sweep`'s
``kind: sessions`` tasks.

Persona tracking compares the memory's belief with the simulator's truth, so it needs the ranker's
personas matched to the user's true ones: `match_personas` matches them per user by the ground-truth
persona labels of the user's *train* interactions (which the ranker was pre-trained on), read by the
evaluation only, never by the memory or the policy. On real data the sessions' personas are the
ranker's own (`held_out_sequences`), so no matching is needed: tracking asks whether the memory's
most likely persona is the pre-trained model's persona of the session's target.

- ``tracking`` of session s: the memory's most likely persona before session s (after session s − 1;
  session 0: the pre-trained prior) is the session's true active persona. The active persona is drawn
  from the session's mixture, so no prior-only guess beats ``active_is_dominant``, the share of
  sessions whose active persona is the mixture's largest.
- ``dominant_tracking``: the memory's most likely persona is the mixture's largest in session s.
- ``last_time`` of session s >= 1: the memory's most likely persona before session s was the true active
  one of session s − 1, whose feedback it has seen. This is what `crs chat --memory` says when it opens
  ("Last time your ... side was in charge"; after a first conversation, which cannot move the belief,
  it says "your ... side leads" instead), so it measures how often that sentence is right.

A new persona (regime "new") has no persona of the ranker: a session it drives is never tracked
correctly, and the oracle's prior for it is uniform.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.optimize import linear_sum_assignment

from crs import __version__
from crs.app.evaluation import (
    claim_evaluation_output,
    evaluated_ranker_identity,
    evaluation_progress,
    ranker_input,
    recorded_policy_spec,
    refuse_ranker_for_run,
    run_ranker_name,
)
from crs.app.run_folder import EvalSummary, SessionRow, SessionsSummary, write_json_lines
from crs.app.settings import MAX_SEED
from crs.claims import refuse_output_over_inputs
from crs.common import data_dir_input
from envs.env import ConversationEnv
from envs.metrics import (
    DEFAULT_MAX_TURNS,
    EpisodeRecord,
    MetricSummary,
    bootstrap_ci,
    per_episode_metrics,
    summarize,
)
from envs.ranker import ExplainablePersonaRanker
from envs.registry import make_env, resolve_user_and_setting
from envs.rollout import ConversationPolicy
from envs.sessions import SessionRecord, run_sequences
from envs.setting import check_setting
from policies.memory import (
    DEFAULT_RULE,
    MEMORY_MODES,
    MEMORY_UPDATES,
    BeliefPolicy,
    MemoryMode,
    MemoryUpdateVariant,
    PersonaMemory,
    RuleBeliefPolicy,
    SessionEvidence,
    UpdateRule,
    rule_of,
)
from policies.rankers import RUN_RANKER, RankerSpec
from policies.rules import EVERY_SETTING_RULES, SettingRefusedError, make_rule_policy
from simulators.catalog import Catalog
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError
from simulators.returning import (
    HELD_OUT_REGIMES,
    REGIMES,
    Regime,
    ReturningSequence,
    held_out_sequences,
    returning_sequences,
    users_with_held_out,
)

SESSION_METRICS = ("SR@5", "SR@10", "SR@15", "AT", "hDCG")

SESSION_DATASETS = ("persona_world", "lastfm", "lastfm_star", "yelp_star")
"""Datasets whose returning users `crs eval --sessions` builds: the persona world, and the real
single-target datasets (binary setting) from their held-out items."""
MAX_SESSIONS = 1_000
"""Sessions per returning user at most (a typo like ``--sessions 100000000`` is refused, not allocated)."""


def match_personas(ranker: ExplainablePersonaRanker, catalog: Catalog, split: str = "train") -> np.ndarray:
    """The ranker's persona slot of each of every user's true persona slots: int64, (n_users, K_true).

    Per user, a K_ranker x K_true table counts the user's `split` interactions by the ranker's persona
    (`persona_of`, no dialogue) and the true persona (ground-truth labels); the one-to-one matching
    that covers most interactions (Hungarian) pairs them. A true slot left unmatched (more true than
    ranker personas, or a user without interactions) gets -1.

    Raises:
        CRSError: The catalogue has no persona truth or the split no persona labels.
    """
    truth = catalog.truth
    interactions = catalog.split(split)
    if truth is None or interactions.personas is None:
        raise CRSError(
            f"match_personas needs persona ground truth, which {catalog.name!r} split {split!r} lacks; "
            "persona tracking is measured on the persona world only"
        )
    k_true = truth.user_personas.shape[1]
    k_ranker = int(np.asarray(ranker.log_prior).shape[1])
    out = np.full((catalog.n_users, k_true), -1, dtype=np.int64)
    order = np.argsort(interactions.users, kind="stable")
    users = interactions.users[order]
    starts = np.searchsorted(users, np.arange(catalog.n_users + 1))
    for user in range(catalog.n_users):
        rows = order[starts[user] : starts[user + 1]]
        if rows.size == 0:
            continue
        labels = interactions.personas[rows]
        true_slots = np.argmax(truth.user_personas[user][None, :] == labels[:, None], axis=1)
        model_slots = ranker.persona_of(user, interactions.items[rows])
        table = np.zeros((k_ranker, k_true))
        np.add.at(table, (model_slots, true_slots), 1.0)
        model, true = linear_sum_assignment(-table)
        out[user, true] = model
    return out


@dataclass(frozen=True)
class Tracking:
    """What the memory believed before one session, next to the truth.

    Attributes:
        sequence: Sequence index.
        session: Session index.
        believed: The memory's most likely ranker persona slot before the session.
        active: The ranker slot matched to the session's true active persona (-1: none, a new persona).
        dominant: The ranker slot matched to the session mixture's largest persona (-1: none).
        active_is_dominant: The true active persona is the mixture's largest.
    """

    sequence: int
    session: int
    believed: int
    active: int
    dominant: int
    active_is_dominant: bool


@dataclass(frozen=True)
class ReturningResult:
    """The records of a returning-user evaluation, with per-session summaries.

    Attributes:
        records: One per session of every sequence, sequence by sequence.
        tracking: What the memory believed before each session, in the same order.
        sequences: The sequences played.
        summary: The per-session summary (`crs.app.run_folder.SessionsSummary`).
    """

    records: list[SessionRecord]
    tracking: list[Tracking]
    sequences: list[ReturningSequence]
    summary: SessionsSummary


def check_memory_mode(mode: str) -> MemoryMode:
    """`mode` if it is one of `MEMORY_MODES`, else a CRSError naming the choices."""
    if mode not in MEMORY_MODES:
        raise CRSError(f"--memory {mode!r} is not one of {', '.join(MEMORY_MODES)}")
    return mode


def check_memory_update(memory: str, memory_update: str | None) -> UpdateRule:
    """The update rule of memory mode `memory` with ``--memory-update`` `memory_update`: `DEFAULT_RULE`
    when None, else ``policies.memory.rule_of(memory_update)``.

    Raises:
        CRSError: `memory_update` given with another mode than "update", or not one of `MEMORY_UPDATES`.
    """
    if memory_update is None:
        return DEFAULT_RULE
    if memory != "update":
        raise CRSError(
            f"--memory-update {memory_update} only goes with --memory update (memory {memory} keeps no "
            "learned state); drop --memory-update or use --memory update"
        )
    if memory_update not in MEMORY_UPDATES:
        raise CRSError(f"--memory-update {memory_update!r} is not one of {', '.join(MEMORY_UPDATES)}")
    return rule_of(memory_update)


def check_regime(regime: str) -> Regime:
    """`regime` if it is one of `simulators.returning.REGIMES`, else a CRSError naming the choices."""
    if regime not in REGIMES:
        raise CRSError(f"--regime {regime!r} is not one of {', '.join(REGIMES)}")
    return regime


def check_session_split(split: str, pretrain_split: str | None = None) -> str:
    """`split` if the sessions may draw their targets from it: "valid" or "test", and not the split
    the catalogue pre-trains on (`pretrain_split`: train, or valid on Yelp*, which has no train split;
    None before the catalogue is loaded: only train is refused then).

    Raises:
        CRSError: Another split (named, with the fix).
    """
    if split not in ("valid", "test") or split == pretrain_split:
        read = "valid: Yelp* has no train split" if split == "valid" else "train, or valid on Yelp*"
        raise CRSError(
            f"--split {split} with --sessions: pre-training reads {read}, so the targets would be pairs "
            "the ranker memorised, and the memory would be measured on them; use --split test"
        )
    return split


def split_note(split: str) -> tuple[str, ...]:
    """A note for sessions drawn from the valid split: `crs train` evaluates on it (best model)."""
    if split != "valid":
        return ()
    return (
        "the sessions' targets come from the valid split, which `crs train` evaluates on to pick its best "
        "model: a tuning figure, not a test result",
    )


def _check_sessions(sessions: int) -> None:
    if not 2 <= sessions <= MAX_SESSIONS:
        raise CRSError(f"--sessions {sessions} must lie in 2-{MAX_SESSIONS} (a user who returns)")


def check_session_options(
    *,
    sessions: int | None,
    regime: str | None,
    memory: str | None,
    given: dict[str, bool],
    memory_update: str | None = None,
) -> None:
    """Refuse a `crs eval --sessions` command line that cannot run, naming the option and the fix.

    Args:
        sessions: --sessions.
        regime: --regime.
        memory: --memory.
        given: Other options by name -> whether the command line set them to something returning
            users do not support (e.g. ``{"--workers": True}``).
        memory_update: --memory-update.

    Raises:
        CRSError: --regime, --memory or --memory-update without --sessions or the reverse, a bad value,
            --memory-update without --memory update, or an option returning users do not take.
    """
    if sessions is None:
        options = (("--regime", regime), ("--memory", memory), ("--memory-update", memory_update))
        named = [name for name, value in options if value is not None]
        verb = "goes" if len(named) == 1 else "go"
        raise CRSError(
            f"{' and '.join(named)} only {verb} with --sessions S (returning users); add --sessions 8"
        )
    _check_sessions(sessions)
    if regime is None or memory is None:
        raise CRSError(
            f"--sessions needs --regime ({', '.join(REGIMES)}) and --memory ({', '.join(MEMORY_MODES)})"
        )
    check_regime(regime)
    check_memory_mode(memory)
    check_memory_update(memory, memory_update)
    unsupported = sorted(name for name, set_ in given.items() if set_)
    if unsupported:
        raise CRSError(
            f"--sessions does not take {', '.join(unsupported)}: returning users run in this process on "
            "the dataset's own users and setting, with seeded sequences; leave "
            f"{'it' if len(unsupported) == 1 else 'them'} out (`crs sweep` with `kind: sessions` runs "
            "several seeds or memories in parallel)"
        )


def evaluate_returning(
    catalog: Catalog,
    ranker: ExplainablePersonaRanker,
    policy: str | BeliefPolicy,
    *,
    regime: Regime,
    sessions: int,
    sequences: int,
    memory: MemoryMode,
    seed: int,
    rule: UpdateRule = DEFAULT_RULE,
    split: str = "test",
    user_kwargs: dict[str, Any] | None = None,
    on_sequence: Callable[[list[SessionRecord]], None] | None = None,
) -> ReturningResult:
    """Play `sequences` returning users of `regime` for `sessions` sessions each with a policy over a
    persona memory, and summarise per session.

    Each session is played by ``policy.for_session(memory.ranker_for(user, ...), user)``: a rule built
    over the memory's ranker view, or a trained RL policy reading the view in its wrapper and the
    view's prior row in its encoder (`policies.memory.BeliefPolicy`). The env is made in the policy's
    setting (`BeliefPolicy.setting`; None: the world's default).

    The sequences are ``returning_sequences(catalog, sequences, sessions, regime, default_rng(seed))``
    on the persona world, ``held_out_sequences(catalog, ranker.persona_of, ranker.log_prior, ...)`` (the
    same arguments) on real data (fewer when fewer users are eligible), and session s of sequence n
    is seeded by ``envs.sessions.session_seed(seed, n, s)``: every memory mode and policy plays the
    same conversations with the same users' randomness (paired). The memory starts from the ranker's
    prior for each sequence (a user drawn twice starts afresh).

    Args:
        catalog: The persona world, or a real single-target dataset (`SESSION_DATASETS`).
        ranker: Its pre-trained persona ranker.
        policy: A rule policy name (`policies.rules.make_rule_policy`) or a `BeliefPolicy` (e.g. a
            trained run's `policies.rl.acting.RLPolicy`, built over `ranker`).
        regime: How the mixtures move (`simulators.returning.REGIMES`).
        sessions: S >= 2.
        sequences: N >= 1.
        memory: "frozen", "update" or "oracle".
        seed: Run seed.
        rule: The update's constants (memory "update").
        split: Split the targets come from.
        user_kwargs: `PersonaUser` arguments (default the world's).
        on_sequence: Called with each finished sequence's records.

    Raises:
        CRSError: Bad arguments (named), a regime real data does not have, a ranker without personas.
    """
    mode = check_memory_mode(memory)
    check_regime(regime)
    rng = np.random.default_rng(seed)
    if catalog.truth is None:  # real data: the sessions' personas are the ranker's own slots
        log_prior = np.asarray(ranker.log_prior)
        drawn = held_out_sequences(
            catalog, ranker.persona_of, log_prior, sequences, sessions, regime, rng, split
        )
        matched = np.tile(np.arange(log_prior.shape[1], dtype=np.int64), (catalog.n_users, 1))
    else:
        drawn = returning_sequences(catalog, sequences, sessions, regime, rng, split)
        matched = match_personas(ranker, catalog)
    k_true = matched.shape[1]
    keeper = PersonaMemory(ranker, mode, rule)
    tracking: list[Tracking] = []
    if isinstance(policy, str):
        make_rule_policy(policy, ranker)  # an unknown policy name fails before the first conversation
    player = RuleBeliefPolicy(policy) if isinstance(policy, str) else policy

    def slot_of(user: int, true_slot: int) -> int:
        return int(matched[user, true_slot]) if true_slot < k_true else -1

    def policy_for(index: int, sequence: ReturningSequence, session: int) -> ConversationPolicy:
        user = sequence.user
        if session == 0:
            keeper.forget(user)  # each sequence is a user's own history
        active = slot_of(user, int(sequence.active[session]))
        mixture = sequence.mixtures[session]
        tracking.append(
            Tracking(
                sequence=index,
                session=session,
                believed=keeper.most_likely(user),
                active=active,
                dominant=slot_of(user, int(np.argmax(mixture))),
                active_is_dominant=bool(sequence.active[session] == np.argmax(mixture)),
            )
        )
        oracle = (active if active >= 0 else None) if mode == "oracle" else None
        return player.for_session(keeper.ranker_for(user, active=oracle), user)

    def after_session(
        index: int, sequence: ReturningSequence, session: int, env: ConversationEnv, record: EpisodeRecord
    ) -> None:
        keeper.update(SessionEvidence.from_state(env.state))

    records = run_sequences(
        catalog,
        drawn,
        policy_for,
        seed,
        after_session=after_session,
        on_sequence=on_sequence,
        split=split,
        user_kwargs=user_kwargs,
        setting=player.setting,
    )
    summary = summarize_sessions(records, tracking, drawn, regime=regime, memory=mode, rule=rule, seed=seed)
    return ReturningResult(records=records, tracking=tracking, sequences=drawn, summary=summary)


def _share(flags: Sequence[bool], seed: int, clusters: Sequence[int] | None = None) -> MetricSummary:
    return bootstrap_ci(np.asarray(flags, dtype=np.float64), seed=seed, clusters=clusters)


def sequence_of(records: Sequence[SessionRecord] | Sequence[Tracking]) -> list[int]:
    """The returning user (sequence) of each record: the cluster a bootstrap over sessions of several
    sessions per user resamples (`envs.metrics.bootstrap_ci`)."""
    return [record.sequence for record in records]


def summarize_sessions(
    records: Sequence[SessionRecord],
    tracking: Sequence[Tracking],
    sequences: Sequence[ReturningSequence],
    *,
    regime: str,
    memory: str,
    rule: UpdateRule,
    seed: int,
    max_turns: int = DEFAULT_MAX_TURNS,
) -> SessionsSummary:
    """Per-session metrics and tracking, and the metrics of the sessions from each change session on.

    Tracking is None for memory "oracle" (it is handed the truth).
    """
    n_sessions = max((r.session for r in records), default=-1) + 1
    tracked = memory != "oracle"
    before = {(t.sequence, t.session): t for t in tracking}

    def last_time(seen: Sequence[Tracking]) -> MetricSummary | None:
        """How often the belief before each session of `seen` names the previous session's active persona
        (resampling whole users when `seen` holds several sessions of one)."""
        later = [t for t in seen if t.session > 0]
        flags = [t.believed == before[(t.sequence, t.session - 1)].active for t in later]
        return _share(flags, seed, sequence_of(later)) if tracked and flags else None

    rows = []
    for session in range(n_sessions):
        mine = [r.episode for r in records if r.session == session]
        seen = [t for t in tracking if t.session == session]
        rows.append(
            SessionRow(
                session=session,
                episodes=len(mine),
                metrics=summarize(mine, max_turns, seed=seed),
                tracking=_share([t.believed == t.active for t in seen], seed) if tracked else None,
                dominant_tracking=_share([t.believed == t.dominant for t in seen], seed) if tracked else None,
                active_is_dominant=float(np.mean([t.active_is_dominant for t in seen])) if seen else 0.0,
                last_time=last_time(seen),
            )
        )
    after_records = [r for r in records if r.change_session is not None and r.session >= r.change_session]
    after = [r.episode for r in after_records]
    changes = {(r.sequence, r.session): r.change_session for r in records}
    seen_after = [
        t
        for t in tracking
        if (change := changes.get((t.sequence, t.session))) is not None and t.session > change
    ]
    tracked_after = tracked and bool(seen_after)
    return SessionsSummary(
        regime=regime,
        sessions=n_sessions,
        sequences=len(sequences),
        memory=memory,
        rule=dataclasses.asdict(rule) if memory == "update" else {},
        rows=tuple(rows),
        after_change=summarize(after, max_turns, seed=seed, clusters=sequence_of(after_records))
        if after
        else {},
        after_change_episodes=len(after),
        tracking_after_change=_share(
            [t.believed == t.active for t in seen_after], seed, sequence_of(seen_after)
        )
        if tracked_after
        else None,
        dominant_tracking_after_change=_share(
            [t.believed == t.dominant for t in seen_after], seed, sequence_of(seen_after)
        )
        if tracked_after
        else None,
        last_time_after_change=last_time(seen_after),
        tracked_after_change_sessions=len(seen_after) if tracked_after else 0,
    )


def paired_after_change(
    a: Sequence[SessionRecord], b: Sequence[SessionRecord], metric: str = "SR@15", seed: int = 0
) -> tuple[MetricSummary, int]:
    """a − b on `metric` over the sessions from each sequence's change session on, paired by (sequence,
    session): each sequence's mean difference, then a 95% bootstrap CI over sequences. Also returns the
    number of sequences.

    Raises:
        CRSError: The two runs did not play the same sessions (not the same sequences and seed).
    """
    keys_a = [(r.sequence, r.session, r.episode.targets) for r in a]
    if keys_a != [(r.sequence, r.session, r.episode.targets) for r in b]:
        raise CRSError(
            "paired_after_change: the runs played different sessions; use the same seed and sequences"
        )
    values = {
        "a": _metric_values(a, metric),
        "b": _metric_values(b, metric),
    }
    by_sequence: dict[int, list[float]] = {}
    for i, record in enumerate(a):
        if record.change_session is not None and record.session >= record.change_session:
            by_sequence.setdefault(record.sequence, []).append(values["a"][i] - values["b"][i])
    means = np.array([np.mean(v) for v in by_sequence.values()])
    return bootstrap_ci(means, seed=seed), len(means)


def _metric_values(records: Sequence[SessionRecord], metric: str) -> np.ndarray:
    return per_episode_metrics([r.episode for r in records])[metric]


def conversations_of(sequences: Sequence[ReturningSequence], split: str, regime: str, seed: int) -> str:
    """A short hash of the sessions played (same hash = same users, targets and personas)."""
    digest = hashlib.sha1(f"{split}|{regime}|{seed}".encode())
    for sequence in sequences:
        digest.update(np.asarray([sequence.user, *sequence.targets, *sequence.active.tolist()]).tobytes())
    return digest.hexdigest()[:16]


class SessionPolicyError(CRSError):
    """A policy (or ranker) that cannot play returning users' sessions, named with the fix."""


@dataclass(frozen=True)
class SessionPolicy:
    """What plays a `crs eval --sessions` evaluation.

    Attributes:
        player: Makes each session's policy from the memory's ranker view.
        ranker: The pre-trained persona ranker the memory keeps priors over.
        name: Display name (a rule's name, a run folder's name).
        ranker_name: The ranker's name in summary.json ("run": a trained run's own).
        notes: What a reader of the results should know (summary.json's notes).
    """

    player: BeliefPolicy
    ranker: ExplainablePersonaRanker
    name: str
    ranker_name: str
    notes: tuple[str, ...] = ()


def resolve_session_policy(
    policy: str, ranker: str | None, catalog: Catalog, world_seed: int
) -> SessionPolicy:
    """The policy and persona ranker of `crs eval --sessions`: a rule over `ranker`, or a trained run.

    A trained run (a directory) plays with its own ranker (its ``policy.json`` entry, e.g. its
    ``ranker/`` artifact), which must be a persona ranker; `ranker` must then be None or "run"
    (`crs.app.evaluation.refuse_ranker_for_run`, as plain `crs eval`). Each session, the run's wrapper
    reads the memory's view of that ranker and its encoder the view's prior row of the user
    (`policies.rl.acting.RLPolicy.for_session`): no retraining.

    Args:
        policy: A rule policy name, or a `crs train` run directory.
        ranker: --ranker: a `crs pretrain` artifact (needed by a rule; None or "run" with a run).
        catalog: The catalogue the sessions are drawn from.
        world_seed: The persona world's seed (a run must have been trained on the same world).

    Raises:
        SessionPolicyError: A rule without a persona ranker; a run trained on another dataset or world,
            or with a ranker without personas.
        CRSError: A trained run given a --ranker, an unknown rule or ranker, a damaged run (named).
    """
    run = Path(policy)
    if not run.is_dir():
        if ranker is None:
            data = "" if catalog.truth is not None else " --data-dir DATA"
            raise SessionPolicyError(
                "--sessions needs a persona ranker for the memory: pass --ranker with a `crs pretrain` "
                f"artifact (e.g. `crs pretrain -d {catalog.name}{data} --out runs/ranker`, then --ranker "
                "runs/ranker)"
            )
        spec = RankerSpec.parse(ranker)
        built = spec.build(catalog)
        has = _too_few_personas(built)
        if has or not isinstance(built, ExplainablePersonaRanker):
            raise SessionPolicyError(
                f"--ranker {ranker} models {has}, so there is no persona to track; the memory needs a "
                "`crs pretrain` artifact with several personas per user"
            )
        make_rule_policy(policy, built)  # an unknown rule is named before the output folder is claimed
        return SessionPolicy(RuleBeliefPolicy(policy), built, policy, spec.name)

    from policies.rl.acting import load_trained_policy  # torch only when a trained run is asked for
    from policies.rl.run_files import PolicyMeta

    refuse_ranker_for_run(ranker, run)
    meta = PolicyMeta.read(run)
    if meta.catalog != catalog.name:
        raise SessionPolicyError(
            f"--policy {policy} was trained on {meta.catalog!r}, but --sessions plays returning users of "
            f"{catalog.name!r}: pass a run trained there (`crs train -d {catalog.name} --ranker <crs "
            f"pretrain artifact>`), or play this run's own dataset (--dataset {meta.catalog})"
        )
    if catalog.truth is not None and meta.world_seed != world_seed:
        raise SessionPolicyError(
            f"--policy {policy} was trained on the persona world of seed {meta.world_seed}, not "
            f"--world-seed {world_seed}: pass --world-seed {meta.world_seed}"
        )
    trained = load_trained_policy(run, catalog)
    own = trained.ranker
    has = _too_few_personas(own)
    if has or not isinstance(own, ExplainablePersonaRanker):
        raise SessionPolicyError(
            f"--policy {policy} was trained with the ranker {meta.ranker!r}, which models {has}, so there is "
            "no persona to track; the memory needs a run trained with a persona ranker (`crs train --ranker "
            "<crs pretrain artifact>`)"
        )
    encoder_prior = trained.encoder.log_prior.weight.detach().numpy().astype(np.float64)
    notes: tuple[str, ...] = ()
    if not np.allclose(_log_normalised(encoder_prior), _log_normalised(own.log_prior), atol=1e-4):
        notes = (
            f"{run.name} fine-tuned its encoder's persona priors; here each session's encoder row is the "
            "memory's prior (from the ranker: in mode frozen, the ranker's own), so frozen differs from "
            "a plain `crs eval` of the run",
        )
    return SessionPolicy(trained, own, run.name, RUN_RANKER.name, notes)


def _too_few_personas(ranker: object) -> str:
    """What `ranker` models when it has fewer than two personas per user to track ("no personas", "one
    persona per user"), else ""."""
    if not isinstance(ranker, ExplainablePersonaRanker):
        return "no personas"
    return "one persona per user" if np.asarray(ranker.log_prior).shape[-1] < 2 else ""


def _log_normalised(log_prior: np.ndarray) -> np.ndarray:
    values = np.asarray(log_prior, dtype=np.float64)
    out: np.ndarray = values - np.logaddexp.reduce(values, axis=1, keepdims=True)
    return out


class SessionSpec(BaseModel):
    """What a returning-user evaluation is: `run_session_evaluation`'s settings, one declaration for the
    tasks of `crs sweep` ``kind: sessions`` (its ``sessions:`` block, which the ablations override).

    Every value is checked when it is read (strict: a YAML ``true`` or ``2.0`` is no count; unknown keys
    are errors), so a sweep refuses a bad one before any task starts.

    Attributes:
        policy: A rule policy name, or a `crs train` run directory of the same dataset.
        dataset: The dataset (`SESSION_DATASETS`; the grid's ``dataset`` sets it).
        data_dir: Folder of the real datasets (default ``$CRS_DATA_DIR``).
        ranker: A `crs pretrain` artifact folder (the memory's personas); a rule policy needs one, a
            trained run brings its own.
        regime: How the users' persona mixtures move (`simulators.returning.REGIMES`).
        sessions: Sessions per returning user, S >= 2.
        sequences: Returning users, N >= 1.
        memory: The persona memory (`policies.memory.MEMORY_MODES`).
        memory_update: With memory "update": what it moves, "prior", "aspects" or "both"
            (`policies.memory.rule_of`); None: `policies.memory.DEFAULT_RULE`.
        seed: Run seed (the users, their sessions and each conversation).
        world_seed: Persona world seed.
        split: Split the sessions' targets come from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    policy: str = "ask-4"
    dataset: str = "persona_world"
    data_dir: str | None = None
    ranker: str | None = None
    regime: Regime = "switch"
    sessions: int = Field(8, ge=2, le=MAX_SESSIONS)
    sequences: int = Field(600, ge=1)
    memory: MemoryMode = "update"
    memory_update: MemoryUpdateVariant | None = None
    seed: int = Field(1, ge=0, le=MAX_SEED)
    world_seed: int = Field(0, ge=0, le=MAX_SEED)
    split: Literal["train", "valid", "test"] = "test"

    @field_validator("split")
    @classmethod
    def _held_out_split(cls, split: str) -> str:
        try:
            return check_session_split(split)
        except CRSError as error:
            raise ValueError(str(error)) from None

    @field_validator("ranker")
    @classmethod
    def _persona_artifact(cls, ranker: str | None) -> str | None:
        if ranker is None:
            return None
        try:
            spec = RankerSpec.parse(ranker)
        except CRSError as error:
            raise ValueError(str(error)) from None
        if spec.kind != "artifact":
            raise ValueError(
                f"{ranker!r} has no personas; the memory needs a `crs pretrain` artifact folder "
                "(e.g. `crs pretrain --out runs/pw-ranker`, then ranker: runs/pw-ranker)"
            )
        if not Path(spec.where).is_dir():
            raise ValueError(
                f"{spec.where!r} is not a folder; pass a `crs pretrain` artifact folder "
                "(e.g. `crs pretrain --out runs/pw-ranker`, then ranker: runs/pw-ranker)"
            )
        return ranker

    @model_validator(mode="after")
    def _update_variant_with_update(self) -> SessionSpec:
        if self.memory_update is not None and self.memory != "update":
            raise ValueError(
                f"memory_update: {self.memory_update} only goes with memory: update (memory {self.memory} "
                "keeps no learned state); remove memory_update or set memory: update"
            )
        return self


def run_session_evaluation(
    *,
    policy: str,
    ranker: str | None,
    regime: str,
    sessions: int,
    sequences: int,
    memory: str,
    seed: int,
    memory_update: str | None = None,
    world_seed: int = 0,
    dataset: str = "persona_world",
    data_dir: str | None = None,
    split: str = "test",
    out: Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    setting: str | None = None,
) -> tuple[EvalSummary, ReturningResult, Path]:
    """`crs eval --sessions`: `evaluate_returning` written into an output folder.

    ``episodes.jsonl`` holds one line per session (`envs.sessions.SessionRecord.to_dict`; its
    ``goal_index`` is ``sequence * S + session``, unique per conversation; plus the memory's belief
    before the session, `Tracking`'s ``believed``, ``active_slot``, ``dominant_slot`` and
    ``active_is_dominant``), ``summary.json`` the overall metrics of every session together and a
    ``sessions`` block (`SessionsSummary`).

    Args:
        policy: A rule policy name (with `ranker`, a `crs pretrain` artifact) or a trained run directory
            of the same dataset (its own ranker; see `resolve_session_policy`).
        memory_update: With memory "update": "prior", "aspects" or "both" (`policies.memory.rule_of`;
            None: `policies.memory.DEFAULT_RULE`). The rule's constants, ``aspect_rate`` and
            ``update_prior`` included, go to summary.json's ``sessions.rule``, and the variant to its
            ``policy`` name ("ask-4 (memory update: both)").
        dataset: One of `SESSION_DATASETS`.
        data_dir: Folder of the real datasets (default ``$CRS_DATA_DIR``).
        setting: --setting: accepted only as the setting the sessions play (the run's own, else the
            dataset's); None: that one.
        (the others: see `evaluate_returning` and `crs eval`)

    Raises:
        CRSError: A dataset outside `SESSION_DATASETS`, a regime real data does not have, a ranker
            without personas, a setting other than the one played, --memory-update with another memory
            than "update", or a bad value (named); `SessionPolicyError` for a policy that cannot play
            the sessions.
    """
    if dataset not in SESSION_DATASETS:
        raise CRSError(
            f"--sessions builds returning users on {', '.join(SESSION_DATASETS)}, not {dataset!r} (MCMIPL's "
            "releases have multi-item target groups, which sessions do not draw yet)"
        )
    data = DatasetSpec(dataset, data_dir, world_seed)
    _check_sessions(sessions)
    check_session_split(split)
    if not 0 <= seed <= MAX_SEED:
        raise CRSError(f"--seed {seed} must lie in 0-{MAX_SEED}")
    mode = check_memory_mode(memory)
    rule = check_memory_update(mode, memory_update)
    checked_regime = check_regime(regime)
    if not data.is_world and checked_regime not in HELD_OUT_REGIMES:
        raise CRSError(
            f"--regime {checked_regime} needs the persona world's generative truth; on real data use "
            f"{' or '.join(HELD_OUT_REGIMES)}"
        )
    catalog = data.load()
    check_session_split(split, catalog.pretrain_split)
    chosen = resolve_session_policy(policy, ranker, catalog, world_seed)
    # the ranker as it is before the first conversation (`evaluated_ranker_identity`)
    own_ranker = run_ranker_name(recorded_policy_spec(policy), chosen.ranker_name)
    ranker_identity = evaluated_ranker_identity(policy, chosen.ranker_name)
    user, default = resolve_user_and_setting("auto", None, world=data.is_world)
    played = chosen.player.setting or default
    if setting is not None and check_setting(setting) != played:
        whose = "the run's own" if chosen.player.setting is not None else "the dataset's own"
        raise CRSError(
            f"--setting {setting}: returning users play {dataset} in the {played} setting ({whose}), which "
            f"--sessions does not change: leave out --setting, or give --setting {played}"
        )
    setting = played
    if not Path(policy).is_dir():  # a rule the setting does not suit, refused before the output is claimed
        try:
            env = make_env(catalog=catalog, split=split, setting=setting)
            make_rule_policy(policy, chosen.ranker).check_env(env)
        except SettingRefusedError as error:
            raise CRSError(
                f"{error.reason}; returning users play {dataset} in its own setting, which --sessions does "
                f"not change: use a rule of every setting ({EVERY_SETTING_RULES})"
            ) from None
    memory_name = mode if memory_update is None else f"{mode}-{memory_update}"
    out = (
        out
        or Path("out")
        / "eval"
        / f"{dataset}-{chosen.name}-{checked_regime}-{memory_name}-S{sessions}-s{seed}"
    )
    refuse_output_over_inputs(out, [("--policy run", Path(policy) if Path(policy).is_dir() else None)])
    refuse_output_over_inputs(  # a run's own evaluation may lie inside it (RUN/eval), nothing else
        out,
        [
            ranker_input(ranker),
            ("data folder", data_dir_input(data_dir, dataset)),
        ],
        inside=True,
    )
    with claim_evaluation_output(out, overwrite) as claim:
        started = time.perf_counter()
        with evaluation_progress(show_progress) as progress:
            task = progress.add_task(
                f"{chosen.name}, memory {memory_name}, {checked_regime} x {sessions}", total=sequences
            )
            result = evaluate_returning(
                catalog,
                chosen.ranker,
                chosen.player,
                regime=checked_regime,
                sessions=sessions,
                sequences=sequences,
                memory=mode,
                seed=seed,
                rule=rule,
                split=split,
                on_sequence=lambda _: progress.advance(task),
            )
        elapsed = time.perf_counter() - started
        with_items = None
        if not data.is_world and len(result.sequences) < sequences:
            with_items = users_with_held_out(catalog, sessions, split)
        episodes = [
            dataclasses.replace(r.episode, goal_index=r.sequence * sessions + r.session)
            for r in result.records
        ]
        lines = [
            {
                **r.to_dict(),
                "goal_index": episode.goal_index,
                "believed": t.believed,
                "active_slot": t.active,
                "dominant_slot": t.dominant,
                "active_is_dominant": t.active_is_dominant,
            }
            for r, episode, t in zip(result.records, episodes, result.tracking, strict=True)
        ]
        summary = EvalSummary(
            policy=f"{chosen.name} (memory {mode})"
            if memory_update is None
            else f"{chosen.name} (memory {mode}: {memory_update})",
            policy_spec=recorded_policy_spec(policy),
            dataset=dataset,
            split=split,
            ranker=chosen.ranker_name,
            user=user,
            setting=setting,
            episodes=len(episodes),
            seed=seed,
            world_seed=world_seed if data.is_world else None,
            conversations=conversations_of(result.sequences, split, checked_regime, seed),
            max_turns=DEFAULT_MAX_TURNS,
            notes=(
                *catalog.notes,
                *chosen.notes,
                *users_note(result.sequences, sequences, sessions, split, with_items),
                *split_note(split),
            ),
            metrics=summarize(episodes, DEFAULT_MAX_TURNS, seed=seed, clusters=sequence_of(result.records)),
            seconds=round(elapsed, 3),
            conversations_per_second=round(len(episodes) / max(elapsed, 1e-9), 2),
            versions={"persona-crs": __version__, "python": platform.python_version()},
            sessions=result.summary,
            run_ranker=own_ranker,
            ranker_identity=ranker_identity,
            data_dir=data.data_folder(),
        )
        claim.clear()
        write_json_lines(out, lines)
        summary.write(out)
    return summary, result, out


def users_note(
    drawn: Sequence[ReturningSequence],
    asked: int,
    sessions: int,
    split: str,
    with_items: int | None = None,
) -> tuple[str, ...]:
    """A note when the returning users are not `asked` distinct users: real data had fewer eligible
    users (`held_out_sequences`), or the persona world drew a user twice (`returning_sequences`).

    Args:
        with_items: Real data: the users with `sessions` held-out items
            (`simulators.returning.users_with_held_out`); more than were drawn when regime "switch"
            found no feasible change session for some.
    """
    users = len({sequence.user for sequence in drawn})
    if len(drawn) < asked:
        played = len(drawn)
        if with_items is not None and with_items > played:
            return (
                f"{asked} returning users were asked for, but only {played} users have {sessions} held-out "
                f"{split!r} items and a feasible switch ({with_items} have {sessions} items; for the other "
                f"{with_items - played}, no persona's items fit a change session): {played} were played",
            )
        return (
            f"{asked} returning users were asked for, but only {played} users have {sessions} held-out "
            f"{split!r} items: {played} were played",
        )
    if users < len(drawn):
        return (
            f"{len(drawn)} returning-user sequences drew {users} distinct users (more sequences than "
            "users with held-out items): a user drawn twice plays two independent histories",
        )
    return ()
