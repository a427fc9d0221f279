"""Sweeps: a grid of runs (seeds × ablations × datasets × policies) from one config file.

Each task is a `crs eval` run (``kind: eval``), a `crs train` run followed by its test comparison
(``kind: train``), or a `crs eval --sessions` run of returning users (``kind: sessions``, on
`crs.app.sessions.SESSION_DATASETS`: `crs.app.sessions.run_session_evaluation`). A sweep directory
is the only state; rerunning a sweep skips what it proves finished:

```
DIR/
  sweep.json                  the config and the task list (every seed run into DIR)
  results.json                the results table of every finished task (rewritten after each run):
                              "rows" (task -> metrics), "labels" (task -> dataset, split,
                              conversations, setting, ranker), "failed"
  runs/<task>/                a FINISHED task, moved into place by one atomic rename:
      task.json               its configuration (`SweepTask.to_dict`: kind, group, seed, settings, ...)
      done                    the completion marker (written before the rename)
      summary.json            eval: as written by `crs eval` (+ episodes.jsonl);
                              sessions: as written by `crs eval --sessions` (+ episodes.jsonl,
                              one line per session; `crs report DIR` draws the per-session curves);
                              train: the whole `crs train` run directory (summary.json's "test"
                              table, policy.json, model zips: `crs eval --policy DIR/runs/<task>`)
  runs/.<task>.tmp-<id>/      an unfinished attempt: never read, removed by the next run
```

A training sweep can be continued to a longer budget in a new folder (`extend_tasks`, `crs sweep --extend
OLD --steps N`): each task resumes its finished namesake of OLD, whose run files the driver sends to the
worker, and records it as ``extends`` in its ``task.json``; OLD is only read.

Workers return a task's files to the driver, which writes them (first into the hidden temporary
folder, then one rename), so a cluster needs no shared filesystem and an interrupted sweep never
leaves a folder that looks finished. A train task trains in a temporary folder named after the sweep
folder and the task (`train_attempt`), which an interrupted or killed worker leaves behind: the rerun
(or a retry) goes on from its last checkpoint there, as `crs train --resume` does (`_run_train_task`).

`sweep_task_dirs`, `sweep_groups`, `read_task`, `read_figures` and `read_metrics` are the readers for
other commands (e.g. `crs report` on a sweep directory).

Config (YAML or TOML), every key optional:

```yaml
name: rules-vs-seeds
kind: eval                                # or train, or sessions
seeds: [1, 2, 3]
datasets: [persona_world]
policies: [ask-4, max-entropy]            # eval, sessions: rule names or trained run directories
                                          # (a run ranks with its own ranker: no `ranker` beside it)
ablations:                                # name -> overrides of the eval (train, sessions) settings;
                                          # a mapping (train: ppo, wrapper, rewards) merges key by key
  default: {}
  single-user: {user: single}             # train: e.g. {persona_attention: false}
eval: {episodes: 600, split: test, ranker: null, user: auto, world_seed: 0, data_dir: null}
train: {steps: 40000, ranker: popularity} # kind train: `crs train` settings but dataset and seed;
                                          # envs run in the task's process unless ppo.subprocess: true
retries: 2                                # extra attempts of a task whose worker process died
```

and for returning users (`crs eval --sessions` per task; its settings are the `sessions:` block,
`crs.app.sessions.SessionSpec`, which the ablations override; no `eval:` or `train:` block):

```yaml
name: memory-switch
kind: sessions
seeds: [0, 1, 2]
policies: [ask-4]                         # a rule needs `ranker` (a `crs pretrain` artifact)
sessions: {ranker: runs/pw-ranker, regime: switch, sessions: 8, sequences: 1000,
           memory: update, world_seed: 0, split: test}
ablations: {frozen: {memory: frozen}, update: {memory: update}, oracle: {memory: oracle}}
```

Everything is checked when the config is read, before any task starts (`load_sweep_config`): seeds
are integers in [0, 2**32 - 1], counts are integers (not booleans or floats), every number anywhere in
the config (``train`` and ``ablations`` included) is finite — a NaN or an infinity is an error that
names its key. Kind sessions also refuses a dataset outside `crs.app.sessions.SESSION_DATASETS`, a
regime that needs the persona world's truth on real data, an `eval:` or `train:` block, two ablations
with the same settings, and a rule policy without a persona ranker (`sessions.ranker`, an existing
artifact folder). An empty config is refused. Each task's ranker is checked by its name (`check_ranker`:
its syntax; kinds eval and sessions, also an existing TransE file or an artifact folder pre-trained on the
task's dataset), and a ranker with a trained run among the policies is refused (it ranks with its own).
A task that raises (e.g. a `CRSError` for a data folder that does not exist) fails at once, without
retries; only a crashed worker process is retried.

The sweep folder holds one config (`check_sweep_folder`, before anything is written): it must be new,
empty, or a sweep folder (``sweep.json``) whose finished tasks are all tasks of this config (any seeds:
``--seeds`` adds some), so neither another command's output nor another config's tasks are mixed in.
Nothing is written into it before the worker pool is up (a Ray cluster reached).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crs.app.evaluation import EvalSpec, evaluated_ranker_identity, run_evaluation
from crs.app.run_folder import (
    DONE_MARKER,
    SUMMARY_FILE,
    TASK_FILE,
    EvalSummary,
    FigureLabel,
    TrainSummary,
    sweep_command,
    task_rerun_fix,
)
from crs.app.sessions import SESSION_DATASETS, SessionSpec, run_session_evaluation
from crs.app.settings import MAX_SEED, make_settings
from crs.claims import FolderClaim, a_few, folder_entries, process_alive
from crs.common import read_settings_file, write_json_atomic
from crs.parallel import DEFAULT_RETRIES, Task, TaskResult, WorkerPool, check_pool_request
from envs.metrics import MetricSummary
from envs.registry import resolve_user_and_setting
from policies.atomic import LOCK_FILE, folder_lock, read_json_mapping
from policies.memory import DEFAULT_RULE
from policies.pretrain.config import read_artifact_config
from policies.rankers import CHOICES, PERSONA_KINDS, RANKER_NAMES, RankerSpec
from policies.rl.run_files import CHECKPOINT
from policies.rules import EVERY_SETTING_RULES, ProbeThenAskPolicy, SettingRefusedError, make_rule_policy
from simulators.datasets import PERSONA_WORLD, check_dataset_name, check_taxonomy
from simulators.errors import CRSError
from simulators.mcmipl import DATASETS as MCMIPL_DATASETS
from simulators.returning import HELD_OUT_REGIMES

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.json"
RUNS_DIR = "runs"
EVAL_FILES = ("summary.json", "episodes.jsonl")
SCRATCH_PREFIX = "crs-task-"  # a worker's scratch folder: crs-task-<its pid>-<random>
ATTEMPT_PREFIX = "crs-train-"  # a train task's folder: crs-train-<hash of the sweep folder and task>
ATTEMPT_FILE = "attempt.json"  # in it: the sweep folder and task it trains (`remove_other_attempts`)
DEFAULT_NAME = "sweep"  # a config without a name
MAX_SWEEP_SEEDS = 10_000  # `--seeds` in one call: a typo like 0-4294967295 is refused, not expanded

# Strict: a YAML `true` or `2.0` is not silently taken for an integer.
Seed = Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]


GRID_KEYS_OF_EVAL = frozenset({"policy", "dataset", "seed"})  # `EvalSpec`, `SessionSpec` fields the grid sets
GRID_LISTS = {"policy": "policies", "dataset": "datasets", "seed": "seeds"}  # the config's list of each


GRID_KEYS_OF_TRAIN = ("dataset", "seed")


DEFAULT_ABLATION = "default"
"""The one ablation of a config without `ablations` (no overrides); a report leaves its name out."""


def _default_ablations() -> dict[str, dict[str, Any]]:
    return {DEFAULT_ABLATION: {}}


class SweepConfig(BaseModel):
    """A sweep: the grid and the settings shared by its tasks (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = DEFAULT_NAME
    kind: Literal["eval", "train", "sessions"] = Field(
        "eval",
        description="eval: `crs eval` per task; train: `crs train` per task (then its test table); "
        "sessions: `crs eval --sessions` per task (returning users).",
    )
    seeds: list[Seed] = Field(default_factory=lambda: [1], min_length=1)
    datasets: list[str] = Field(default_factory=lambda: ["persona_world"], min_length=1)
    policies: list[str] | None = Field(
        None, min_length=1, description="eval and sessions only (default [ask-4])."
    )
    ablations: dict[str, dict[str, Any]] = Field(default_factory=_default_ablations, min_length=1)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    train: dict[str, Any] = Field(
        default_factory=dict, description="`crs train` settings (TrainSettings keys but dataset and seed)."
    )
    sessions: SessionSpec = Field(
        default_factory=SessionSpec,
        description="kind sessions: `crs eval --sessions` settings (SessionSpec keys but policy, dataset "
        "and seed).",
    )
    retries: int = Field(
        DEFAULT_RETRIES, ge=0, le=10, strict=True, description="Extra attempts of a crashed task."
    )

    @model_validator(mode="before")
    @classmethod
    def _finite_numbers(cls, data: Any) -> Any:
        bad = _non_finite(data)
        if bad:
            raise ValueError(f"{'; '.join(bad)} (every number must be finite)")
        return data

    @field_validator("eval", "sessions")
    @classmethod
    def _no_grid_keys_in_eval(cls, spec: EvalSpec | SessionSpec) -> EvalSpec | SessionSpec:
        grid = sorted(GRID_KEYS_OF_EVAL & spec.model_fields_set)
        if grid:
            comes = "comes" if len(grid) == 1 else "come"
            raise ValueError(
                f"{', '.join(grid)} {comes} from the grid: list them under policies/datasets/seeds"
            )
        return spec

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, datasets: list[str]) -> list[str]:
        for name in datasets:
            try:
                check_dataset_name(name)
            except CRSError as error:
                raise ValueError(str(error)) from None
        return datasets

    @field_validator("policies")
    @classmethod
    def _known_policies(cls, policies: list[str] | None) -> list[str] | None:
        seen: dict[str, str] = {}  # the rule's own name (ask-04 is ask-4) -> as listed
        for spec in policies or ():
            if not Path(spec).is_dir():
                try:
                    rule = make_rule_policy(spec, None).name
                except CRSError as error:
                    raise ValueError(f"{error}, or an existing run directory") from None
                if rule in seen and seen[rule] != spec:  # the same name twice: `_no_repeats` says it
                    raise ValueError(f"{seen[rule]} and {spec} are one rule ({rule}); list each policy once")
                seen[rule] = spec
        return policies

    @field_validator("seeds", "datasets", "policies")
    @classmethod
    def _no_repeats(cls, values: list[Any] | None) -> list[Any] | None:
        if values is None:
            return None
        counts = Counter(repr(value) for value in values)  # seeds, names: hashable by their repr
        repeated = sorted({str(value) for value in values if counts[repr(value)] > 1})
        if repeated:
            raise ValueError(f"repeated entries: {', '.join(repeated)}")
        return values

    @field_validator("train")
    @classmethod
    def _train_keys(cls, train: dict[str, Any]) -> dict[str, Any]:
        for key in GRID_KEYS_OF_TRAIN:
            if key in train:
                raise ValueError(f"{key!r} comes from the grid; list it under '{GRID_LISTS[key]}' instead")
        try:
            make_settings(dict(train))
        except CRSError as error:
            raise ValueError(str(error)) from None
        return train

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        if self.kind == "train" and self.policies is not None:
            raise ValueError("policies: not used by kind 'train' (each task trains the RL policy); remove it")
        for block in ("eval", "train", "sessions"):  # each kind reads one block: another would be ignored
            if block != self.kind and block in self.model_fields_set:
                raise ValueError(
                    f"{block}: not used by kind {self.kind!r} (its settings are the {self.kind}: block); "
                    "remove it"
                )
        for name in self.ablations:
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?", name):
                raise ValueError(
                    f"ablation name {name!r} may only use letters, digits, '_', '.', '-', and must begin "
                    "and end with a letter or digit (task folders are named by it)"
                )
            try:
                self.settings(name, self.datasets[0], self.seeds[0])
            except CRSError as error:
                raise ValueError(str(error)) from None
        if self.kind == "sessions":
            self._check_sessions_kind()  # a persona ranker: `SessionSpec` checks it
        self._check_rankers()
        self._check_rule_settings()
        self._check_data_dirs()
        self._check_distinct_ablations()
        return self

    def _check_data_dirs(self) -> None:
        """A data_dir the config names is an existing folder, named by its key (else every task on real
        data would fail when it runs, with a hint naming `--data-dir`, an option a sweep does not have)."""
        for name in self.ablations:
            key = (
                f"ablations.{name}.data_dir"
                if "data_dir" in self.ablations[name]
                else f"{self.kind}.data_dir"
            )
            data_dir = self.settings(name, self.datasets[0], self.seeds[0]).get("data_dir")
            if data_dir is not None and not Path(data_dir).expanduser().is_dir():
                raise ValueError(f"{key}: {data_dir} is not a folder; give the folder of the real datasets")

    def _check_distinct_ablations(self) -> None:
        """Two ablations with the same settings would run every task twice (and `crs report` pairs one
        run per variant and seed)."""
        seen: dict[str, str] = {}
        for name in self.ablations:
            task = self.settings(name, self.datasets[0], self.seeds[0])
            if self.kind == "sessions" and task["memory"] == "update" and task["memory_update"] is None:
                task["memory_update"] = DEFAULT_RULE.variant  # what None runs: the same tasks
            settings = json.dumps(task, sort_keys=True, default=str)
            if settings in seen:
                raise ValueError(
                    f"ablations.{name}: the same settings as ablations.{seen[settings]} (every task would "
                    "run twice); remove one or change a key"
                )
            seen[settings] = name

    def _check_rankers(self) -> None:
        """Each task's ranker is one it can use (`check_ranker`), and none is given to a trained run, which
        ranks with its own; named by its key."""
        runs = [spec for spec in self.policy_specs if self.kind != "train" and Path(spec).is_dir()]
        for name in self.ablations:
            key = f"ablations.{name}.ranker" if "ranker" in self.ablations[name] else f"{self.kind}.ranker"
            for dataset in self.datasets:
                ranker = self.settings(name, dataset, self.seeds[0])["ranker"]
                if ranker is None:
                    continue
                if runs:
                    raise ValueError(
                        f"{key}: the trained run {runs[0]} ranks with its own ranker, which its network was "
                        "trained on; sweep trained runs without a ranker and rules with one in two sweep "
                        "folders, then `crs report` both"
                    )
                try:
                    check_ranker(ranker, dataset, self.kind)
                except CRSError as error:
                    raise ValueError(f"{key}: {error}") from None

    def _check_rule_settings(self) -> None:
        """Kinds eval and sessions: each task's question setting suits its rule policies, and the
        enumerated one its dataset (a taxonomy), by their names alone (such tasks failed when they ran;
        kind train: `make_settings` checks the train block's baselines)."""
        if self.kind == "train":
            return
        rules = [spec for spec in self.policy_specs if not Path(spec).is_dir()]
        for name in self.ablations:
            own = "setting" in self.ablations[name]
            key = f"ablations.{name}.setting" if own else f"{self.kind}.setting"
            for dataset in self.datasets:
                task = self.settings(name, dataset, self.seeds[0])
                world, mcmipl = dataset == PERSONA_WORLD, dataset in MCMIPL_DATASETS
                _, setting = resolve_user_and_setting(
                    task.get("user", "auto"), task.get("setting"), world=world, mcmipl=mcmipl
                )
                try:
                    check_taxonomy(dataset, setting)
                except CRSError as error:
                    raise ValueError(f"{key}: {error}") from None
                ranker_kind = RankerSpec.parse(str(task.get("ranker") or "popularity")).kind
                for rule in rules:
                    policy = make_rule_policy(rule, None)
                    if isinstance(policy, ProbeThenAskPolicy) and ranker_kind not in PERSONA_KINDS:
                        # it failed only when the task ran
                        ranker_key = (
                            f"ablations.{name}.ranker"
                            if "ranker" in self.ablations[name]
                            else f"{self.kind}.ranker"
                        )
                        raise ValueError(
                            f"policies: {rule} probes personas, which a {ranker_kind} ranker does not model; "
                            f"set {ranker_key} to a `crs pretrain` folder of the dataset, or uniform"
                        )
                    try:
                        policy.check_setting(setting)
                    except SettingRefusedError as error:
                        fix = (
                            f"set {key}: {error.setting} where the dataset has it, or list"
                            if self.kind == "eval"
                            else f"returning users play {dataset} in its own setting: list"
                        )
                        raise ValueError(
                            f"policies: {error.reason} (on {dataset}); {fix} a rule of every setting "
                            f"({EVERY_SETTING_RULES})"
                        ) from None

    def _check_sessions_kind(self) -> None:
        """Kind sessions: `SESSION_DATASETS` only, regimes real data has, a persona ranker for rule
        policies."""
        other = [name for name in self.datasets if name not in SESSION_DATASETS]
        if other:
            raise ValueError(
                f"datasets: kind 'sessions' plays returning users of {', '.join(SESSION_DATASETS)}; "
                f"{', '.join(other)}: not one of them (MCMIPL's releases have multi-item target groups, "
                "which sessions do not draw yet)"
            )
        for dataset in (name for name in self.datasets if name != PERSONA_WORLD):
            for name in self.ablations:
                regime = self.settings(name, dataset, self.seeds[0])["regime"]
                if regime not in HELD_OUT_REGIMES:
                    own = "regime" in self.ablations[name]
                    key = f"ablations.{name}.regime" if own else "sessions.regime"
                    raise ValueError(
                        f"{key}: {regime} needs the persona world's generative truth; on {dataset} use "
                        f"{' or '.join(HELD_OUT_REGIMES)}"
                    )
        rules = [spec for spec in self.policy_specs if not Path(spec).is_dir()]
        for name in self.ablations if rules else ():
            if self.settings(name, self.datasets[0], self.seeds[0])["ranker"] is None:
                key = f"ablations.{name}.ranker" if "ranker" in self.ablations[name] else "sessions.ranker"
                raise ValueError(
                    f"{key}: the rule policy {rules[0]!r} needs a persona ranker for the memory; give a "
                    "`crs pretrain` artifact folder (e.g. `crs pretrain --out runs/pw-ranker`, then "
                    "sessions: {ranker: runs/pw-ranker})"
                )

    @property
    def policy_specs(self) -> list[str]:
        """The policies of the grid: the given ones (eval, sessions), or the trained RL policy ("rl",
        train)."""
        return ["rl"] if self.kind == "train" else (self.policies or ["ask-4"])

    def settings(self, ablation: str, dataset: str, seed: int) -> dict[str, Any]:
        """A task's settings: the `eval` block (eval), the `sessions` block (sessions), or the `train`
        block with dataset and seed (train), with the ablation's overrides.

        Raises:
            CRSError: When an override names an unknown key or a bad value (the key is named).
        """
        overrides = self.ablations[ablation]
        if self.kind == "train":
            for key in GRID_KEYS_OF_TRAIN:
                if key in overrides:
                    raise CRSError(
                        f"ablations.{ablation}.{key}: comes from the grid; list it under '{GRID_LISTS[key]}'"
                    )
            try:
                merged = {**self.train, "dataset": dataset, "seed": seed}
                for key, value in overrides.items():  # a mapping block merges key by key (ppo, rewards)
                    base = self.train.get(key)
                    merged[key] = (
                        {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
                    )
                # the sweep runs its tasks side by side, so each task's envs stay in its own process
                ppo = merged.get("ppo")
                if ppo is None or isinstance(ppo, dict):  # anything else: make_settings names it
                    merged["ppo"] = {"subprocess": False, **(ppo or {})}
                return make_settings(merged).model_dump()
            except CRSError as error:
                raise CRSError(f"ablations.{ablation}: {error}") from None
        for key in GRID_KEYS_OF_EVAL & set(overrides):
            raise CRSError(
                f"ablations.{ablation}.{key}: comes from the grid; list it under '{GRID_LISTS[key]}'"
            )
        exclude = set(GRID_KEYS_OF_EVAL)  # model_dump's IncEx is typed with set, not frozenset
        kind: type[EvalSpec] | type[SessionSpec] = SessionSpec if self.kind == "sessions" else EvalSpec
        block = self.sessions if self.kind == "sessions" else self.eval
        try:
            spec = kind.model_validate({**block.model_dump(exclude=exclude), **overrides})
        except ValidationError as error:
            raise CRSError(_describe(error, prefix=f"ablations.{ablation}.", known=kind)) from None
        return spec.model_dump(exclude=exclude)


def check_ranker(text: str, dataset: str, kind: str) -> None:
    """Raise unless a task of `kind` ("eval", "sessions" or "train") on `dataset` can use the ranker named
    `text`, as far as its name and an artifact's config.json tell: its syntax (`RankerSpec.parse`) and
    kind, TransE's default file for lastfm only; kinds eval and sessions, also an artifact folder
    pre-trained on `dataset` or a TransE file that exists (kind train may name an artifact that `crs
    pretrain` writes before the sweep runs, as the benchmark configs do).

    Raises:
        CRSError: The ranker named, with the fix.
    """
    spec = RankerSpec.parse(text)
    if spec.kind == "run" or (spec.kind == "pretrain" and kind != "train"):
        raise CRSError(f"ranker {text!r} cannot be used by kind {kind!r}; use {CHOICES}")
    try:
        spec.check_dataset(dataset)
    except CRSError as error:
        raise CRSError(f"ranker {text!r}: {error}") from None
    if kind == "train" or spec.path is None:
        return
    if spec.kind == "artifact" and not spec.path.is_dir():
        raise CRSError(
            f"ranker {text!r} is neither one of {', '.join(RANKER_NAMES)} (a persona one with its "
            "suffixes, e.g. uniform+profile) nor an existing `crs pretrain` artifact folder; fix the name "
            "or give the folder"
        )
    if spec.kind == "artifact":
        trained_on = read_artifact_config(spec.path).get("dataset")
        data = "" if dataset == PERSONA_WORLD else " --data-dir DATA"
        if trained_on != dataset:
            raise CRSError(
                f"artifact {spec.where} was pre-trained on {trained_on}, not {dataset}; give one "
                f"pre-trained on {dataset} (`crs pretrain -d {dataset}{data} --out DIR`), or list only "
                f"{trained_on} under datasets"
            )
    if spec.kind == "transe" and not spec.path.is_file():
        raise CRSError(f"ranker {text!r}: no TransE file {spec.where}; give an existing file")


def _non_finite(value: Any, path: str = "") -> list[str]:
    """'key.path: nan is not a finite number' for each NaN or infinity anywhere in a nested config value."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path or 'value'}: {value} is not a finite number"]
    if isinstance(value, Mapping):
        return [
            bad
            for key, item in value.items()
            for bad in _non_finite(item, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(value, (list, tuple)):
        return [bad for index, item in enumerate(value) for bad in _non_finite(item, f"{path}.{index}")]
    return []


def _describe(error: ValidationError, prefix: str = "", known: type[BaseModel] | None = None) -> str:
    """One part per pydantic error, 'key.path: message'; an unknown key lists the known ones."""
    parts = []
    for item in error.errors():
        location = prefix + ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and known is not None:
            model = known
            for part in item["loc"][:-1]:  # nested block, e.g. eval.<key>
                annotation = (
                    model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
                )
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    model = annotation
            # a block's keys the grid sets are refused there (`_no_grid_keys_in_eval`): not offered
            keys = [key for key in model.model_fields if key not in GRID_KEYS_OF_EVAL]
            message += f" (known keys: {', '.join(keys)})"
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep config (.yaml/.yml or .toml), before any task runs.

    Raises:
        CRSError: Missing or empty file, unreadable syntax, or invalid keys/values (each bad key named):
            e.g. a negative seed, a NaN or infinite number, an unknown key, dataset, policy, split or
            ranker.
    """
    path = Path(path)
    data = read_settings_file(path, "sweep config")
    if not data:
        raise CRSError(
            f"sweep config {path} is empty; a config says what to run, e.g. `policies: [ask-4]` and "
            "`eval: {episodes: 600}` (see `crs sweep --help`)"
        )
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as error:
        raise CRSError(f"sweep config {path}: {_describe(error, known=SweepConfig)}") from None


# ---------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class SweepTask:
    """One cell of the grid.

    Attributes:
        name: Unique, filesystem-safe: ``<dataset>-<policy>-<ablation>-s<seed>``.
        group: The configuration without the seed (runs of one group differ only by seed).
        kind: "eval", "train" or "sessions" (`SweepConfig.kind`).
        dataset: Dataset name.
        policy: Policy spec (rule name or run directory; "rl" for train).
        ablation: Ablation name (key of the config's ``ablations``).
        seed: Run seed.
        settings: The task's settings (`SweepConfig.settings`): eval, `EvalSpec` fields but policy,
            dataset and seed; sessions, `SessionSpec` fields but those; train, `TrainSettings`.
        extends: Train only: the finished task folder of an earlier sweep that this task continues to
            ``settings["steps"]`` (`extend_tasks`); empty when it trains from step 0.
    """

    name: str
    group: str
    kind: str
    dataset: str
    policy: str
    ablation: str
    seed: int
    settings: Mapping[str, Any] = field(default_factory=dict)
    extends: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (written as ``task.json``; ``extends`` only when set)."""
        return {
            "name": self.name,
            "group": self.group,
            "kind": self.kind,
            "dataset": self.dataset,
            "policy": self.policy,
            "ablation": self.ablation,
            "seed": self.seed,
            "settings": dict(self.settings),
        } | ({"extends": self.extends} if self.extends else {})


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "x"


def expand_grid(config: SweepConfig) -> list[SweepTask]:
    """The sweep's tasks, in order datasets × policies × ablations × seeds.

    Raises:
        CRSError: When two policies would give tasks the same name (e.g. two run dirs named alike).
    """
    tasks = []
    for dataset in config.datasets:
        for policy in config.policy_specs:
            label = _safe(Path(policy).name if Path(policy).is_dir() else policy)
            for ablation in config.ablations:
                group = f"{_safe(dataset)}-{label}-{_safe(ablation)}"
                for seed in config.seeds:
                    settings = config.settings(ablation, dataset, seed)
                    name = f"{group}-s{seed}"
                    tasks.append(
                        SweepTask(name, group, config.kind, dataset, policy, ablation, seed, settings)
                    )
    counts = Counter(task.name for task in tasks)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise CRSError(
            f"sweep tasks would share names {a_few(repeated)}; give the policies (or datasets) names that "
            "differ in their letters and digits"
        )
    return tasks


def _read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` as {relative posix path: bytes}."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


TASK_DIR_MARKER = "<crs sweep task folder>"
"""Stands for a train task's folder in the files a worker returns (`_relocatable`), until `commit_task`
writes the folder's path in its place."""

RELOCATED_SUFFIXES = (".json", ".jsonl", ".md", ".yaml", ".csv")


def _relocatable(files: dict[str, bytes], run_dir: Path) -> dict[str, bytes]:
    """A run's text files with the path of the scratch folder it trained in (its tested/ summaries, model
    card and commands name it) replaced by `TASK_DIR_MARKER`."""
    paths = sorted({str(run_dir), str(run_dir.resolve())}, key=len, reverse=True)
    out = dict(files)
    for name, data in files.items():
        if name.endswith(RELOCATED_SUFFIXES):
            for path in paths:  # a temporary folder's path: nothing in it that JSON escapes
                data = data.replace(path.encode(), TASK_DIR_MARKER.encode())
            out[name] = data
    return out


def _relocated(name: str, data: bytes, folder: Path) -> bytes:
    """A file of `_relocatable` with `folder`, where the task now lies, in place of `TASK_DIR_MARKER`."""
    if TASK_DIR_MARKER.encode() not in data:
        return data
    path = json.dumps(str(folder))[1:-1] if name.endswith((".json", ".jsonl")) else str(folder)
    return data.replace(TASK_DIR_MARKER.encode(), path.encode())


def _run_files(folder: Path) -> dict[str, bytes]:
    """A finished train task's run directory for a worker to continue (`run_sweep_task`): its files but
    the sweep's ``task.json`` and ``done``, with the folder's path replaced by `TASK_DIR_MARKER`."""
    files = _read_tree(folder)
    return _relocatable(
        {name: data for name, data in files.items() if name not in (TASK_FILE, DONE_MARKER)}, folder
    )


def remove_orphaned_scratch(temp_dir: Path | None = None) -> list[Path]:
    """Delete the scratch folders that killed workers left (their process is gone and nothing holds the
    folder's lock).

    A worker's scratch folder is removed when its task ends, but not when the worker is killed (a
    crashed worker, a Ctrl-C'd sweep); each task first removes those of dead workers. A running worker
    holds its folder's lock (`folder_lock`), so a live worker that looks dead from here (another PID
    namespace sharing the temporary folder) keeps its folder.

    Args:
        temp_dir: The temporary folder (default: `tempfile.gettempdir()`).

    Returns:
        The folders removed.
    """
    removed = []
    for path in Path(temp_dir or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not (pid.isdigit() and path.is_dir() and not path.is_symlink()) or process_alive(int(pid)):
            continue
        with contextlib.suppress(OSError), folder_lock(path, wait=False):  # in use: left alone
            shutil.rmtree(path, ignore_errors=True)  # another worker may be removing it too
            removed.append(path)
    return removed


@dataclass(frozen=True)
class TrainAttempt:
    """Where a train task of a sweep trains (`train_attempt`).

    Attributes:
        name: A folder in the worker's temporary folder: the same for every attempt of the task (a rerun,
            a retry), another for another sweep folder or other settings.
        sweep: The sweep folder (resolved), which `remove_other_attempts` matches.
    """

    name: str
    sweep: str

    @property
    def folder(self) -> Path:
        """The attempt folder in this process's temporary folder."""
        return Path(tempfile.gettempdir()) / self.name


def train_attempt(out: Path, task: SweepTask) -> TrainAttempt:
    """The attempt folder of train task `task` of the sweep folder `out`."""
    sweep = str(out.resolve())
    identity = json.dumps([sweep, task.to_dict()], sort_keys=True)
    return TrainAttempt(ATTEMPT_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:16], sweep)


def remove_other_attempts(out: Path, keep: set[str], temp_dir: Path | None = None) -> list[Path]:
    """Delete the train attempts that earlier runs into the sweep folder `out` left (`train_attempt`) and
    no task of this run continues: those of tasks since finished, or of settings since changed; and this
    user's attempts of sweep folders that are gone (an abandoned sweep, deleted: nothing can continue
    them). An attempt a live worker holds (its lock) is left alone.

    Args:
        out: The sweep folder.
        keep: Names of the attempts this run's tasks continue.
        temp_dir: The temporary folder (default: `tempfile.gettempdir()`).

    Returns:
        The folders removed.
    """
    removed = []
    sweep = str(out.resolve())
    for path in Path(temp_dir or tempfile.gettempdir()).glob(f"{ATTEMPT_PREFIX}*"):
        if path.name in keep or path.is_symlink() or not path.is_dir():
            continue
        try:
            owner = json.loads((path / ATTEMPT_FILE).read_text()).get("sweep")
        except (OSError, ValueError, AttributeError):
            continue
        orphan = isinstance(owner, str) and not Path(owner).exists() and path.stat().st_uid == os.getuid()
        if owner == sweep or orphan:
            with contextlib.suppress(OSError), folder_lock(path, wait=False):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _run_train_task(
    task: SweepTask, run_files: Mapping[str, bytes] | None, attempt: TrainAttempt
) -> dict[str, bytes]:
    """Train `task` in its attempt folder and return its run directory's files (`_relocatable`).

    An earlier attempt's run there that reached a checkpoint goes on from it, as `crs train --resume` does
    (its lock file is stale: the attempt's lock is this worker's); one that finished but was never handed
    back is returned as it is; otherwise the run starts (or, with `run_files`, continues the run it extends)
    afresh. A task that raises removes its attempt, so its retry starts afresh; an interrupted one keeps it.
    """
    from crs.app.training import run_training  # lazily: workers import what they run
    from policies.rl.model_file import read_model_data  # torch

    folder = attempt.folder
    run_dir, steps = folder / task.name, int(task.settings["steps"])
    folder.mkdir(mode=0o700, exist_ok=True)
    # its name can be foreseen: on a shared temporary folder, another user's link or folder is refused
    if folder.is_symlink() or (hasattr(os, "getuid") and folder.lstat().st_uid != os.getuid()):
        raise CRSError(f"{folder} is a link or another user's folder, not this sweep's attempt: remove it")
    with folder_lock(folder, wait=False):  # FolderBusyError: a live worker still trains it
        try:
            write_json_atomic(folder / ATTEMPT_FILE, {"sweep": attempt.sweep, "task": task.to_dict()})
            if (run_dir / CHECKPOINT).is_file():
                (run_dir / LOCK_FILE).unlink(missing_ok=True)
                trained = int(read_model_data(run_dir / CHECKPOINT).get("num_timesteps", 0))
                if not (trained >= steps and _tested_at(run_dir, steps)):
                    (run_dir / SUMMARY_FILE).unlink(missing_ok=True)  # the extended run's
                    run_training(
                        None,
                        name=task.name,
                        runs_dir=folder,
                        resume=True,
                        steps=steps if trained < steps else None,  # None: stopped while testing
                        show=False,
                    )
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
                if run_files is None:
                    settings = make_settings(dict(task.settings))
                    run_training(settings, name=task.name, runs_dir=folder, show=False)
                else:
                    for name, data in run_files.items():
                        target = run_dir / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(_relocated(name, data, run_dir))
                    run_training(None, name=task.name, runs_dir=folder, resume=True, steps=steps, show=False)
            files = _relocatable(_read_tree(run_dir), run_dir)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    shutil.rmtree(folder, ignore_errors=True)
    return files


def _tested_at(run_dir: Path, steps: int) -> bool:
    """Whether a run's summary.json says it was tested after `steps` steps (False without a readable one,
    or with an extended run's older one)."""
    try:
        return TrainSummary.read(run_dir).timesteps == steps
    except CRSError:
        return False


def run_sweep_task(
    task: SweepTask, run_files: Mapping[str, bytes] | None = None, attempt: TrainAttempt | None = None
) -> dict[str, bytes]:
    """Worker side: run one task and return its files (relative path -> bytes) for the driver to commit.
    eval and sessions: ``summary.json`` + ``episodes.jsonl``, from a scratch folder; train: the whole run
    directory, from its attempt folder (`_run_train_task`).

    Args:
        task: The task.
        run_files: Train only: the run directory of the task it extends (`_run_files`), which the worker
            writes into its attempt folder and resumes to ``task.settings["steps"]``.
        attempt: Train only: its attempt folder (`train_attempt`).
    """
    remove_orphaned_scratch()
    if task.kind == "train":
        if attempt is None:
            raise ValueError("a train task needs its attempt folder's name")
        return _run_train_task(task, run_files, attempt)
    with (
        tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch,
        folder_lock(Path(scratch)),  # held while the task runs: `remove_orphaned_scratch` leaves it
    ):
        if task.kind == "sessions":
            run_session_evaluation(
                policy=task.policy,
                dataset=task.dataset,
                seed=task.seed,
                out=Path(scratch),
                show_progress=False,
                **task.settings,
            )
            return {name: (Path(scratch) / name).read_bytes() for name in EVAL_FILES}
        run_evaluation(
            task.policy,
            dataset=task.dataset,
            seed=task.seed,
            out=Path(scratch),
            show_progress=False,
            **task.settings,
        )
        return {name: (Path(scratch) / name).read_bytes() for name in EVAL_FILES}


# ---------------------------------------------------------------------- the sweep directory
def task_dir(out: Path, name: str) -> Path:
    """Where a finished task lives."""
    return out / RUNS_DIR / name


def is_finished(path: Path) -> bool:
    """A task folder counts as finished only with its ``done`` marker (written before the final rename)."""
    return (path / DONE_MARKER).is_file()


def commit_task(out: Path, task: SweepTask, files: Mapping[str, bytes]) -> Path:
    """Write a task's files into a hidden temporary folder, add ``task.json`` and ``done``, then rename
    the folder into ``runs/<task>``: the rename is atomic, so a reader sees all or nothing."""
    runs = out / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    staging = runs / f".{task.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    final = task_dir(out, task.name)
    for name, data in files.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_relocated(name, data, final))
    (staging / TASK_FILE).write_text(json.dumps(task.to_dict(), indent=2) + "\n")
    (staging / DONE_MARKER).write_text("finished\n")
    for path in staging.rglob("*"):  # data on disk before the rename makes it visible
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    if final.exists():  # a stale, unfinished folder (no marker): replaced
        shutil.rmtree(final)
    os.rename(staging, final)
    return final


def check_sweep_folder(
    out: Path, config: SweepConfig, tasks: list[SweepTask], extend: Path | None = None
) -> None:
    """Refuse an `out` that a sweep of `config` (its `tasks`; continuing the sweep `extend`, if given)
    must not write into; reads only.

    `out` may be missing, an empty folder, or a sweep folder (``sweep.json``) whose finished tasks are
    each one of `tasks` or a task of `config` with another seed (what ``--seeds`` ran; with `extend`,
    as `extend_tasks` gives it): a rerun skips them, and `crs report` on the folder reads no other
    config's tasks.

    Raises:
        CRSError: `out` or a folder above it is a file; `out` is a non-empty folder without
            ``sweep.json`` (e.g. a `crs eval` output); it holds finished tasks of another config.
    """
    existing = next((path for path in (out, *out.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        raise CRSError(
            f"--out {out}: {existing} is a file, not a folder; give a new folder (or an earlier sweep "
            "folder of this config)"
        )
    entries = folder_entries(out) if out.is_dir() else []
    if not entries:
        return
    if SWEEP_FILE not in entries:
        raise CRSError(
            f"--out {out} is not a sweep folder (no {SWEEP_FILE}) and not empty: it holds "
            f"{a_few(entries)}; give a new or empty folder, or an earlier sweep folder of this config"
        )
    foreign = _tasks_of_other_configs(out, config, tasks, extend)
    own = {task.name: _finished_as_other(task_dir(out, task.name), task) for task in tasks}
    changed = {name: recorded for name, recorded in own.items() if recorded is not None}
    if foreign or changed:
        named = [*changed, *foreign]
        recorded = [*changed.values(), *(_finished_as_other(task_dir(out, name), None) for name in foreign)]
        hints = {_extend_hint(r) for r in recorded} - {""}
        raise CRSError(
            f"--out {out} holds {len(named)} finished task(s) of another config: {a_few(named)}; use "
            "another --out, or a config that includes them, e.g. the one that made them (its "
            f"{SWEEP_FILE}): a sweep folder holds one config, and `crs report` reads all its tasks"
            + "".join(sorted(hints))
        )


def _finished_as_other(folder: Path, task: SweepTask | None) -> dict[str, Any] | None:
    """The ``task.json`` of a finished task folder when it is not `task`'s (any, for None); None when
    the folder is not finished, is `task`'s, or its file cannot be read (`finished_tasks` names that)."""
    if not is_finished(folder):
        return None
    try:
        recorded = read_task(folder)
    except CRSError:
        return None
    return None if task is not None and recorded == task.to_dict() else recorded


def _extend_hint(recorded: dict[str, Any] | None) -> str:
    """For a task folder an ``--extend`` sweep made (its ``task.json`` has ``extends``): the options that
    made it, to pass again; else ""."""
    if not recorded or not recorded.get("extends"):
        return ""
    base = Path(str(recorded["extends"])).parent.parent
    steps = (recorded.get("settings") or {}).get("steps")
    return (
        f"; or, to add to it, pass the options that made it again: --extend {shlex.quote(str(base))} "
        f"--steps {steps}"
    )


def _tasks_of_other_configs(
    out: Path, config: SweepConfig, tasks: list[SweepTask], extend: Path | None
) -> list[str]:
    """The finished task folders of `out` that are neither named like one of `tasks` (`finished_tasks`
    compares those) nor, by their ``task.json``, the task `config` gives for their seed (continuing
    `extend`'s run of that seed, if given). A folder whose ``task.json`` cannot be read counts as
    another config's."""
    names = {task.name for task in tasks}
    grids: dict[int, dict[str, dict[str, Any]]] = {}  # seed -> the config's tasks with that seed alone
    foreign = []
    for folder in sweep_task_dirs(out) if (out / RUNS_DIR).is_dir() else []:
        if folder.name in names:
            continue
        try:
            recorded = json.loads((folder / TASK_FILE).read_text())
        except (OSError, ValueError, RecursionError):
            recorded = None
        seed = recorded.get("seed") if isinstance(recorded, dict) else None
        if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED:
            if seed not in grids:
                grids[seed] = {task.name: task.to_dict() for task in _seed_tasks(config, seed, extend, out)}
            if grids[seed].get(folder.name) == recorded:
                continue
        foreign.append(folder.name)
    return foreign


def _seed_tasks(config: SweepConfig, seed: int, extend: Path | None, out: Path) -> list[SweepTask]:
    """The tasks `config` gives for `seed` alone, continuing `extend`'s runs if given (none when
    `extend` cannot continue that seed)."""
    one = with_seeds(config, [seed])
    if extend is None:
        return expand_grid(one)
    try:
        return extend_tasks(one, extend, out)
    except CRSError:
        return []


def finished_tasks(out: Path, tasks: list[SweepTask]) -> set[str]:
    """Names of `tasks` already finished in `out`.

    Raises:
        CRSError: When a finished folder was made by a different configuration (same name, other settings),
            or its files cannot be read (found before any task runs; the message says to delete it).
    """
    finished = set()
    now: dict[tuple[str, str], str | None] = {}  # (policy, ranker) -> the ranker's identity now
    changed: list[str] = []
    for task in tasks:
        path = task_dir(out, task.name)
        if not is_finished(path):
            continue
        recorded = read_task(path)
        if recorded != task.to_dict():
            raise CRSError(
                f"{path} was produced by a different configuration than task {task.name!r} of this config; "
                f"use another --out or delete that folder{_extend_hint(recorded)}"
            )
        if task.kind == "train":
            read_metrics(path)  # the results table reads them once the sweep has run
        elif _ranker_changed(EvalSummary.read(path), now):  # read (and checked) as `read_metrics` does
            changed.append(task.name)
        finished.add(task.name)
    if changed:
        raise CRSError(
            f"{len(changed)} finished task(s) of {out} ({a_few(changed)}) ran over a ranker that holds other "
            "weights now (pre-trained again, or replaced, since): this run's tasks would rank with another "
            "ranker than theirs, and the seeds of one row would mix the two; use another --out, or delete "
            "those task folders to run them again"
        )
    return finished


def _ranker_changed(summary: EvalSummary, now: dict[tuple[str, str], str | None]) -> bool:
    """Whether the ranker a finished eval or sessions task recorded (``ranker_identity``) differs from
    what the same ranker is now; False when either is unknown (an older summary, a ranker gone).
    `now` caches each ranker's identity (hashing an artifact reads its files)."""
    if summary.ranker_identity is None:
        return False
    key = (summary.policy_spec, summary.ranker_resolved or summary.ranker)
    if key not in now:
        try:
            now[key] = evaluated_ranker_identity(*key)
        except (CRSError, OSError):
            now[key] = None
    return now[key] is not None and now[key] != summary.ranker_identity


def remove_stale_attempts(out: Path) -> int:
    """Delete unfinished attempts (``runs/.*.tmp-*``) left by an interrupted run; returns how many."""
    runs = out / RUNS_DIR
    stale = list(runs.glob(".*.tmp-*")) if runs.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def sweep_task_dirs(path: str | Path) -> list[Path]:
    """The finished task folders of a sweep directory, sorted by name (unfinished attempts excluded); none
    for a sweep none of whose tasks finished (its ``sweep.json`` without ``runs/``).

    Raises:
        CRSError: When `path` is not a sweep directory (no ``runs/`` folder nor ``sweep.json``).
    """
    runs = Path(path) / RUNS_DIR
    if not runs.is_dir():
        if (Path(path) / SWEEP_FILE).is_file():  # a sweep none of whose tasks finished
            return []
        raise CRSError(f"{path} is not a sweep directory (no {RUNS_DIR}/ folder); run `crs sweep` first")
    return sorted(child for child in runs.iterdir() if not child.name.startswith(".") and is_finished(child))


def planned_tasks(path: str | Path) -> list[str]:
    """The task names a sweep folder's ``sweep.json`` plans.

    Raises:
        CRSError: sweep.json is missing or corrupt.
    """
    listing = read_json_mapping(Path(path) / SWEEP_FILE, fix=f"rerun `{sweep_command(path)}`")
    tasks = listing.get("tasks")
    return [str(task.get("name")) for task in tasks or [] if isinstance(task, dict)]


def read_task(path: str | Path) -> dict[str, Any]:
    """A finished task's ``task.json`` (`SweepTask.to_dict`).

    Raises:
        CRSError: It is missing or corrupt (the message says to delete the task and rerun the sweep).
    """
    folder = Path(path)
    return read_json_mapping(folder / TASK_FILE, ("name", "group", "kind", "seed"), task_rerun_fix(folder))


def with_train_steps(config: SweepConfig, steps: int) -> SweepConfig:
    """`config` with ``train.steps`` set to `steps` (`crs sweep --steps`).

    Raises:
        CRSError: When the config's kind is not train, or `steps` is not a valid budget.
    """
    if config.kind != "train":
        raise CRSError(f"--steps sets train.steps: the config's kind must be 'train', not {config.kind!r}")
    data = config.model_dump(exclude_unset=True) | {"train": {**config.train, "steps": steps}}
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as error:
        raise CRSError(f"--steps {steps}: {_describe(error)}") from None


def parse_seeds(text: str) -> list[int]:
    """Seeds written as `crs sweep --seeds` takes them: comma-separated seeds or inclusive ranges.

    Example: ``"0-4,7"`` gives ``[0, 1, 2, 3, 4, 7]``.

    Raises:
        CRSError: When a part is not a seed or a range ``A-B`` with ``A <= B``, or a seed repeats.
    """
    seeds: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise CRSError(
                f"--seeds {text!r}: {part.strip()!r} is not a seed or a range; write e.g. 0-9 or 0,2,5"
            ) from None
        if last < first:
            raise CRSError(
                f"--seeds {text!r}: the range {part.strip()!r} runs backwards; write {last}-{first}"
            )
        if first < 0 or last > MAX_SEED:
            raise CRSError(f"--seeds {text!r}: seeds lie in 0-{MAX_SEED}; {part.strip()!r} does not")
        if len(seeds) + last - first + 1 > MAX_SWEEP_SEEDS:
            raise CRSError(
                f"--seeds {text!r}: more than {MAX_SWEEP_SEEDS} seeds; run a few hundred at a time into "
                "the same --out"
            )
        seeds.extend(range(first, last + 1))
    counts = Counter(seeds)
    repeated = sorted(seed for seed, count in counts.items() if count > 1)
    if repeated:
        raise CRSError(f"--seeds {text!r}: seed {repeated[0]} is listed twice; list each seed once")
    return seeds


def with_seeds(config: SweepConfig, seeds: list[int]) -> SweepConfig:
    """`config` with its ``seeds`` replaced (`crs sweep --seeds`): more seeds into the same sweep folder run
    only the new ones, since a task's name and settings do not depend on the other seeds.

    Raises:
        CRSError: When a seed is out of range.
    """
    try:
        return SweepConfig.model_validate(config.model_dump(exclude_unset=True) | {"seeds": seeds})
    except ValidationError as error:
        raise CRSError(f"--seeds: {_describe(error)}") from None


def extend_tasks(config: SweepConfig, base: Path, out: Path) -> list[SweepTask]:
    """The tasks of a training sweep, each continuing its finished namesake in the sweep folder `base` to
    the config's ``train.steps``; `base` is only read.

    `base` must have run this config with fewer steps: with its tasks' steps, the config gives exactly
    their settings. Each task keeps the earlier task's settings but steps, as `crs train --resume
    --steps` keeps a run's (e.g. its imitation, which a resumed run does not repeat).

    Raises:
        CRSError: When the kind is not train, `base` is `out` or not a sweep folder, or a task has no
            finished namesake in `base`, differs from it in a setting other than steps, or does not
            raise the steps it has trained.
    """
    if config.kind != "train":
        raise CRSError(
            f"--extend continues training runs: the config's kind must be 'train', not {config.kind!r}"
        )
    if base.resolve() == out.resolve():
        raise CRSError(
            f"--extend {base}: the same folder as --out; give a new --out (the earlier sweep is kept)"
        )
    sweep_task_dirs(base)  # a folder that is not a sweep is an error
    grids: dict[int, dict[str, SweepTask]] = {}  # the config's tasks with the steps of an earlier sweep
    extended = []
    for task in expand_grid(config):
        old = task_dir(base, task.name)
        if not is_finished(old):
            raise CRSError(
                f"--extend {base}: it has no finished task {task.name}; finish that sweep first "
                f"(`{sweep_command(base)} --seeds {task.seed}`) or leave out --extend"
            )
        fix = f"delete {old} and finish that sweep again"
        earlier = read_json_mapping(old / TASK_FILE, ("settings",), fix)["settings"]
        if not isinstance(earlier, dict) or not isinstance(earlier.get("steps"), int):
            raise CRSError(f"{old / TASK_FILE} [settings] is corrupt (no steps); {fix}")
        if earlier["steps"] not in grids:
            then = with_train_steps(config, earlier["steps"])
            grids[earlier["steps"]] = {other.name: other for other in expand_grid(then)}
        expected = json.loads(json.dumps(dict(grids[earlier["steps"]][task.name].settings)))
        changed = sorted(
            key for key in earlier.keys() | expected.keys() if earlier.get(key) != expected.get(key)
        )
        if changed:
            raise CRSError(
                f"--extend: {old} differs from task {task.name} in {', '.join(changed)}; only train.steps "
                "may change (e.g. --steps), so give the config that sweep ran"
            )
        steps = int(task.settings["steps"])
        trained = TrainSummary.read(old).timesteps  # a run resumed by hand may exceed its task's steps
        if steps <= trained:
            raise CRSError(
                f"--extend: {old} was trained to {trained:,} steps, this config asks for {steps:,}; "
                "raise train.steps above that (e.g. --steps with twice as many)"
            )
        extended.append(replace(task, settings={**earlier, "steps": steps}, extends=str(old)))
    return extended


def sweep_groups(path: str | Path) -> dict[str, list[Path]]:
    """Finished task folders grouped by configuration (same dataset, policy, ablation; seeds differ),
    each group sorted by seed — what a report needs for confidence intervals across seeds."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    for task_path in sweep_task_dirs(path):
        task = read_task(task_path)
        groups.setdefault(task["group"], []).append((int(task["seed"]), task_path))
    return {group: [p for _, p in sorted(members)] for group, members in sorted(groups.items())}


def read_figures(path: str | Path) -> tuple[FigureLabel, dict[str, MetricSummary]]:
    """The figures of a finished task and what they were measured on: its evaluation (eval; sessions:
    every session of every user), or its trained policy's test row (train)."""
    folder = Path(path)
    if read_task(folder)["kind"] == "train":
        summary = TrainSummary.read(folder)
        return summary.label, summary.test[summary.trained_label]
    evaluation = EvalSummary.read(folder)
    return evaluation.label, evaluation.metrics


def read_metrics(path: str | Path) -> dict[str, MetricSummary]:
    """The metrics of a finished task (`read_figures`)."""
    return read_figures(path)[1]


# ---------------------------------------------------------------------- running
def _start_sweep_folder(out: Path, config: SweepConfig, tasks: list[SweepTask]) -> list[str]:
    """Create `out`, remove its unfinished attempts and write ``sweep.json``: the config and its tasks,
    with the seeds and tasks an earlier run into `out` planned (`--seeds` adds seeds to a sweep folder;
    `check_sweep_folder` has checked they are this config's).

    Returns:
        The names of every task ``sweep.json`` now plans: the earlier ones, then this run's new ones.

    Raises:
        CRSError: `out` cannot be created (e.g. no permission).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CRSError(
            f"--out {out}: cannot create it ({error.strerror or error}); give a writable folder"
        ) from None
    remove_stale_attempts(out)
    try:
        earlier = read_json_mapping(out / SWEEP_FILE)
    except CRSError:  # a new folder (or a damaged listing, which this run replaces)
        earlier = {}
    mine = {task.name: task.to_dict() for task in tasks}
    listed = [
        task
        for task in earlier.get("tasks") or []
        if isinstance(task, dict) and isinstance(task.get("name"), str) and task["name"] not in mine
    ]
    listed += list(mine.values())
    old_config = earlier.get("config")
    old_seeds = old_config.get("seeds") if isinstance(old_config, dict) else None
    seeds = [*(old_seeds if isinstance(old_seeds, list) else []), *config.seeds]
    dumped = config.model_dump() | {"seeds": sorted(set(seeds), key=seeds.index)}
    write_json_atomic(out / SWEEP_FILE, {"config": dumped, "tasks": listed})
    return [task["name"] for task in listed]


@dataclass(frozen=True)
class SweepOutcome:
    """What one `run_sweep` call did.

    Attributes:
        tasks: Every task of the config, in grid order.
        skipped: Tasks already finished before this run (not run again).
        ran: Tasks finished by this run.
        failed: Tasks that failed after their retries (name, attempts and last error).
        rows: Metrics of every finished task the sweep folder plans, earlier runs' seeds first (the
            results table).
        planned: Every task the sweep folder plans (``sweep.json``): this run's and earlier ones'.
        labels: What each row of `rows` was measured on (dataset, split, conversations, setting, ranker).
    """

    tasks: list[SweepTask]
    skipped: list[str]
    ran: list[str]
    failed: list[TaskResult]
    rows: dict[str, dict[str, MetricSummary]]
    planned: list[str]
    labels: dict[str, FigureLabel] = field(default_factory=dict)


def run_sweep(
    config: SweepConfig,
    out: Path,
    *,
    workers: int | None = None,
    backend: str = "auto",
    address: str | None = None,
    notify: Callable[[str], None] | None = None,
    on_result: Callable[[TaskResult], None] | None = None,
    on_retry: Callable[[str, int, str], None] | None = None,
    extend: Path | None = None,
) -> SweepOutcome:
    """Run the unfinished tasks of `config` on a `WorkerPool` and write the sweep directory `out`.

    Args:
        config: The validated sweep config.
        out: Sweep directory (created; a rerun skips its finished tasks).
        workers: Tasks at once (default: the cores, or the cluster's CPUs with `address`).
        backend: "auto", "ray", "process" or "serial" (see `crs.parallel`).
        address: Existing Ray cluster.
        notify: One-line notices (e.g. the process-pool fallback).
        on_result: Called as each task finishes or finally fails.
        on_retry: Called as ``(name, failed_attempt, error)`` before a task is re-run.
        extend: An earlier sweep folder of this config (kind train) whose runs the tasks continue to
            the config's ``train.steps`` (`extend_tasks`); it is only read.

    Raises:
        CRSError: Before anything is written: a bad pool request (unknown backend, ``workers < 1``, a Ray
            cluster that cannot be reached, ...), a bad `extend`, an `out` that is not a new folder or a
            sweep folder of this config (`check_sweep_folder`), or a finished task folder made by another
            configuration.
    """
    check_pool_request(workers, backend, address)
    tasks = expand_grid(config) if extend is None else extend_tasks(config, extend, out)
    # one run at a time in a sweep folder: a second would run every task again, and race the commits
    with FolderClaim(out, "sweep folder", resume=True, take_stale=True):  # a killed run's lock: rerun
        check_sweep_folder(out, config, tasks, extend)
        finished = finished_tasks(out, tasks)
        todo = [task for task in tasks if task.name not in finished]
        attempts = {task.name: train_attempt(out, task) for task in todo if task.kind == "train"}
        remove_other_attempts(out, {attempt.name for attempt in attempts.values()})
        for name, attempt in attempts.items():  # seen from here when the workers share this machine
            if notify is not None and (attempt.folder / name / CHECKPOINT).is_file():
                notify(
                    f"{name}: goes on from the checkpoint its interrupted attempt left in {attempt.folder}"
                )
        by_name = {task.name: task for task in tasks}
        ran: list[str] = []

        def committed(result: TaskResult) -> None:
            if result.ok:
                commit_task(out, by_name[result.name], result.value)
                ran.append(result.name)
            if on_result is not None:
                on_result(result)

        failed: list[TaskResult] = []
        if todo:
            with WorkerPool(
                min(workers, len(todo)) if workers else None, backend=backend, address=address, notify=notify
            ) as pool:  # a Ray cluster is reached (or refused) here, before anything is written
                planned = _start_sweep_folder(out, config, tasks)
                results = pool.run(
                    [
                        Task(
                            task.name,
                            run_sweep_task,
                            (
                                task,
                                _run_files(Path(task.extends)) if task.extends else None,
                                attempts.get(task.name),
                            ),
                        )
                        for task in todo
                    ],
                    retries=config.retries,
                    on_result=committed,
                    on_retry=on_retry,
                )
            failed = [result for result in results if not result.ok]
        else:
            planned = _start_sweep_folder(out, config, tasks)
        figures = {
            name: read_figures(task_dir(out, name)) for name in planned if is_finished(task_dir(out, name))
        }
        rows = {name: metrics for name, (_, metrics) in figures.items()}
        labels = {name: label for name, (label, _) in figures.items()}
        write_json_atomic(
            out / RESULTS_FILE,
            {
                "rows": {name: {k: vars(v) for k, v in metrics.items()} for name, metrics in rows.items()},
                "labels": {name: asdict(label) for name, label in labels.items()},
                "failed": [{"name": r.name, "attempts": r.attempts, "error": r.error} for r in failed],
            },
        )
        finished_now = [t.name for t in tasks if t.name in finished]
        return SweepOutcome(tasks, finished_now, ran, failed, rows, planned, labels)
