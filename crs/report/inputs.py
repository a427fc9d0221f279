"""Reading the inputs of a report: `crs eval` output folders, `crs train` run folders, `crs sweep` folders.

An **eval folder** holds ``summary.json`` and ``episodes.jsonl`` (one `EpisodeRecord` per line), as
`crs.app.evaluation.run_evaluation` writes them. A **train run folder** is recognised by its config file
(``config.yaml``); its learning curve and its final test evaluation are optional parts, read when
present. A **sweep folder** is recognised by ``sweep.json``: only its finished tasks (``runs/<task>/``
with the ``done`` marker) are read, each tagged with its ``task.json`` so that the tasks of one
configuration (dataset, policy, ablation) become one row over their seeds; unfinished task folders are
not read. A folder that is none of these but holds such folders (e.g. ``out/eval``) is expanded one
level.

Everything is validated on load: a missing or corrupt file is named in a `CRSError` that says how to
fix it. Nothing is silently skipped: a folder passed by name must read, while what a folder expanded
one level holds and cannot be used (an unreadable run, a folder of something else, a sweep's unfinished
tasks) is left out and named in `Inputs.left_out` with the reason; the report lists it up front. Hidden
folders (a sweep task's staging attempt, editor or notebook caches) are not inputs.
"""

from __future__ import annotations

import functools
import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from crs.app.run_folder import (
    CURVE_CSV,
    DONE_MARKER,
    EPISODES_FILE,
    RUN_CONFIG,
    SUMMARY_FILE,
    TASK_FILE,
    TEST_DIR,
    TRAINED_TEST,
    CurveFile,
    EvalSummary,
    RunRecord,
    TrainSummary,
    eval_command,
    eval_fix,
    read_episodes,
    sweep_command,
)
from crs.app.sweep import (
    DEFAULT_ABLATION,
    RUNS_DIR,
    SWEEP_FILE,
    SweepTask,
    is_finished,
    planned_tasks,
    read_task,
    sweep_task_dirs,
)
from envs.metrics import EpisodeRecord, MetricSummary, per_episode_metrics
from policies.rankers import RUN_RANKER, RankerSpec
from policies.rl.run_files import POLICY_META, PolicyMeta, run_ranker
from simulators.datasets import PERSONA_WORLD
from simulators.errors import CRSError

CURVE_SERIES: tuple[str, ...] = ("SR@15", "hDCG", "AT")
"""Series of a learning curve (eval.csv columns) the report draws."""


@dataclass(frozen=True)
class TrainInfo:
    """What a train run's config says about the policy it trained.

    Attributes:
        path: The run folder.
        name: Run name (the folder's name).
        persona_attention: Whether persona attention was on (None when the config does not say).
        aspect_attention: Whether aspect attention was on (None when the config does not say).
        seed: Training seed (None when the config does not say).
        dataset: Dataset trained on (None when the config does not say).
        pretrained: Pre-training artifact the run used (None when none is named).
        config: The whole config, as read.
        ranker: The ranker the run recorded in policy.json, resolved (None when not written yet).
        ranker_identity: Its identity as policy.json recorded it when the run trained
            (`policies.rankers.RankerSpec.identity`; None when not written yet, and in older runs).
        ranker_attentions: (persona attention, aspect attention) of the persona model the ranker was
            pre-trained as (`policies.rankers.RankerSpec.attentions`); None when it is none.
    """

    path: Path
    name: str
    persona_attention: bool | None
    aspect_attention: bool | None
    seed: int | None
    dataset: str | None
    pretrained: str | None
    config: Mapping[str, Any] = field(repr=False)
    ranker: RankerSpec | None = None
    ranker_identity: str | None = None
    ranker_attentions: tuple[bool, bool] | None = None

    @property
    def setting(self) -> str:
        """The question setting the run trained in (`envs.setting`)."""
        return str(self.config.get("setting") or "")

    @property
    def ablation(self) -> str | None:
        """ "full", "persona-blind", "aspect-blind", "both-off", or None when the flags are unknown."""
        if self.persona_attention is None or self.aspect_attention is None:
            return None
        return ablation_label(self.persona_attention, self.aspect_attention)

    @property
    def ranker_follows_ablation(self) -> bool:
        """Whether the run's ranker was pre-trained with its ablation's switches (pre-trained by the run with
        ``ablate_ranker``, or given after `crs pretrain -k 1` / `--no-aspect-attention`): the ranker is
        then part of the variant, so variants compare whole (ranker and policy)."""
        return self.ranker_attentions is not None and self.ranker_attentions == (
            self.persona_attention,
            self.aspect_attention,
        )

    def config_key(self) -> str:
        """The config without seeds, names and paths: runs sharing it are seeds of one configuration."""
        return json.dumps(_strip_run_keys(self.config), sort_keys=True, default=str)


def ablation_label(persona_attention: bool, aspect_attention: bool) -> str:
    """The name of an ablation from its two flags."""
    return {
        (True, True): "full",
        (False, True): "persona-blind",
        (True, False): "aspect-blind",
        (False, False): "both-off",
    }[(bool(persona_attention), bool(aspect_attention))]


SWEEP_TASK_KEYS: tuple[str, ...] = ("name", "group", "kind", "dataset", "policy", "ablation", "seed")


@dataclass(frozen=True)
class SweepTaskInfo(SweepTask):
    """The sweep task a run folder is: its ``task.json`` (a `crs.app.sweep.SweepTask`) and its sweep.

    Attributes:
        sweep: The sweep folder.
    """

    sweep: Path = Path()

    @property
    def policy_name(self) -> str:
        """The policy as the sweep names it (a run directory by its folder name)."""
        return Path(self.policy).name or self.policy

    @property
    def label(self) -> str:
        """ "<policy> · <ablation>": the configuration within one dataset's table; the policy alone for
        a config without ablations (its one is `DEFAULT_ABLATION`)."""
        if self.ablation == DEFAULT_ABLATION:
            return self.policy_name
        return f"{self.policy_name} · {self.ablation}"

    def config_key(self) -> tuple[str, ...]:
        """What tasks of one configuration share: dataset, policy, ablation, settings (no seeds, paths)."""
        settings = json.dumps(_strip_run_keys(dict(self.settings)), sort_keys=True, default=str)
        return (self.dataset, self.policy, self.ablation, settings)


@dataclass(frozen=True)
class EvalRun:
    """One `crs eval` output: its summary and its episode records.

    Attributes:
        path: The folder.
        summary: ``summary.json`` as read.
        records: One record per conversation, in file order.
        train: The train run whose policy this evaluates, when known.
        task: The sweep task this folder is, when it came from a sweep.
        tested_by: The sweep task whose own test (tested/) holds this baseline: its seed is the
            baseline's replica seed, so a sweep's baselines pool over its seeds as its tasks do.
        ranker_variant: The ablation (not "full") of the run whose ranker, pre-trained with that
            ablation's switches (`TrainInfo.ranker_follows_ablation`), scored this baseline: such a
            baseline is a row of its own, named after the variant.
    """

    path: Path
    summary: EvalSummary = field(repr=False)
    records: tuple[EpisodeRecord, ...] = field(repr=False)
    train: TrainInfo | None = None
    task: SweepTaskInfo | None = None
    tested_by: SweepTaskInfo | None = None
    ranker_variant: str | None = None

    @property
    def policy(self) -> str:
        return self.summary.policy

    @property
    def dataset(self) -> str:
        return self.summary.dataset

    @property
    def split(self) -> str:
        return self.summary.split

    @property
    def seed(self) -> int:
        return self.summary.seed

    @property
    def max_turns(self) -> int:
        return self.summary.max_turns

    @property
    def ranker(self) -> str:
        return self.summary.ranker

    @property
    def ranker_name(self) -> str:
        """The ranker as shown: a trained policy's is its run's own (`run_spec`, else summary.json's
        ``run_ranker``), "run" when neither is known."""
        spec = self.run_spec
        if spec is not None:
            return spec.name
        if self.ranker == RUN_RANKER.name and self.summary.run_ranker is not None:
            return self.summary.run_ranker
        return self.ranker

    @property
    def ranker_to_load(self) -> str:
        """The ranker to rebuild from where the report runs: `ranker_name`, or, for one that read a file or
        folder by a relative path, that path as the evaluation resolved it (summary.json's
        ``ranker_resolved``) while it still exists."""
        resolved = self.summary.ranker_resolved
        if self.run_spec is None and resolved is not None:
            path = RankerSpec.parse(resolved).path
            if path is not None and path.exists():
                return resolved
        return self.ranker_name

    @property
    def run_spec(self) -> RankerSpec | None:
        """The ranker of the train run this evaluation is bound to (`_bound_ranker`), else None."""
        bound = self._bound_ranker
        return None if bound is None else bound[0]

    @functools.cached_property
    def _bound_ranker(self) -> tuple[RankerSpec, str | None] | None:
        """The ranker of the train run this evaluation is bound to, resolved where the run lies now, and
        the identity its policy.json recorded (`read_run_ranker`): a trained policy's run, or the run
        whose own test (`tested_in`) holds this baseline, which ranked with the run's ranker. None for
        other evaluations, or when the run folder cannot say. Read once: the report asks for a run's
        ranker name and identity per row, label and pairing."""
        if self.ranker == RUN_RANKER.name:
            train = self.train
            return None if train is None or train.ranker is None else (train.ranker, train.ranker_identity)
        tested = tested_in(self)
        return read_run_ranker(tested) if tested is not None and (tested / POLICY_META).is_file() else None

    @property
    def world_seed(self) -> int | None:
        """The persona world's seed; None on real data (returning-user runs recorded 0 there)."""
        return self.summary.world_seed if self.summary.dataset == PERSONA_WORLD else None

    @functools.cached_property
    def world(self) -> tuple[tuple[str, int], ...]:
        """The persona world's sizes that differ from its defaults (`simulators.datasets.DatasetSpec.world`):
        as summary.json records them, else, in files from before that record, as the train run this
        evaluation belongs to set them; empty for the default world and real data."""
        if self.summary.world or self.world_seed is None:
            return self.summary.world
        run = self.train.path if self.train is not None else tested_in(self)
        if run is None or not (run / RUN_CONFIG).is_file():
            return ()
        try:
            return RunRecord.read(run).settings.dataset_spec().world
        except CRSError:
            return ()

    @functools.cached_property
    def data_dir(self) -> str | None:
        """The real-data folder the evaluation read: as summary.json records it, else, in files from
        before that record, as the config of the train run this evaluation belongs to names it; None on
        the persona world, when neither says, or when the folder is gone (a report then needs
        ``--data-dir``)."""
        folder = self.summary.data_dir
        if folder is None and self.world_seed is None:
            run = self.train.path if self.train is not None else tested_in(self)
            if run is not None and (run / RUN_CONFIG).is_file():
                try:
                    folder = RunRecord.read(run).settings.data_dir
                except CRSError:
                    folder = None
        return folder if folder is not None and Path(folder).is_dir() else None

    @property
    def fingerprint(self) -> str:
        """Hash of the conversations walked (falls back to the goal indices when absent)."""
        if self.summary.conversations:
            return self.summary.conversations
        return "goals:" + str(hash(tuple(r.goal_index for r in self.records)))

    @property
    def setting(self) -> str:
        return self.summary.setting

    @property
    def ranker_identity(self) -> str:
        """The ranker by content (`policies.rankers.RankerSpec.identity`): a trained policy's, and a
        baseline's of a run's own test, is the run's ranker; copies of one ranker in different folders
        compare equal. As the evaluation recorded it when it ran (summary.json's ``ranker_identity``),
        else as the bound run recorded it when it trained (its policy.json's), else as the files are
        now."""
        if self.summary.ranker_identity is not None:
            return self.summary.ranker_identity
        bound = self._bound_ranker
        if bound is not None:
            spec, recorded = bound
            return recorded if recorded is not None else _identity(spec)
        if self.ranker_name == RUN_RANKER.name:
            return f"run {self.summary.policy_spec}"  # the run folder is gone and its summary is older
        try:
            return _identity(RankerSpec.parse(self.ranker_name))
        except CRSError:
            return self.ranker_name

    @property
    def user(self) -> str:
        return self.summary.user

    @property
    def replica_seed(self) -> int:
        """The seed that tells repeated runs of one configuration apart (the sweep task's seed, or that of
        the sweep task that tested this baseline, else the training seed, else the eval seed)."""
        task = self.task or self.tested_by
        if task is not None:
            return task.seed
        if self.train is not None and self.train.seed is not None:
            return self.train.seed
        return self.seed


@dataclass(frozen=True)
class Curve:
    """A train run's evaluation curve.

    Attributes:
        steps: Environment steps at each evaluation, shape (n,).
        series: Values per name in `CURVE_SERIES` ("SR@15", "hDCG", "AT"), each shape (n,).
        source: The file it was read from.
    """

    steps: np.ndarray
    series: Mapping[str, np.ndarray]
    source: Path

    @property
    def sr(self) -> np.ndarray:
        """SR@15 at each evaluation (NaN when not logged), shape (n,)."""
        return self.series.get("SR@15", np.full(self.steps.shape, np.nan))


@dataclass(frozen=True)
class TrainRun:
    """One `crs train` run folder.

    Attributes:
        info: What its config says.
        curve: Its evaluation curve, if one was logged.
        final_eval: Episode records of a test evaluation kept inside the run folder, if any.
        summary: The run's own final test comparison (``summary.json``: the trained policy and rule
            baselines on the same conversations), if written.
        missing: Optional parts that are absent, in words (shown in the report).
        task: The sweep task this run folder is, when it came from a sweep (``kind: train``).
    """

    info: TrainInfo
    curve: Curve | None
    final_eval: EvalRun | None
    summary: TrainSummary | None = None
    missing: tuple[str, ...] = ()
    task: SweepTaskInfo | None = None

    @property
    def test_summary(self) -> Mapping[str, Mapping[str, MetricSummary]] | None:
        """Label -> metrics of the run's final test comparison, if written."""
        return None if self.summary is None else self.summary.test


@dataclass(frozen=True)
class LeftOut:
    """An input that was found but not read, and why.

    Attributes:
        path: The folder (for a sweep's unfinished or missing tasks: the sweep's ``runs/`` or the sweep).
        reason: Why it was not read, in words, ending with the fix when there is one.
        tasks: How many of a sweep's planned tasks it stands for (unfinished or not run): results the
            report's tables lack; 0 for any other input.
    """

    path: Path
    reason: str
    tasks: int = 0


@dataclass(frozen=True)
class Inputs:
    """Everything a report reads.

    Attributes:
        evals: Eval runs (those of train runs included), without duplicates.
        trains: Train runs.
        left_out: What was found but not read (unreadable or foreign folders beside the inputs, a
            sweep's unfinished or missing tasks), each with the reason.
    """

    evals: tuple[EvalRun, ...]
    trains: tuple[TrainRun, ...]
    left_out: tuple[LeftOut, ...] = ()


# ------------------------------------------------------------------------------------------ loading
def load_inputs(paths: Sequence[str | Path]) -> Inputs:
    """Read every input folder.

    A folder passed by name must read. A folder that holds inputs is expanded one level: what it holds
    that cannot be read, or is no input at all, is left out with the reason (`Inputs.left_out`) rather
    than stopping the report.

    Args:
        paths: `crs eval` output folders, `crs train` run folders, `crs sweep` folders, or folders
            holding any of them.

    Returns:
        The eval runs and train runs, each folder read once, and what was left out.

    Raises:
        CRSError: No inputs, a path that does not exist or is none of these folders, a missing or
            corrupt file inside a folder passed by name, or nothing readable at all (the reasons of
            what was left out named, e.g. a sweep without a finished task).
    """
    if not paths:
        raise CRSError("no inputs: pass `crs eval` output folders and/or `crs train` run folders")
    evals: dict[Path, EvalRun] = {}
    trains: dict[Path, TrainRun] = {}
    # `_run_baseline_key` -> the copy kept, and whether it was read through its run or sweep (tagged)
    baselines: dict[tuple[object, ...], tuple[Path, bool]] = {}
    left_out: list[LeftOut] = []
    given: set[Path] = set()
    for raw in paths:
        if Path(raw).resolve() in given:
            left_out.append(LeftOut(Path(raw), "given twice: read once"))
            continue
        holder = next((g for g in given if Path(raw).resolve().is_relative_to(g)), None)
        if holder is not None:  # e.g. a sweep's task after its sweep: every run in it is read already
            left_out.append(LeftOut(Path(raw), f"inside {holder}, which is given too: read once"))
            continue
        given.add(Path(raw).resolve())
        folders, foreign = _expand(Path(raw))
        left_out.extend(foreign)
        expanded = folders != [Path(raw)]
        for folder in folders:
            try:
                read = _read_folder(folder)
            except (CRSError, OSError) as exc:
                if not expanded:
                    raise
                left_out.append(LeftOut(folder, f"unreadable: {exc}"))
                continue
            for train_run in read.trains:
                trains[train_run.info.path.resolve()] = train_run
            # a run's own test read through its run or sweep is tagged with them (its task, ranker
            # variant, the trained policy's run): it wins over a copy read on its own, in any order
            tagged = is_train_run(folder) or is_sweep_dir(folder)
            for run in read.evals:
                path = run.path.resolve()
                key = _run_baseline_key(run)
                if key is not None:
                    kept = baselines.get(key)
                    if kept is not None:
                        if kept[1] or not tagged:
                            continue  # another run's test holds the same evaluation
                        evals.pop(kept[0], None)
                    baselines[key] = (path, tagged)
                if tagged:
                    evals[path] = run
                else:
                    evals.setdefault(path, run)
            left_out.extend(read.left_out)
    if not evals and not trains:
        found = "".join(f"; {entry.path} left out ({entry.reason})" for entry in left_out)
        raise CRSError(f"no eval or train runs found in {', '.join(str(p) for p in paths)}{found}")
    return Inputs(
        evals=tuple(evals.values()), trains=tuple(trains.values()), left_out=tuple(dict.fromkeys(left_out))
    )


def _read_folder(folder: Path) -> Inputs:
    """Read one sweep, train run or eval folder.

    Raises:
        CRSError: It does not read (see `read_sweep_dir`, `read_train_run`, `read_eval_dir`).
    """
    if is_sweep_dir(folder):
        return read_sweep_dir(folder)
    if is_train_run(folder):
        train_run = read_train_run(folder)
        return Inputs(evals=_test_evals(train_run), trains=(train_run,))
    return Inputs(evals=(read_eval_dir(folder),), trains=())


def _test_evals(train_run: TrainRun) -> tuple[EvalRun, ...]:
    """The run's own test comparison (`crs.app.run_folder.TEST_DIR`), the trained policy first and
    tagged with its run, then the baselines; then an evaluation kept in the run folder, if any (`crs eval
    --policy RUN -o RUN/eval`; the only one in runs written before `crs train` kept its test)."""
    kept = () if train_run.final_eval is None else (train_run.final_eval,)
    test = train_run.info.path / TEST_DIR
    if not test.is_dir():
        return kept
    folders = sorted(
        (c for c in test.iterdir() if c.is_dir() and not c.name.startswith(".")),
        key=lambda c: (c.name != TRAINED_TEST, c.name),
    )
    info = train_run.info
    variant = info.ablation if info.ranker_follows_ablation and info.ablation != "full" else None
    tested = tuple(
        read_eval_dir(c, train=info, task=train_run.task)
        if c.name == TRAINED_TEST
        else replace(read_eval_dir(c), tested_by=train_run.task, ranker_variant=variant)
        for c in folders
    )
    return tested + kept


def tested_in(run: EvalRun) -> Path | None:
    """The train run whose own test comparison (`_test_evals`) holds this evaluation, else None."""
    parent = run.path.parent
    return parent.parent if parent.name == TEST_DIR and is_train_run(parent.parent) else None


def _run_baseline_key(run: EvalRun) -> tuple[object, ...] | None:
    """What makes a baseline of a run's own test (`_test_evals`) the same as another run's: two runs
    tested on the same conversations over the same ranker hold one evaluation twice. None for others."""
    if run.train is not None or tested_in(run) is None:
        return None
    s = run.summary
    return (
        s.policy_spec,
        run.ranker_identity,
        run.fingerprint,
        s.dataset,
        s.split,
        s.setting,
        s.user,
        s.max_turns,
    )


def is_sweep_dir(path: Path) -> bool:
    """A `crs sweep` folder: it holds ``sweep.json``."""
    return (path / SWEEP_FILE).is_file()


def is_eval_dir(path: Path) -> bool:
    """A folder holding ``summary.json`` (``episodes.jsonl`` is checked when it is read)."""
    return (path / SUMMARY_FILE).is_file()


def is_train_run(path: Path) -> bool:
    """A folder holding a train config file."""
    return (path / RUN_CONFIG).is_file()


def _is_input(path: Path) -> bool:
    """A folder that is (or is meant to be) an input: a sweep, a train run, or an eval output (its summary
    or its records: one without the other is an unreadable eval, not a foreign folder)."""
    return is_sweep_dir(path) or is_eval_dir(path) or is_train_run(path) or (path / EPISODES_FILE).is_file()


FOREIGN = (
    f"not an input (no {SUMMARY_FILE} + {EPISODES_FILE} of `crs eval`, no {RUN_CONFIG} of `crs train`, "
    f"no {SWEEP_FILE} of `crs sweep`)"
)
"""Why a folder found beside the inputs is left out."""


def _expand(path: Path) -> tuple[list[Path], list[LeftOut]]:
    """The input folders `path` is or holds, and the folders it holds that are left out (non-hidden
    folders that are no input; a folder of inputs one level deeper is named as such).

    Raises:
        CRSError: `path` does not exist, is a file, or is no input and holds none.
    """
    if not path.exists():
        raise CRSError(f"input {path} does not exist; pass a `crs eval --out` or `crs train` run folder")
    if not path.is_dir():
        raise CRSError(
            f"input {path} is a file; pass its folder (a `crs eval` output holds {SUMMARY_FILE} and "
            f"{EPISODES_FILE}, a `crs train` run holds {RUN_CONFIG})"
        )
    if path.name == RUNS_DIR and is_sweep_dir(path.parent):
        return [path.parent], []  # a sweep's runs/ folder: read as its sweep (finished tasks only)
    if is_sweep_dir(path) or is_eval_dir(path) or is_train_run(path):
        return [path], []
    if (path / EPISODES_FILE).is_file():  # an evaluation that lost its summary
        raise CRSError(f"input {path} holds {EPISODES_FILE} but no {SUMMARY_FILE}; {eval_fix(path)}")
    inputs: list[Path] = []
    left_out: list[LeftOut] = []
    for child in sorted(_folders(path)):
        try:
            if _is_input(child):
                inputs.append(child)
            elif any(_is_input(c) for c in _folders(child)):
                reason = f"a folder of inputs (only those directly in {path} are read); pass it as an input"
                left_out.append(LeftOut(child, reason))
            else:
                left_out.append(LeftOut(child, FOREIGN))
        except OSError as exc:
            left_out.append(LeftOut(child, f"unreadable: {exc}"))
    if not inputs:
        raise CRSError(
            f"input {path} is neither a `crs eval` output ({SUMMARY_FILE} + {EPISODES_FILE}), a "
            f"`crs train` run ({RUN_CONFIG}) nor a `crs sweep` folder ({SWEEP_FILE}), "
            "and holds none"
        )
    return inputs, left_out


def _folders(path: Path) -> list[Path]:
    """The non-hidden folders in `path`."""
    return [c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")]


# ------------------------------------------------------------------------------------------ sweeps
def read_sweep_task(path: Path, sweep: Path) -> SweepTaskInfo:
    """Read a finished sweep task's ``task.json``.

    Raises:
        CRSError: The file is missing, not JSON, or lacks a field.
    """
    fix = f"delete {path} and rerun `crs sweep` with --out {sweep}"
    try:
        data = read_task(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CRSError(f"{path / TASK_FILE} is missing or corrupt ({exc}); {fix}") from exc
    lacking = [key for key in SWEEP_TASK_KEYS if not isinstance(data, dict) or key not in data]
    if lacking:
        raise CRSError(f"{path / TASK_FILE} lacks {lacking}; {fix}")
    try:
        return SweepTaskInfo(
            sweep=sweep,
            name=str(data["name"]),
            group=str(data["group"]),
            kind=str(data["kind"]),
            dataset=str(data["dataset"]),
            policy=str(data["policy"]),
            ablation=str(data["ablation"]),
            seed=int(data["seed"]),
            settings=dict(data.get("settings") or {}),
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise CRSError(f"{path / TASK_FILE} is corrupt ({exc}); {fix}") from exc


def unfinished_task_dirs(path: Path) -> list[Path]:
    """Folders under a sweep's ``runs/`` without the ``done`` marker (interrupted or half-copied tasks)."""
    runs = path / RUNS_DIR
    if not runs.is_dir():
        return []
    return sorted(
        child
        for child in runs.iterdir()
        if child.is_dir()
        and not is_finished(child)
        # hidden folders are no inputs (editor and notebook caches), except a task's staging attempt
        and (not child.name.startswith(".") or ".tmp-" in child.name)
    )


def _unfinished_name(folder: Path) -> str:
    """A task's name from its folder (``.<task>.tmp-<id>`` for an interrupted attempt)."""
    if folder.name.startswith(".") and ".tmp-" in folder.name:
        return folder.name[1:].rsplit(".tmp-", 1)[0] + " (interrupted attempt)"
    return folder.name


def read_sweep_dir(path: str | Path) -> Inputs:
    """Read a `crs sweep` folder: its finished tasks, each tagged with its task, and what was left out.

    Eval tasks become `EvalRun`s, train tasks `TrainRun`s (with their final evaluation when kept).
    Folders without the ``done`` marker are never read: they are left out (`Inputs.left_out`, the
    sweep's ``runs/`` with their names), as are tasks of ``sweep.json`` with no folder at all (not run
    yet, or failed; the sweep with their names).

    Raises:
        CRSError: ``sweep.json`` or ``runs/`` missing or corrupt, or a corrupt file in a finished task (a
            sweep without a finished task reads as nothing but that reason, left out).
    """
    sweep = Path(path)
    planned = planned_tasks(sweep)
    finished = sweep_task_dirs(sweep)
    unfinished = unfinished_task_dirs(sweep)
    left_out: list[LeftOut] = []
    rerun = f"rerun `{sweep_command(sweep)}` to finish them"
    if unfinished:
        names = ", ".join(_unfinished_name(folder) for folder in unfinished)
        left_out.append(
            LeftOut(
                sweep / RUNS_DIR,
                f"skipped {len(unfinished)} unfinished task folder(s) without the `{DONE_MARKER}` marker "
                f"(not read): {names}; {rerun}",
                len(unfinished),
            )
        )
    present = {folder.name for folder in finished} | {
        _unfinished_name(folder).removesuffix(" (interrupted attempt)") for folder in unfinished
    }
    absent = [name for name in planned if name not in present]
    if absent:
        left_out.append(
            LeftOut(
                sweep,
                f"{len(absent)} of {len(planned)} task(s) in {SWEEP_FILE} have no folder (not run yet, or "
                f"failed): {', '.join(absent)}; {rerun}",
                len(absent),
            )
        )
    if not finished:  # left out, so that the report goes on with the other inputs
        reason = f"sweep {sweep} has no finished task ({len(unfinished)} unfinished, {len(absent)} not run)"
        return Inputs(evals=(), trains=(), left_out=(LeftOut(sweep, f"{reason}; {rerun}"),))
    evals: list[EvalRun] = []
    trains: list[TrainRun] = []
    for folder in finished:
        task = read_sweep_task(folder, sweep)
        if task.kind == "train":
            run = read_train_run(folder, task=task)
            trains.append(run)
            evals.extend(_test_evals(run))
        else:
            evals.append(read_eval_dir(folder, task=task))
    return Inputs(evals=tuple(evals), trains=tuple(trains), left_out=tuple(left_out))


def _task_of(folder: Path) -> SweepTaskInfo | None:
    """The sweep task a folder passed on its own is, when it is one (``task.json``), else None.

    Raises:
        CRSError: The folder is an unfinished sweep task (no ``done`` marker).
    """
    if not (folder / TASK_FILE).is_file():
        return None
    sweep = folder.parent.parent
    if not is_finished(folder):
        raise CRSError(
            f"{folder} is an unfinished sweep task (no `{DONE_MARKER}` marker); pass its sweep folder "
            f"{sweep} (unfinished tasks are skipped) or rerun `{sweep_command(sweep)}`"
        )
    return read_sweep_task(folder, sweep)


def read_eval_dir(
    path: str | Path, train: TrainInfo | None = None, task: SweepTaskInfo | None = None
) -> EvalRun:
    """Read and validate one `crs eval` output folder (`crs.app.run_folder` defines its files).

    Args:
        path: The folder.
        train: The train run whose policy it evaluates (default: found from ``summary.json``).
        task: The sweep task it is (default: read from its ``task.json`` when it has one).

    Raises:
        CRSError: ``summary.json`` or ``episodes.jsonl`` missing, not valid JSON, lacking fields, holding
            values out of range, or disagreeing with each other (turn limit, sessions, record count,
            conversations, metric means).
    """
    folder = Path(path)
    fix = eval_fix(folder)
    summary = EvalSummary.read(folder)
    records = read_episodes(folder, summary)
    episodes = folder / EPISODES_FILE
    if len(records) != summary.episodes:
        raise CRSError(
            f"{episodes} holds {len(records)} records but {SUMMARY_FILE} says {summary.episodes} "
            f"(an interrupted or edited run); {fix}"
        )
    goals = [r.goal_index for r in records]
    if len(set(goals)) != len(goals):
        raise CRSError(f"{episodes} repeats conversations (duplicate goal_index); {fix}")
    _check_summary_metrics(summary, records, folder / SUMMARY_FILE, fix)
    if train is None:
        train = _train_of_policy(summary)
    if task is None:
        task = _task_of(folder)
    return EvalRun(path=folder, summary=summary, records=records, train=train, task=task)


def _check_summary_metrics(
    summary: EvalSummary, records: Sequence[EpisodeRecord], path: Path, fix: str
) -> None:
    """The metric means summary.json states must be those of its episode records."""
    values = per_episode_metrics(records, summary.max_turns)
    for name, per_conversation in values.items():
        stated = summary.metrics.get(name)
        if stated is None:
            continue
        mean = float(per_conversation.mean())
        if not math.isclose(stated.mean, mean, rel_tol=1e-6, abs_tol=1e-9):
            raise CRSError(
                f"{path} says {name} = {stated.mean} but its {EPISODES_FILE} gives {mean:.6g} "
                f"(the files do not belong together); {fix}"
            )


def _train_of_policy(summary: EvalSummary) -> TrainInfo | None:
    """The train run an eval's policy came from, when its spec names a run folder that still exists."""
    folder = Path(summary.policy_spec)
    if summary.policy_spec and folder.is_dir() and is_train_run(folder):
        return read_train_info(folder)
    return None


# ------------------------------------------------------------------------------------- train runs
def read_train_info(path: Path) -> TrainInfo:
    """Read a train run's config.yaml (and the ranker entry of its policy.json, when written).

    Raises:
        CRSError: config.yaml is missing, damaged, or holds bad settings; policy.json is damaged.
    """
    settings = RunRecord.read(path).settings
    pretrained, ranker, identity = None, None, None
    if (path / POLICY_META).is_file():
        ranker, identity = read_run_ranker(path)
        pretrained = _artifact_path(ranker)
    return TrainInfo(
        path=path,
        name=path.name,
        persona_attention=settings.persona_attention,
        aspect_attention=settings.aspect_attention,
        seed=settings.seed,
        dataset=settings.dataset,
        pretrained=pretrained,
        ranker=ranker,
        ranker_identity=identity,
        ranker_attentions=None if ranker is None else ranker.attentions(),
        config=settings.model_dump(),
    )


def read_run_ranker(run: Path) -> tuple[RankerSpec, str | None]:
    """A train run's fixed ranker (`policies.rl.run_files.run_ranker`) and the identity its policy.json
    recorded when it trained (None in older runs).

    Raises:
        CRSError: policy.json is missing or damaged, or names an unknown ranker.
    """
    return run_ranker(run), PolicyMeta.read(run).ranker_identity


@functools.lru_cache(maxsize=64)
def _identity(spec: RankerSpec) -> str:
    return spec.identity()


def _artifact_path(spec: RankerSpec) -> str | None:
    """The pre-training artifact folder a run's ranker is (`policies.rl.run_files.run_ranker`), else None."""
    return spec.where if spec.kind == "artifact" and Path(spec.where).is_dir() else None


def read_train_run(path: str | Path, task: SweepTaskInfo | None = None) -> TrainRun:
    """Read a `crs train` run folder: config (required), curve and final evaluation (optional).

    Args:
        path: The run folder.
        task: The sweep task it is (default: read from its ``task.json`` when it has one).

    Raises:
        CRSError: The config, or a present curve / evaluation / summary file, is corrupt.
    """
    folder = Path(path)
    info = read_train_info(folder)
    if task is None:
        task = _task_of(folder)
    missing: list[str] = []
    curve = _read_curve(folder)
    if curve is None:
        missing.append(f"learning curve (no {CURVE_CSV})")
    final = None
    final_dir = _final_eval_dir(folder)
    if final_dir is not None:
        final = read_eval_dir(final_dir, train=info, task=task)
    summary = TrainSummary.read(folder) if (folder / SUMMARY_FILE).is_file() else None
    if summary is None and final is None:
        missing.append("final test comparison (no summary.json: the run has not finished)")
    elif summary is not None and final is None and not (folder / TEST_DIR).is_dir():
        again = eval_command(folder, RunRecord.read(folder).settings, summary.test_episodes)
        missing.append(
            f"its test's records (no {TEST_DIR}/); evaluate it again with "
            f"`{again} -o {shlex.quote(str(folder / 'eval'))}`"
        )
    return TrainRun(
        info=info, curve=curve, final_eval=final, summary=summary, missing=tuple(missing), task=task
    )


def _final_eval_dir(folder: Path) -> Path | None:
    """A sub-folder holding `crs eval` records (e.g. ``crs eval --policy runs/x -o runs/x/eval``)."""
    preferred = ("eval", "test", "final_eval", "evaluation", "eval_test")
    found = [folder / name for name in preferred] + sorted(c for c in folder.iterdir() if c.is_dir())
    for candidate in found:
        if (candidate / SUMMARY_FILE).is_file() and (candidate / EPISODES_FILE).is_file():
            return candidate
    return None


def _read_curve(folder: Path) -> Curve | None:
    """The run's validation curve (eval.csv), ordered by step; None when it has no row."""
    file = CurveFile(folder)
    rows = file.rows(fix="move it out of the run to report the run without its learning curve")
    if not rows:
        return None
    steps = np.array([row["timesteps"] for row in rows], dtype=np.float64)
    order = np.argsort(steps, kind="stable")
    series = {name: np.array([row[name] for row in rows], dtype=np.float64)[order] for name in CURVE_SERIES}
    return Curve(steps=steps[order], series=series, source=file.csv)


RUN_KEYS = frozenset(
    {
        "seed",
        "name",
        "run_name",
        "out",
        "output",
        "run_dir",
        "resume",
        "versions",
        "system",
        "written",
        "data_dir",
        # what the run does after training, not the policy it trains: its own final test and checkpoints
        "test_episodes",
        "baselines",
        "checkpoint_every",
    }
)
"""Config keys that differ between runs of one configuration (seeds, names, paths, provenance, and the
settings of the run's own final test and checkpoints), so that `config_key` does not split its seeds."""


def _strip_run_keys(config: object) -> object:
    if isinstance(config, dict):
        return {k: _strip_run_keys(v) for k, v in config.items() if k not in RUN_KEYS}
    return config
