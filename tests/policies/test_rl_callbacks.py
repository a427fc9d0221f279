"""The training callback on its own: which evaluation saves the best model (SR@15, then hDCG; a tie
keeps the earlier model), one curve row per evaluated step, and a checkpoint never older than a best
model. A stand-in model records what is saved at which step; `tests/crs/test_train_kills.py` runs the
callback inside real training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from stable_baselines3.common.logger import Logger

from policies.rl.callbacks import EvalPoint, TrainingCallback
from policies.rl.run_files import BEST_MODEL, CHECKPOINT, STATE_FILE


class FakeModel:
    """What the callback touches of a MaskablePPO: its step count, weights, logger and `save`, which
    writes the step count (so a file tells which step it holds) and logs (file name, step)."""

    def __init__(self) -> None:
        self.num_timesteps = 0
        self.policy = torch.nn.Linear(2, 1)
        self.logger = Logger(folder=None, output_formats=[])
        self.saves: list[tuple[str, int]] = []

    def save(self, path: Path) -> None:
        path = Path(path)
        path.write_text(json.dumps({"num_timesteps": self.num_timesteps}))
        name = BEST_MODEL if path.name.startswith(f".{Path(BEST_MODEL).stem}.") else CHECKPOINT
        self.saves.append((name, self.num_timesteps))


def saved_steps(path: Path) -> int:
    return int(json.loads(path.read_text())["num_timesteps"])


class Run:
    """A callback over a `FakeModel` whose evaluations return `scores` ((SR@15, hDCG) pairs) in turn,
    and the curve rows it reports, each with the steps of checkpoint.zip and best_model.zip then."""

    def __init__(
        self, run_dir: Path, scores: list[tuple[float, float]], eval_every: int, checkpoint_every: int
    ) -> None:
        self.run_dir = run_dir
        self.model = FakeModel()
        self.scores = list(scores)
        self.points: list[EvalPoint] = []
        self.files_at_rows: list[tuple[int, int]] = []  # (checkpoint steps, best-model steps) at each row
        self.callback = TrainingCallback(
            run_dir, self.evaluate, eval_every, checkpoint_every, on_eval=self.on_eval
        )
        self.callback.init_callback(self.model)  # type: ignore[arg-type]  # the stand-in model
        self.callback.on_training_start({}, {})

    def evaluate(self, model: object) -> dict[str, float]:
        sr, hdcg = self.scores.pop(0)
        return {"SR@15": sr, "hDCG": hdcg, "AT": 10.0}

    def on_eval(self, point: EvalPoint) -> None:
        self.points.append(point)
        best = self.run_dir / BEST_MODEL
        self.files_at_rows.append(
            (saved_steps(self.run_dir / CHECKPOINT), saved_steps(best) if best.is_file() else -1)
        )

    def update_to(self, steps: int) -> None:
        """A PPO update that brings the model to `steps`; the callback runs as the next rollout starts."""
        self.model.num_timesteps = steps
        self.callback.on_rollout_start()


def test_a_tie_keeps_the_earlier_best_model_and_hdcg_breaks_an_sr_tie(tmp_path: Path) -> None:
    run = Run(tmp_path, [(0.5, 0.3), (0.5, 0.3), (0.5, 0.4)], eval_every=64, checkpoint_every=64)
    for steps in (64, 128, 192):
        run.update_to(steps)
    assert [(p.timesteps, p.best) for p in run.points] == [(64, True), (128, False), (192, True)]
    # best_model.zip is written at the first and the third evaluation only
    assert [steps for name, steps in run.model.saves if name == BEST_MODEL] == [64, 192]
    assert [best for _, best in run.files_at_rows] == [64, 64, 192]
    assert run.callback.best_score == (0.5, 0.4)
    assert json.loads((tmp_path / STATE_FILE).read_text())["best_score"] == [0.5, 0.4]


def test_a_higher_sr_wins_over_a_higher_hdcg(tmp_path: Path) -> None:
    run = Run(tmp_path, [(0.5, 0.9), (0.6, 0.1), (0.55, 0.95)], eval_every=64, checkpoint_every=64)
    for steps in (64, 128, 192):
        run.update_to(steps)
    assert [p.best for p in run.points] == [True, True, False]
    assert saved_steps(tmp_path / BEST_MODEL) == 128


def test_a_final_update_at_an_evaluated_step_adds_no_curve_row(tmp_path: Path) -> None:
    run = Run(tmp_path, [(0.5, 0.3), (0.6, 0.3)], eval_every=64, checkpoint_every=64)
    run.update_to(64)
    run.callback.after_update(final=True)  # training ends at the step just evaluated
    assert [p.timesteps for p in run.points] == [64]
    assert run.scores == [(0.6, 0.3)]  # not evaluated again
    # a final update at a new step evaluates it
    run.model.num_timesteps = 100
    run.callback.after_update(final=True)
    assert [p.timesteps for p in run.points] == [64, 100]
    assert saved_steps(tmp_path / CHECKPOINT) == 100


@pytest.mark.parametrize("checkpoint_every", [64, 96, 256])
def test_each_evaluation_is_checkpointed_first_so_no_best_model_is_newer_than_the_checkpoint(
    tmp_path: Path, checkpoint_every: int
) -> None:
    scores = [(0.1 * i, 0.0) for i in range(1, 7)]  # every evaluation improves
    run = Run(tmp_path, scores, eval_every=64, checkpoint_every=checkpoint_every)
    for steps in (32, 64, 96, 128, 160, 192):
        run.update_to(steps)
    run.model.num_timesteps = 200
    run.callback.after_update(final=True)
    assert [p.timesteps for p in run.points] == [64, 128, 192, 200]
    # at each curve row the checkpoint holds that very step, and so does the best model
    assert run.files_at_rows == [(64, 64), (128, 128), (192, 192), (200, 200)]
    # in the order of writing, every best-model save follows a checkpoint of at least its step
    last_checkpoint = -1
    for name, steps in run.model.saves:
        if name == CHECKPOINT:
            last_checkpoint = steps
        else:
            assert last_checkpoint >= steps, run.model.saves
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["timesteps"] == 200 and state["pending_eval"] is None
