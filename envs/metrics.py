"""Conversation metrics as pure functions over episode records (UNICORN's definitions).

- SR@t: share of conversations that succeed within t agent actions.
- AT: average turns: agent actions of a success, ``max_turns`` (15) for a failure.
- hDCG@(15,10): for a success at 0-based agent step s with 1-based slate rank r,
  1/log2(s+3) + (1/log2(s+2) - 1/log2(s+3)) / log2(r+1); 0 for a failure.

Used by training, `crs eval` and reports alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DEFAULT_MAX_TURNS = 15
TURN_LIMITS = range(2, 101)
"""The turn limits T (``max_turns``, the user's opening included) an env accepts, and so a `crs eval`
folder may state: from 2 (the opening and one agent action) to 100. UNICORN and MCMIPL use 15
(`DEFAULT_MAX_TURNS`); a report draws and bootstraps every turn up to T."""
SR_TURNS = (5, 10, 15)


@dataclass(frozen=True)
class EpisodeRecord:
    """The facts of one finished conversation.

    Attributes:
        goal_index: Index of the goal in its split (ties records of different policies together).
        user: User id.
        targets: Hidden target item(s), revealed after the episode.
        success: Whether the user accepted a recommended item.
        agent_actions: Actions the agent took (the opening turn excluded).
        rank: 1-based slate rank of the accepted item, or None.
        total_reward: Sum of rewards.
        kinds: Kind of each agent action, in order ("ask", "probe", "recommend").
    """

    goal_index: int
    user: int
    targets: tuple[int, ...]
    success: bool
    agent_actions: int
    rank: int | None
    total_reward: float
    kinds: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["targets"] = list(self.targets)
        out["kinds"] = list(self.kinds)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpisodeRecord:
        """The record of `to_dict`'s output read back from JSON (values are converted here)."""
        return cls(
            goal_index=int(data["goal_index"]),
            user=int(data["user"]),
            targets=tuple(int(t) for t in data["targets"]),
            success=bool(data["success"]),
            agent_actions=int(data["agent_actions"]),
            rank=None if data.get("rank") is None else int(data["rank"]),
            total_reward=float(data["total_reward"]),
            kinds=tuple(str(k) for k in data.get("kinds", ())),
        )


def success_turns(records: Sequence[EpisodeRecord]) -> np.ndarray:
    """Agent actions to success per conversation, inf for a failure; shape (n,)."""
    return np.array([r.agent_actions if r.success else np.inf for r in records], dtype=np.float64)


def sr_at(records: Sequence[EpisodeRecord], t: int) -> np.ndarray:
    """Per-conversation indicator of success within t agent actions; shape (n,)."""
    return (success_turns(records) <= t).astype(np.float64)


def turns(records: Sequence[EpisodeRecord], max_turns: int = DEFAULT_MAX_TURNS) -> np.ndarray:
    """Per-conversation turns for AT: agent actions of a success, max_turns for a failure; shape (n,)."""
    return np.array([r.agent_actions if r.success else max_turns for r in records], dtype=np.float64)


def hdcg_value(step: int, rank: int) -> float:
    """hDCG@(15,10) of one success at 0-based agent step `step` and 1-based slate rank `rank`."""
    upper, lower = 1.0 / np.log2(step + 3), 1.0 / np.log2(step + 2)
    return float(upper + (lower - upper) / np.log2(rank + 1))


def hdcg(records: Sequence[EpisodeRecord]) -> np.ndarray:
    """Per-conversation hDCG@(15,10); 0 for a failure; shape (n,)."""
    return np.array(
        [hdcg_value(r.agent_actions - 1, r.rank or 1) if r.success else 0.0 for r in records],
        dtype=np.float64,
    )


def per_episode_metrics(
    records: Sequence[EpisodeRecord], max_turns: int = DEFAULT_MAX_TURNS
) -> dict[str, np.ndarray]:
    """Every metric as a per-conversation array, keyed "SR@5", "SR@10", "SR@15", "AT", "hDCG"."""
    values = {f"SR@{t}": sr_at(records, t) for t in SR_TURNS}
    values["AT"] = turns(records, max_turns)
    values["hDCG"] = hdcg(records)
    return values


@dataclass(frozen=True)
class MetricSummary:
    """A metric's mean and 95% bootstrap confidence interval."""

    mean: float
    low: float
    high: float


DIFF_SEED = 0
"""Seed of every paired difference's bootstrap (`crs report`'s, `crs train`'s verdicts), over the pairs
in goal order: the same pairs give the same interval in every output."""

MIN_PAIRED = 20
"""Paired conversations (or sequences) below which a CI is shown but never counts as evidence: a
percentile bootstrap over so few is unreliable (over one it is a point, [d, d])."""


def ci_sign(summary: MetricSummary, n_pairs: int) -> int:
    """+1 when the CI of a difference lies above 0, −1 when below, 0 when it includes 0 or rests on
    fewer than `MIN_PAIRED` paired conversations (or sequences) `n_pairs`, whether the interval is a
    bootstrap over them or spans training seeds whose means rest on them."""
    if n_pairs < MIN_PAIRED:
        return 0
    return 1 if summary.low > 0 else -1 if summary.high < 0 else 0


def bootstrap_ci(
    values: np.ndarray, seed: int = 0, n_resamples: int = 1000, clusters: Sequence[int] | None = None
) -> MetricSummary:
    """Mean and 95% percentile-bootstrap CI over conversations (seeded, vectorised).

    Args:
        values: One value per conversation, shape (n,).
        seed: Seed of the resampling.
        n_resamples: Bootstrap resamples.
        clusters: One label per value, or None. Given, whole clusters are resampled (a cluster
            bootstrap): the sessions of one returning user are correlated, so they are drawn together
            and the interval counts users, not sessions. Each resample's mean is over its sessions.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return MetricSummary(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    if clusters is None:
        idx = rng.integers(0, values.size, size=(n_resamples, values.size))
        means = values[idx].mean(axis=1)
    else:
        labels = np.asarray(clusters, dtype=np.int64)
        if labels.shape != values.shape:
            raise ValueError(f"bootstrap_ci: {labels.size} cluster labels for {values.size} values")
        _, inverse = np.unique(labels, return_inverse=True)
        sums = np.bincount(inverse, weights=values)
        counts = np.bincount(inverse).astype(np.float64)
        idx = rng.integers(0, sums.size, size=(n_resamples, sums.size))
        means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return MetricSummary(float(values.mean()), float(low), float(high))


def summarize(
    records: Sequence[EpisodeRecord],
    max_turns: int = DEFAULT_MAX_TURNS,
    seed: int = 0,
    clusters: Sequence[int] | None = None,
) -> dict[str, MetricSummary]:
    """Mean and 95% CI of SR@5/10/15, AT and hDCG (with `clusters`, one per record: a cluster
    bootstrap, see `bootstrap_ci`)."""
    return {
        name: bootstrap_ci(v, seed=seed, clusters=clusters)
        for name, v in per_episode_metrics(records, max_turns).items()
    }
