"""The files of a run folder, each defined once with its writer and reader.

A `crs train` run directory ``runs/<name>/`` holds:

- ``config.yaml`` (`RUN_CONFIG`): the resolved settings, seed, package versions and system info;
- ``policy.json``: what `policies.rl.load_trained_policy` needs (`policies.rl.run_files`);
- ``checkpoint.zip`` + ``state.json``: the latest checkpoint for ``--resume`` (`policies.rl.run_files`);
- ``best_model.zip`` (best validation SR@15, then hDCG), ``model.zip`` (final);
- ``eval.csv`` / ``eval.jsonl`` (`CurveFile`): the validation curve; ``tb/``: TensorBoard logs;
- ``summary.json`` (`TRAIN_SUMMARY`): the final test comparison; ``tested/`` (`TEST_DIR`): its records,
  a `crs eval` folder per policy; ``ranker/``: a ranker pre-trained on the fly.

A `crs eval` folder holds ``summary.json`` and ``episodes.jsonl`` (`EVAL_SUMMARY`, `EPISODES_FILE`).
"""

from __future__ import annotations

import csv
import json
import numbers
import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from crs.app.settings import TrainSettings, make_settings, recorded_settings
from crs.yaml_safe import safe_load_unique
from envs.metrics import TURN_LIMITS, EpisodeRecord, MetricSummary
from envs.registry import resolve_user_and_setting
from envs.setting import SETTINGS
from policies.atomic import read_json_mapping, write_json_atomic, write_text_atomic
from policies.pretrain.config import read_artifact_config
from policies.rankers import PRETRAIN_DIR, RankerSpec
from policies.rl.run_files import BEST_MODEL, FINAL_MODEL, STATE_FILE
from simulators.datasets import PERSONA_WORLD
from simulators.errors import CRSError
from simulators.mcmipl import DATASETS as MCMIPL_DATASETS

RUN_CONFIG = "config.yaml"
CURVE_CSV = "eval.csv"
CURVE_JSONL = "eval.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_CARD = "MODEL_CARD.md"
EPISODES_FILE = "episodes.jsonl"
EVAL_FILES = (SUMMARY_FILE, EPISODES_FILE)
"""The files of an evaluation folder (`crs eval -o`), all it writes."""
TEST_DIR = "tested"
"""A run's test comparison, one `crs eval`-style folder per policy (`write_test_folders`); not "test",
which users may give `crs eval --out` for a run's own evaluation (`crs.report.inputs`)."""
TRAINED_TEST = "trained"
"""The trained policy's folder in `TEST_DIR` (the baselines' are named by their rule)."""
# Files of a run that hold training progress; a resume without a checkpoint starts again without them.
PROGRESS_FILES = (CURVE_CSV, CURVE_JSONL, STATE_FILE, BEST_MODEL, FINAL_MODEL, SUMMARY_FILE)
TASK_FILE = "task.json"
"""A `crs sweep` task folder's task (`crs.app.sweep.SweepTask.to_dict`); the folder is a `crs eval` folder
or a `crs train` run besides."""
DONE_MARKER = "done"
"""The marker a finished sweep task folder holds (written before the folder's final rename)."""


DEFAULT_RUNS_DIR = Path("runs")  # `crs train --runs-dir`'s default


def run_options(name: str, runs_dir: Path) -> str:
    """The ``--name`` (and, unless it is the default, ``--runs-dir``) options that name a run in a
    command to type, e.g. ``--name rc1 --runs-dir .``."""
    options = f"--name {shlex.quote(name)}"
    if runs_dir != DEFAULT_RUNS_DIR:
        options += f" --runs-dir {shlex.quote(str(runs_dir))}"
    return options


def sweep_command(sweep: Path | str) -> str:
    """The command that runs (or finishes) the sweep in folder `sweep`, quoted for a shell."""
    return f"crs sweep CONFIG --out {shlex.quote(str(sweep))}"


def task_rerun_fix(folder: Path) -> str:
    """How to make a sweep task folder's files again: delete it and rerun its sweep, which runs it again."""
    return f"delete {folder} and rerun `{sweep_command(folder.parent.parent)}` (it runs that task again)"


def eval_fix(folder: Path) -> str:
    """How to make a `crs eval` folder's files again (a sweep task's: `task_rerun_fix`): over them with
    --overwrite where both are there, else (`crs eval` would refuse to empty it) into it emptied."""
    if (folder / TASK_FILE).is_file():
        return task_rerun_fix(folder)
    quoted = shlex.quote(str(folder))
    if (folder / SUMMARY_FILE).is_file() and (folder / EPISODES_FILE).is_file():
        return f"re-run `crs eval --out {quoted} --overwrite` with its settings"
    return f"delete {quoted} and re-run `crs eval --out {quoted}` with its settings"


@dataclass(frozen=True)
class RunPhase:
    """One training session of a run: from the step it started at (0, or the checkpoint a resume
    continued) towards its step budget, with the settings it changed.

    Attributes:
        start: Steps the session started from.
        steps: Its step budget (``settings.steps``).
        changed: Setting (dotted, e.g. ``ppo.learning_rate``) -> [value before, value in this
            session], for what a resume changed besides ``steps``; empty for the first session.
    """

    start: int
    steps: int
    changed: dict[str, list[Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "steps": self.steps, "changed": self.changed}

    @classmethod
    def from_dict(cls, data: Any) -> RunPhase:
        """A phase from its ``config.yaml`` mapping.

        Raises:
            TypeError, ValueError, KeyError: Not a phase mapping.
        """
        changed = data.get("changed") or {}
        if not isinstance(changed, dict):
            raise TypeError(f"'changed' must be a mapping, found {changed!r}")
        return cls(int(data["start"]), int(data["steps"]), {str(k): [v[0], v[1]] for k, v in changed.items()})

    def describe(self, stopped_at: int | None = None) -> str:
        """The phase in words, e.g. "steps 128 to 256 with ppo.learning_rate 0.0003 (was 0.001)";
        `stopped_at`: where the next session started (its checkpoint), when this one stopped before
        its budget ("steps 0 to 64 (stopped; its budget was 256)"), or went past it to finish its last
        rollout ("steps 0 to 2,048 (its budget of 2,000 rounded up to whole rollouts)")."""
        changes = ", ".join(f"{key} {new!r} (was {old!r})" for key, (old, new) in self.changed.items())
        if stopped_at is not None and stopped_at < self.steps:
            reach = f"steps {self.start:,} to {stopped_at:,} (stopped; its budget was {self.steps:,})"
        elif stopped_at is not None and stopped_at > self.steps:
            reach = (
                f"steps {self.start:,} to {stopped_at:,} (its budget of {self.steps:,} rounded up to whole "
                "rollouts)"
            )
        else:
            reach = f"steps {self.start:,} to {self.steps:,}"
        return reach + (f" with {changes}" if changes else "")


EXECUTION_ONLY = frozenset({"steps", "ppo.subprocess", "data_dir"})
"""Settings that change how long or where a run trains, not what it learns (in-process and subprocess
envs give the same observations; a moved data folder holds the same data, which a resume checks): a
resume that changes them is no change of settings."""


def flat_settings(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`data` with nested mappings flattened to dotted keys (``user_kwargs.drift``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat_settings(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_settings(before: TrainSettings, after: TrainSettings) -> dict[str, list[Any]]:
    """The settings (dotted names) `after` gives another value than `before`, `EXECUTION_ONLY` aside,
    as name -> [before, after]."""
    old, new = flat_settings(before.model_dump()), flat_settings(after.model_dump())
    return {
        key: [old.get(key), new.get(key)]
        for key in sorted(set(old) | set(new))
        if key not in EXECUTION_ONLY and old.get(key) != new.get(key)
    }


@dataclass(frozen=True)
class RunRecord:
    """``config.yaml`` of a run: the resolved settings and where they ran.

    Attributes:
        settings: The run's settings (machine-dependent defaults resolved); a resumed run's are
            those of its last session.
        name: Run name.
        versions: Package versions and machine facts (`crs.app.training.system_info`).
        written: When the file was written (ISO 8601, UTC).
        phases: The run's training sessions in order (`RunPhase`); empty in runs written before
            they were recorded. ``crs train --config`` reads only ``settings``.
    """

    settings: TrainSettings
    name: str
    versions: dict[str, Any]
    written: str
    phases: tuple[RunPhase, ...] = ()

    @property
    def resumed_with_changes(self) -> bool:
        """Whether a resume changed a setting besides ``steps`` (replaying the settings then trains
        another policy)."""
        return any(phase.changed for phase in self.phases)

    KEYS = ("settings", "name", "seed", "versions", "written", "phases")
    """The top-level keys of ``config.yaml`` (`write`)."""

    def write(self, run_dir: Path) -> None:
        data = {
            "settings": self.settings.model_dump(),
            "name": self.name,
            "seed": self.settings.seed,
            "versions": self.versions,
            "written": self.written,
            "phases": [phase.to_dict() for phase in self.phases],
        }
        write_yaml_atomic(run_dir / RUN_CONFIG, data)

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        """Read ``run_dir/config.yaml``.

        Raises:
            CRSError: config.yaml is missing, damaged or lacks its settings (the message names the
                command that starts the run again).
        """
        path = run_dir / RUN_CONFIG
        command = f"crs train {run_options(run_dir.name, run_dir.parent)} --overwrite"
        again = f"start the run again with `{command}`"
        if not path.is_file():
            raise CRSError(f"{run_dir} has no {RUN_CONFIG} (the run stopped before writing it); {again}")
        # the run's models and checkpoints are still there: --overwrite would delete them
        restore = f"restore it from a copy to keep the run, or {again} (which deletes what it trained)"
        try:
            data = safe_load_unique(path.read_text())  # aliases expanding without bound refused
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:
            raise CRSError(f"{path} is damaged ({type(error).__name__}); {restore}") from None
        if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
            raise CRSError(f"{path} holds no 'settings' mapping; {restore}")
        versions = data.get("versions")
        try:
            phases = tuple(RunPhase.from_dict(phase) for phase in data.get("phases") or ())
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as error:
            raise CRSError(
                f"{path}: bad 'phases' entry ({error}); each phase is a mapping with start, steps and "
                "changed (setting -> [before, after]); restore it, or delete the key to keep the settings"
            ) from None
        try:
            settings = make_settings(recorded_settings(data["settings"]))
        except CRSError as error:  # the message named no file
            raise CRSError(f"{path}: {error}; {restore}") from None
        return cls(
            settings=settings,
            name=str(data.get("name") or run_dir.name),
            versions=versions if isinstance(versions, dict) else {},
            written=str(data.get("written") or ""),
            phases=phases,
        )


def write_yaml_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


class CurveFile:
    """The validation curve: eval.csv and eval.jsonl, one row per evaluation point."""

    FIELDS = ("timesteps", "seconds", "SR@5", "SR@10", "SR@15", "AT", "hDCG", "best")

    def __init__(self, run_dir: Path) -> None:
        self.csv = run_dir / CURVE_CSV
        self.jsonl = run_dir / CURVE_JSONL

    def exists(self) -> bool:
        return self.csv.is_file()

    def rows(self, fix: str = "delete it to resume without the earlier curve") -> list[dict[str, Any]]:
        """The rows of eval.csv (numbers parsed).

        Args:
            fix: What to do about a damaged file (the end of the error).

        Raises:
            CRSError: eval.csv is damaged: unreadable, a header without one of `FIELDS`, a row of more
                or fewer fields than its header, or a field that is not a number.
        """
        if not self.exists():
            return []
        try:
            with self.csv.open(newline="") as handle:
                reader = csv.DictReader(handle)
                rows = list(reader)
            missing = [field for field in self.FIELDS if field not in (reader.fieldnames or ())]
            if rows and missing:
                raise ValueError(f"its header has no {', '.join(missing)}")
            for number, row in enumerate(rows, start=2):
                if None in row or None in row.values():
                    raise ValueError(f"line {number} has another number of fields than the header")
            return [{k: float(v) if k != "best" else v == "True" for k, v in row.items()} for row in rows]
        except (OSError, ValueError) as error:
            raise CRSError(f"{self.csv} is damaged ({error}); {fix}") from None

    def resume_at(
        self, checkpoint_steps: int, best_model_steps: int | None
    ) -> tuple[tuple[float, float], int]:
        """Drop the rows newer than the checkpoint and return (best score to beat, last evaluated step).

        The score to beat is the one measured for the model in best_model.zip (the row of its step),
        so a resumed run never replaces it with a worse one. Without best_model.zip it is (-1, -1):
        nothing was saved, so the next evaluation saves one. When the best model's row is missing (a
        kill between saving it and writing its row), it is the best-flagged rows' up to its step, a
        lower bound. A row flagged best that is newer than best_model.zip (written by a version that
        wrote the row first, then killed before the model) is not trusted: its flag is cleared, as
        its model was never saved.
        """
        rows = self.rows()
        kept = [row for row in rows if row["timesteps"] <= checkpoint_steps]
        saved = -1.0 if best_model_steps is None else float(best_model_steps)
        untrusted = [row for row in kept if row["best"] and row["timesteps"] > saved]
        for row in untrusted:
            row["best"] = False
        own = [row for row in rows if row["timesteps"] == saved]
        best_rows = own or [row for row in kept if row["best"]]  # now all at or before the best model
        best = max(((row["SR@15"], row["hDCG"]) for row in best_rows), default=(-1.0, -1.0))
        if len(kept) < len(rows) or untrusted:
            self._write(kept)
        return best, int(kept[-1]["timesteps"]) if kept else -1

    def _write(self, rows: list[dict[str, Any]]) -> None:
        for path, text in (
            (self.csv, ",".join(self.FIELDS) + "\n" + "".join(self._csv_line(row) for row in rows)),
            (self.jsonl, "".join(json.dumps(self._typed(row)) + "\n" for row in rows)),
        ):
            write_text_atomic(path, text)

    def _typed(self, row: dict[str, Any]) -> dict[str, Any]:
        return {k: int(row[k]) if k == "timesteps" else row[k] for k in self.FIELDS}

    def _csv_line(self, row: dict[str, Any]) -> str:
        return ",".join(str(v) for v in self._typed(row).values()) + "\n"

    def add(self, point: Any) -> None:
        """Append one `policies.rl.callbacks.EvalPoint`."""
        if not self.exists():
            self._write([])
        row = {
            "timesteps": point.timesteps,
            "seconds": round(point.seconds, 2),
            **point.metrics,
            "best": point.best,
        }
        with self.csv.open("a", newline="") as handle:
            handle.write(self._csv_line(row))
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(self._typed(row)) + "\n")


# ----------------------------------------------------------------------------------- summaries
MetricTable = dict[str, MetricSummary]


def _integer(value: Any, where: str, least: int, most: int | None, fix: str) -> int:
    """`value` as an int in [least, most] (`most` None: no upper bound).

    Raises:
        CRSError: Not an integer (e.g. ``2.7``, ``"5"``, ``true``, or a JSON number too large for one,
            ``1e999``) or out of the range, naming `where` (the file and field), the value, the range
            and `fix`.
    """
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy ints too; not true
    number = int(value) if whole else None
    if number is None or number < least or (most is not None and number > most):
        bound = f">= {least}" if most is None else f"between {least} and {most}"
        raise CRSError(f"{where} = {value!r} must be an integer {bound}; {fix}")
    return number


def _metric_table(data: Any, where: str) -> MetricTable:
    """``{"SR@15": {"mean", "low", "high"}, ...}`` read into `MetricSummary`s."""
    try:
        return {
            str(name): MetricSummary(float(v["mean"]), float(v["low"]), float(v["high"]))
            for name, v in data.items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise CRSError(f"{where} is corrupt ({error}); expected metric -> mean/low/high") from None


def _summary_or_none(data: Any, where: str) -> MetricSummary | None:
    if data is None:
        return None
    return _metric_table({"value": data}, where)["value"]


@dataclass(frozen=True)
class SessionRow:
    """One session of a returning-user evaluation (`crs eval --sessions`).

    Attributes:
        session: Session index (0-based).
        episodes: Conversations of this session (one per sequence).
        metrics: SR@5/10/15, AT, hDCG with 95% CIs over them.
        tracking: Share of sequences whose memory's most likely persona before this session was the
            session's true active one, with its CI; None for the oracle (it is handed the truth).
        dominant_tracking: The same against the session mixture's largest persona; None for the oracle.
        active_is_dominant: Share of sessions whose active persona is the mixture's largest (what a
            perfect prior-only guess of the active persona reaches).
        last_time: Share of sequences whose memory's most likely persona before this session was the
            *previous* session's true active one: how often `crs chat --memory`'s opening "Last time
            your ... side was in charge" would be right. None for session 0 and for the oracle.
    """

    session: int
    episodes: int
    metrics: MetricTable
    tracking: MetricSummary | None
    dominant_tracking: MetricSummary | None
    active_is_dominant: float
    last_time: MetricSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "episodes": self.episodes,
            "metrics": {name: vars(value) for name, value in self.metrics.items()},
            "tracking": None if self.tracking is None else vars(self.tracking),
            "dominant_tracking": None if self.dominant_tracking is None else vars(self.dominant_tracking),
            "active_is_dominant": self.active_is_dominant,
            "last_time": None if self.last_time is None else vars(self.last_time),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> SessionRow:
        return cls(
            session=int(data["session"]),
            episodes=int(data.get("episodes", 0)),
            metrics=_metric_table(data.get("metrics") or {}, f"{where} [metrics]"),
            tracking=_summary_or_none(data.get("tracking"), f"{where} [tracking]"),
            dominant_tracking=_summary_or_none(data.get("dominant_tracking"), f"{where} [dominant_tracking]"),
            active_is_dominant=float(data.get("active_is_dominant", 0.0)),
            last_time=_summary_or_none(data.get("last_time"), f"{where} [last_time]"),
        )


@dataclass(frozen=True)
class SessionsSummary:
    """The ``sessions`` block of a `crs eval --sessions` summary.json: returning users, per session.

    Attributes:
        regime: How the users' persona mixtures moved (`simulators.returning.REGIMES`).
        sessions: S, sessions per user.
        sequences: N, returning users (sequences).
        memory: "frozen", "update" or "oracle" (`policies.memory.MEMORY_MODES`).
        rule: The update's constants (`policies.memory.UpdateRule`; empty unless memory "update").
        rows: One `SessionRow` per session, in order.
        after_change: Metrics over the sessions from each sequence's change session on (regimes
            "switch" and "new"; empty otherwise).
        after_change_episodes: How many sessions that is.
        tracking_after_change: Persona tracking over the sessions after each change session (the
            memory has seen at least one session of the new mixture); None for the oracle and for
            regimes without a change.
        dominant_tracking_after_change: The same against the mixture's largest persona.
        last_time_after_change: `SessionRow.last_time` over the same sessions.
        tracked_after_change_sessions: How many sessions those three count (fewer than
            `after_change_episodes`: the change session itself is left out); 0 in older files.
    """

    regime: str
    sessions: int
    sequences: int
    memory: str
    rule: dict[str, float]
    rows: tuple[SessionRow, ...]
    after_change: MetricTable
    after_change_episodes: int = 0
    tracking_after_change: MetricSummary | None = None
    dominant_tracking_after_change: MetricSummary | None = None
    last_time_after_change: MetricSummary | None = None
    tracked_after_change_sessions: int = 0

    def to_dict(self) -> dict[str, Any]:
        tracked = self.tracking_after_change
        dominant = self.dominant_tracking_after_change
        last_time = self.last_time_after_change
        return {
            "regime": self.regime,
            "sessions": self.sessions,
            "sequences": self.sequences,
            "memory": self.memory,
            "rule": dict(self.rule),
            "rows": [row.to_dict() for row in self.rows],
            "after_change": {name: vars(value) for name, value in self.after_change.items()},
            "after_change_episodes": self.after_change_episodes,
            "tracking_after_change": None if tracked is None else vars(tracked),
            "dominant_tracking_after_change": None if dominant is None else vars(dominant),
            "last_time_after_change": None if last_time is None else vars(last_time),
            "tracked_after_change_sessions": self.tracked_after_change_sessions,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str, fix: str = "") -> SessionsSummary:
        """The block of a mapping; `where` names it and `fix` says how to make it again in errors.

        Raises:
            CRSError: ``sessions`` is below 1.
            KeyError, TypeError, ValueError, AttributeError, OverflowError: A value is missing or of
                the wrong type (`EvalSummary.from_dict` names it).
        """
        return cls(
            regime=str(data["regime"]),
            sessions=_integer(data["sessions"], f"{where} [sessions]", 1, None, fix),
            sequences=int(data["sequences"]),
            memory=str(data["memory"]),
            rule={str(k): float(v) for k, v in (data.get("rule") or {}).items()},
            rows=tuple(SessionRow.from_dict(row, f"{where} [rows]") for row in data.get("rows") or ()),
            after_change=_metric_table(data.get("after_change") or {}, f"{where} [after_change]"),
            after_change_episodes=int(data.get("after_change_episodes", 0)),
            tracking_after_change=_summary_or_none(data.get("tracking_after_change"), where),
            dominant_tracking_after_change=_summary_or_none(
                data.get("dominant_tracking_after_change"), where
            ),
            last_time_after_change=_summary_or_none(data.get("last_time_after_change"), where),
            tracked_after_change_sessions=int(data.get("tracked_after_change_sessions", 0)),
        )


@dataclass(frozen=True)
class FigureLabel:
    """What a table of figures was measured on, which every figure must name.

    Attributes:
        dataset: Dataset name.
        split: Split the conversations came from.
        conversations: Conversations per row (a returning-user evaluation: every session of every user).
        setting: The question setting ("binary", "multiple_choice", "enumerated"; "unknown" in files
            written before it was recorded).
        ranker: The ranker in words.
        returning: Returning users in words, e.g. "returning users (20 x 8 sessions, regime switch)";
            "" for plain conversations.
    """

    dataset: str
    split: str
    conversations: int
    setting: str
    ranker: str
    returning: str = ""

    def describe(self, after_conversations: str = "") -> str:
        """The label in words, e.g. "lastfm / test: 600 conversations, binary setting, ranker transe";
        `after_conversations` (e.g. ", seed 1") goes after the conversations."""
        returning = f"{self.returning}: " if self.returning else ""
        return (
            f"{self.dataset} / {self.split}: {returning}{self.conversations:,} conversations"
            f"{after_conversations}, {self.setting} setting, ranker {self.ranker}"
        )


def resolved_user(user: str, dataset: str, setting: str) -> str:
    """The kind of simulated user a `crs eval` of `dataset` in `setting` with ``--user user`` played: "auto"
    resolved as `make_env` resolves it (`envs.registry.resolve_user_and_setting`: on LastFM* in the
    multiple-choice setting it is MCMIPL's multi-interest user), other kinds as they are. "auto" stays
    where the setting is unknown (files older than its record)."""
    if user != "auto" or setting not in SETTINGS:
        return user
    world, mcmipl = dataset == PERSONA_WORLD, dataset in MCMIPL_DATASETS
    return resolve_user_and_setting(user, setting, world=world, mcmipl=mcmipl)[0]


ORDER_LABELS: dict[str, str] = {"unicorn": "UNICORN order", "mcmipl": "MCMIPL order"}
"""How a figure names a protocol's own conversation order (`EvalSummary.order`); crs's seeded sample of
the split, the default, goes unnamed."""


@dataclass(frozen=True)
class EvalSummary:
    """``summary.json`` of a `crs eval` folder (`crs.app.evaluation.run_evaluation` writes it).

    Attributes:
        policy: Display name of the policy.
        policy_spec: What `--policy` said: a rule name, or a run folder by its absolute path (as typed
            in older summaries: relative to the folder `crs eval` ran in).
        dataset: Dataset name.
        split: Split the conversations came from.
        ranker: Ranker display name ("run" for a trained policy's own ranker).
        user: Simulated user kind ("single", "multi" or "persona"; `resolved_user`). "auto" in files
            older than the setting's record.
        setting: "binary", "multiple_choice" or "enumerated".
        episodes: Conversations evaluated (lines of episodes.jsonl).
        seed: Seed of the conversation order.
        world_seed: Persona world seed (None on real data).
        conversations: Hash of the conversations walked (`conversations_fingerprint`).
        order: How the conversations were chosen (`crs.app.evaluation.Order`; `ORDER_LABELS`).
        max_turns: Turn limit T.
        notes: The catalogue's notes (e.g. "Yelp* pre-trains on valid").
        metrics: SR@5/10/15, AT, hDCG with 95% CIs.
        seconds: Wall time of the evaluation.
        conversations_per_second: Throughput.
        versions: persona-crs and Python versions.
        sessions: Returning users (`crs eval --sessions`): per-session results; None otherwise (and in
            files written before it existed).
        run_ranker: A trained policy's own ranker as its run recorded it (the name of
            `policies.rl.run_files.run_ranker`, e.g. ``uniform+profile+pop+split:0.03`` or ``runs/x/ranker``),
            so the figure names its ranker when the run folder is gone; None for a rule (and in files
            written before it existed).
        ranker_identity: The ranker by content when the evaluation ran (`policies.rankers.RankerSpec.
            identity`; a trained policy's is its run's), so that a report reading it later, from
            another folder or after the artifact was replaced, tells rankers apart by what they were;
            None in files written before it existed.
        world: The persona world's sizes that differ from its defaults (`simulators.datasets.DatasetSpec.
            world`; a `crs train` run's test on a world of custom sizes); empty for the default world, real
            data, and files written before it existed.
        ranker_resolved: `ranker` with the file or folder it reads by a relative path made absolute when
            the evaluation ran (`crs.app.evaluation.resolved_ranker_name`), so that a report run from
            another folder finds it; None when `ranker` reads none or names it absolutely (and in files
            written before it existed).
        data_dir: The real-data folder the evaluation read, absolute (`simulators.datasets.DatasetSpec.
            data_folder`), so that a report finds the catalogue without ``--data-dir``; None on the
            persona world (and in files written before it existed).
    """

    policy: str
    policy_spec: str
    dataset: str
    split: str
    ranker: str
    user: str
    setting: str
    episodes: int
    seed: int
    world_seed: int | None
    conversations: str
    max_turns: int
    notes: tuple[str, ...]
    metrics: MetricTable
    seconds: float
    conversations_per_second: float
    versions: dict[str, str]
    order: str = "seeded"
    sessions: SessionsSummary | None = None
    run_ranker: str | None = None
    ranker_identity: str | None = None
    ranker_resolved: str | None = None
    world: tuple[tuple[str, int], ...] = ()
    data_dir: str | None = None

    REQUIRED = ("policy", "dataset", "split", "episodes", "seed", "max_turns")

    @property
    def ranker_label(self) -> str:
        """The ranker in words: a trained policy's as "run (its ranker)"."""
        return self.ranker if self.run_ranker is None else f"{self.ranker} ({self.run_ranker})"

    @property
    def label(self) -> FigureLabel:
        block = self.sessions
        returning = (
            ""
            if block is None
            else f"returning users ({block.sequences} x {block.sessions} sessions, regime {block.regime})"
        )
        return FigureLabel(
            self.dataset, self.split, self.episodes, self.setting, self.ranker_label, returning
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        data["metrics"] = {name: vars(value) for name, value in self.metrics.items()}
        if self.sessions is None:
            del data["sessions"]  # files without returning users look as they always did
        else:
            data["sessions"] = self.sessions.to_dict()
        if self.run_ranker is None:
            del data["run_ranker"]  # a rule's summary names its ranker in "ranker"
        for optional in ("ranker_identity", "ranker_resolved", "data_dir"):
            if data[optional] is None:
                del data[optional]
        if self.world:
            data["world"] = dict(self.world)
        else:
            del data["world"]  # the default world's files look as they always did
        return data

    @classmethod
    def read(cls, folder: Path) -> EvalSummary:
        """Read and check ``folder/summary.json``.

        Raises:
            CRSError: Missing, corrupt, or lacking a required key (the message says how to fix it).
        """
        path = folder / SUMMARY_FILE
        fix = eval_fix(folder)
        return cls.from_dict(read_json_mapping(path, cls.REQUIRED, fix), f"{path}", fix)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "summary", fix: str = "") -> EvalSummary:
        """The summary of a mapping holding `REQUIRED`; keys written by older versions get defaults.

        Raises:
            CRSError: A value of the wrong type, or out of the range `crs eval` writes: ``episodes``,
                ``seed`` and ``world_seed`` >= 0, ``max_turns`` in `TURN_LIMITS`, the sessions block's
                ``sessions`` >= 1 (named with `where` and `fix`).
        """
        try:
            return cls(
                policy=str(data["policy"]),
                policy_spec=str(data.get("policy_spec", data["policy"])),
                dataset=str(data["dataset"]),
                split=str(data["split"]),
                ranker=str(data.get("ranker", "")),
                user=resolved_user(
                    str(data.get("user", "auto")), str(data["dataset"]), str(data.get("setting", "unknown"))
                ),
                setting=str(data.get("setting", "unknown")),
                episodes=_integer(data.get("episodes", 0), f"{where} [episodes]", 0, None, fix),
                seed=_integer(data["seed"], f"{where} [seed]", 0, None, fix),
                world_seed=None
                if data.get("world_seed") is None
                else _integer(data["world_seed"], f"{where} [world_seed]", 0, None, fix),
                conversations=str(data.get("conversations") or ""),
                max_turns=_integer(
                    data["max_turns"], f"{where} [max_turns]", TURN_LIMITS[0], TURN_LIMITS[-1], fix
                ),
                notes=tuple(str(note) for note in data.get("notes") or ()),
                metrics=_metric_table(data.get("metrics") or {}, f"{where} [metrics]"),
                seconds=float(data.get("seconds", 0.0)),
                conversations_per_second=float(data.get("conversations_per_second", 0.0)),
                versions={str(k): str(v) for k, v in (data.get("versions") or {}).items()},
                order=str(data.get("order", "seeded")),
                sessions=None
                if data.get("sessions") is None
                else SessionsSummary.from_dict(data["sessions"], f"{where} [sessions]", fix),
                run_ranker=None if data.get("run_ranker") is None else str(data["run_ranker"]),
                ranker_identity=None if data.get("ranker_identity") is None else str(data["ranker_identity"]),
                ranker_resolved=None if data.get("ranker_resolved") is None else str(data["ranker_resolved"]),
                data_dir=None if data.get("data_dir") is None else str(data["data_dir"]),
                world=tuple(
                    (str(key), _integer(value, f"{where} [world][{key}]", 1, None, fix))
                    for key, value in sorted((data.get("world") or {}).items())
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
            raise CRSError(f"{where} is corrupt ({type(error).__name__}: {error}); {fix}") from None

    def write(self, folder: Path) -> None:
        write_json_atomic(folder / SUMMARY_FILE, self.to_dict())


@dataclass(frozen=True)
class Verdict:
    """The trained policy against the best baseline on one metric, paired over the same conversations.

    Attributes:
        metric: SR@5/10/15, AT or hDCG.
        trained: The trained policy's mean.
        baseline: The best baseline on this metric.
        baseline_mean: Its mean.
        difference: Mean and 95% bootstrap CI of trained − baseline per conversation.
        word: "better", "worse" or "tie" (the CI holds 0); AT is better when lower. Over fewer than
            `envs.metrics.MIN_PAIRED` conversations, which decide nothing, "n/a (<20 pairs)".
    """

    metric: str
    trained: float
    baseline: str
    baseline_mean: float
    difference: MetricSummary
    word: str

    def cells(self) -> tuple[str, str, str, str, str]:
        """metric, trained, best baseline, difference [95% CI], verdict: as the console and the model
        card show them (2 decimals for AT, 3 for rates)."""
        digits = 2 if self.metric == "AT" else 3
        d = self.difference
        return (
            self.metric,
            f"{self.trained:.{digits}f}",
            f"{self.baseline_mean:.{digits}f} {self.baseline}",
            f"{d.mean:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]",
            self.word,
        )

    @classmethod
    def from_dict(cls, data: Any) -> Verdict:
        """A verdict as summary.json holds it.

        Raises:
            TypeError, ValueError, KeyError, AttributeError: Not a verdict mapping.
        """
        difference = data["difference"]
        return cls(
            metric=str(data["metric"]),
            trained=float(data["trained"]),
            baseline=str(data["baseline"]),
            baseline_mean=float(data["baseline_mean"]),
            difference=MetricSummary(
                float(difference["mean"]), float(difference["low"]), float(difference["high"])
            ),
            word=str(data["word"]),
        )


@dataclass(frozen=True)
class TrainSummary:
    """``summary.json`` of a `crs train` run: the final test comparison on shared conversations.

    Attributes:
        name: Run name.
        dataset: Dataset trained and tested on.
        ranker: The run's ranker entry (as in policy.json).
        timesteps: Training steps done.
        train_seconds_this_session: Training time of the last session (a resumed run: since resuming).
        steps_per_second: Training throughput of that session.
        envs: Simulated-user envs.
        env_processes: Worker processes running them (0: in-process).
        test_episodes: Test conversations (the same for every row of `test`).
        best_valid: Validation SR@15 and hDCG of best_model.zip.
        test: Label ("RL (<name>)", a rule baseline) -> metrics.
        conversations_per_second: Label -> evaluation throughput.
        setting: The question setting trained and tested in (`envs.setting`; "" in older runs).
        valid_episodes: The validation conversations behind `best_valid` (0 in older runs).
        verdicts: The trained policy against the best baseline per metric, paired (empty without
            baselines, and in older runs).
    """

    name: str
    dataset: str
    ranker: str
    timesteps: int
    train_seconds_this_session: float
    steps_per_second: float
    envs: int
    env_processes: int
    test_episodes: int
    best_valid: dict[str, float]
    test: dict[str, MetricTable]
    conversations_per_second: dict[str, float]
    setting: str = ""
    valid_episodes: int = 0
    verdicts: tuple[Verdict, ...] = ()

    @property
    def label(self) -> FigureLabel:
        """The test table's label (the setting "unknown" in runs from before it was recorded), with the
        ranker as a `--ranker` names it: "pretrain" for the one pre-trained into the run (its entry is
        "artifact:ranker", a folder of the run)."""
        try:
            spec = RankerSpec.from_entry(self.ranker, "summary.json")
        except CRSError:  # an entry this version does not know: shown as recorded
            ranker = self.ranker
        else:
            own = spec.kind == "artifact" and spec.where == PRETRAIN_DIR
            ranker = "pretrain" + spec.name.removeprefix(PRETRAIN_DIR) if own else spec.name
        return FigureLabel(self.dataset, "test", self.test_episodes, self.setting or "unknown", ranker)

    @property
    def trained_label(self) -> str:
        """The row of the trained policy in `test`."""
        return f"RL ({self.name})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["test"] = {label: {k: vars(v) for k, v in row.items()} for label, row in self.test.items()}
        return data

    @classmethod
    def read(cls, run_dir: Path) -> TrainSummary:
        """Read ``run_dir/summary.json``.

        Raises:
            CRSError: Missing, corrupt or lacking a key (the run has not finished: resume it).
        """
        path = run_dir / SUMMARY_FILE
        resume = f"finish the run with `crs train {run_options(run_dir.name, run_dir.parent)} --resume`"
        fix = task_rerun_fix(run_dir) if (run_dir / TASK_FILE).is_file() else resume
        required = tuple(f.name for f in fields(cls) if f.default is MISSING)
        data = read_json_mapping(path, required, fix)
        test = data["test"]
        if not isinstance(test, dict):
            raise CRSError(f"{path} [test] is corrupt: expected label -> metrics; {fix}")

        def count(key: str) -> int:
            return _integer(data[key], f"{path} [{key}]", 0, None, fix)

        def rates(key: str) -> dict[str, float]:
            return {str(label): float(value) for label, value in data[key].items()}

        try:
            return cls(
                name=str(data["name"]),
                dataset=str(data["dataset"]),
                ranker=str(data["ranker"]),
                timesteps=count("timesteps"),
                train_seconds_this_session=float(data["train_seconds_this_session"]),
                steps_per_second=float(data["steps_per_second"]),
                envs=count("envs"),
                env_processes=count("env_processes"),
                test_episodes=count("test_episodes"),
                best_valid=rates("best_valid"),
                test={
                    str(label): _metric_table(row, f"{path} [test][{label}]") for label, row in test.items()
                },
                conversations_per_second=rates("conversations_per_second"),
                setting=str(data.get("setting", "")),
                valid_episodes=count("valid_episodes") if "valid_episodes" in data else 0,
                verdicts=tuple(Verdict.from_dict(v) for v in data.get("verdicts", ())),
            )
        except (TypeError, ValueError, AttributeError, OverflowError, KeyError) as error:
            raise CRSError(f"{path} is corrupt ({type(error).__name__}: {error}); {fix}") from None

    def write(self, run_dir: Path) -> None:
        write_json_atomic(run_dir / SUMMARY_FILE, self.to_dict())


def write_episodes(folder: Path, records: Sequence[EpisodeRecord]) -> None:
    """Write ``episodes.jsonl`` (one `EpisodeRecord` per line) through a temporary file."""
    write_text_atomic(folder / EPISODES_FILE, "".join(json.dumps(r.to_dict()) + "\n" for r in records))


def write_test_folders(
    run_dir: Path, tested: Sequence[tuple[str, EvalSummary, Sequence[EpisodeRecord]]]
) -> None:
    """Write a run's test comparison as ``TEST_DIR/<folder>/`` (summary.json and episodes.jsonl, as
    `crs eval` writes them), so `crs report <run>` compares the policies on the same conversations.

    The folders are written beside the run's `TEST_DIR` and swapped in whole, so a resumed run's new
    test replaces the old one (and baselines no longer tested leave with it), and an interrupted write
    leaves the old one (a swap stopped between its two renames is undone by the next write, before
    anything else).

    Args:
        run_dir: The run folder.
        tested: (folder name, summary, records) per tested policy.
    """
    final = run_dir / TEST_DIR
    partial, old = run_dir / f".{TEST_DIR}.partial", run_dir / f".{TEST_DIR}.old"

    def put_old_back() -> None:
        """Undo a swap stopped between its two renames: the old test is back where it was."""
        if old.exists() and not final.exists():
            os.replace(old, final)

    put_old_back()  # the last swap may have stopped half-way
    for leftover in (partial, old):
        shutil.rmtree(leftover, ignore_errors=True)
    for folder, summary, records in tested:
        (partial / folder).mkdir(parents=True)
        write_episodes(partial / folder, records)
        summary.write(partial / folder)
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(partial, final)
    except OSError:
        put_old_back()
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_json_lines(folder: Path, lines: Sequence[dict[str, Any]]) -> None:
    """Write ``episodes.jsonl`` from dicts that extend `EpisodeRecord.to_dict` (e.g. a session's
    `envs.sessions.SessionRecord.to_dict`); `read_episodes` reads their episode fields."""
    write_text_atomic(folder / EPISODES_FILE, "".join(json.dumps(line) + "\n" for line in lines))


def read_episodes(folder: Path, summary: EvalSummary | None = None) -> tuple[EpisodeRecord, ...]:
    """Read ``episodes.jsonl``, each record checked against what an evaluation writes (`_check_record`).

    Args:
        folder: The `crs eval` folder.
        summary: Its ``summary.json``, read: the records are then checked against its turn limit, and
            the session indices they carry against its sessions block (each below ``sessions``, the
            last one ``sessions`` - 1, as `crs eval --sessions` counts them; a change session, when
            given, from 0 to ``sessions``).

    Raises:
        CRSError: Missing, unreadable, a corrupt line or a value out of range (named), no record at all,
            or records whose sessions disagree with `summary`.
    """
    path = folder / EPISODES_FILE
    fix = eval_fix(folder)
    if not path.is_file():
        raise CRSError(f"{path} is missing; {fix}")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CRSError(f"{path} is unreadable ({error}); {fix}") from None
    max_turns = None if summary is None else summary.max_turns
    sessions = None if summary is None or summary.sessions is None else summary.sessions.sessions
    records, carried = [], []  # the records' session indices, when they carry them
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            data = json.loads(line)
            _check_record(data, where, max_turns, fix)
            record = EpisodeRecord.from_dict(data)
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as error:
            raise CRSError(f"{where} is corrupt ({type(error).__name__}: {error}); {fix}") from None
        records.append(record)
        if sessions is not None and data.get("session") is not None:
            carried.append(_integer(data["session"], f"{where} [session]", 0, sessions - 1, fix))
        if sessions is not None and data.get("change_session") is not None:
            _integer(data["change_session"], f"{where} [change_session]", 0, sessions, fix)
    if not records:
        raise CRSError(f"{path} holds no records; {fix}")
    if sessions is not None and carried and max(carried) != sessions - 1:
        raise CRSError(
            f"{folder / SUMMARY_FILE} [sessions] [sessions] = {sessions} but the last session of {path} is "
            f"{max(carried)} (the files do not belong together); {fix}"
        )
    return tuple(records)


def _check_record(data: Any, where: str, max_turns: int | None, fix: str) -> None:
    """Check that a record's integers are ones a conversation of `envs.env.ConversationEnv` ends with:
    goal index, user and target ids >= 0, 1 to ``max_turns`` - 1 agent actions (the user's opening is
    turn 1 of ``max_turns``; no upper bound when `max_turns` is None), a slate rank >= 1 when one is given.

    Raises:
        CRSError: A value out of range, named with `where` (file and line) and `fix`.
        KeyError, TypeError: `data` is no record (`read_episodes` names the line).
    """
    for key in ("goal_index", "user"):
        _integer(data[key], f"{where} [{key}]", 0, None, fix)
    for target in data["targets"]:
        _integer(target, f"{where} [targets]", 0, None, fix)
    most = None if max_turns is None else max_turns - 1
    _integer(data["agent_actions"], f"{where} [agent_actions]", 1, most, fix)
    if data.get("rank") is not None:
        _integer(data["rank"], f"{where} [rank]", 1, None, fix)


def _ranker_shape(run_dir: Path, entry: str) -> str:
    """ ", pre-trained by this run: K = 3 personas per user, aspect attention" (", pre-trained as: ..." for
    one `crs pretrain` wrote) when the run's ranker (policy.json's `entry`) is a persona model, else ""."""
    spec = RankerSpec.parse(entry).resolve(run_dir)
    if spec.attentions() is None or spec.path is None:
        return ""
    model = read_artifact_config(spec.path)["model"]
    mode = model["aspect_mode"]
    aspects = "aspect attention" if mode == "attention" else f"aspects {mode}"
    whose = "by this run" if spec.path.resolve() == (run_dir / PRETRAIN_DIR).resolve() else "as"
    return f", pre-trained {whose}: K = {model['personas']} personas per user, {aspects}"


def eval_blocker(settings: TrainSettings) -> str | None:
    """Why `crs eval` cannot evaluate a run of these settings on its test's conversations again (its
    options do not reach them), or None when `eval_command` does."""
    if settings.dataset_spec().is_world and settings.world.model_dump(exclude_none=True):
        sizes = ", ".join(f"{k} {v}" for k, v in settings.world.model_dump(exclude_none=True).items())
        return (
            f"it was trained on a persona world of custom sizes ({sizes}), which `crs eval` cannot "
            "build (it has no options for them); its test's records are in "
            f"`{TEST_DIR}/{TRAINED_TEST}/`"
        )
    user_options = settings.user_kwargs.model_dump(exclude_defaults=True)
    if user_options:
        return (
            f"its test's simulated users had the run's options {user_options}, and `crs eval` "
            f"simulates users with the defaults; its test's records are in `{TEST_DIR}/{TRAINED_TEST}/`"
        )
    return None


def catalogue_options(settings: TrainSettings) -> list[str]:
    """The options that name a run's catalogue to `crs eval` and `crs chat`: ``--dataset`` (and
    ``--data-dir``, made absolute from the current folder, where the run was started, so that the
    command works from anywhere) on real data, ``--world-seed`` on a persona world other than seed 0's."""
    if not settings.dataset_spec().is_world:
        data_dir = ["--data-dir", str(Path(settings.data_dir).resolve())] if settings.data_dir else []
        return ["--dataset", settings.dataset, *data_dir]
    return ["--world-seed", str(settings.world_seed)] if settings.world_seed else []


def eval_command(run_dir: Path, settings: TrainSettings, episodes: int) -> str:
    """The `crs eval` command that evaluates a run's trained policy on its test's conversations again
    (the same records as ``tested/trained``, where `eval_blocker` says None): its catalogue (dataset,
    data folder, world seed), setting and user kind when not the dataset's defaults, its seed and
    `episodes` test conversations."""
    parts = ["crs", "eval", "--policy", str(run_dir), "--seed", str(settings.seed), "-n", str(episodes)]
    parts += catalogue_options(settings)
    world = settings.dataset_spec().is_world
    mcmipl = settings.dataset in MCMIPL_DATASETS
    _, default = resolve_user_and_setting(settings.user, None, world=world, mcmipl=mcmipl)
    if settings.setting is not None and settings.setting != default:
        parts += ["--setting", settings.setting]
    if settings.user != "auto":
        parts += ["--user", settings.user]
    return " ".join(shlex.quote(part) for part in parts)


def _phases_text(record: RunRecord, trained: int) -> str:
    """What the model card says about a resumed run's sessions ("" for a run trained in one), which
    trained `trained` steps in all."""
    if len(record.phases) < 2:
        return ""
    stops = [later.start for later in record.phases[1:]] + [trained]  # where each stopped
    listed = "; ".join(
        f"{index}. {phase.describe(stop)}"
        for index, (phase, stop) in enumerate(zip(record.phases, stops, strict=True), 1)
    )
    if record.resumed_with_changes:
        why = (
            f"`{RUN_CONFIG}` holds the last session's settings, so replaying it trains one session "
            "straight through with them: it does not reproduce this run, which a resume trained with "
            "changed settings"
        )
    else:
        why = (
            f"Replaying `{RUN_CONFIG}` trains straight through, which is not the same run as one "
            "resumed (the simulated users' stream starts again at each resume): compare it with a run "
            "resumed at the same steps"
        )
    return (
        f"\nIt was trained in {len(record.phases)} sessions (`phases` in `{RUN_CONFIG}`): {listed}. {why}.\n"
    )


def write_model_card(
    run_dir: Path, record: RunRecord, summary: TrainSummary, train_goals: str, tested_step: int | None = None
) -> None:
    """Write ``MODEL_CARD.md``: what the run's policy was trained on, how, how well it did, and the
    commands that evaluate it and train it again; `tested_step`: the step of best_model.zip, the model
    tested (None: not said)."""
    settings = record.settings
    switches = ", ".join(
        f"{name} {'on' if on else 'off'}"
        for name, on in (
            ("persona attention", settings.persona_attention),
            ("aspect attention", settings.aspect_attention),
            ("ranker features", settings.wrapper.ranker_features),
            ("planned features", settings.wrapper.plan_depth is not None),
        )
    )
    if settings.wrapper.plan_depth is not None:
        switches += (
            f" (a depth-{settings.wrapper.plan_depth} search, belief temperature "
            f"{settings.wrapper.plan_temperature:g}"
            f"{', fitted on the training conversations' if settings.fit_plan_temperature else ''})"
        )
    rows = "\n".join(
        f"| {label} | {m['SR@15'].mean:.3f} [{m['SR@15'].low:.3f}, {m['SR@15'].high:.3f}] "
        f"| {m['AT'].mean:.2f} | {m['hDCG'].mean:.3f} |"
        for label, m in summary.test.items()
    )
    verdicts = (
        "\nThe trained policy against the best baseline per metric, paired on the same conversations "
        "(95% bootstrap CI of the difference; one training seed):\n\n"
        "| metric | trained | best baseline | difference [95% CI] | verdict |\n|---|---:|---|---:|---|\n"
        + "".join("| " + " | ".join(v.cells()) + " |\n" for v in summary.verdicts)
        if summary.verdicts
        else ""
    )
    version = record.versions.get("persona_crs", "?")
    # another CPU or torch can round a trained figure differently: say which this one was trained on
    torch_version, cpu = record.versions.get("torch"), record.versions.get("cpu")
    machine = (f", torch {torch_version}" if torch_version else "") + (f", on {cpu}" if cpu else "")
    imitation = settings.imitation
    warm_start = (
        f" It first imitated the rule `{imitation.rule}` ({imitation.steps:,} turns, "
        f"{imitation.epochs} epochs"
        + (f", learning rate {imitation.learning_rate:g}" if imitation.learning_rate is not None else "")
        + "; `policies.rl.imitation`)."
        if imitation is not None
        else ""
    )
    here = run_dir.resolve()  # the card's commands work from any folder
    report = f"crs report {shlex.quote(str(here))}"
    config = shlex.quote(str(here / RUN_CONFIG))
    replay = f"crs train --config {config} --name {shlex.quote(summary.name + '-again')}"
    blocker = eval_blocker(settings)
    evaluate = (
        f"`crs eval` cannot evaluate it again: {blocker}."
        if blocker is not None
        else "Evaluate it again on the same conversations:\n"
        f"`{eval_command(here, settings, summary.test_episodes)}`."
    )
    again = (
        "Train a run with its last session's settings"
        if record.resumed_with_changes
        else "Train it again with the same settings"
    )
    validated = f" over {summary.valid_episodes:,} validation conversations" if summary.valid_episodes else ""
    tested = "" if tested_step is None else f" from step {tested_step:,}"
    if tested_step == 0:  # no PPO step beat the start
        tested += (
            f", the copy of `{imitation.rule}` before any PPO step" if imitation else ", the untrained start"
        )
    text = f"""# Model card: {summary.name}

- **Trained** {record.written or "(time not recorded)"} with persona-crs {version}{machine}.
- **Data**: {summary.dataset}, {summary.setting or "default"} setting; training conversations from
  {train_goals}; tested on
  {summary.test_episodes} conversations of the test split (the same for every row below).
- **Ranker** (fixed during training): `{summary.ranker}`{_ranker_shape(run_dir, summary.ranker)}.
- **Policy**: the graph RL policy ({switches}), MaskablePPO, {summary.timesteps:,} steps with
  {summary.envs} simulated users, seed {settings.seed}.{warm_start}
  Tested model: `best_model.zip`{tested} (validation
  SR@15 {summary.best_valid["SR@15"]:.3f}, hDCG {summary.best_valid["hDCG"]:.3f}{validated}).

| policy | SR@15 [95% CI] | AT | hDCG |
|---|---|---:|---:|
{rows}
{verdicts}
Each row's records are in `{TEST_DIR}/`; `{report}` compares them, paired. {evaluate}
{again}:
`{replay}`. All settings: `{RUN_CONFIG}`.
{_phases_text(record, summary.timesteps)}"""
    write_text_atomic(run_dir / MODEL_CARD, text)
