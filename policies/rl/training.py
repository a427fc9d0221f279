"""Training helpers for the graph RL policy: vectorised envs, the MaskablePPO model, batched
evaluation, checkpoints, and loading a trained policy as a `ConversationPolicy`.

A trained run directory holds ``policy.json`` (what `load_trained_policy` needs to rebuild the
wrapper and the fixed ranker) and the SB3 model zips (``best_model.zip``, ``model.zip``,
``checkpoint.zip``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv
from threadpoolctl import threadpool_limits

from envs.env import ConversationEnv
from envs.metrics import EpisodeRecord, per_episode_metrics
from envs.ranker import PreferenceRanker
from envs.registry import make_env
from envs.rollout import evaluate_batched as evaluate_policy  # noqa: F401 (public name in policies.rl)
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.rl.model_file import load_model
from policies.rl.policy import SlatePolicy
from simulators.errors import CRSError

logger = logging.getLogger(__name__)

POLICY_META = "policy.json"
STATE_FILE = "state.json"
MODEL_FILES = ("best_model.zip", "model.zip", "checkpoint.zip")


@dataclass(frozen=True)
class RLConfig:
    """Hyper-parameters of the policy and of MaskablePPO.

    Attributes:
        n_envs: Parallel training envs.
        n_steps: Rollout steps per env between updates.
        batch_size: PPO minibatch size.
        n_epochs: PPO epochs per update.
        learning_rate: Adam learning rate.
        gamma: Discount.
        gae_lambda: GAE λ.
        clip_range: PPO clip range.
        ent_coef: Entropy bonus.
        vf_coef: Value loss weight.
        hidden: Encoder width.
        embed_dim: Embedding width when no pre-trained embeddings are given.
        persona_attention: Persona attention switch (ablation).
        aspect_attention: Aspect attention switch (ablation).
        train_embeddings: Fine-tune the embedding tables.
        slate_entropy_scale: Weight of the slate entropy (None = 1/k).
        subprocess: Run the envs in worker processes (SubprocVecEnv) instead of in-process.
        wrapper: Candidate-set sizes of the SB3 wrapper.
    """

    n_envs: int = 8
    n_steps: int = 64
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    hidden: int = 64
    embed_dim: int = 32
    persona_attention: bool = True
    aspect_attention: bool = True
    train_embeddings: bool = False
    slate_entropy_scale: float | None = None
    subprocess: bool = False
    wrapper: WrapperConfig = field(default_factory=WrapperConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RLConfig:
        data = dict(data)
        wrapper = WrapperConfig(**data.pop("wrapper", {}))
        return cls(**data, wrapper=wrapper)


def pretrained_arrays(ranker: PreferenceRanker) -> dict[str, np.ndarray] | None:
    """The embeddings a ranker carries, keyed as `PersonaAspectEncoder.load_pretrained` reads them.

    A persona ranker gives "item", "aspect", "personas" (U, K, d), "log_prior" (U, K); a TransE ranker
    gives its user vectors as one persona each. Other rankers give None (random initialisation).
    """
    if all(hasattr(ranker, k) for k in ("item", "aspect", "personas", "log_prior")):
        return {
            "item": np.asarray(ranker.item),  # type: ignore[attr-defined]
            "aspect": np.asarray(ranker.aspect),  # type: ignore[attr-defined]
            "personas": np.asarray(ranker.personas),  # type: ignore[attr-defined]
            "log_prior": np.asarray(ranker.log_prior),  # type: ignore[attr-defined]
        }
    if all(hasattr(ranker, k) for k in ("user_emb", "item_emb", "aspect_emb")):
        user = np.asarray(ranker.user_emb)  # type: ignore[attr-defined]
        return {
            "item": np.asarray(ranker.item_emb),  # type: ignore[attr-defined]
            "aspect": np.asarray(ranker.aspect_emb),  # type: ignore[attr-defined]
            "personas": user[:, None, :],
            "log_prior": np.zeros((user.shape[0], 1)),
        }
    return None


def encoder_kwargs(sizes: dict[str, int], ranker: PreferenceRanker, config: RLConfig) -> dict[str, Any]:
    """The `PersonaAspectEncoder` arguments for a wrapped env's `SlateActionWrapper.sizes`."""
    arrays = pretrained_arrays(ranker)
    n_personas = int(arrays["personas"].shape[1]) if arrays else max(sizes["n_probes"], 1)
    embed_dim = int(arrays["item"].shape[1]) if arrays else config.embed_dim
    return {
        "n_users": sizes["n_users"],
        "n_items": sizes["n_items"],
        "n_aspects": sizes["n_aspects"],
        "n_categories": sizes["n_categories"],
        "n_personas": n_personas,
        "embed_dim": embed_dim,
        "hidden": config.hidden,
        "persona_attention": config.persona_attention,
        "aspect_attention": config.aspect_attention,
        "train_embeddings": config.train_embeddings or arrays is None,
    }


def make_vec_env(
    env_factory: Callable[[], ConversationEnv],
    ranker: PreferenceRanker,
    config: RLConfig,
    seed: int,
) -> VecEnv:
    """`config.n_envs` wrapped training envs (Monitor-ed), seeded seed, seed + 1, ...

    With ``config.subprocess`` every env runs in its own `SubprocVecEnv` worker process (the
    factory and the ranker are pickled to it once); otherwise all run in this process
    (`DummyVecEnv`). Both give the same observations, masks and rewards for the same seed.

    Args:
        env_factory: Builds one `ConversationEnv` over the training split (called once per env).
        ranker: The fixed preference ranker.
        config: RL config (n_envs, wrapper sizes, subprocess).
        seed: Base seed of the envs.
    """

    def build() -> Monitor:
        if config.subprocess:
            # one worker per core: BLAS or torch threads inside a worker would only fight the others
            threadpool_limits(1)
            torch.set_num_threads(1)
        return Monitor(SlateActionWrapper(env_factory(), ranker, config.wrapper))

    builders = [build] * config.n_envs
    vec: VecEnv = SubprocVecEnv(builders) if config.subprocess else DummyVecEnv(builders)
    vec.seed(seed)
    return vec


def build_model(
    vec_env: VecEnv,
    ranker: PreferenceRanker,
    config: RLConfig,
    seed: int,
    tensorboard_log: str | None = None,
) -> MaskablePPO:
    """A fresh MaskablePPO model with the `SlatePolicy`, its encoder initialised from the ranker."""
    torch.set_num_threads(1)
    sizes = vec_env.get_attr("sizes", indices=[0])[0]
    model = MaskablePPO(
        SlatePolicy,
        vec_env,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        policy_kwargs={
            "features_extractor_kwargs": encoder_kwargs(sizes, ranker, config),
            "slate_entropy_scale": config.slate_entropy_scale,
        },
        tensorboard_log=tensorboard_log,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    arrays = pretrained_arrays(ranker)
    if arrays is not None:
        model.policy.features_extractor.load_pretrained(arrays)
    set_logger(model, tensorboard_log)
    return model


def set_logger(model: MaskablePPO, tensorboard_dir: str | Path | None) -> None:
    """Log to TensorBoard files in `tensorboard_dir` (continued across resumes), or nowhere.

    Setting the logger explicitly also stops SB3 from creating an empty SB3-<date> folder in the
    temporary directory on every `learn` call.
    """
    if tensorboard_dir is None:
        model.set_logger(Logger(folder=None, output_formats=[]))
    else:
        model.set_logger(configure_logger(str(tensorboard_dir), ["tensorboard"]))


# --------------------------------------------------------------------------------- acting & eval
def _stack(observations: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {key: torch.as_tensor(np.stack([o[key] for o in observations])) for key in observations[0]}


class RLPolicy:
    """A trained `SlatePolicy` as a `ConversationPolicy` (deterministic: arg-max choice, top-k slate).

    Args:
        policy: The SB3 policy.
        ranker: The fixed ranker the policy was trained with.
        wrapper_config: The wrapper sizes it was trained with.
        name: Display name.
    """

    def __init__(
        self, policy: SlatePolicy, ranker: PreferenceRanker, wrapper_config: WrapperConfig, name: str = "rl"
    ) -> None:
        self.policy = policy
        self.policy.set_training_mode(False)
        self.ranker = ranker
        self.wrapper_config = wrapper_config
        self.name = name
        self._wrappers: dict[int, SlateActionWrapper] = {}

    def reset(self, rng: np.random.Generator) -> None:
        """Nothing to reset: the policy is deterministic and reads the whole state every turn."""

    def wrapper_for(self, env: ConversationEnv) -> SlateActionWrapper:
        """The (cached) SB3 wrapper view of `env`."""
        key = id(env)
        wrapper = self._wrappers.get(key)
        if wrapper is None or wrapper.env is not env:
            wrapper = SlateActionWrapper(env, self.ranker, self.wrapper_config)
            self._wrappers[key] = wrapper
        return wrapper

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return self.act_batch([env])[0]

    def act_batch(self, envs: Sequence[ConversationEnv]) -> list[dict[str, Any]]:
        """Actions for several envs at once (one forward pass)."""
        wrappers = [self.wrapper_for(env.unwrapped) for env in envs]  # type: ignore[arg-type]
        observations = [w.observe() for w in wrappers]
        masks = np.stack([w.action_masks() for w in wrappers])
        with torch.no_grad():
            dist = self.policy.get_distribution(_stack(observations), action_masks=masks)
            actions = dist.mode().numpy()
        return [w.to_env_action(a) for w, a in zip(wrappers, actions, strict=True)]


def mean_metrics(records: Sequence[EpisodeRecord], max_turns: int = 15) -> dict[str, float]:
    """Means of SR@5/10/15, AT and hDCG over records."""
    return {k: float(v.mean()) for k, v in per_episode_metrics(records, max_turns).items()}


# ------------------------------------------------------------------------------- run directories
def atomic_save(model: MaskablePPO, path: Path) -> None:
    """Save an SB3 model zip through a temporary file and an atomic rename."""
    temporary = path.with_name(path.stem + ".tmp.zip")
    model.save(temporary)
    os.replace(temporary, path)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and an atomic rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def write_policy_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    """Write ``policy.json`` (dataset, ranker spec, RL config, env options) atomically."""
    write_json_atomic(run_dir / POLICY_META, meta)


def read_json_mapping(path: Path, required: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON file of a run holding a mapping with the `required` keys.

    Raises:
        CRSError: The file is unreadable, truncated, not a mapping, or lacks a required key.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CRSError(
            f"{path} is damaged ({type(error).__name__}: {error}); restore it or train again"
        ) from None
    if not isinstance(data, dict):
        raise CRSError(
            f"{path} must hold a JSON mapping, found {type(data).__name__}; restore it or train again"
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise CRSError(f"{path} lacks {', '.join(missing)}; restore it or train again")
    return data


def read_state(run_dir: Path) -> dict[str, Any]:
    """The ``state.json`` of the last checkpoint ({} when none)."""
    path = run_dir / STATE_FILE
    return read_json_mapping(path, ("timesteps", "best_score")) if path.is_file() else {}


def read_policy_meta(run_dir: str | Path) -> dict[str, Any]:
    """Read ``policy.json`` of a run directory.

    Raises:
        CRSError: The directory is not a trained run, or its policy.json is damaged.
    """
    path = Path(run_dir) / POLICY_META
    if not path.is_file():
        raise CRSError(
            f"{run_dir} is not a trained run directory (no {POLICY_META}); train one with `crs train`"
        )
    return read_json_mapping(path, ("catalog", "ranker", "rl"))


def model_file(run_dir: str | Path) -> Path:
    """The model a run offers for evaluation: best, else final, else the latest checkpoint."""
    for name in MODEL_FILES:
        path = Path(run_dir) / name
        if path.is_file():
            return path
    raise CRSError(f"{run_dir} has no model ({', '.join(MODEL_FILES)}); the run has not saved one yet")


RankerFactory = Callable[[dict[str, Any], Any], PreferenceRanker]


def load_trained_policy(
    run_dir: str | Path, catalog: Any, ranker: PreferenceRanker | None = None
) -> RLPolicy:
    """Load a trained run as a deterministic `ConversationPolicy`.

    Args:
        run_dir: A ``runs/<name>/`` directory written by `crs train`.
        catalog: The catalogue of the envs it will act in (must match the run's dataset).
        ranker: The fixed ranker; default: rebuilt from the run's ``policy.json`` ranker entry.

    Raises:
        CRSError: Not a run directory, no model, or a catalogue of another dataset.
    """
    torch.set_num_threads(1)
    meta = read_policy_meta(run_dir)
    if meta.get("catalog") and meta["catalog"] != catalog.name:
        raise CRSError(
            f"run {run_dir} was trained on {meta['catalog']!r} but the env's catalogue is {catalog.name!r}"
        )
    sizes = [catalog.n_users, catalog.n_items, catalog.n_aspects]
    if meta.get("sizes") and list(meta["sizes"]) != sizes:
        raise CRSError(
            f"run {run_dir} was trained on a catalogue with (users, items, aspects) sizes {meta['sizes']}, "
            f"but this one has {sizes}: evaluate with the same dataset (and persona-world arguments)"
        )
    config = rl_config_from_meta(meta, Path(run_dir))
    if ranker is None:
        ranker = ranker_from_meta(meta, catalog, Path(run_dir))
    env_options = meta.get("env", {})
    if not isinstance(env_options, dict):
        raise CRSError(f"{Path(run_dir) / POLICY_META}: 'env' must be a mapping, found {env_options!r}")
    wrapper = SlateActionWrapper(
        make_env(catalog=catalog, split="test", **env_options), ranker, config.wrapper
    )
    model = load_model(
        model_file(run_dir),
        observation_space=wrapper.observation_space,
        action_space=wrapper.action_space,
        clip_range=config.clip_range,
    )
    return RLPolicy(model.policy, ranker, config.wrapper, name=Path(run_dir).name)  # type: ignore[arg-type]


def rl_config_from_meta(meta: dict[str, Any], run_dir: Path) -> RLConfig:
    """The `RLConfig` a run's policy.json records.

    Raises:
        CRSError: The entry is not a mapping of `RLConfig` fields.
    """
    try:
        return RLConfig.from_dict(meta["rl"])
    except (TypeError, ValueError, AttributeError) as error:
        raise CRSError(
            f"{run_dir / POLICY_META}: bad 'rl' entry ({error}); restore it or train again"
        ) from None


def ranker_entry_path(where: str, run_dir: Path) -> Path:
    """The file or folder a ranker entry ("transe:<file>", "artifact:<dir>") names; relative: in the run."""
    path = Path(where)
    return path if path.is_absolute() else run_dir / path


def ranker_from_meta(meta: dict[str, Any], catalog: Any, run_dir: Path) -> PreferenceRanker:
    """Rebuild the fixed ranker a run recorded: "popularity", "transe:<file>" or "artifact:<dir>"."""
    from envs.transe import PopularityRanker, TransERanker

    spec = str(meta.get("ranker", "popularity"))
    if spec == "popularity":
        return PopularityRanker(catalog)
    kind, _, where = spec.partition(":")
    path = ranker_entry_path(where, run_dir)
    if kind == "transe":
        return TransERanker.from_file(path, catalog)
    if kind == "artifact":
        from policies.pretrain.train import load_ranker

        return load_ranker(path, catalog)
    raise CRSError(f"run {run_dir}: unknown ranker entry {spec!r} in {POLICY_META}")


# ------------------------------------------------------------------------------------ callbacks
@dataclass
class EvalPoint:
    """One point of the evaluation curve."""

    timesteps: int
    seconds: float
    metrics: dict[str, float]
    best: bool


class DivergedError(CRSError):
    """Training produced a non-finite parameter; the last checkpoint written before it is kept."""


def non_finite_parameters(model: MaskablePPO) -> list[str]:
    """Names of the policy's parameters holding NaN or inf."""
    return [name for name, value in model.policy.named_parameters() if not torch.isfinite(value).all()]


class TrainingCallback(BaseCallback):
    """After every PPO update: a finiteness check, atomic checkpoints, periodic evaluation (curve and
    best model) and progress reports.

    SB3 calls ``on_rollout_end`` before the update that the rollout feeds, so checkpoints and
    evaluations happen at the start of the next rollout (and in `after_update` once training ends):
    a checkpoint's weights always include every step its step count names. At each point the
    checkpoint is written before the evaluation, so no curve row and no best model is ever newer
    than the last checkpoint.

    Args:
        run_dir: Where checkpoint.zip / best_model.zip go.
        evaluate: Returns the metrics of the current policy (e.g. SR@15 over validation goals).
        eval_every: Timesteps between evaluations (0 = never).
        checkpoint_every: Timesteps between checkpoints.
        on_eval: Called with each `EvalPoint` before best_model.zip is written (e.g. to log it).
        on_progress: Called with (num_timesteps, seconds) after every rollout.
        best_score: Score to beat (resume), by SR@15 then hDCG.
        last_eval: Timesteps of the last evaluation already in the curve (resume), -1 for none.
    """

    def __init__(
        self,
        run_dir: Path,
        evaluate: Callable[[MaskablePPO], dict[str, float]] | None,
        eval_every: int,
        checkpoint_every: int,
        on_eval: Callable[[EvalPoint], None] | None = None,
        on_progress: Callable[[int, float], None] | None = None,
        best_score: tuple[float, float] = (-1.0, -1.0),
        last_eval: int = -1,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.evaluate_fn = evaluate
        self.eval_every = eval_every
        self.checkpoint_every = checkpoint_every
        self.on_eval = on_eval
        self.on_progress = on_progress
        self.best_score = best_score
        self.last_eval = last_eval
        self.last_checkpoint = -1
        self.started = time.perf_counter()
        self._next_eval = 0
        self._next_checkpoint = 0
        self._start = 0

    def _on_training_start(self) -> None:
        now = self._start = self.model.num_timesteps
        self._next_eval = now + self.eval_every if self.eval_every else -1
        self._next_checkpoint = now + self.checkpoint_every

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.model.num_timesteps, time.perf_counter() - self.started)

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps > self._start:  # the previous rollout's update has just been applied
            self.after_update()

    def after_update(self, final: bool = False) -> None:
        """Check the weights, then checkpoint and evaluate when due (always when `final`).

        Raises:
            DivergedError: A parameter is NaN or inf; nothing is written, so the last checkpoint stays.
        """
        steps = self.model.num_timesteps
        bad = non_finite_parameters(self.model)
        if bad:
            raise DivergedError(
                f"training diverged before step {steps:,}: parameters {', '.join(bad[:3])} hold NaN or inf. "
                f"The last good checkpoint (step {max(self.last_checkpoint, 0):,}) is kept; lower the "
                "learning rate or check the reward settings, then resume or start again"
            )
        eval_due = (bool(self.eval_every) and steps >= self._next_eval) or final
        eval_due = eval_due and self.evaluate_fn is not None and steps != self.last_eval
        if eval_due or final or steps >= self._next_checkpoint:
            self._next_checkpoint = steps + self.checkpoint_every
            self.checkpoint()
        if eval_due:
            self._next_eval = steps + self.eval_every
            self.run_eval()

    def checkpoint(self) -> None:
        """Write checkpoint.zip, then state.json (timesteps, best score), each atomically."""
        atomic_save(self.model, self.run_dir / "checkpoint.zip")
        self.last_checkpoint = int(self.model.num_timesteps)
        write_json_atomic(
            self.run_dir / STATE_FILE,
            {"timesteps": self.last_checkpoint, "best_score": list(self.best_score)},
        )

    def run_eval(self) -> EvalPoint | None:
        """Evaluate now; report the point, then save best_model.zip when the score improves."""
        if self.evaluate_fn is None:
            return None
        metrics = self.evaluate_fn(self.model)
        score = (metrics["SR@15"], metrics["hDCG"])
        best = score > self.best_score
        point = EvalPoint(self.model.num_timesteps, time.perf_counter() - self.started, metrics, best)
        self.last_eval = point.timesteps
        for name, value in metrics.items():
            self.logger.record(f"eval/{name}", value)
        if self.on_eval is not None:
            self.on_eval(point)
        if best:
            self.best_score = score
            atomic_save(self.model, self.run_dir / "best_model.zip")
        return point
