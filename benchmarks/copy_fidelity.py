"""Benchmark: how faithfully does imitation copy a rule, at which learning rate?

Builds a training config's ranker and training conversations (`crs train`'s own preparation), plays
the config's imitation rule for --steps turns, fits a fresh policy to the first 80% of them at each
--learning-rates value (`policies.rl.imitation.clone`, `imitation.learning_rate`) and prints, as
Markdown, per rate:
- the share of turns where the copy's deterministic choice is the rule's, on the fitted 80% and on the
  held-out last 20%, and split by the rule's choice (a question slot, a probe, recommend);
- with --valid N, the copy's SR@15 and AT on N validation conversations (those `crs train` validates
  on with the run's seed 0), and the rule's on the same ones.

Example (BENCHMARKS.md, "MCMIPL's Yelp*: a closer copy"):

    python benchmarks/copy_fidelity.py --config benchmarks/configs/mcmipl_yelp_no_probes_copy.yaml \\
        --data-dir ../shared/data --steps 4096 --learning-rates 2e-4 3e-3 --valid 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from _cli import positive_float, positive_int, run_script  # this folder is on sys.path as a script

from crs.app.settings import make_settings
from crs.app.training import _prepare
from crs.common import read_settings_file
from envs.rollout import evaluation_indices
from policies.rl import RLPolicy, build_model, evaluate_policy, make_vec_env
from policies.rl.acting import mean_metrics
from policies.rl.config import ImitationConfig
from policies.rl.imitation import Demonstrations, clone, collect_demonstrations, deterministic_choices
from policies.rules import make_rule_policy
from simulators.errors import CRSError


def part(demos: Demonstrations, turns: slice) -> Demonstrations:
    """The demonstrations' turns in `turns` (conversation counts are kept: they are not read here)."""
    return replace(
        demos,
        observations={key: value[turns] for key, value in demos.observations.items()},
        actions=demos.actions[turns],
        masks=demos.masks[turns],
        returns=demos.returns[turns],
        ends=demos.ends[turns],
        matched=demos.matched[turns],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="a crs train config with an imitation block")
    parser.add_argument("--data-dir", default=None, help="real data folder (as crs train --data-dir)")
    parser.add_argument(
        "--steps", type=positive_int, default=4096, help="demonstration turns (80%% fitted, 20%% held out)"
    )
    parser.add_argument("--epochs", type=positive_int, default=None, help="passes (default: the config's)")
    parser.add_argument("--learning-rates", type=positive_float, nargs="+", default=[2e-4, 3e-3])
    parser.add_argument(
        "--valid",
        type=positive_int,
        default=None,
        help="also play the copy on this many validation conversations",
    )
    args = parser.parse_args()

    data = read_settings_file(Path(args.config), "config file")
    if args.data_dir:
        data["data_dir"] = args.data_dir
    settings = make_settings(data)
    if settings.imitation is None:
        parser.error(f"{args.config} has no imitation block: nothing to copy")
    rule = settings.imitation.rule
    epochs = args.epochs or settings.imitation.epochs
    torch.set_num_threads(1)
    run_dir = tempfile.TemporaryDirectory()  # the run folder `_prepare` writes; removed at the end
    prepared = _prepare(settings, "copy-fidelity", Path(run_dir.name), show=False)
    config = prepared.config
    started = time.perf_counter()
    demos = collect_demonstrations(
        prepared.train_env, prepared.ranker, config.wrapper, rule, args.steps, config.gamma, seed=7
    )
    n = len(demos.actions)
    cut = int(0.8 * n)
    if not 0 < cut < n:
        raise CRSError(f"{n} demonstration turns cannot be split 80% fitted / 20% held out; raise --steps")
    fitted, held = part(demos, slice(0, cut)), part(demos, slice(cut, n))
    print(
        f"{rule} over {settings.ranker}: {n:,} turns of {demos.conversations:,} conversations in "
        f"{time.perf_counter() - started:.0f} s (the rule succeeded in "
        f"{demos.successes / demos.conversations:.1%}; "
        f"{demos.matched.mean():.1%} of its actions fit the slots)\n"
    )
    if args.valid is not None:
        indices = evaluation_indices(prepared.train_env().goals.n_goals, args.valid, settings.seed + 1)
        rule_metrics = mean_metrics(
            evaluate_policy(
                prepared.train_env, make_rule_policy(rule, prepared.ranker), indices, settings.seed + 1
            )
        )
    vec = make_vec_env(prepared.train_env, prepared.ranker, config, seed=0)
    recommend = int(vec.action_space.nvec[0]) - 1  # type: ignore[attr-defined]  # the wrapper's last choice
    print(
        "| copy learning rate | agreement, fitted | agreement, held out | ... where the rule asks or probes "
        "| ... where it recommends | copy SR@15 (AT) |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for rate in args.learning_rates:
        torch.manual_seed(0)
        model = build_model(vec, prepared.ranker, config, seed=0)
        clone(
            model,
            fitted,
            ImitationConfig(rule=rule, steps=args.steps, epochs=epochs, learning_rate=rate),
            seed=0,
        )
        agreement = {}
        for label, part_demos in (("fitted", fitted), ("held", held)):
            agree = deterministic_choices(model, part_demos) == part_demos.actions[:, 0]
            agreement[label] = agree.mean()
            if label == "held":
                asks = part_demos.actions[:, 0] != recommend
                agreement["asks"], agreement["slates"] = agree[asks].mean(), agree[~asks].mean()
        played = ""
        if args.valid is not None:
            policy = RLPolicy(model.policy, prepared.ranker, config.wrapper)
            metrics = mean_metrics(evaluate_policy(prepared.train_env, policy, indices, settings.seed + 1))
            played = f"{metrics['SR@15']:.3f} ({metrics['AT']:.2f})"
        print(
            f"| {rate:g} | {agreement['fitted']:.3f} | {agreement['held']:.3f} | {agreement['asks']:.3f} "
            f"| {agreement['slates']:.3f} | {played} |"
        )
    if args.valid is not None:
        rule_played = f"SR@15 {rule_metrics['SR@15']:.3f} (AT {rule_metrics['AT']:.2f})"
        print(f"\nthe rule on the same {len(indices):,} validation conversations: {rule_played}")
    run_dir.cleanup()


if __name__ == "__main__":
    run_script(main)
