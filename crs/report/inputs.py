"""Reading the inputs of a report: `crs eval` output folders, `crs train` run folders, `crs sweep` folders.

An **eval folder** holds ``summary.json`` and ``episodes.jsonl`` (one `EpisodeRecord` per line), as
`crs.app.evaluation.run_evaluation` writes them. A **train run folder** is recognised by its config file
(``config.yaml``); its learning curve and its final test evaluation are optional parts, read when
present. A **sweep folder** is recognised by ``sweep.json``: only its finished tasks (``runs/<task>/``
with the ``done`` marker) are read, each tagged with its ``task.json`` so that the tasks of one
configuration (dataset, policy, ablation) become one row over their seeds; unfinished task folders are
not read and are named in a note. A folder that is none of these but holds such folders (e.g.
``out/eval``) is expanded one level.

Everything is validated on load: a missing or corrupt file is named in a `CRSError` that says how to
fix it; nothing is silently skipped.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from crs.app.sweep import (
    DONE_MARKER,
    RUNS_DIR,
    SWEEP_FILE,
    TASK_FILE,
    SweepTask,
    is_finished,
    read_task,
    sweep_task_dirs,
)
from envs.metrics import EpisodeRecord, MetricSummary, per_episode_metrics
from simulators.errors import CRSError

SUMMARY_FILE = "summary.json"
EPISODES_FILE = "episodes.jsonl"
TRAIN_CONFIG_FILES: tuple[str, ...] = ("config.yaml", "config.yml", "policy.json")
"""A train run is recognised by any of these (``policy.json``: what `crs eval` needs to load the policy)."""
CURVE_FILES: tuple[str, ...] = (
    "eval.jsonl",
    "eval.csv",
    "eval_curve.csv",
    "eval_curve.jsonl",
    "evaluations.csv",
    "evaluations.jsonl",
    "curve.csv",
    "curve.jsonl",
    "metrics.csv",
    "metrics.jsonl",
)
"""Learning-curve files of a train run, first found wins."""

STEP_KEYS: tuple[str, ...] = ("timesteps", "steps", "step", "num_timesteps", "global_step")
CURVE_SERIES: dict[str, tuple[str, ...]] = {
    "SR@15": ("SR@15", "sr@15", "sr15", "SR", "sr", "success_rate", "success"),
    "reward": ("reward", "mean_reward", "eval_reward", "return", "mean_return"),
    "hDCG": ("hDCG", "hdcg"),
    "AT": ("AT", "at", "average_turns"),
}
"""Series a learning curve may log, each under any of its aliases (SR@15 or reward is required)."""
REQUIRED_SUMMARY_KEYS: tuple[str, ...] = ("policy", "dataset", "split", "episodes", "seed", "max_turns")
ABLATION_KEYS: tuple[str, ...] = ("persona_attention", "aspect_attention")


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
    """

    path: Path
    name: str
    persona_attention: bool | None
    aspect_attention: bool | None
    seed: int | None
    dataset: str | None
    pretrained: str | None
    config: Mapping[str, Any] = field(repr=False)

    @property
    def ablation(self) -> str | None:
        """ "full", "persona-blind", "aspect-blind", "both-off", or None when the flags are unknown."""
        if self.persona_attention is None or self.aspect_attention is None:
            return None
        return ablation_label(self.persona_attention, self.aspect_attention)

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
        """ "<policy> · <ablation>": the configuration within one dataset's table."""
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
    """

    path: Path
    summary: Mapping[str, Any] = field(repr=False)
    records: tuple[EpisodeRecord, ...] = field(repr=False)
    train: TrainInfo | None = None
    task: SweepTaskInfo | None = None

    @property
    def policy(self) -> str:
        return str(self.summary["policy"])

    @property
    def dataset(self) -> str:
        return str(self.summary["dataset"])

    @property
    def split(self) -> str:
        return str(self.summary["split"])

    @property
    def seed(self) -> int:
        return int(self.summary["seed"])

    @property
    def max_turns(self) -> int:
        return int(self.summary["max_turns"])

    @property
    def ranker(self) -> str:
        return str(self.summary.get("ranker", ""))

    @property
    def world_seed(self) -> int | None:
        value = self.summary.get("world_seed")
        return None if value is None else int(value)

    @property
    def fingerprint(self) -> str:
        """Hash of the conversations walked (falls back to the goal indices when absent)."""
        value = self.summary.get("conversations")
        if value:
            return str(value)
        return "goals:" + str(hash(tuple(r.goal_index for r in self.records)))

    @property
    def setting(self) -> str:
        return str(self.summary.get("setting", "unknown"))

    @property
    def user(self) -> str:
        return str(self.summary.get("user", "auto"))

    @property
    def replica_seed(self) -> int:
        """The seed that tells repeated runs of one configuration apart (the sweep task's seed, else the
        training seed, else the eval seed)."""
        if self.task is not None:
            return self.task.seed
        if self.train is not None and self.train.seed is not None:
            return self.train.seed
        return self.seed


@dataclass(frozen=True)
class Curve:
    """A train run's evaluation curve.

    Attributes:
        steps: Environment steps at each evaluation, shape (n,).
        series: Logged values per name in `CURVE_SERIES` ("SR@15", "reward", "hDCG", "AT"), each shape
            (n,), NaN where a point lacks it; only the names the file has.
        source: The file it was read from.
    """

    steps: np.ndarray
    series: Mapping[str, np.ndarray]
    source: Path

    @property
    def sr(self) -> np.ndarray:
        """SR@15 at each evaluation (NaN when not logged), shape (n,)."""
        return self.series.get("SR@15", np.full(self.steps.shape, np.nan))

    @property
    def reward(self) -> np.ndarray:
        """Mean reward at each evaluation (NaN when not logged), shape (n,)."""
        return self.series.get("reward", np.full(self.steps.shape, np.nan))


@dataclass(frozen=True)
class TrainRun:
    """One `crs train` run folder.

    Attributes:
        info: What its config says.
        curve: Its evaluation curve, if one was logged.
        final_eval: Episode records of a test evaluation kept inside the run folder, if any.
        test_summary: The run's own final test comparison (``summary.json``: label -> metric -> mean/CI,
            the trained policy and rule baselines on the same conversations), if written.
        summary: The run's ``summary.json`` as read (empty when absent).
        missing: Optional parts that are absent, in words (shown in the report).
        task: The sweep task this run folder is, when it came from a sweep (``kind: train``).
    """

    info: TrainInfo
    curve: Curve | None
    final_eval: EvalRun | None
    test_summary: Mapping[str, Mapping[str, MetricSummary]] | None = None
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)
    missing: tuple[str, ...] = ()
    task: SweepTaskInfo | None = None


@dataclass(frozen=True)
class Inputs:
    """Everything a report reads.

    Attributes:
        evals: Eval runs (those of train runs included), without duplicates.
        trains: Train runs.
        notes: What was found but not read (unfinished sweep tasks), in words.
    """

    evals: tuple[EvalRun, ...]
    trains: tuple[TrainRun, ...]
    notes: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------ loading
def load_inputs(paths: Sequence[str | Path]) -> Inputs:
    """Read every input folder.

    Args:
        paths: `crs eval` output folders, `crs train` run folders, `crs sweep` folders, or folders
            holding any of them.

    Returns:
        The eval runs and train runs, each folder read once, and notes on what was not read.

    Raises:
        CRSError: No inputs, a path that does not exist or is none of these folders, a sweep without
            a finished task, or a missing or corrupt file inside one.
    """
    if not paths:
        raise CRSError("no inputs: pass `crs eval` output folders and/or `crs train` run folders")
    evals: dict[Path, EvalRun] = {}
    trains: dict[Path, TrainRun] = {}
    notes: list[str] = []
    for raw in paths:
        for folder in _expand(Path(raw)):
            if is_sweep_dir(folder):
                sweep = read_sweep_dir(folder)
                trains.update((run.info.path.resolve(), run) for run in sweep.trains)
                for run in sweep.evals:
                    evals.setdefault(run.path.resolve(), run)
                notes.extend(note for note in sweep.notes if note not in notes)
            elif is_train_run(folder):
                run = read_train_run(folder)
                trains[folder.resolve()] = run
                if run.final_eval is not None:
                    evals[run.final_eval.path.resolve()] = run.final_eval
            else:
                key = folder.resolve()
                if key not in evals:
                    evals[key] = read_eval_dir(folder)
    if not evals and not trains:
        raise CRSError(f"no eval or train runs found in {', '.join(str(p) for p in paths)}")
    return Inputs(evals=tuple(evals.values()), trains=tuple(trains.values()), notes=tuple(notes))


def is_sweep_dir(path: Path) -> bool:
    """A `crs sweep` folder: it holds ``sweep.json``."""
    return (path / SWEEP_FILE).is_file()


def is_eval_dir(path: Path) -> bool:
    """A folder holding ``summary.json`` (``episodes.jsonl`` is checked when it is read)."""
    return (path / SUMMARY_FILE).is_file()


def is_train_run(path: Path) -> bool:
    """A folder holding a train config file."""
    return any((path / name).is_file() for name in TRAIN_CONFIG_FILES)


def _expand(path: Path) -> list[Path]:
    if not path.exists():
        raise CRSError(f"input {path} does not exist; pass a `crs eval --out` or `crs train` run folder")
    if not path.is_dir():
        raise CRSError(
            f"input {path} is a file; pass its folder (a `crs eval` output holds {SUMMARY_FILE} and "
            f"{EPISODES_FILE}, a `crs train` run holds {TRAIN_CONFIG_FILES[0]})"
        )
    if path.name == RUNS_DIR and is_sweep_dir(path.parent):
        return [path.parent]  # a sweep's runs/ folder: read as its sweep (finished tasks only)
    if is_sweep_dir(path) or is_eval_dir(path) or is_train_run(path):
        return [path]
    children = sorted(
        c
        for c in path.iterdir()
        if c.is_dir()
        and not c.name.startswith(".")  # hidden: e.g. a sweep task's unfinished attempt
        and (is_sweep_dir(c) or is_eval_dir(c) or is_train_run(c))
    )
    if not children:
        raise CRSError(
            f"input {path} is neither a `crs eval` output ({SUMMARY_FILE} + {EPISODES_FILE}), a "
            f"`crs train` run ({TRAIN_CONFIG_FILES[0]}) nor a `crs sweep` folder ({SWEEP_FILE}), "
            "and holds none"
        )
    return children


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
    except (TypeError, ValueError) as exc:
        raise CRSError(f"{path / TASK_FILE} is corrupt ({exc}); {fix}") from exc


def unfinished_task_dirs(path: Path) -> list[Path]:
    """Folders under a sweep's ``runs/`` without the ``done`` marker (interrupted or half-copied tasks)."""
    runs = path / RUNS_DIR
    if not runs.is_dir():
        return []
    return sorted(child for child in runs.iterdir() if child.is_dir() and not is_finished(child))


def _unfinished_name(folder: Path) -> str:
    """A task's name from its folder (``.<task>.tmp-<id>`` for an interrupted attempt)."""
    if folder.name.startswith(".") and ".tmp-" in folder.name:
        return folder.name[1:].rsplit(".tmp-", 1)[0] + " (interrupted attempt)"
    return folder.name


def read_sweep_dir(path: str | Path) -> Inputs:
    """Read a `crs sweep` folder: its finished tasks, each tagged with its task, and notes on the rest.

    Eval tasks become `EvalRun`s, train tasks `TrainRun`s (with their final evaluation when kept).
    Folders without the ``done`` marker are never read: they are named in a note, as are tasks of
    ``sweep.json`` with no folder at all (not run yet, or failed).

    Raises:
        CRSError: ``sweep.json`` or ``runs/`` missing or corrupt, no finished task, or a corrupt file in
            a finished task.
    """
    sweep = Path(path)
    listing = _read_json(sweep / SWEEP_FILE, f"rerun `crs sweep CONFIG --out {sweep}`")
    planned = [
        str(task.get("name"))
        for task in (listing.get("tasks") or [] if isinstance(listing, dict) else [])
        if isinstance(task, dict)
    ]
    finished = sweep_task_dirs(sweep)
    unfinished = unfinished_task_dirs(sweep)
    notes: list[str] = []
    rerun = f"rerun `crs sweep CONFIG --out {sweep}` to finish them"
    if unfinished:
        names = ", ".join(_unfinished_name(folder) for folder in unfinished)
        notes.append(
            f"sweep {sweep}: skipped {len(unfinished)} unfinished task folder(s) without the `{DONE_MARKER}` "
            f"marker (not read): {names}; {rerun}"
        )
    present = {folder.name for folder in finished} | {
        _unfinished_name(folder).removesuffix(" (interrupted attempt)") for folder in unfinished
    }
    absent = [name for name in planned if name not in present]
    if absent:
        notes.append(
            f"sweep {sweep}: {len(absent)} of {len(planned)} task(s) in {SWEEP_FILE} have no folder (not run "
            f"yet, or failed): {', '.join(absent)}; {rerun}"
        )
    if not finished:
        raise CRSError(
            f"sweep {sweep} has no finished task ({len(unfinished)} unfinished, {len(absent)} not run); "
            + rerun
        )
    evals: list[EvalRun] = []
    trains: list[TrainRun] = []
    for folder in finished:
        task = read_sweep_task(folder, sweep)
        if task.kind == "train":
            run = read_train_run(folder, task=task)
            trains.append(run)
            if run.final_eval is not None:
                evals.append(run.final_eval)
        else:
            evals.append(read_eval_dir(folder, task=task))
    return Inputs(evals=tuple(evals), trains=tuple(trains), notes=tuple(notes))


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
            f"{sweep} (unfinished tasks are skipped) or rerun `crs sweep CONFIG --out {sweep}`"
        )
    return read_sweep_task(folder, sweep)


def _read_json(path: Path, fix: str) -> Any:
    if not path.is_file():
        raise CRSError(f"{path} is missing; {fix}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CRSError(f"{path} is corrupt ({exc}); {fix}") from exc


def read_eval_dir(
    path: str | Path, train: TrainInfo | None = None, task: SweepTaskInfo | None = None
) -> EvalRun:
    """Read and validate one `crs eval` output folder.

    Args:
        path: The folder.
        train: The train run whose policy it evaluates (default: found from ``summary.json``).
        task: The sweep task it is (default: read from its ``task.json`` when it has one).

    Raises:
        CRSError: ``summary.json`` or ``episodes.jsonl`` missing, not valid JSON, lacking fields, or
            disagreeing with each other (record count, conversations, metric means).
    """
    folder = Path(path)
    fix = "re-run `crs eval --out " + str(folder) + "`"
    summary = _read_json(folder / SUMMARY_FILE, fix)
    if not isinstance(summary, dict):
        raise CRSError(f"{folder / SUMMARY_FILE} is corrupt: expected a JSON object; {fix}")
    lacking = [key for key in REQUIRED_SUMMARY_KEYS if key not in summary]
    if lacking:
        raise CRSError(f"{folder / SUMMARY_FILE} lacks {lacking}; {fix}")
    episodes = folder / EPISODES_FILE
    if not episodes.is_file():
        raise CRSError(f"{episodes} is missing; {fix}")
    records: list[EpisodeRecord] = []
    try:
        lines = episodes.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CRSError(f"{episodes} is unreadable ({exc}); {fix}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(EpisodeRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CRSError(
                f"{episodes} line {number} is corrupt ({type(exc).__name__}: {exc}); {fix}"
            ) from exc
    if not records:
        raise CRSError(f"{episodes} holds no records; {fix}")
    if len(records) != int(summary["episodes"]):
        raise CRSError(
            f"{episodes} holds {len(records)} records but {SUMMARY_FILE} says {summary['episodes']} "
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
    return EvalRun(path=folder, summary=summary, records=tuple(records), train=train, task=task)


def _check_summary_metrics(
    summary: Mapping[str, Any], records: Sequence[EpisodeRecord], path: Path, fix: str
) -> None:
    """The metric means summary.json states must be those of its episode records."""
    stated = summary.get("metrics")
    if not isinstance(stated, dict):
        return
    values = per_episode_metrics(records, int(summary["max_turns"]))
    for name, per_conversation in values.items():
        entry = stated.get(name)
        if not isinstance(entry, dict) or "mean" not in entry:
            continue
        mean = float(per_conversation.mean())
        if not math.isclose(float(entry["mean"]), mean, rel_tol=1e-6, abs_tol=1e-9):
            raise CRSError(
                f"{path} says {name} = {entry['mean']} but its {EPISODES_FILE} gives {mean:.6g} "
                f"(the files do not belong together); {fix}"
            )


def _train_of_policy(summary: Mapping[str, Any]) -> TrainInfo | None:
    """The train run an eval's policy came from, when its spec names a run folder that still exists."""
    spec = summary.get("policy_spec")
    if not spec:
        return None
    folder = Path(str(spec))
    if folder.is_dir() and is_train_run(folder):
        return read_train_info(folder)
    return None


# ------------------------------------------------------------------------------------- train runs
def read_train_info(path: Path) -> TrainInfo:
    """Read a train run's config file.

    Raises:
        CRSError: The config is missing, not YAML, or not a mapping.
    """
    files = [path / n for n in TRAIN_CONFIG_FILES if (path / n).is_file()]
    if not files:
        raise CRSError(f"{path / TRAIN_CONFIG_FILES[0]} is missing; {path} is not a `crs train` run")
    config: dict[str, Any] = {}
    for config_path in files:  # config.yaml first; policy.json fills in what it lacks
        try:
            data = yaml.safe_load(config_path.read_text())  # JSON is YAML
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CRSError(
                f"{config_path} is corrupt ({exc}); re-run `crs train` or repair the file"
            ) from exc
        if not isinstance(data, dict):
            raise CRSError(f"{config_path} is corrupt: expected a mapping, found {type(data).__name__}")
        config = data if not config else {**config, "policy_meta": data}
    persona, aspect = (_find_key(config, key) for key in ABLATION_KEYS)
    seed = _find_key(config, "seed")
    dataset = _find_key(config, "dataset") or _find_key(config, "catalog")
    pretrained = None
    for key in ("pretrained", "pretrain_artifact", "artifact", "ranker"):
        for value in _find_all(config, key):
            if isinstance(value, str) and value and pretrained is None:
                pretrained = _artifact_path(value, path)
    return TrainInfo(
        path=path,
        name=path.name,
        persona_attention=None if persona is None else bool(persona),
        aspect_attention=None if aspect is None else bool(aspect),
        seed=None if seed is None else int(seed),
        dataset=None if dataset is None else str(dataset),
        pretrained=pretrained,
        config=config,
    )


def _artifact_path(spec: str, run_dir: Path) -> str | None:
    """The pre-training artifact a ranker entry names ("artifact:<dir>" or a folder), else None."""
    kind, sep, where = spec.partition(":")
    if sep and kind != "artifact":
        return None  # "transe:<file>" and the like carry no personas
    candidate = Path(where if sep else spec)
    if not candidate.is_absolute() and not candidate.exists() and (run_dir / candidate).exists():
        candidate = run_dir / candidate
    return str(candidate) if candidate.is_dir() else None


def read_train_run(path: str | Path, task: SweepTaskInfo | None = None) -> TrainRun:
    """Read a `crs train` run folder: config (required), curve and final evaluation (optional).

    Args:
        path: The run folder.
        task: The sweep task it is (default: read from its ``task.json`` when it has one).

    Raises:
        CRSError: The config, or a present curve / evaluation file, is corrupt.
    """
    folder = Path(path)
    info = read_train_info(folder)
    if task is None:
        task = _task_of(folder)
    missing: list[str] = []
    curve = _read_curve(folder)
    if curve is None:
        missing.append("learning curve (no " + " / ".join(CURVE_FILES[:2]) + ")")
    final = None
    final_dir = _final_eval_dir(folder)
    if final_dir is not None:
        final = read_eval_dir(final_dir, train=info, task=task)
    summary: dict[str, Any] = {}
    test_summary = None
    if (folder / SUMMARY_FILE).is_file() and not (folder / EPISODES_FILE).is_file():
        summary = _read_json(folder / SUMMARY_FILE, "re-run `crs train --resume` or remove the file")
        if not isinstance(summary, dict):
            raise CRSError(f"{folder / SUMMARY_FILE} is corrupt: expected a JSON object")
        test_summary = _test_summary(summary.get("test"), folder / SUMMARY_FILE)
    if test_summary is None and final is None:
        missing.append("final test comparison (no summary.json: the run has not finished)")
    return TrainRun(
        info=info,
        curve=curve,
        final_eval=final,
        test_summary=test_summary,
        summary=summary,
        missing=tuple(missing),
        task=task,
    )


def _test_summary(data: Any, path: Path) -> dict[str, dict[str, MetricSummary]] | None:
    """``{"label": {"SR@15": {"mean", "low", "high"}, ...}}`` read into `MetricSummary`s."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CRSError(f"{path} [test] is corrupt: expected label -> metrics, found {type(data).__name__}")
    out: dict[str, dict[str, MetricSummary]] = {}
    for label, metrics in data.items():
        try:
            out[str(label)] = {
                str(name): MetricSummary(float(v["mean"]), float(v["low"]), float(v["high"]))
                for name, v in metrics.items()
            }
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CRSError(
                f"{path} [test][{label}] is corrupt ({exc}); expected metric -> mean/low/high"
            ) from exc
    return out


def _final_eval_dir(folder: Path) -> Path | None:
    """A sub-folder holding `crs eval` records (e.g. ``crs eval --policy runs/x -o runs/x/eval``)."""
    preferred = ("eval", "test", "final_eval", "evaluation", "eval_test")
    found = [folder / name for name in preferred] + sorted(c for c in folder.iterdir() if c.is_dir())
    for candidate in found:
        if (candidate / SUMMARY_FILE).is_file() and (candidate / EPISODES_FILE).is_file():
            return candidate
    return None


def _read_curve(folder: Path) -> Curve | None:
    for name in CURVE_FILES:
        path = folder / name
        if path.is_file():
            rows = _read_rows(path)
            curve = _curve_from_rows(rows, path)
            if curve is not None:
                return curve
    return None


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CRSError(f"{path} is unreadable ({exc})") from exc
    if path.suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CRSError(f"{path} line {number} is corrupt ({exc}); re-run `crs train`") from exc
        if isinstance(row, dict):
            rows.append(_flatten(row))
    return rows


def _curve_from_rows(rows: list[dict[str, Any]], path: Path) -> Curve | None:
    if not rows:
        return None
    keys = set().union(*(row.keys() for row in rows))
    step_key = next((k for k in STEP_KEYS if k in keys), None)
    found = {name: next((k for k in aliases if k in keys), None) for name, aliases in CURVE_SERIES.items()}
    found = {name: key for name, key in found.items() if key is not None}
    if step_key is None or not ({"SR@15", "reward"} & found.keys()):
        return None
    kept = [row for row in rows if not math.isnan(_number(row.get(step_key)))]
    if not kept:
        return None
    steps = np.array([_number(row[step_key]) for row in kept])
    order = np.argsort(steps, kind="stable")
    series = {name: np.array([_number(row.get(key)) for row in kept])[order] for name, key in found.items()}
    return Curve(steps=steps[order], series=series, source=path)


def _number(value: Any) -> float:
    if isinstance(value, dict):
        value = value.get("mean")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts ({"metrics": {"SR@15": {"mean": ..}}}) flattened to their leaf names."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict) and "mean" not in value:
            out.update(_flatten(value, prefix))
        else:
            out.setdefault(str(key), value)
    return out


def _find_all(config: Any, key: str) -> list[Any]:
    """Every value of `key` in a nested mapping, breadth-first."""
    found, queue = [], [config]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            if key in node:
                found.append(node[key])
            queue.extend(v for v in node.values() if isinstance(v, dict))
    return found


def _find_key(config: Any, key: str) -> Any:
    """The first value of `key` in a nested mapping (breadth-first), or None."""
    queue = [config]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            if key in node:
                return node[key]
            queue.extend(v for v in node.values() if isinstance(v, dict))
    return None


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
    }
)
"""Config keys that differ between runs of one configuration (seeds, names, paths, provenance)."""


def _strip_run_keys(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _strip_run_keys(v) for k, v in config.items() if k not in RUN_KEYS}
    return config
