"""The training callback of MaskablePPO: a finiteness check, atomic checkpoints, periodic evaluation
(curve and best model) and progress reports after every PPO update.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback

from policies.rl.model_file import non_finite_weights
from policies.rl.run_files import BEST_MODEL, CHECKPOINT, CheckpointState, atomic_save
from simulators.errors import CRSError


@dataclass
class EvalPoint:
    """One point of the evaluation curve."""

    timesteps: int
    seconds: float
    metrics: dict[str, float]
    best: bool


class DivergedError(CRSError):
    """Training produced a non-finite parameter; the last checkpoint written before it is kept."""


class TrainingCallback(BaseCallback):
    """After every PPO update: a finiteness check, atomic checkpoints, periodic evaluation (curve and
    best model) and progress reports.

    SB3 calls ``on_rollout_end`` before the update that the rollout feeds, so checkpoints and
    evaluations happen at the start of the next rollout (and in `after_update` once training ends):
    a checkpoint's weights always include every step its step count names. At each point the
    checkpoint is written before the evaluation, so no curve row and no best model is ever newer
    than the last checkpoint. An evaluation due at a checkpoint is marked in state.json
    (`CheckpointState.pending_eval`) before that checkpoint is written and cleared once its curve
    row is, so a resume from that checkpoint evaluates it first (`run_eval`) instead of losing it.
    An evaluation writes best_model.zip before its curve row, so a row flagged best always has its
    model saved.

    Args:
        run_dir: Where checkpoint.zip / best_model.zip go.
        evaluate: Returns the metrics of the current policy (e.g. SR@15 over validation goals).
        eval_every: Timesteps between evaluations (0 = never).
        checkpoint_every: Timesteps between checkpoints.
        on_eval: Called with each `EvalPoint` after best_model.zip is written (e.g. to add its
            curve row).
        on_progress: Called with (num_timesteps, seconds) after every rollout.
        best_score: Score to beat (resume), by SR@15 then hDCG.
        last_eval: Timesteps of the last evaluation already in the curve (resume), -1 for none.
        last_checkpoint: Timesteps of checkpoint.zip (resume), -1 for none.
    """

    model: MaskablePPO  # SB3 declares BaseAlgorithm; this callback is only given to MaskablePPO.learn

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
        last_checkpoint: int = -1,
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
        self.last_checkpoint = last_checkpoint
        self.pending_eval: int | None = None  # the step of a due evaluation whose row is not written
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
        bad = non_finite_weights(self.model)
        if bad:
            raise DivergedError(
                f"training diverged before step {steps:,}: parameters {', '.join(bad[:3])} hold NaN or inf. "
                f"The last good checkpoint (step {max(self.last_checkpoint, 0):,}) is kept; lower the "
                "learning rate or check the reward settings, then resume or start again"
            )
        eval_due = (bool(self.eval_every) and steps >= self._next_eval) or final
        eval_due = eval_due and self.evaluate_fn is not None and steps != self.last_eval
        if eval_due:  # marked before the checkpoint: a kill from here on leaves the evaluation due
            self.pending_eval = steps
            self.write_state()
        if eval_due or final or steps >= self._next_checkpoint:
            self._next_checkpoint = steps + self.checkpoint_every
            self.checkpoint()
        if eval_due:
            self._next_eval = steps + self.eval_every
            self.run_eval()

    def write_state(self) -> None:
        """Write state.json: the last checkpoint's steps, the best score and the pending evaluation."""
        CheckpointState(self.last_checkpoint, self.best_score, self.pending_eval).write(self.run_dir)

    def checkpoint(self) -> None:
        """Write checkpoint.zip, then state.json (timesteps, best score, pending evaluation), each
        atomically."""
        atomic_save(self.model, self.run_dir / CHECKPOINT)
        self.last_checkpoint = int(self.model.num_timesteps)
        self.write_state()

    def run_eval(self) -> EvalPoint | None:
        """Evaluate now; save best_model.zip when the score improves, then report the point (its
        curve row), then clear the pending evaluation in state.json.

        A resume calls it first when state.json says the checkpoint's own evaluation is pending.
        """
        if self.evaluate_fn is None:
            return None
        metrics = self.evaluate_fn(self.model)
        score = (metrics["SR@15"], metrics["hDCG"])
        best = score > self.best_score
        point = EvalPoint(self.model.num_timesteps, time.perf_counter() - self.started, metrics, best)
        if best:  # before the row: a row flagged best always has its model saved
            atomic_save(self.model, self.run_dir / BEST_MODEL)
            self.best_score = score
        self.last_eval = point.timesteps
        for name, value in metrics.items():
            self.logger.record(f"eval/{name}", value)
        if self.on_eval is not None:
            self.on_eval(point)
        if self.pending_eval is not None:
            self.pending_eval = None
            self.write_state()
        return point
