"""What a run directory of `crs train` holds, and reading and writing it.

``policy.json`` records what `policies.rl.acting.load_trained_policy` needs to rebuild the wrapper
and the fixed ranker; ``state.json`` the step count and best score of the last checkpoint; the SB3
model zips are ``best_model.zip``, ``model.zip`` and ``checkpoint.zip``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envs.setting import LEGACY_SETTINGS, Setting, check_setting
from policies.atomic import LOCK_FILE, atomic_path, read_json_mapping, write_json_atomic
from policies.rankers import RankerSpec
from policies.rl.config import RLConfig
from simulators.errors import CRSError

if TYPE_CHECKING:  # SB3 loads torch; this module stays light for crs.app
    from sb3_contrib import MaskablePPO

POLICY_META = "policy.json"
STATE_FILE = "state.json"
BEST_MODEL = "best_model.zip"
FINAL_MODEL = "model.zip"
CHECKPOINT = "checkpoint.zip"
MODEL_FILES = (BEST_MODEL, FINAL_MODEL, CHECKPOINT)  # what a run offers for evaluation, in order


RUN_ID_ENTRY = "crs_run_id"
"""The model zip entry naming the run that wrote it (policy.json's ``run_id``)."""


def atomic_save(model: MaskablePPO, path: Path) -> None:
    """Save an SB3 model zip through a temporary file and an atomic rename, with the run id of the run
    folder it is saved in (`RUN_ID_ENTRY`), so that a model copied from another run is refused."""
    run_id = PolicyMeta.read(path.parent).run_id if (path.parent / POLICY_META).is_file() else None
    with atomic_path(path) as temporary:
        model.save(temporary)
        if run_id is not None:
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(RUN_ID_ENTRY, run_id)


@dataclass(frozen=True)
class CheckpointState:
    """``state.json``: the step count and best validation score when checkpoint.zip was written, and
    the evaluation that is due at a checkpoint and has not finished yet.

    (On resume the step count is read from checkpoint.zip itself and the best score from the curve;
    this file says the same for people and scripts.)

    Attributes:
        timesteps: Steps of the last checkpoint written (-1: none yet, the first is being written).
        best_score: Best validation (SR@15, hDCG) so far.
        pending_eval: Step of an evaluation that is due and has not written its curve row yet (None:
            none). It is recorded before the checkpoint of that step and cleared once the row is
            written, so a resume from that checkpoint knows to evaluate it first.
    """

    timesteps: int
    best_score: tuple[float, float]
    pending_eval: int | None = None

    def write(self, run_dir: Path) -> None:
        write_json_atomic(
            run_dir / STATE_FILE,
            {
                "timesteps": self.timesteps,
                "best_score": list(self.best_score),
                "pending_eval": self.pending_eval,
            },
        )

    @classmethod
    def read(cls, run_dir: Path) -> CheckpointState | None:
        """The state of the last checkpoint, or None before the first one (files written before
        ``pending_eval`` existed have none pending).

        Raises:
            CRSError: state.json is damaged.
        """
        path = run_dir / STATE_FILE
        if not path.is_file():
            return None
        data = read_json_mapping(path, ("timesteps", "best_score"))
        try:
            sr, hdcg = data["best_score"]
            pending = data.get("pending_eval")
            return cls(
                int(data["timesteps"]), (float(sr), float(hdcg)), None if pending is None else int(pending)
            )
        except (TypeError, ValueError) as error:
            raise CRSError(
                f"{path}: bad entry ({error}); resume rewrites it at the next checkpoint"
            ) from None


@dataclass(frozen=True)
class PolicyMeta:
    """``policy.json``: what loading a trained policy needs besides the model zip.

    Attributes:
        catalog: The catalogue's name (dataset).
        sizes: Its (users, items, aspects), to refuse another persona world.
        ranker: The fixed ranker's entry (`policies.rankers.RankerSpec.entry`).
        rl: The policy's and PPO's configuration.
        env: The env's user options (``user``, ``user_kwargs``) for `envs.registry.make_env`.
        train_rewards: The reward table training used (the test uses UNICORN's).
        train_goals: Which conversations training came from, in words.
        world_seed: The persona world's seed.
        fingerprint: `policies.pretrain.train.catalog_fingerprint` of the catalogue it trained on
            (None in runs older than session 34): another catalogue of the same sizes (another world
            seed) is refused.
        ranker_identity: The fixed ranker's `policies.rankers.RankerSpec.identity` when it trained (None
            in older runs): a file or folder that now holds another ranker is refused
            (`RankerSpec.check_pinned`).
        run_id: A random id the run drew when it started (kept on resume; None in older runs): every
            model zip it writes holds it (`RUN_ID_ENTRY`), so one copied from another run is refused.
    """

    catalog: str
    ranker: str
    rl: RLConfig
    sizes: tuple[int, int, int] | None = None
    env: dict[str, Any] = field(default_factory=dict)
    train_rewards: dict[str, float] = field(default_factory=dict)
    train_goals: str = "valid"
    world_seed: int = 0
    fingerprint: str | None = None
    ranker_identity: str | None = None
    run_id: str | None = None

    def write(self, run_dir: Path) -> None:
        data = {
            "catalog": self.catalog,
            "sizes": list(self.sizes) if self.sizes else None,
            "ranker": self.ranker,
            "rl": self.rl.to_dict(),
            "env": self.env,
            "train_rewards": self.train_rewards,
            "train_goals": self.train_goals,
            "world_seed": self.world_seed,
            **({} if self.fingerprint is None else {"fingerprint": self.fingerprint}),
            **({} if self.ranker_identity is None else {"ranker_identity": self.ranker_identity}),
            **({} if self.run_id is None else {"run_id": self.run_id}),
        }
        write_json_atomic(run_dir / POLICY_META, data)

    @classmethod
    def read(cls, run_dir: str | Path) -> PolicyMeta:
        """Read ``policy.json`` of a run directory (keys older runs lack get their defaults).

        Raises:
            CRSError: The directory is not a trained run, or its policy.json is damaged.
        """
        path, lock = Path(run_dir) / POLICY_META, Path(run_dir) / LOCK_FILE
        if not path.is_file() and lock.is_file():
            raise CRSError(
                f"{run_dir} has no {POLICY_META} yet: a crs command is writing it ({lock} names it); wait "
                "until it has trained its first session, or pass a finished run"
            )
        if not path.is_file():
            raise CRSError(
                f"{run_dir} is not a trained run directory (no {POLICY_META}); train one with `crs train`"
            )
        data = read_json_mapping(path, ("catalog", "rl"))
        try:
            sizes = data.get("sizes")
            env = data.get("env") or {}
            if not isinstance(env, dict):
                raise TypeError(f"'env' must be a mapping, found {env!r}")
            if env.get("setting") is None:  # a run from before the setting was recorded
                env = {**env, "setting": LEGACY_SETTINGS.get(str(data["catalog"]))}
            return cls(
                catalog=str(data["catalog"]),
                ranker=str(data.get("ranker", "popularity")),  # runs older than the entry
                rl=RLConfig.from_dict(data["rl"]),
                sizes=None if not sizes else (int(sizes[0]), int(sizes[1]), int(sizes[2])),
                env=env,
                train_rewards=dict(data.get("train_rewards") or {}),
                train_goals=str(data.get("train_goals", "valid")),
                world_seed=int(data.get("world_seed") or 0),
                fingerprint=None if data.get("fingerprint") is None else str(data["fingerprint"]),
                ranker_identity=None if data.get("ranker_identity") is None else str(data["ranker_identity"]),
                run_id=None if data.get("run_id") is None else str(data["run_id"]),
            )
        except (TypeError, ValueError, AttributeError, IndexError, KeyError, CRSError) as error:
            # CRSError: a recorded setting out of its range (RLConfig's own check)
            raise CRSError(f"{path}: bad entry ({error}); restore it or train again") from None


def run_ranker(run_dir: str | Path) -> RankerSpec:
    """The fixed ranker a trained run recorded in policy.json, a relative file or folder resolved in the run.

    Raises:
        CRSError: The directory is not a trained run, or its policy.json is damaged or names an unknown
            ranker.
    """
    run = Path(run_dir)
    return RankerSpec.from_entry(PolicyMeta.read(run).ranker, f"run {run} ({POLICY_META})").resolve(run)


def trained_setting(run_dir: str | Path) -> Setting | None:
    """The question setting a trained run learned in (None: its dataset's default, for old runs).

    Raises:
        CRSError: The directory is not a trained run, or its policy.json is damaged.
    """
    setting = PolicyMeta.read(run_dir).env.get("setting")
    return None if setting is None else check_setting(str(setting))


def model_file(run_dir: str | Path) -> Path:
    """The model a run offers for evaluation: best, else final, else the latest checkpoint.

    Raises:
        CRSError: None of them, or one that is there but no regular file (a link to a device, a folder):
            skipping it evaluated the next model without a word.
    """
    for name in MODEL_FILES:
        path = Path(run_dir) / name
        if path.is_file():
            return path
        if path.exists() or path.is_symlink():
            raise CRSError(
                f"{path} is not a regular file (a folder, a device or a dangling link): this run's "
                f"{name} cannot be read; remove it to evaluate the run's next model file, or train it again"
            )
    raise CRSError(f"{run_dir} has no model ({', '.join(MODEL_FILES)}); the run has not saved one yet")
