"""What the benchmark scripts share on their command line: argparse types for counts and fractions, the
help formatter, the options that choose a rule evaluation's conversations and the evaluation they name,
and the entry point that turns the project's typed errors into one line.

The scripts import it as ``from _cli import ...``: a script's own folder is on ``sys.path``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from simulators.errors import CRSError

if TYPE_CHECKING:
    import numpy as np

    from crs.app.evaluation import EvalSpec
    from envs.env import ConversationEnv
    from envs.rollout import ConversationPolicy

SPLITS = ("train", "valid", "test")
"""The splits a script's ``--split`` offers unless it narrows them."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each option's default after its help (a required option's
    none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.required else super()._get_help_string(action)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    value = float(text)
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def open_fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def comma_names(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of `choices` (e.g. ``full,k1``)."""

    def parse(text: str) -> list[str]:
        names = text.split(",")
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}"
            )
        return names

    return parse


def npz_path(text: str) -> Path:
    """An argparse type: a file name ending in ``.npz`` (`numpy.savez` adds the suffix otherwise, so
    the file written would not be the one read back)."""
    path = Path(text)
    if path.suffix != ".npz":
        raise argparse.ArgumentTypeError(f"{text!r} does not end in .npz; name the file e.g. {path.stem}.npz")
    return path


def add_conversation_options(
    parser: argparse.ArgumentParser,
    *,
    ranker_help: str,
    dataset: str = "yelp_star",
    episodes: int = 600,
    episodes_help: str = "conversations",
    seed_help: str = "seed of the conversations",
    splits: Sequence[str] | None = SPLITS,
    split: str = "test",
    holdout: bool = False,
) -> None:
    """Add the options that choose a rule evaluation's conversations: ``-d/--dataset``, ``--data-dir``,
    ``--ranker`` (required), ``-n/--episodes``, ``--seed`` (0 or more) and, where the script has them,
    ``--split`` and ``--holdout``. `evaluation_from_args` builds the evaluation they name.

    Args:
        parser: The script's parser.
        ranker_help: --ranker's help: the rankers the script takes, e.g. "a ranker spec, e.g. DIR+split".
        dataset: --dataset's default.
        episodes: --episodes's default.
        episodes_help: --episodes's help: which conversations they are.
        seed_help: --seed's help: what it seeds.
        splits: --split's choices; None: no --split (the script names its splits itself).
        split: --split's default.
        holdout: Add ``--holdout``, valid's interactions the tag profiles left out (Yelp*), which the
            script plays itself; --split's help then says it applies without it.
    """
    parser.add_argument("-d", "--dataset", default=dataset, help="dataset name")
    parser.add_argument("--data-dir", default=None, help="folder of the real datasets; none: $CRS_DATA_DIR")
    parser.add_argument("--ranker", required=True, help=ranker_help)
    parser.add_argument("-n", "--episodes", type=positive_int, default=episodes, help=episodes_help)
    parser.add_argument("--seed", type=non_negative_int, default=0, help=seed_help)
    if splits is not None:
        parser.add_argument(
            "--split",
            choices=tuple(splits),
            default=split,
            help="split of the conversations" + (" (without --holdout)" if holdout else ""),
        )
    if holdout:
        parser.add_argument(
            "--holdout", action="store_true", help="valid's interactions the tag profiles left out (Yelp*)"
        )


def evaluation_from_args(
    args: argparse.Namespace, policy: str, *, split: str | None = None, episodes: int | None = None
) -> tuple[EvalSpec, ConversationEnv, ConversationPolicy, np.ndarray]:
    """The evaluation of `policy` on the conversations that the options of `add_conversation_options`
    name (`crs.app.evaluation.build_evaluation`).

    Args:
        args: The parsed options: ``dataset``, ``data_dir``, ``ranker``, ``episodes``, ``seed`` and,
            unless `split` is given, ``split``.
        policy: A rule policy name (e.g. ``ask-12``) or a trained run folder.
        split: The conversations' split instead of ``args.split``.
        episodes: How many conversations instead of ``args.episodes``.

    Returns:
        The evaluation's spec, env and policy, and the goal indices it walks in order (int64 of shape
        (n,)).

    Raises:
        CRSError: A setting `EvalSpec` refuses (an unknown dataset, a seed above its range), or a policy
            or ranker that cannot be built.
    """
    from crs.app.evaluation import EvalSpec, build_evaluation, conversation_indices  # only to evaluate

    spec = EvalSpec.of(
        policy=policy,
        dataset=args.dataset,
        ranker=args.ranker,
        episodes=args.episodes if episodes is None else episodes,
        seed=args.seed,
        split=args.split if split is None else split,
        data_dir=args.data_dir,
    )
    env, built, _, _ = build_evaluation(spec)
    return spec, env, built, conversation_indices(spec, env)


def run_script(main: Callable[[], None]) -> None:
    """Call a script's `main`; the project's typed errors (`CRSError`) and the system's (a missing
    file, a denied permission) print one line ``error: ...`` to stderr and exit with code 2.

    Args:
        main: The script's entry point.
    """
    try:
        main()
    except (CRSError, OSError) as error:
        message = str(error)
        if isinstance(error, OSError) and error.strerror:
            message = error.strerror + (f": {error.filename}" if error.filename else "")
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
