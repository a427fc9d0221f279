"""Evaluating a policy on seeded conversations: the use case behind `crs eval`, sweeps and reports.

`run_evaluation` builds the env and the policy (a rule or a trained run), walks the conversations
(serially, batched for a trained policy, or in chunks on a `crs.parallel.WorkerPool`) and writes
``episodes.jsonl`` and ``summary.json`` into a claimed output folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from crs import __version__
from crs.app.run_folder import EVAL_FILES, SUMMARY_FILE, EvalSummary, RunRecord, resolved_user, write_episodes
from crs.app.settings import MAX_SEED
from crs.claims import FolderClaim, refuse_output_over_inputs
from crs.common import console, data_dir_input
from crs.parallel import Task, WorkerPool, resolve_backend
from crs.progress import LoggedProgress
from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord, MetricSummary, summarize
from envs.registry import make_env, resolve_user_and_setting
from envs.rollout import ConversationPolicy, evaluate, evaluate_batched, evaluation_indices
from envs.setting import Setting, check_setting
from policies.rankers import RUN_RANKER, RankerSpec
from policies.rl.run_files import PolicyMeta, run_ranker, trained_setting
from policies.rules import make_rule_policy
from simulators.datasets import PERSONA_WORLD, DatasetSpec, check_dataset_name
from simulators.errors import CRSError
from simulators.goals import GroupGoals, PairGoals
from simulators.mcmipl import DATASETS as MCMIPL_DATASETS
from simulators.mcmipl import setting_of as mcmipl_setting_of
from simulators.scpr import UNICORN_EVALUATION_CONVERSATIONS

Order = Literal["seeded", "unicorn", "mcmipl"]
"""How an evaluation picks its conversations (`EvalSpec.order`)."""


class EvalSpec(BaseModel):
    """What an evaluation is: the policy, the conversations and the ranker of rule policies.

    One declaration for `crs eval`, sweep tasks and the workers that rebuild an evaluation.

    Attributes:
        policy: A rule policy name (ask-4, max-entropy, ...) or a trained run folder.
        dataset: Dataset name.
        data_dir: Real-data folder (default $CRS_DATA_DIR).
        ranker: Ranker of rule policies (None: the dataset's default); a trained run brings its own.
        setting: Question setting (`envs.setting`; None: a trained run's own, else the dataset's).
        split: Split the conversations come from.
        user: Simulated user kind.
        world_seed: Persona world seed (persona world only).
        episodes: Conversations (at most the split's; more are capped with a warning).
        seed: Seed of the conversation order and of each conversation.
        order: Which conversations (`Order`): "seeded", crs's seeded sample of the split
            (`envs.evaluation_indices`); "unicorn", UNICORN's own evaluation order on LastFM, LastFM*
            and Yelp*: the first `episodes` of its shuffle of the split's (user, item) pairs with `seed`
            (1 there); or "mcmipl", MCMIPL's on its release: the same shuffle of the target groups
            (`simulators.goals.GoalSampler.protocol_order`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    policy: str = "ask-4"
    dataset: str = "persona_world"
    data_dir: str | None = None
    ranker: str | None = None
    setting: Setting | None = None
    split: Literal["train", "valid", "test"] = "test"
    user: Literal["auto", "single", "multi", "persona"] = "auto"
    world_seed: int = Field(0, ge=0, le=MAX_SEED)
    episodes: int = Field(600, ge=1)
    seed: int = Field(1, ge=0, le=MAX_SEED)
    order: Order = "seeded"

    def dataset_spec(self) -> DatasetSpec:
        """The catalogue the conversations come from."""
        return DatasetSpec(self.dataset, self.data_dir, self.world_seed)

    @classmethod
    def of(cls, **settings: Any) -> EvalSpec:
        """An `EvalSpec` from keyword settings.

        Raises:
            CRSError: An unknown setting or a bad value (each named).
        """
        try:
            spec = cls(**settings)
        except ValidationError as error:
            parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
            raise CRSError(f"bad evaluation settings: {'; '.join(parts)}") from None
        check_dataset_name(spec.dataset)
        return spec


_worker_cache: dict[str, Any] = {}


def evaluate_chunk(spec: EvalSpec, indices: Sequence[int], seed: int) -> list[EpisodeRecord]:
    """Worker side of `evaluate_in_parallel`: run the conversations `indices` of `spec`.

    The env and policy are built once per worker process and reused while the spec stays the
    same. Each conversation is seeded by ``(seed, goal index)`` alone (`envs.rollout.episode_seed`),
    so a chunk's records equal the serial run's records for the same goals.
    """
    if _worker_cache.get("spec") != spec:
        env, policy, _, _ = build_evaluation(spec)
        _worker_cache.update(spec=spec, env=env, policy=policy)
    return evaluate(_worker_cache["env"], _worker_cache["policy"], np.asarray(indices, dtype=np.int64), seed)


def evaluate_in_parallel(
    pool: WorkerPool,
    spec: EvalSpec,
    indices: np.ndarray,
    seed: int,
    *,
    chunks_per_worker: int = 4,
    on_chunk: Callable[[int], None] | None = None,
) -> list[EpisodeRecord]:
    """Split the goals `indices` (shape (n,)) into contiguous chunks, run them on the pool's workers,
    and return the records in the order of `indices` — the same list a serial `evaluate` returns.

    Args:
        pool: An entered `WorkerPool`.
        spec: What each worker builds (once per process).
        indices: Goal indices in evaluation order; shape (n,).
        seed: Run seed (conversation seeds derive from it and the goal index).
        chunks_per_worker: Chunks per worker (more = smoother progress and load balance).
        on_chunk: Called in the driver with the number of conversations of each finished chunk.

    Raises:
        CRSError: When a chunk still fails after its retries (its goals and error are named).
    """
    n_chunks = max(1, min(len(indices), pool.workers * chunks_per_worker))
    parts = [part for part in np.array_split(np.asarray(indices, dtype=np.int64), n_chunks) if part.size]
    tasks = [
        Task(
            f"chunk {number + 1}/{len(parts)} (goals {part[0]}..{part[-1]})",
            evaluate_chunk,
            (spec, part.tolist(), seed),
        )
        for number, part in enumerate(parts)
    ]
    results = pool.run(
        tasks, on_result=lambda result: on_chunk(len(result.value or ())) if on_chunk else None
    )
    failures = [result for result in results if not result.ok]
    if failures:
        named = "; ".join(
            f"{result.name} after {result.attempts} attempt{'s' if result.attempts != 1 else ''}: "
            f"{result.error}"
            for result in failures
        )
        raise CRSError(f"evaluation failed in {len(failures)} chunk(s): {named}")
    return [record for result in results for record in result.value]


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation produced: its records, summary and output folder."""

    records: list[EpisodeRecord]
    metrics: dict[str, MetricSummary]
    summary: EvalSummary
    out: Path


def conversations_fingerprint(split: str, indices: np.ndarray) -> str:
    """A short hash of the conversations an evaluation walked (same hash = same test conversations)."""
    digest = hashlib.sha1(split.encode() + np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()
    return digest[:16]


def refuse_ranker_for_run(ranker_spec: str | None, run: Path) -> None:
    """Refuse a --ranker given with the trained run `run` (`crs eval`, with --sessions too, and `crs
    chat`): the run ranks with its own ranker; only "run", which names that one, is accepted.

    Raises:
        CRSError: `ranker_spec` is neither None nor "run".
    """
    if ranker_spec is not None and RankerSpec.parse(ranker_spec) != RUN_RANKER:
        raise CRSError(
            f"--ranker {ranker_spec}: the trained run {run} ranks with its own ranker (its ranker/ or "
            "policy.json's entry), which its network was trained on; leave out --ranker"
        )


def resolve_policy(
    spec: str, env: ConversationEnv, ranker_spec: str | None, data_dir: str | None
) -> tuple[ConversationPolicy, str, str]:
    """The policy named by `spec` (a rule name or a trained run directory), its display name and ranker."""
    path = Path(spec)
    if path.is_dir():
        from policies.rl import load_trained_policy  # torch only when a trained policy is asked for

        refuse_ranker_for_run(ranker_spec, path)
        trained = load_trained_policy(path, env.catalog)
        trained.check_env(env)  # a run of another setting is refused before any conversation
        return trained, path.name, RUN_RANKER.name
    ranker = RankerSpec.parse(ranker_spec) if ranker_spec else RankerSpec.default(env.catalog.name)
    # a rule the setting does not suit is refused before any conversation, and before its ranker is
    # built or found unfit for it (the fix for the ranker would not make it play)
    make_rule_policy(spec, None).check_env(env)
    return make_rule_policy(spec, ranker.build(env.catalog, data_dir)), spec, ranker.name


def recorded_policy_spec(policy: str) -> str:
    """summary.json's ``policy_spec``: a rule's name, or a run folder by its absolute path (a report
    read from another working folder then finds the run and its ranker)."""
    return str(Path(policy).resolve()) if Path(policy).is_dir() else policy


def run_ranker_name(policy: str, ranker_name: str) -> str | None:
    """summary.json's ``run_ranker``: a trained run's own ranker (its `ranker_name` is "run"), else None."""
    return run_ranker(policy).name if ranker_name == RUN_RANKER.name else None


def resolved_ranker_name(ranker_name: str) -> str | None:
    """summary.json's ``ranker_resolved``: the ranker with the file or folder it reads by a relative path
    made absolute, so that a report run from another folder finds it; None when it reads none, or names
    it by an absolute path already."""
    absolute = RankerSpec.parse(ranker_name).resolve(Path.cwd()).name
    return absolute if absolute != ranker_name else None


def ranker_input(ranker: str | None) -> tuple[str, Path | None]:
    """The artifact folder or TransE file a ``--ranker`` reads, however it is written (bare, with
    suffixes such as ``+profile``, or as ``artifact:DIR``), labelled for `refuse_output_over_inputs`:
    ("--ranker artifact" or "--ranker file", the path; None when it reads neither)."""
    spec = RankerSpec.parse(ranker) if ranker is not None else None
    what = "--ranker artifact" if spec is not None and spec.kind == "artifact" else "--ranker file"
    return what, None if spec is None else spec.path


def evaluated_ranker_identity(policy: str, ranker_name: str) -> str:
    """summary.json's ``ranker_identity``: the ranker by content as it is now (`RankerSpec.identity`), a
    trained run's as the run recorded it when it trained (or, in a run older than that record, its
    ranker's now). An evaluation takes it once its policy is built, before the first conversation: a
    file replaced during the run is not recorded as the one used, and a failure here loses no results."""
    if ranker_name != RUN_RANKER.name:
        return RankerSpec.parse(ranker_name).identity()
    recorded = PolicyMeta.read(Path(policy)).ranker_identity
    return recorded if recorded is not None else run_ranker(policy).identity()


OWN_TARGETS_NOTE = "multi-interest targets drawn by crs"
"""How the note of `own_targets_note` begins: a report that finds it needs not say again that no
published figure compares."""


def own_targets_note(dataset: str, user: str) -> tuple[str, ...]:
    """A note for multi-interest users on data MCMIPL did not release groups for (their targets are
    drawn by crs's rule, `simulators.goals.MultiTargetGoals`): no published figure used them."""
    if user != "multi" or dataset == PERSONA_WORLD or dataset in MCMIPL_DATASETS:
        return ()
    own = mcmipl_setting_of(dataset)
    where = f" (MCMIPL's own: -d {own})" if own else ""
    return (
        f"{OWN_TARGETS_NOTE} (each test pair's item plus items sharing one of its aspects), "
        f"not MCMIPL's released target groups{where}: no published figure compares with these",
    )


def pretrain_split_note(split: str, pretrain_split: str) -> tuple[str, ...]:
    """A note for an evaluation whose targets come from the split rankers pre-train on (and count
    popularity in): the ranker has seen those pairs."""
    if split != pretrain_split:
        return ()
    return (
        f"the targets are pairs of the {split} split, which rankers pre-train on (and popularity counts): "
        "the ranker has seen them, so this is not a test result; evaluate on --split test",
    )


def conversation_indices(spec: EvalSpec, env: ConversationEnv) -> np.ndarray:
    """The goal indices an evaluation walks, in order (`EvalSpec.order`), int64 of shape (n,).

    Raises:
        CRSError: "unicorn" or "mcmipl" where that code's order does not exist: UNICORN's walks the
            single-target pairs of LastFM, LastFM* and Yelp*, MCMIPL's the target groups of its release.
    """
    if spec.order == "seeded":
        return evaluation_indices(env.goals.n_goals, spec.episodes, spec.seed)
    if spec.order == "unicorn":
        has_order = spec.dataset in UNICORN_EVALUATION_CONVERSATIONS and type(env.goals) is PairGoals
        datasets, users = tuple(UNICORN_EVALUATION_CONVERSATIONS), "auto or single"
        what = "order of the test (user, item) pairs"
    else:
        has_order = isinstance(env.goals, GroupGoals)
        datasets, users = MCMIPL_DATASETS, "auto or multi"
        what = "order of its release's target groups"
    if not has_order:
        user = resolved_user(spec.user, spec.dataset, env.setting)
        raise CRSError(
            f"--order {spec.order} is {spec.order.upper()}'s {what}; {spec.dataset} with user {user!r} has "
            f"none: use -d {', -d '.join(datasets)} (user {users}), or --order seeded"
        )
    if spec.order == "unicorn" and spec.split != "test":
        raise CRSError(
            f"--order unicorn is UNICORN's {what}: --split {spec.split} has no such order; use --split "
            "test, or --order seeded"
        )
    return env.goals.protocol_order(spec.seed, spec.episodes)


def run_catalogue(
    policy: str, dataset: str | None, data_dir: str | None, world_seed: int | None
) -> tuple[str, str | None, int | None]:
    """The dataset, data folder and world seed to evaluate or chat with `policy` on (`crs eval`, `crs
    chat`): the dataset given, else a trained run's own, else persona_world. On the run's dataset (given
    or not) the data folder and world seed not given are the run's too (its policy.json; the data folder
    its config.yaml records, where it recorded one); otherwise they stay as given.

    Raises:
        CRSError: `dataset` is not the dataset the run `policy` trained on.
    """
    meta = None
    if Path(policy).is_dir():
        with contextlib.suppress(CRSError):  # not a trained run: resolving the policy names what is wrong
            meta = PolicyMeta.read(policy)
    if meta is None:
        return dataset or PERSONA_WORLD, data_dir, world_seed
    if dataset not in (None, meta.catalog):
        raise CRSError(
            f"run {policy} was trained on {meta.catalog}, not {dataset}: leave out -d (a run plays its own "
            f"dataset), or give -d {meta.catalog}"
        )
    if meta.catalog == PERSONA_WORLD:
        return PERSONA_WORLD, data_dir, meta.world_seed if world_seed is None else world_seed
    if data_dir is None:
        with contextlib.suppress(CRSError):  # no config.yaml: $CRS_DATA_DIR, as for any evaluation
            data_dir = RunRecord.read(Path(policy)).settings.data_dir
    return meta.catalog, data_dir, world_seed


def policy_setting(policy: str, setting: str | None) -> Setting | None:
    """The setting to run `policy` in: `setting` if named, else a trained run's own (None: the
    dataset's default, which `envs.registry.make_env` resolves).

    Raises:
        CRSError: `setting` is not a setting (`envs.setting.SETTINGS`).
    """
    if setting is not None:
        return check_setting(setting)
    return trained_setting(policy) if Path(policy).is_dir() else None


def build_evaluation(spec: EvalSpec) -> tuple[ConversationEnv, ConversationPolicy, str, str]:
    """The env, policy, policy display name and ranker name of an evaluation (driver and workers)."""
    setting = policy_setting(spec.policy, spec.setting)
    env = make_env(catalog=spec.dataset_spec().load(), split=spec.split, user=spec.user, setting=setting)
    policy, policy_name, ranker_name = resolve_policy(spec.policy, env, spec.ranker, spec.data_dir)
    return env, policy, policy_name, ranker_name


def default_output(spec: EvalSpec, policy_name: str, setting: str) -> Path:
    """``out/eval/<dataset>-<policy>[-<setting>][-<ranker>][-<split>][-<order>]-s<seed>``: each part in
    brackets only where it is not the default (the dataset's setting, the policy's own ranker, the test
    split, the seeded order), so evaluations that differ in one get folders of their own."""
    world, mcmipl = spec.dataset_spec().is_world, spec.dataset in MCMIPL_DATASETS
    parts = [spec.dataset, policy_name]
    if setting != resolve_user_and_setting(spec.user, None, world=world, mcmipl=mcmipl)[1]:
        parts.append(setting)
    ranker = None if spec.ranker is None else RankerSpec.parse(spec.ranker)
    if ranker is not None and ranker != RUN_RANKER:
        parts.append(re.sub(r"[^\w.+-]+", "_", ranker.name).strip("_"))  # a folder's path: one name
    parts += [spec.split] if spec.split != "test" else []
    parts += [spec.order] if spec.order != "seeded" else []
    return Path("out") / "eval" / "-".join([*parts, f"s{spec.seed}"])


def claim_evaluation_output(out: Path, overwrite: bool) -> FolderClaim:
    """The claim on an evaluation's output folder (refused if it holds files, unless `overwrite`). An
    earlier evaluation it replaces is emptied only by `FolderClaim.clear`, once the new records are in
    hand: an evaluation that fails or is interrupted keeps the earlier one. The refusal says what the
    earlier one evaluated (a folder named with -o may hold another evaluation)."""
    hint = "pass --overwrite to replace them, or -o to write elsewhere"
    try:
        earlier = EvalSummary.read(out) if (out / SUMMARY_FILE).is_file() else None
    except CRSError:
        earlier = None
    if earlier is not None:
        label = earlier.label.describe(f", seed {earlier.seed}")
        hint = f"they are {earlier.policy} on {label}; {hint}"
    return FolderClaim(
        out,
        "evaluation output",
        overwrite=overwrite,
        hint=hint,
        marks=EVAL_FILES,
        defer=True,
        owns=lambda name: name in EVAL_FILES,
    )


def evaluation_progress(show: bool) -> LoggedProgress:
    """The progress bar of an evaluation (conversations done of all, time left), gone when it ends."""
    return LoggedProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
        transient=True,
    )


def _walk(
    spec: EvalSpec,
    env: ConversationEnv,
    policy: ConversationPolicy,
    indices: np.ndarray,
    description: str,
    show_progress: bool,
    pool: tuple[int | None, str, str | None],
) -> list[EpisodeRecord]:
    """The records of the conversations `indices`, with a progress bar: in this process (a trained
    policy batched, one forward pass for many conversations) when `pool` = (workers, backend, address)
    asks for one worker and no cluster, else on a `WorkerPool`. Every way gives the same records."""
    with evaluation_progress(show_progress) as progress:
        task = progress.add_task(description, total=len(indices))
        workers, backend, address = pool
        if workers != 1 or address is not None:
            notify = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
            with WorkerPool(workers, backend=backend, address=address, notify=notify) as running:
                return evaluate_in_parallel(
                    running, spec, indices, spec.seed, on_chunk=lambda n: progress.advance(task, n)
                )
        advance = lambda _: progress.advance(task)  # noqa: E731
        if hasattr(policy, "act_batch"):

            def another_env() -> ConversationEnv:
                return make_env(catalog=env.catalog, split=spec.split, user=spec.user, setting=env.setting)

            return evaluate_batched(another_env, policy, indices, spec.seed, batch=64, on_episode=advance)
        return evaluate(env, policy, indices, spec.seed, on_episode=advance)


def run_evaluation(
    spec: EvalSpec | str,
    *,
    out: Path | None = None,
    show_progress: bool = True,
    workers: int | None = 1,
    backend: str = "auto",
    address: str | None = None,
    overwrite: bool = False,
    **settings: Any,
) -> EvalResult:
    """Evaluate a policy and write ``episodes.jsonl`` and ``summary.json`` into `out`.

    With ``workers > 1`` (None: every core, or the cluster's CPUs with a Ray ``address``) the
    conversations are split into chunks run by a `crs.parallel.WorkerPool`; the records, merged in
    goal order, equal the serial run's. The output folder is claimed (`crs.claims.FolderClaim`) from
    before the first conversation until the files are written, so two evaluations never share it.

    Args:
        spec: The evaluation, or a policy name whose other settings are the keyword `settings`
            (`EvalSpec` fields, e.g. ``run_evaluation("ask-4", episodes=100, seed=3)``).
        out: Output folder (default: `default_output`).
        show_progress: Draw a progress bar.
        workers: Worker processes (1: in this process).
        backend: Worker backend (`crs.parallel.BACKENDS`).
        address: A Ray cluster to run on.
        overwrite: Replace what `out` already holds; without it a folder with content is refused.
        **settings: `EvalSpec` fields when `spec` is a policy name.

    Raises:
        CRSError: Bad settings (named), an unknown backend, or an unusable policy or ranker.
        OutputExistsError: `out` holds results and `overwrite` is False.
        OutputBusyError: Another process writes `out` (or died and left its lock).
        OutputOverInputError: `out` is or holds the policy run, the ranker artifact or the data folder, or
            lies in the data folder.
    """
    if isinstance(spec, str):
        spec = EvalSpec.of(policy=spec, **settings)
    elif settings:
        raise CRSError(f"run_evaluation: pass settings {sorted(settings)} inside the EvalSpec")
    if workers is not None and workers < 1:
        raise CRSError(f"--workers must be >= 1, got {workers}")
    resolve_backend(backend, address)  # an unknown backend is an error even when one worker ignores it
    env, policy, policy_name, ranker_name = build_evaluation(spec)
    run = Path(spec.policy) if Path(spec.policy).is_dir() else None
    policy_spec = recorded_policy_spec(spec.policy)
    # the ranker as it is before the first conversation (`evaluated_ranker_identity`)
    own_ranker = run_ranker_name(policy_spec, ranker_name)
    ranker_identity = evaluated_ranker_identity(spec.policy, ranker_name)
    dataset, split, seed, episodes = spec.dataset, spec.split, spec.seed, spec.episodes
    n_goals = env.goals.n_goals
    if episodes > n_goals:
        console.print(
            f"[yellow]warning:[/] --episodes {episodes} is more than the {n_goals} conversations of "
            f"{dataset}/{split}; evaluating all {n_goals}",
            highlight=False,
        )
    indices = conversation_indices(spec, env)
    out = out or default_output(spec, policy_name, env.setting)
    refuse_output_over_inputs(out, [("--policy run", run)])
    refuse_output_over_inputs(  # a run's own evaluation may lie inside it (RUN/eval), nothing else
        out,
        [
            ranker_input(spec.ranker),
            ("data folder", data_dir_input(spec.data_dir, spec.dataset)),
        ],
        inside=True,
    )
    with claim_evaluation_output(out, overwrite) as claim:
        started = time.perf_counter()
        description = f"{policy_name} on {dataset}/{split}"
        records = _walk(spec, env, policy, indices, description, show_progress, (workers, backend, address))
        elapsed = time.perf_counter() - started

        metrics = summarize(records, env.max_turns, seed=seed)
        user = resolved_user(spec.user, dataset, env.setting)
        summary = EvalSummary(
            policy=policy_name,
            policy_spec=policy_spec,
            dataset=dataset,
            split=split,
            ranker=ranker_name,
            user=user,
            setting=env.setting,
            episodes=len(records),
            seed=seed,
            world_seed=spec.world_seed if spec.dataset_spec().is_world else None,
            conversations=conversations_fingerprint(split, indices),
            order=spec.order,
            max_turns=env.max_turns,
            notes=(
                *env.catalog.notes,
                *own_targets_note(dataset, user),
                *pretrain_split_note(split, env.catalog.pretrain_split),
            ),
            metrics=metrics,
            seconds=round(elapsed, 3),
            conversations_per_second=round(len(records) / max(elapsed, 1e-9), 2),
            versions={"persona-crs": __version__, "python": platform.python_version()},
            run_ranker=own_ranker,
            ranker_identity=ranker_identity,
            ranker_resolved=resolved_ranker_name(ranker_name),
            data_dir=spec.dataset_spec().data_folder(),
        )
        claim.clear()
        write_episodes(out, records)
        summary.write(out)
        return EvalResult(records=records, metrics=metrics, summary=summary, out=out)
