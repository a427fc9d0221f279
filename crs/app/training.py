"""Training the graph RL policy with MaskablePPO into a run directory, and comparing it with the rule
baselines on the same test conversations (the run directory's files: `crs.app.run_folder`)."""

from __future__ import annotations

import os
import platform
import shlex
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from crs import __version__
from crs.app.evaluation import conversations_fingerprint, ranker_input
from crs.app.run_folder import (
    DEFAULT_RUNS_DIR,
    PROGRESS_FILES,
    RUN_CONFIG,
    SUMMARY_FILE,
    TRAINED_TEST,
    CurveFile,
    EvalSummary,
    RunPhase,
    RunRecord,
    TrainSummary,
    Verdict,
    catalogue_options,
    changed_settings,
    eval_blocker,
    eval_command,
    resolved_user,
    run_options,
    write_model_card,
    write_test_folders,
)
from crs.app.settings import TrainSettings, make_settings
from crs.claims import FolderClaim, empty_folder, refuse_output_over_inputs
from crs.common import (
    METRIC_ORDER,
    console,
    data_dir_input,
    metrics_table,
)
from crs.progress import LoggedProgress
from envs.belief_fit import fit_temperature
from envs.env import ConversationEnv, Rewards
from envs.metrics import (
    DIFF_SEED,
    MIN_PAIRED,
    EpisodeRecord,
    MetricSummary,
    bootstrap_ci,
    ci_sign,
    per_episode_metrics,
    summarize,
)
from envs.registry import make_env
from envs.rollout import evaluation_indices
from policies.content_profile import profile_holdout
from policies.rankers import RUN_RANKER, RankerSpec
from policies.rl.config import ImitationConfig, RLConfig
from policies.rl.run_files import (
    BEST_MODEL,
    CHECKPOINT,
    FINAL_MODEL,
    POLICY_META,
    CheckpointState,
    PolicyMeta,
    run_ranker,
)
from policies.rules import make_rule_policy
from simulators.datasets import DATA_DIR_ENV
from simulators.errors import CRSError
from simulators.mcmipl import find_release

# the demonstrations' conversations differ from those of the PPO envs (`policies.rl.model.training_env_seed`)
IMITATION_SEED_OFFSET = 7919
FIT_CONVERSATIONS = 1000  # openings `--fit-plan-temperature` fits the belief temperature on


class RunNameError(CRSError):
    """A run name that is not one plain folder name (it would write outside the runs folder)."""


class ResumeStepsError(CRSError):
    """A resumed run asked to train to a step count it has already reached."""


class ResumeOptionError(CRSError):
    """An option that `crs train --resume` cannot apply: a resumed run keeps its recorded settings."""


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 9B14"): a trained figure can round differently on another CPU, so
    a run records which it trained on; the machine type where Linux's /proc/cpuinfo does not say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def system_info() -> dict[str, Any]:
    """Versions and machine facts recorded with every run."""
    import gymnasium
    import numpy
    import sb3_contrib
    import stable_baselines3
    import torch

    return {
        "persona_crs": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": str(torch.__version__),
        "gymnasium": gymnasium.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": 1,
    }


def _progress(show: bool) -> LoggedProgress:
    """A progress display with elapsed and remaining time and a free note per task."""
    return LoggedProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("elapsed,"),
        TimeRemainingColumn(),
        TextColumn("left"),
        TextColumn("{task.fields[note]}"),
        console=console,
        disable=not show,
        transient=False,
    )


def _check_ranker_and_rules(settings: TrainSettings, catalog: Any, env: ConversationEnv) -> None:
    """Refuse, before an earlier run is emptied or anything trains, a ranker that cannot be built and a
    baseline or imitation rule that the ranker or the env's setting does not suit (each would otherwise
    fail only once pre-training or training is done).

    Raises:
        CRSError: The ranker's fault, or the rule's, named by its key.
    """
    if settings.ranker is not None:
        spec = RankerSpec.parse(settings.ranker)
    elif settings.dataset_spec().is_world:
        spec = RankerSpec("pretrain")
    else:
        spec = RankerSpec.default(catalog.name)
    # a persona ranker stands in for the one "pretrain" pre-trains into the run
    ranker = (RankerSpec("uniform") if spec.kind == "pretrain" else spec).build(catalog, settings.data_dir)
    rules = [("baselines", rule) for rule in settings.baselines]
    if settings.imitation is not None:
        rules.append(("imitation.rule", settings.imitation.rule))
    for key, rule in rules:
        try:
            make_rule_policy(rule, ranker).check_env(env)
        except CRSError as error:
            raise CRSError(f"{key}: {error}") from None


def asked_ranker(settings: TrainSettings) -> RankerSpec:
    """The ranker `settings` ask for: their ``ranker``, else the dataset's default (on the persona world
    a persona ranker pre-trained into the run)."""
    if settings.ranker is not None:
        return RankerSpec.parse(settings.ranker)
    return (
        RankerSpec("pretrain") if settings.dataset_spec().is_world else RankerSpec.default(settings.dataset)
    )


def _resolve_ranker(
    settings: TrainSettings, catalog: Any, run_dir: Path, show: bool, resumed: bool
) -> tuple[Any, str, str]:
    """The fixed ranker, its policy.json entry ("popularity", "transe:<file>", "artifact:<dir>") and its
    `RankerSpec.identity`.

    A resumed run that has a policy.json keeps the ranker recorded there, checked to be the one it was
    trained with (`RankerSpec.check_pinned`); config.yaml's ``ranker``, as typed, is read only by a run
    that has none yet (a relative path then is taken from the current directory).

    Raises:
        RankerChangedError: A resumed run's ranker is gone or holds another ranker than it trained with.
        CRSError: A ranker that cannot be built (a resumed run's relative path is named as config.yaml's).
    """
    if resumed and (run_dir / POLICY_META).is_file():
        meta = PolicyMeta.read(run_dir)
        pinned = RankerSpec.from_entry(meta.ranker, f"run {run_dir} ({POLICY_META})").resolve(run_dir)
        now = pinned.check_pinned(meta.ranker_identity, run_dir)  # the identity, where the check hashed it
        identity = now if now is not None else pinned.identity()
        return pinned.build(catalog, settings.data_dir), meta.ranker, identity
    spec = asked_ranker(settings)
    if settings.ranker is not None and resumed and spec.path is not None and not spec.path.exists():
        raise CRSError(
            f"run {run_dir}'s {RUN_CONFIG} records --ranker {settings.ranker!r} as it was typed, and "
            f"{spec.path} is not there from the current directory ({Path.cwd()}): resume from the "
            "directory the run was started in"
        )
    if spec.kind == "pretrain":
        recorded = spec.for_run()  # "artifact:ranker": a folder in the run
        artifact = recorded.resolve(run_dir)
        if not (Path(artifact.where) / "config.json").is_file():
            from policies.pretrain.artifact import save_artifact  # torch and PyG load only here
            from policies.pretrain.config import TrainConfig
            from policies.pretrain.train import pretrain

            switches = settings.ranker_switches()
            config = TrainConfig(epochs=settings.pretrain_epochs, seed=settings.seed, **switches)
            with _progress(show) as progress:
                task = progress.add_task("pre-training", total=config.epochs, note="")
                result = pretrain(
                    catalog,
                    config,
                    on_epoch=lambda report: progress.update(
                        task, completed=report.epoch, note=f"valid NDCG@10 {report.valid.ndcg:.4f}"
                    ),
                )
            world_seed = settings.world_seed if catalog.truth is not None else None
            save_artifact(result, artifact.where, world_seed=world_seed)  # named when it is refused
            best = next(h for h in result.history if h.epoch == result.best_epoch)
            if show:
                ablated = ", ".join(f"{key} {value}" for key, value in switches.items())
                console.print(
                    f"ranker{f' ({ablated}: the ablation)' if ablated else ''}: validation Recall@10 "
                    f"{best.valid.recall:.4f}, NDCG@10 {best.valid.ndcg:.4f} "
                    f"(epoch {result.best_epoch} of {len(result.history)}; against popularity and "
                    "random rankers: BENCHMARKS.md, Pre-training)"
                )
        return artifact.build(catalog), recorded.entry, artifact.identity()
    ranker = spec.build(catalog, settings.data_dir)
    recorded = spec.for_run(settings.data_dir)
    return ranker, recorded.entry, recorded.identity()


def _training_goals(ranker_entry: str, run_dir: Path, catalog: Any) -> tuple[Any, str]:
    """The valid interactions training may converse about (None: all) and a description of them.

    A ranker pre-trained on ``valid`` (Yelp*: no train split) was fitted to most valid targets, and tag
    profiles (``+profile``) and a popularity prior (``+pop``) count them, so training and validation
    conversations then come only from the pre-training hold-out (`policies.content_profile.profile_holdout`).
    The plain ``popularity`` ranker counts all of ``valid`` there: the description says so.
    """
    spec = RankerSpec.parse(ranker_entry).resolve(run_dir)
    if spec.kind == "popularity" and catalog.pretrain_split == "valid":
        return None, "valid, all of which the popularity ranker counts (it has no hold-out)"
    if spec.kind == "artifact":
        from policies.pretrain.artifact import unseen_valid_interactions  # torch loads only here

        held_out = unseen_valid_interactions(spec.where, catalog)
    elif spec.profile or spec.popularity_weight:
        held_out = profile_holdout(catalog)
    else:
        held_out = None
    if held_out is None:
        return None, "valid"
    goals = f"valid, the {len(held_out):,} interactions held out of the ranker's pre-training data"
    release = find_release(catalog)
    if release is not None:
        groups = release.groups_of("valid")
        kept = len(groups.within(held_out))
        goals += f" (MCMIPL's groups all of whose targets are among them: {kept:,} of {len(groups):,})"
    return held_out, goals


def run_training(
    settings: TrainSettings | None,
    *,
    name: str | None = None,
    runs_dir: Path = DEFAULT_RUNS_DIR,
    resume: bool = False,
    overwrite: bool = False,
    steps: int | None = None,
    ppo: dict[str, Any] | None = None,
    data_dir: str | None = None,
    show: bool = True,
) -> TrainSummary:
    """Train (or resume) a run and return its summary (also written to summary.json).

    The run directory is claimed for the whole call (`crs.claims.FolderClaim`): a second writer gets
    a clear error. A resumed run continues from checkpoint.zip, whose weights include every step its
    step count names; curve rows newer than the checkpoint are dropped, the best score to beat is
    the one measured for best_model.zip, and an evaluation a kill interrupted at the checkpoint
    (state.json's ``pending_eval``) runs first. Each session is recorded in config.yaml's
    ``phases`` once it is ready to train (a resume that fails before adds none). A run stopped before
    its first checkpoint starts again from step 0 with its recorded settings. A new run that fails
    before training (a bad ranker, missing data) leaves no run directory behind.

    A resumed run keeps the ranker it was trained with: the one its policy.json recorded (an artifact or
    TransE file by absolute path, a pre-trained ``ranker/`` in the run), never config.yaml's ``ranker``
    as typed, so a relative ``--ranker`` means the same from any directory; if that file or folder is
    gone or now holds another ranker (policy.json's ``ranker_identity``), the resume is refused naming
    both. Only a run with no policy.json yet (stopped before its first session was prepared) reads
    config.yaml's ``ranker``, a relative path from the current directory.

    Args:
        settings: The run's settings (ignored with `resume`: the run's config.yaml is used).
        name: Run name (default from the settings): one plain folder name inside `runs_dir`.
        runs_dir: Parent of the run directory.
        resume: Continue the run (from its checkpoint.zip, or from step 0 when it has none).
        overwrite: Delete an existing run of that name and start again.
        steps: Budget override (with `resume`: extend the run to this many steps, above those it has).
        data_dir: With `resume`: where the run's real data lies now (the data must be the same: its
            catalogue's fingerprint in policy.json is checked).
        ppo: PPO settings to change, e.g. ``{"learning_rate": 3e-4, "ent_coef": 0.003}``; with
            `resume` they replace the checkpoint's values from now on (a fine-tuning phase);
            ``{"subprocess": False}`` runs the envs in-process.
        show: Print progress and the summary with rich.

    Raises:
        RunNameError: `name` is not one plain folder name.
        ResumeStepsError: With `resume`, `steps` is not above the steps the run has trained.
        OutputOverInputError: The run directory is or holds the ranker artifact or the data folder.
        RankerChangedError: With `resume`, the run's ranker is gone or holds another ranker.
        CRSError: Bad settings, an existing or busy run, a damaged run file, or diverged training.
    """
    if name is not None:
        check_run_name(name, runs_dir)
    if resume:
        if name is None:
            raise CRSError("--resume needs --name: the run to continue")
        run_dir = runs_dir / name
        if not run_dir.is_dir():
            raise CRSError(f"--resume: there is no run {run_dir}; start it without --resume")
        claim = FolderClaim(run_dir, "run", resume=True)
    else:
        if settings is None:
            raise CRSError("run_training needs settings unless it resumes a run")
        name = name or default_run_name(settings)
        run_dir = runs_dir / name
        # --overwrite empties the run directory: refuse before, whatever the flags say
        refuse_output_over_inputs(run_dir, training_inputs(settings))
        claim = FolderClaim(
            run_dir,
            "run",
            overwrite=overwrite,
            hint=f"continue it with `crs train {run_options(name, runs_dir)} --resume`, start it again "
            "with --overwrite, or pick another --name",
            marks=(RUN_CONFIG,),
            defer=True,  # an earlier run is emptied once the data has loaded (`_prepare`)
        )
    with claim:  # a new run that failed before training (`_train`) leaves no folder
        if resume:
            settings = RunRecord.read(run_dir).settings
            _refuse_steps_not_above(run_dir, settings.steps if steps is None else steps, steps is None)
        assert settings is not None
        if steps is not None:
            settings = settings.model_copy(update={"steps": steps})
        if resume and data_dir is not None:  # the data moved: the catalogue's fingerprint must still match
            if settings.dataset_spec().is_world:
                raise CRSError(
                    f"--data-dir {data_dir}: run {run_dir} trains on the persona world, which reads no data "
                    "folder; leave it out"
                )
            settings = settings.model_copy(update={"data_dir": str(Path(data_dir).resolve())})
        elif not resume:
            settings = with_data_dir_recorded(settings)
        if ppo:
            merged = {**asdict(settings.ppo), **ppo}
            settings = make_settings({**settings.model_dump(), "ppo": merged})
        return _train(settings, name, run_dir, resume, show, claim)


def with_data_dir_recorded(settings: TrainSettings) -> TrainSettings:
    """`settings` on real data with the data folder ``$CRS_DATA_DIR`` gives, made absolute, where they
    name none: config.yaml records it, so the run resumes, and its model card's commands evaluate it,
    without that variable."""
    folder = os.environ.get(DATA_DIR_ENV)
    if settings.data_dir is not None or settings.dataset_spec().is_world or not folder:
        return settings
    return settings.model_copy(update={"data_dir": str(Path(folder).resolve())})


def check_run_name(name: str, runs_dir: Path = DEFAULT_RUNS_DIR) -> None:
    """Refuse a run name that is not one plain folder name inside `runs_dir`.

    Raises:
        RunNameError: `name` is empty, "." or "..", or holds a path separator (or a NUL).
    """
    if name in ("", ".", "..") or any(mark in name for mark in ("/", "\\", "\0")):
        raise RunNameError(
            f"run name {name!r} is not a plain folder name: --name is one folder inside --runs-dir "
            f"({runs_dir}), without '/' or '\\', and not empty, '.' or '..'; to write elsewhere, give "
            "the parent folder as --runs-dir and the folder's own name as --name"
        )


def training_inputs(settings: TrainSettings) -> list[tuple[str, Path | None]]:
    """What a new run reads that its run directory must not be or hold (`--overwrite` would delete it):
    the ranker artifact or TransE file its settings name, and the real-data folder (None: none)."""
    data = data_dir_input(settings.data_dir, settings.dataset)
    return [ranker_input(settings.ranker), ("data folder", data)]


def _refuse_steps_not_above(run_dir: Path, steps: int, budget: bool = False) -> None:
    """Refuse to resume `run_dir` to `steps` when its checkpoint already has that many; with `budget`
    (`steps` is the run's own budget: no --steps), only a run that was also tested, which has nothing
    left to do (one stopped while testing is tested again).

    Raises:
        ResumeStepsError: `steps` is not above the checkpoint's step count.
        ModelFileError: checkpoint.zip is damaged.
    """
    from policies.rl.model_file import read_model_data  # torch

    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():  # stopped before its first checkpoint: it starts again from step 0
        return
    trained = int(read_model_data(checkpoint).get("num_timesteps", 0))
    if budget:
        if steps <= trained and (run_dir / SUMMARY_FILE).is_file():
            raise ResumeStepsError(
                f"run {run_dir} has finished: it trained its {trained:,} steps and was tested "
                f"({SUMMARY_FILE}); to train more, resume with --steps above {trained:,} (e.g. --steps "
                f"{2 * trained}); the run is unchanged"
            )
        return
    if steps <= trained:
        raise ResumeStepsError(
            f"run {run_dir} has trained {trained:,} steps: --resume --steps {steps:,} must be above "
            f"{trained:,} to train more (e.g. --steps {2 * trained}); the run is unchanged"
        )


@dataclass(frozen=True)
class _Prepared:
    """What a training session works with, once the run directory is set up."""

    settings: TrainSettings
    name: str
    run_dir: Path
    catalog: Any
    ranker: Any
    ranker_entry: str
    ranker_identity: str
    config: RLConfig
    train_env: Callable[[], ConversationEnv]
    test_env: Callable[[], ConversationEnv]
    train_goals: str
    record: RunRecord
    show: bool


@dataclass(frozen=True)
class _Session:
    """What a training session did: the final model's steps, its speed, the best validation score."""

    start_steps: int
    timesteps: int
    seconds: float
    best_score: tuple[float, float]
    spaces: dict[str, Any]
    encoder: dict[str, Any]  # the encoder's arguments the run's settings give (`encoder_kwargs`)
    valid_episodes: int  # the validation conversations each evaluation walks


def _train(
    settings: TrainSettings, name: str, run_dir: Path, resume: bool, show: bool, claim: FolderClaim
) -> TrainSummary:
    """The body of `run_training`, in the run directory `claim` holds (its `FolderClaim.clear` empties
    the earlier run that ``--overwrite`` replaces, once the data has loaded)."""
    import torch  # torch loads only when training runs, not at CLI start-up

    torch.set_num_threads(1)
    new_run = not resume
    if resume and not (run_dir / CHECKPOINT).is_file():
        for leftover in PROGRESS_FILES:
            (run_dir / leftover).unlink(missing_ok=True)
        if show:
            console.print(
                f"[yellow]note:[/] {run_dir} has no checkpoint yet: training starts again from step 0 "
                f"with the run's recorded settings"
            )
        resume = False
    phases = _phases(run_dir, settings) if resume else (RunPhase(0, settings.steps, {}),)
    if show:  # what starts, before the minutes of loading and pre-training (also in a log file)
        if resume:
            console.print(f"resuming {run_dir} from its checkpoint: {phases[-1].describe()}")
        else:
            workers = "worker processes" if settings.ppo.subprocess else "this process"
            console.print(
                f"training {run_dir}: {settings.dataset}, {settings.setting} setting, ranker "
                f"{asked_ranker(settings).name}, {settings.steps:,} steps, {settings.envs} simulated users "
                f"in {workers}, seed {settings.seed}"
            )
    try:
        prepared = _prepare(settings, name, run_dir, show, claim.clear, phases, resumed=not new_run)
    except Exception:
        if new_run and not claim.pending:  # nothing durable yet: leave nothing that blocks the fix
            empty_folder(run_dir)  # (an earlier run that --overwrite has not emptied yet stays)
        raise
    session = _learn(prepared, resume)
    summary, throughput, tested_step = _test(prepared, session)
    if show:
        _show(prepared, session, summary, throughput, tested_step)
    return summary


def _phases(run_dir: Path, settings: TrainSettings) -> tuple[RunPhase, ...]:
    """The sessions of a run resumed from its checkpoint with `settings`: those config.yaml recorded
    (a run from before they were, one from step 0 with its recorded settings), then this one.

    Raises:
        CRSError: config.yaml is damaged.
        ModelFileError: checkpoint.zip is damaged.
    """
    from policies.rl.model_file import read_model_data  # torch

    record = RunRecord.read(run_dir)
    earlier = record.phases or (RunPhase(0, record.settings.steps, {}),)
    start = int(read_model_data(run_dir / CHECKPOINT).get("num_timesteps", 0))
    changed = changed_settings(record.settings, settings)
    if start >= settings.steps and not changed:  # stopped while testing: this session only tests
        return earlier
    return (*earlier, RunPhase(start, settings.steps, changed))


def _prepare(
    settings: TrainSettings,
    name: str,
    run_dir: Path,
    show: bool,
    clear: Callable[[], None] = lambda: None,
    phases: tuple[RunPhase, ...] = (),
    resumed: bool = False,
) -> _Prepared:
    """Resolve the ranker and the conversations, write policy.json, and return the run's record (its
    settings and `phases`); `clear` is called once the data has loaded (a missing or damaged data folder
    leaves an earlier run as it was). A new run writes its config.yaml at once (a run killed while its
    ranker pre-trains can be resumed); a `resumed` one keeps its config.yaml until `_learn` writes the
    record, so a resume that fails adds no phase."""
    from policies.pretrain.train import catalog_fingerprint  # torch: loaded once training runs

    catalog = settings.dataset_spec().load()
    # the user and setting checked against the data before anything is written or pre-trained
    env = make_env(catalog=catalog, split="valid", **settings.env_options())
    if not resumed:  # (a resumed run keeps the ranker it recorded, checked by `_resolve_ranker`)
        _check_ranker_and_rules(settings, catalog, env)
    elif (run_dir / POLICY_META).is_file():
        recorded = PolicyMeta.read(run_dir).fingerprint
        if recorded is not None and recorded != catalog_fingerprint(catalog):
            where = settings.data_dir or "the data folder"
            raise CRSError(
                f"run {run_dir} trained on other {catalog.name} data than {where} holds now (its "
                "catalogue's fingerprint in policy.json differs): resume with --data-dir naming the data it "
                "trained on"
            )
    clear()
    record = RunRecord(
        settings=settings,
        name=name,
        versions=system_info(),
        written=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        phases=phases,
    )
    if not resumed:
        record.write(run_dir)
    ranker, ranker_entry, ranker_identity = _resolve_ranker(settings, catalog, run_dir, show, resumed)
    env_options = settings.env_options()
    train_rewards = Rewards(**settings.rewards)
    goal_interactions, train_goals = _training_goals(ranker_entry, run_dir, catalog)
    if show and settings.ranker_switches() and ranker_entry != RankerSpec("pretrain").for_run().entry:
        attentions = RankerSpec.parse(ranker_entry).resolve(run_dir).attentions()
        console.print(
            f"[yellow]note:[/] the ranker {ranker_entry} was pre-trained with this variant's switches, so "
            "the variant is ablated whole (ranker and policy)"
            if settings.ranker_matches_variant(attentions)
            else f"[yellow]note:[/] the ranker {ranker_entry} is used as it is, so only the policy is "
            "ablated; for the ranker too, train with `--ranker pretrain` or give one `crs pretrain -k 1` "
            "(or `--no-aspect-attention`) wrote"
        )
    if show and train_goals != "valid":
        console.print(
            "[yellow]note:[/] the ranker (or its tag profiles) learned from valid: training conversations "
            f"from {train_goals}"
        )

    def train_env() -> ConversationEnv:
        return make_env(
            catalog=catalog,
            split="valid",
            rewards=train_rewards,
            goal_interactions=goal_interactions,
            **env_options,
        )

    if settings.fit_plan_temperature:
        settings = _fit_plan_temperature(settings, ranker, train_env(), show)
        record = replace(record, settings=settings)
    config = settings.rl_config()

    def test_env() -> ConversationEnv:
        return make_env(catalog=catalog, split="test", **env_options)

    # a resumed run keeps its id, so the model files it wrote before still load (`RUN_ID_ENTRY`)
    earlier = PolicyMeta.read(run_dir).run_id if resumed and (run_dir / POLICY_META).is_file() else None
    PolicyMeta(
        catalog=catalog.name,
        sizes=(catalog.n_users, catalog.n_items, catalog.n_aspects),
        ranker=ranker_entry,
        rl=config,
        env=env_options,
        train_rewards=asdict(train_rewards),
        train_goals=train_goals,
        world_seed=settings.world_seed,
        fingerprint=catalog_fingerprint(catalog),
        ranker_identity=ranker_identity,
        run_id=earlier or uuid.uuid4().hex,
    ).write(run_dir)
    return _Prepared(
        settings,
        name,
        run_dir,
        catalog,
        ranker,
        ranker_entry,
        ranker_identity,
        config,
        train_env,
        test_env,
        train_goals,
        record,
        show,
    )


def _fit_plan_temperature(
    settings: TrainSettings, ranker: Any, env: ConversationEnv, show: bool
) -> TrainSettings:
    """`settings` with ``wrapper.plan_temperature`` fitted on `FIT_CONVERSATIONS` training conversations
    (seeded by ``seed + 2``, apart from validation's ``seed + 1``; `envs.belief_fit`)."""
    indices = evaluation_indices(env.goals.n_goals, FIT_CONVERSATIONS, settings.seed + 2)
    fit = fit_temperature(env, ranker, indices, settings.seed + 2)
    if show:
        best = fit.log_likelihoods[fit.temperatures.index(fit.best)]
        console.print(
            f"fitted the plan's belief temperature: T {fit.best:g} (the target's mean log-likelihood "
            f"{best:.3f} over {fit.scored:,} training openings; {fit.excluded} excluded their target)"
        )
    wrapper = replace(settings.wrapper, plan_temperature=fit.best)
    return settings.model_copy(update={"wrapper": wrapper})


def steps_trained(start: int, budget: int, rollout: int) -> int:
    """The step count PPO stops at when it trains from `start` to `budget` in whole rollouts of `rollout`
    steps (envs x n_steps): `budget` rounded up to the rollouts after `start` (`start` when it has that
    many already)."""
    return start + max(0, -(-(budget - start) // rollout)) * rollout


def _note_capped(show: bool, key: str, asked: int, available: int, split: str) -> None:
    """Say that the setting `key` asks for more conversations than the split has (all are used)."""
    if show and asked > available:
        console.print(
            f"[yellow]note:[/] {key} {asked:,} is more than the {available:,} {split} conversations: all "
            f"{available:,} are used"
        )


def _learn(prepared: _Prepared, resume: bool) -> _Session:
    """Build (or load from the checkpoint) the model and train it to the settings' steps, with progress,
    checkpoints and validation; save model.zip."""
    from policies.rl import RLPolicy, build_model, evaluate_policy, make_vec_env  # torch
    from policies.rl.acting import mean_metrics  # torch and SB3 load only when training runs
    from policies.rl.callbacks import TrainingCallback
    from policies.rl.model import encoder_kwargs, set_logger
    from policies.rl.model_file import load_model, read_model_data, training_overrides
    from policies.rl.run_files import atomic_save

    settings, config, run_dir = prepared.settings, prepared.config, prepared.run_dir
    pending = _pending_eval(run_dir, prepared.show) if resume else None
    vec = make_vec_env(prepared.train_env, prepared.ranker, config, seed=settings.seed)
    spaces = {"observation_space": vec.observation_space, "action_space": vec.action_space}
    encoder = encoder_kwargs(vec.get_attr("sizes", indices=[0])[0], prepared.ranker, config)
    curve = CurveFile(run_dir)
    try:
        best_score, last_eval, last_checkpoint = (-1.0, -1.0), -1, -1
        if resume:
            model = load_model(
                run_dir / CHECKPOINT,
                env=vec,
                clip_range=config.clip_range,
                observation_space=spaces["observation_space"],
                action_space=spaces["action_space"],
                encoder=encoder,
                overrides=training_overrides(config),  # the run's settings, not the checkpoint's
            )
            best_file = run_dir / BEST_MODEL
            best_steps = read_model_data(best_file).get("num_timesteps") if best_file.is_file() else None
            best_score, last_eval = curve.resume_at(model.num_timesteps, best_steps)
            last_checkpoint = int(model.num_timesteps)
        else:
            model = build_model(vec, prepared.ranker, config, seed=settings.seed)
        prepared.record.write(run_dir)  # this session's phase, once it is ready to train
        set_logger(model, run_dir / "tb")
        valid_n = prepared.train_env().goals.n_goals
        valid_indices = evaluation_indices(valid_n, settings.eval_episodes, settings.seed + 1)
        _note_capped(prepared.show, "eval_episodes", settings.eval_episodes, valid_n, "validation")

        def evaluate_now(current: Any) -> dict[str, float]:
            policy = RLPolicy(current.policy, prepared.ranker, config.wrapper)
            records = evaluate_policy(prepared.train_env, policy, valid_indices, settings.seed + 1)
            current.policy.set_training_mode(False)
            return mean_metrics(records)

        start_steps = model.num_timesteps
        started = time.perf_counter()
        final_steps = steps_trained(start_steps, settings.steps, config.n_envs * int(config.n_steps or 1))
        imitation = None if resume else settings.imitation
        with _progress(prepared.show) as progress:
            # the copy comes first, so its bar does too (a log prints the bars in the order they were added)
            copying = (
                None
                if imitation is None
                else progress.add_task(f"imitating {imitation.rule}", total=imitation.steps, note="")
            )
            task = progress.add_task("training", total=final_steps, completed=start_steps, note="")

            def on_progress(steps: int, seconds: float) -> None:
                rate = (steps - start_steps) / max(seconds, 1e-9)
                progress.update(task, completed=min(steps, final_steps), note=f"{rate:,.0f} steps/s")

            def on_eval(point: Any) -> None:
                curve.add(point)
                if not prepared.show:  # e.g. a sweep's worker: its lines would name no task
                    return
                star = " (best)" if point.best else ""
                progress.console.print(
                    f"  step {point.timesteps:>8,}: valid SR@15 {point.metrics['SR@15']:.3f}, "
                    f"AT {point.metrics['AT']:.2f}, hDCG {point.metrics['hDCG']:.3f}{star}"
                )

            callback = TrainingCallback(
                run_dir,
                evaluate_now,
                settings.eval_every,
                settings.checkpoint_every,
                on_eval=on_eval,
                on_progress=on_progress,
                best_score=best_score,
                last_eval=last_eval,
                last_checkpoint=last_checkpoint,
            )
            if pending is not None and pending == last_checkpoint > last_eval:
                # killed during the checkpoint's own evaluation: evaluate it now, as training straight
                # through did before its next update (a step-0 copy of a rule competes for best too)
                callback.init_callback(model)
                callback.pending_eval = pending
                callback.run_eval()
            if imitation is not None and copying is not None:
                _imitate(prepared, model, imitation, progress, copying)
                callback.init_callback(model)
                callback.after_update(final=True)  # step 0: checkpoint, curve point, best model so far
            if settings.steps > start_steps:
                model.learn(settings.steps - start_steps, callback=callback, reset_num_timesteps=False)
            else:
                callback.init_callback(model)
            callback.after_update(final=True)  # the final policy is checkpointed and competes for best
        elapsed = time.perf_counter() - started
        atomic_save(model, run_dir / FINAL_MODEL)
    finally:
        vec.close()  # stops the worker processes
    timesteps = int(model.num_timesteps)
    best = callback.best_score
    return _Session(start_steps, timesteps, elapsed, best, spaces, encoder, valid_episodes=len(valid_indices))


def _pending_eval(run_dir: Path, show: bool) -> int | None:
    """The step of an evaluation state.json marks due and unfinished (None: none, or state.json is
    missing or damaged: the next checkpoint rewrites it; a damaged one is said when `show`)."""
    try:
        state = CheckpointState.read(run_dir)
    except CRSError as error:
        if show:
            console.print(
                f"[yellow]note:[/] {escape(str(error))}; meanwhile the resume goes on from checkpoint.zip "
                "and the learning curve, and an evaluation state.json may have marked due is not run again",
                highlight=False,
                soft_wrap=True,  # the path whole
            )
        return None
    return None if state is None else state.pending_eval


def _imitate(
    prepared: _Prepared, model: Any, config: ImitationConfig, progress: Progress, task: TaskID
) -> None:
    """Warm start: copy the rule `config.rule` (`policies.rl.imitation`) before PPO's first step, shown
    in `progress` as `task`."""
    from policies.rl.imitation import clone, collect_demonstrations  # torch

    progress.update(task, note="demonstrations")
    demos = collect_demonstrations(
        prepared.train_env,
        prepared.ranker,
        prepared.config.wrapper,
        config.rule,
        config.steps,
        prepared.config.gamma,
        seed=prepared.settings.seed + IMITATION_SEED_OFFSET,
        on_turn=lambda: progress.advance(task),
    )
    progress.update(task, note=f"fitting, {config.epochs} epochs")
    result = clone(model, demos, config, seed=prepared.settings.seed)
    progress.update(task, completed=config.steps, note="done")
    if prepared.show:
        progress.console.print(
            f"  imitated {config.rule} on {result.turns:,} turns of {result.conversations:,} conversations "
            f"(the rule succeeded in {result.rule_success:.1%}; {result.matched:.1%} of its actions fit the "
            f"slots as they are): the policy now makes the rule's choice in {result.agreement:.1%} of them"
        )


def _test(prepared: _Prepared, session: _Session) -> tuple[TrainSummary, dict[str, float], int]:
    """Compare the best model with the rule baselines on the same test conversations; write
    summary.json and MODEL_CARD.md. Returns the summary (its verdicts included), each policy's
    evaluation throughput (conversations/s) and the step of the model tested (best_model.zip)."""
    from policies.rl import RLPolicy, evaluate_policy  # torch
    from policies.rl.model_file import ACTING_OVERRIDES, load_model  # torch

    settings, config, name = prepared.settings, prepared.config, prepared.name
    best = load_model(
        prepared.run_dir / BEST_MODEL,
        clip_range=config.clip_range,
        observation_space=session.spaces["observation_space"],
        action_space=session.spaces["action_space"],
        encoder=session.encoder,
        overrides=ACTING_OVERRIDES,
    )
    test_env = prepared.test_env()
    trained = RLPolicy(best.policy, prepared.ranker, config.wrapper, name=name, setting=test_env.setting)
    test_indices = evaluation_indices(test_env.goals.n_goals, settings.test_episodes, settings.seed)
    _note_capped(prepared.show, "test_episodes", settings.test_episodes, test_env.goals.n_goals, "test")
    rows: dict[str, Any] = {}
    throughput: dict[str, float] = {}
    per_episode: dict[str, dict[str, np.ndarray]] = {}
    policies: list[tuple[str, Any]] = [(f"RL ({name})", trained)]
    policies += [(rule, make_rule_policy(rule, prepared.ranker)) for rule in settings.baselines]
    tested: list[tuple[str, EvalSummary, list[EpisodeRecord]]] = []
    ranker_name = run_ranker(prepared.run_dir).name
    with _progress(prepared.show) as progress:
        task = progress.add_task("testing", total=len(policies) * len(test_indices), note="")
        for label, policy in policies:
            progress.update(task, note=label)
            t0 = time.perf_counter()
            records = evaluate_policy(
                prepared.test_env,
                policy,
                test_indices,
                settings.seed,
                on_episode=lambda _: progress.advance(task),
            )
            seconds = time.perf_counter() - t0
            throughput[label] = len(records) / seconds
            rows[label] = summarize(records, test_env.max_turns, seed=settings.seed)
            # in goal order, as `crs report` pairs them: the verdicts' intervals are the report's
            in_goal_order = sorted(records, key=lambda record: record.goal_index)
            per_episode[label] = per_episode_metrics(in_goal_order, test_env.max_turns)
            is_trained = policy is trained
            tested.append(
                (
                    TRAINED_TEST if is_trained else label,
                    _test_summary(
                        prepared, label, is_trained, ranker_name, test_env, test_indices, rows[label], seconds
                    ),
                    records,
                )
            )
    write_test_folders(prepared.run_dir, tested)
    summary = TrainSummary(
        name=name,
        dataset=prepared.catalog.name,
        ranker=prepared.ranker_entry,
        timesteps=session.timesteps,
        train_seconds_this_session=round(session.seconds, 1),
        steps_per_second=round((session.timesteps - session.start_steps) / max(session.seconds, 1e-9), 1),
        envs=config.n_envs,
        env_processes=config.n_envs if config.subprocess else 0,
        test_episodes=len(test_indices),
        best_valid={"SR@15": session.best_score[0], "hDCG": session.best_score[1]},
        valid_episodes=session.valid_episodes,
        test=rows,
        conversations_per_second={k: round(v, 1) for k, v in throughput.items()},
        setting=test_env.setting,
        verdicts=tuple(verdicts(f"RL ({name})", per_episode)),
    )
    summary.write(prepared.run_dir)
    tested_step = int(best.num_timesteps)
    write_model_card(prepared.run_dir, prepared.record, summary, prepared.train_goals, tested_step)
    return summary, throughput, tested_step


def _test_summary(
    prepared: _Prepared,
    label: str,
    is_trained: bool,
    ranker: str,
    env: ConversationEnv,
    indices: np.ndarray,
    metrics: dict[str, MetricSummary],
    seconds: float,
) -> EvalSummary:
    """The summary.json of one tested policy's folder in the run's `TEST_DIR`, as `crs eval --policy
    <run or rule> --seed <the run's seed> -n <its test conversations>` writes it: the same conversations.
    `ranker` is the run's ranker by name (`policies.rl.run_files.run_ranker`); every policy, trained or
    rule, ranked with it, so each records the run's ranker identity (policy.json's ``ranker_identity``)."""
    settings, run_dir = prepared.settings, prepared.run_dir
    user_options = settings.env_options()["user_kwargs"]
    notes = tuple(prepared.catalog.notes)
    if user_options:
        notes += (f"simulated users with the run's options {user_options} (`crs eval` uses the defaults)",)
    return EvalSummary(
        policy=prepared.name if is_trained else label,
        policy_spec=str(run_dir) if is_trained else label,
        dataset=prepared.catalog.name,
        split="test",
        ranker=RUN_RANKER.name if is_trained else ranker,
        user=resolved_user(settings.user, prepared.catalog.name, env.setting),
        setting=env.setting,
        episodes=len(indices),
        seed=settings.seed,
        world_seed=settings.world_seed if prepared.catalog.truth is not None else None,
        world=settings.dataset_spec().world if prepared.catalog.truth is not None else (),
        conversations=conversations_fingerprint("test", indices),
        max_turns=env.max_turns,
        notes=notes,
        metrics=metrics,
        seconds=round(seconds, 3),
        conversations_per_second=round(len(indices) / max(seconds, 1e-9), 2),
        versions={"persona-crs": __version__, "python": platform.python_version()},
        run_ranker=ranker if is_trained else None,
        ranker_identity=prepared.ranker_identity,
        data_dir=settings.dataset_spec().data_folder(),
    )


def verdicts(trained: str, per_episode: dict[str, dict[str, np.ndarray]]) -> list[Verdict]:
    """One `Verdict` per metric: the trained policy against the best baseline on that metric, its
    interval bootstrapped as `crs report`'s paired differences are (`envs.metrics.DIFF_SEED`).

    Args:
        trained: The trained policy's label in `per_episode`.
        per_episode: Label -> metric -> per-conversation values (same conversations, in goal order).
    """
    baselines = [label for label in per_episode if label != trained]
    out = []
    for metric in METRIC_ORDER if baselines else ():
        lower = metric == "AT"  # fewer turns is better
        means = {label: float(per_episode[label][metric].mean()) for label in baselines}
        best = (min if lower else max)(means, key=lambda label: means[label])
        paired = per_episode[trained][metric] - per_episode[best][metric]
        diff = bootstrap_ci(paired, seed=DIFF_SEED)
        side = ci_sign(diff, paired.size) * (-1 if lower else 1)
        word = "better" if side > 0 else "worse" if side < 0 else "tie"
        if paired.size < MIN_PAIRED:  # a CI shown, but no evidence either way
            word = f"n/a (<{MIN_PAIRED} pairs)"
        out.append(Verdict(metric, float(per_episode[trained][metric].mean()), best, means[best], diff, word))
    return out


def _verdict_table(rows: Sequence[Verdict]) -> Table:
    """The verdicts as a table that fits an 80-column terminal."""
    table = Table(
        title="trained policy vs the best baseline per metric (paired, same conversations)",
        title_justify="left",
    )
    table.add_column("metric", no_wrap=True)
    table.add_column("trained", justify="right", no_wrap=True)
    table.add_column("best baseline")
    table.add_column("difference [95% CI]", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for v in rows:
        table.add_row(*v.cells())
    return table


def _show(
    prepared: _Prepared,
    session: _Session,
    summary: TrainSummary,
    throughput: dict[str, float],
    tested: int,
) -> None:
    """Print the test table, the verdicts, the run's facts and what to run next; `tested`: the step of
    the model tested."""
    config, run_dir, seed = prepared.config, prepared.run_dir, prepared.settings.seed
    console.print(
        metrics_table(
            f"{summary.label.describe(f', seed {seed} (the same for every policy)')}; "
            f"trained policy = best_model.zip from step {tested:,} of {session.timesteps:,}",
            summary.test,
        )
    )
    if summary.verdicts:
        console.print(_verdict_table(summary.verdicts))
    info = Table(show_header=False, title="run", title_justify="left")
    info.add_column(style="bold", no_wrap=True)
    info.add_column(overflow="fold")
    info.add_row("run directory", str(run_dir))
    info.add_row("ranker", run_ranker(run_dir).name)
    where = "worker processes" if config.subprocess else "this process"
    info.add_row(
        "training",
        f"{session.seconds:.0f} s this session, {summary.steps_per_second:,} steps/s, "
        f"{config.n_envs} envs in {where}",
    )
    info.add_row("evaluation", f"{throughput[summary.trained_label]:.0f} conversations/s (trained policy)")
    for index, command in enumerate(next_commands(run_dir)):
        info.add_row("next" if index == 0 else "", command)
    blocker = eval_blocker(prepared.settings)
    if blocker is not None:
        info.add_row("", f"(no `crs eval`: {blocker})")
    console.print(info)


def next_commands(run_dir: Path) -> list[str]:
    """What a finished training suggests running next, each command as it works when typed (a report
    cannot be written inside the run it reads): the `crs eval` of its test's conversations
    (`crs.app.run_folder.eval_command`) and a `crs chat` with the trained policy, both left out where
    `eval_blocker` says its catalogue or users cannot be built again.

    Raises:
        CRSError: config.yaml or summary.json is missing or damaged.
    """
    settings = RunRecord.read(run_dir).settings
    commands = [f"crs report {shlex.quote(str(run_dir))} --out out/report-{shlex.quote(run_dir.name)}"]
    if eval_blocker(settings) is None:
        commands.append(eval_command(run_dir, settings, TrainSummary.read(run_dir).test_episodes))
        chat = ["crs", "chat", "--policy", str(run_dir), *catalogue_options(settings)]
        commands.append(" ".join(shlex.quote(part) for part in chat))
    commands.append(f"tensorboard --logdir {shlex.quote(f'{run_dir}/tb')}")
    return commands


def default_run_name(settings: TrainSettings) -> str:
    """The run folder's name when --name is not given: the dataset and what the run switches off."""
    parts = [settings.dataset]
    if not settings.persona_attention:
        parts.append("nopersona")
    if not settings.aspect_attention:
        parts.append("noaspect")
    if not settings.wrapper.ranker_features:
        parts.append("noscores")
    parts.append(f"s{settings.seed}")
    return "-".join(parts)
