"""Does training the policy on returning users help the persona memory? (#16: "measure both")

`train` fine-tunes a trained persona-world run with PPO from its best model, in one of two ways, the same
number of steps from the same start:

- ``returning``: every episode is the next session of a simulated returning user (the switch regime,
  S = 8 sessions, targets from the training split *valid*). Between sessions the persona memory
  (`policies.memory.PersonaMemory`, `DEFAULT_RULE`) moves the user's prior, and the policy reads it as
  `crs eval --sessions` shows it: the SB3 wrapper ranks with the memory's view, and the encoder's prior
  row of the user is the view's. The rows are written into the encoder when a session starts; a PPO
  update reads them as they are then (a user's later session may have moved them). The trained rows
  are put back before saving.
- ``plain``: ordinary single conversations of the same split: the control, more PPO and nothing else.

It writes a copy of the run folder whose ``best_model.zip`` and ``model.zip`` are the fine-tuned policy,
for ``crs eval -p OUT --sessions 8 --regime switch --memory update -n 500 --seed S``.

`compare` pairs two such evaluations per returning user, sessions before and from the change on:
A − B of each user's mean SR@15, pooled over the seeds, 95% bootstrap CI over users.

    python benchmarks/returning_finetune.py train --run runs/main-k4mix --mode returning --out R
    python benchmarks/returning_finetune.py compare "A-s{seed}" "B-s{seed}" --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _cli import positive_int, run_script  # this folder is on sys.path as a script
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.env import Rewards
from envs.registry import make_env
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from envs.sessions import sequence_env, session_seed
from policies.memory import DEFAULT_RULE, PersonaMemory, SessionEvidence
from policies.rl.acting import ranker_from_meta
from policies.rl.model import encoder_kwargs
from policies.rl.model_file import load_model
from policies.rl.run_files import BEST_MODEL, FINAL_MODEL, PolicyMeta, atomic_save
from simulators.catalog import Catalog
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError
from simulators.returning import ReturningSequence, returning_sequences

SESSIONS = 8


class ReturningUsers(gym.Env[Any, Any]):
    """Returning users one session per episode (see the module docstring); one env of a `DummyVecEnv`."""

    def __init__(
        self,
        catalog: Catalog,
        ranker: Any,
        wrapper: WrapperConfig,
        rewards: Rewards,
        setting: str,
        rows: torch.Tensor,
        seed: int,
        n_sequences: int,
    ) -> None:
        self.catalog, self.wrapper_config, self.rewards, self.setting = catalog, wrapper, rewards, setting
        self.rows, self.seed_base = rows, seed
        rng = np.random.default_rng(seed)
        self.sequences = returning_sequences(catalog, n_sequences, SESSIONS, "switch", rng, "valid")
        self.memory = PersonaMemory(ranker, "update", DEFAULT_RULE)
        self.index, self.session = -1, SESSIONS
        self.sequence = self.sequences[0]
        self.base = self._session_env(self.sequence)
        self.wrapper = SlateActionWrapper(self.base, ranker, wrapper)
        self.observation_space, self.action_space = self.wrapper.observation_space, self.wrapper.action_space

    def _session_env(self, sequence: ReturningSequence) -> Any:
        return sequence_env(self.catalog, sequence, split="valid", setting=self.setting, rewards=self.rewards)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self.session += 1
        if self.session >= SESSIONS:  # the next user: a sequence is one user's history
            self.index = (self.index + 1) % len(self.sequences)
            self.session = 0
            self.sequence = self.sequences[self.index]
            self.memory.forget(self.sequence.user)
            self.base = self._session_env(self.sequence)
        user = self.sequence.user
        view = self.memory.ranker_for(user)
        self.wrapper = SlateActionWrapper(self.base, view, self.wrapper_config)
        with torch.no_grad():
            self.rows[user] = torch.tensor(np.array(view.log_prior[user]), dtype=self.rows.dtype)
        conversation = session_seed(self.seed_base, self.index, self.session)
        return self.wrapper.reset(seed=conversation, options={"goal_index": self.session})

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.wrapper.step(action)
        if terminated or truncated:
            self.memory.update(SessionEvidence.from_state(self.base.state))
        return obs, float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.wrapper.action_masks()


class Conversations(gym.Wrapper[Any, Any, Any, Any]):
    """Single conversations of the training split, with the masks MaskablePPO asks the env for."""

    def action_masks(self) -> np.ndarray:
        return self.env.action_masks()  # type: ignore[attr-defined]


def train(run: Path, mode: str, out: Path, steps: int, sequences: int) -> None:
    """Fine-tune `run`'s best model `steps` PPO steps in `mode` and write the copy `out` (module docstring).

    Raises:
        CRSError: `out` exists, or `run` is not a persona-world run.
    """
    if out.exists():
        raise CRSError(f"{out} exists: choose another --out")
    torch.set_num_threads(1)
    meta = PolicyMeta.read(run)
    if meta.catalog != "persona_world":
        raise CRSError(
            f"{run} was trained on {meta.catalog}: returning users with a truth are the persona world's"
        )
    catalog = DatasetSpec("persona_world", None, meta.world_seed).load()
    ranker = ranker_from_meta(meta.ranker, catalog, run, meta.ranker_identity)
    config, rewards = meta.rl, Rewards(**meta.train_rewards)

    def conversations() -> gym.Env[Any, Any]:
        env = make_env(catalog=catalog, split="valid", rewards=rewards, **meta.env)
        return Monitor(Conversations(SlateActionWrapper(env, ranker, config.wrapper)))

    shape = conversations()
    model = load_model(
        run / BEST_MODEL,
        observation_space=shape.observation_space,
        action_space=shape.action_space,
        clip_range=config.clip_range,
        encoder=encoder_kwargs(shape.get_wrapper_attr("sizes"), ranker, config),
    )
    rows = model.policy.features_extractor.log_prior.weight
    trained_rows = rows.detach().clone()
    if mode == "returning":
        builders = [
            (
                lambda i=i: Monitor(
                    ReturningUsers(
                        catalog,
                        ranker,
                        config.wrapper,
                        rewards,
                        meta.env["setting"],
                        rows.data,
                        1000 + i,
                        sequences,
                    )
                )
            )
            for i in range(config.n_envs)
        ]
    else:
        builders = [conversations] * config.n_envs
    vec = DummyVecEnv(builders)
    vec.seed(1000)
    model.set_env(vec)
    started = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    print(f"{mode}: {steps:,} PPO steps in {time.perf_counter() - started:.0f} s")
    with torch.no_grad():
        rows.copy_(trained_rows)
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("tb", "tested"))
    atomic_save(model, out / BEST_MODEL)
    atomic_save(model, out / FINAL_MODEL)
    print(f"wrote {out}")


def _per_user(folder: Path, after: bool) -> dict[int, float]:
    """Each returning user's mean success, over the sessions before (or from) its change session.

    Raises:
        CRSError: ``episodes.jsonl`` is missing or is not a `crs eval --sessions` evaluation's.
    """
    path = folder / "episodes.jsonl"
    if not path.is_file():
        raise CRSError(f"{path} not found: give `crs eval --sessions` output folders")
    sessions: dict[int, list[float]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
            change, session, sequence = record["change_session"], record["session"], record["sequence"]
            success = float(record["success"])
        except (ValueError, KeyError, TypeError):
            raise CRSError(
                f"{path} line {number} is no returning user's session: give `crs eval --sessions` output"
            ) from None
        if change is not None and (session >= change) == after:
            sessions.setdefault(sequence, []).append(success)
    return {user: float(np.mean(values)) for user, values in sessions.items()}


def compare(a: str, b: str, seeds: list[int]) -> None:
    """Print A - B per returning user (module docstring) over the folders `a` and `b` of each seed.

    Raises:
        CRSError: With several seeds, `a` or `b` lacks ``{seed}`` (each seed would pool the same
            folder again), a seed is given twice, or B lacks a user of A.
    """
    if len(set(seeds)) < len(seeds):
        raise CRSError(f"--seeds {' '.join(map(str, seeds))} names a seed twice: give each once")
    for name, pattern in (("A", a), ("B", b)):
        if len(seeds) > 1 and "{seed}" not in pattern:
            raise CRSError(
                f"{name} {pattern!r} has no {{seed}}: each of the {len(seeds)} seeds would read the same "
                f"folder; write it as e.g. '{pattern}-s{{seed}}', or give one --seeds value"
            )
    for after in (False, True):
        first, second = [], []
        for seed in seeds:
            users_a, users_b = (
                _per_user(Path(a.replace("{seed}", str(seed))), after),
                _per_user(Path(b.replace("{seed}", str(seed))), after),
            )
            missing = sorted(set(users_a) - set(users_b))
            if missing:
                raise CRSError(
                    f"seed {seed}: B lacks the returning users {missing[:5]} of A; evaluate both with the "
                    "same -n, --seed and --sessions"
                )
            first += list(users_a.values())
            second += [users_b[u] for u in users_a]
        if not first:
            side = "from the change on" if after else "before the change"
            raise CRSError(f"no returning user of A has a session {side}: evaluate with --regime switch")
        diff = np.array(first) - np.array(second)
        means = diff[np.random.default_rng(0).integers(0, diff.size, (2000, diff.size))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        print(
            f"{'from the change on' if after else 'before the change'}: A {np.mean(first):.3f}, B "
            f"{np.mean(second):.3f}, A - B {diff.mean():+.3f} [{low:+.3f}, {high:+.3f}] ({diff.size} users)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fine = commands.add_parser("train", help="fine-tune a run on returning users or on plain conversations")
    fine.add_argument("--run", type=Path, required=True, help="a persona-world `crs train` run folder")
    fine.add_argument("--mode", choices=("returning", "plain"), required=True)
    fine.add_argument("--out", type=Path, required=True, help="the fine-tuned run folder to write (new)")
    fine.add_argument("--steps", type=positive_int, default=20480, help="PPO steps (default 20480)")
    fine.add_argument(
        "--sequences", type=positive_int, default=2000, help="returning users per env (default 2000)"
    )
    paired = commands.add_parser("compare", help="A - B per returning user, before and from the change on")
    paired.add_argument("a", help="evaluation folder of A, with {seed} for the seed")
    paired.add_argument("b", help="evaluation folder of B, with {seed} for the seed")
    paired.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    if args.command == "train":
        train(args.run, args.mode, args.out, args.steps, args.sequences)
    else:
        compare(args.a, args.b, args.seeds)


if __name__ == "__main__":
    run_script(main)
