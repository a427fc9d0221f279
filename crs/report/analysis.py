"""Comparison tables, paired differences and the generated answer, from eval runs.

Rules (each stated in the report):

- Runs are compared in one table only when they share a **test set**: dataset (and persona-world
  seed), split, simulated user, question setting, turn limit, returning users (`crs eval --sessions`:
  sessions per user and regime; none for a plain `crs eval`), and the exact conversations walked
  (``summary.json``'s fingerprint). Anything else goes to a separate table with the reason.
- A **configuration** is a rule policy with its ranker, a train config without its seed, or a sweep's
  (dataset, policy, ablation) with its settings (its tasks differ only by seed); a returning-user run's
  memory (`crs.report.sessions.series_name`) is part of it. One run:
  mean and 95% percentile-bootstrap CI over conversations (`envs.metrics.bootstrap_ci`, seeded
  as `crs eval` seeds it, so the figures equal ``summary.json``'s). Several runs (seeds): mean of the
  runs' means and a Student-t 95% CI across runs. A run repeating another (same configuration, seed
  and conversations) is read once; a second run of one seed on other conversations is no second seed:
  it goes to the table of its conversations.
- **Paired differences**: reference minus row on the conversations both were evaluated on (each
  conversation's value averaged over a configuration's runs), 95% bootstrap CI over conversations.
  The reference is the full model when the table has one, else the best row by SR@15.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from crs.app.run_folder import ORDER_LABELS
from crs.report.inputs import EvalRun, TrainRun
from crs.report.sessions import series_name
from envs.metrics import (
    DEFAULT_MAX_TURNS,
    DIFF_SEED,
    MIN_PAIRED,
    MetricSummary,
    bootstrap_ci,
    ci_sign,
    per_episode_metrics,
    sr_at,
)
from policies.rankers import RUN_RANKER

METRICS: tuple[str, ...] = ("SR@5", "SR@10", "SR@15", "AT", "hDCG")
LOWER_IS_BETTER: frozenset[str] = frozenset({"AT"})
ABLATIONS: tuple[str, ...] = ("full", "persona-blind", "aspect-blind", "both-off")
PRIMARY = "SR@15"
ACTION_KINDS: tuple[str, ...] = ("ask", "probe", "recommend")


@dataclass(frozen=True)
class TestSet:
    """What must match for runs to share a table (the conversations' fingerprint aside).

    Attributes:
        sessions: Sessions per returning user of a `crs eval --sessions` run (its summary's sessions
            block); None for a plain `crs eval`, whose conversations are independent.
        regime: How those users' personas moved (`simulators.returning.REGIMES`); None without sessions.
        world: The persona world's sizes that differ from its defaults (`EvalRun.world`); empty for the
            default world and real data.
        order: How the conversations were chosen: crs's seeded sample, or a protocol's own order
            (`crs.app.run_folder.ORDER_LABELS`), which a figure compared with that protocol's must name.
    """

    dataset: str
    world_seed: int | None
    split: str
    user: str
    setting: str
    max_turns: int
    sessions: int | None = None
    regime: str | None = None
    world: tuple[tuple[str, int], ...] = ()
    order: str = "seeded"

    @classmethod
    def of(cls, run: EvalRun) -> TestSet:
        block = run.summary.sessions
        return cls(
            run.dataset,
            run.world_seed,
            run.split,
            run.user,
            run.setting,
            run.max_turns,
            sessions=None if block is None else block.sessions,
            regime=None if block is None else block.regime,
            world=run.world,
            order=run.summary.order,
        )

    @property
    def world_label(self) -> str:
        """ "world seed 0", with the sizes a custom-size world set ("world seed 0, n_users 40")."""
        return ", ".join([f"world seed {self.world_seed}", *(f"{key} {value}" for key, value in self.world)])

    @property
    def dataset_label(self) -> str:
        """ "persona_world (world seed 0)" (with a custom-size world's sizes) or the dataset name."""
        if self.world_seed is not None and self.dataset == "persona_world":
            return f"{self.dataset} ({self.world_label})"
        return self.dataset

    @property
    def returning_label(self) -> str:
        """ "returning users (6 sessions, regime switch)", or "" for plain conversations."""
        if self.sessions is None:
            return ""
        return f"returning users ({self.sessions} sessions, regime {self.regime})"

    @property
    def pair_unit(self) -> str:
        """What its paired counts count: "users" for returning users (their bootstraps resample whole
        users, `Row.units`), else "conversations"."""
        return "conversations" if self.sessions is None else "users"

    def describe(self) -> str:
        returning = f", {self.returning_label}" if self.sessions is not None else ""
        order = f", {ORDER_LABELS[self.order]}" if self.order in ORDER_LABELS else ""
        return (
            f"{self.dataset_label}, {self.split} split, {self.setting} setting, user {self.user}, "
            f"T = {self.max_turns}{order}{returning}"
        )


@dataclass(frozen=True)
class Row:
    """One configuration of a table.

    Attributes:
        label: Display name (unique in its table).
        runs: Its runs (one per seed).
        metrics: Mean and 95% CI per metric name.
        ci: "conversations" (bootstrap, one run) or "seeds" (Student-t across runs).
        ablation: "full", "persona-blind", "aspect-blind", "both-off", or None for other policies.
        best: Metric names in which this row is best (ties included).
        values: Per-conversation values per metric, keyed (fingerprint, goal index), averaged over runs.
        units: The independent unit of each key of `values` in a row of returning-user runs (`crs eval
            --sessions`): its user's sequence, as an int label; empty in other rows (each conversation is
            its own unit). Bootstraps resample whole units, since one user's sessions are correlated.
    """

    label: str
    runs: tuple[EvalRun, ...]
    metrics: Mapping[str, MetricSummary]
    ci: str
    ablation: str | None
    best: frozenset[str] = frozenset()
    values: Mapping[str, Mapping[tuple[str, int], float]] = field(default_factory=dict, repr=False)
    units: Mapping[tuple[str, int], int] = field(default_factory=dict, repr=False)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def run_conversations(self) -> tuple[int, ...]:
        """The conversations of each run, in `runs` order."""
        return tuple(len(run.records) for run in self.runs)

    @property
    def n_conversations(self) -> int | None:
        """The conversations of each run, when every run has as many; None when they differ."""
        counts = set(self.run_conversations)
        return counts.pop() if len(counts) == 1 else None

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.replica_seed for r in self.runs)

    @property
    def kind(self) -> str:
        return (
            "trained" if self.runs[0].train is not None or self.runs[0].ranker == RUN_RANKER.name else "rule"
        )


@dataclass(frozen=True)
class PairedDiff:
    """Reference minus `label` on shared conversations, mean and 95% CI per metric."""

    label: str
    reference: str
    metrics: Mapping[str, MetricSummary]
    n_pairs: int

    def significant(self, metric: str) -> bool:
        """Whether the CI of `metric` excludes zero (over at least `MIN_PAIRED` pairs)."""
        return ci_sign(self.metrics[metric], self.n_pairs) != 0


@dataclass(frozen=True)
class Table:
    """A comparison on one test set.

    Attributes:
        test_set: What its rows share.
        fingerprints: The conversation sets its rows were evaluated on.
        rows: Its configurations, in input order.
        reference: Label of the reference row of the paired differences (None with one row).
        diffs: Reference minus every other row.
        interaction: full − persona-blind − aspect-blind + both-off per metric, when all four exist.
        n_interaction: Conversations (users, for returning users) the interaction was computed on.
        separated: Why this table is not merged with another of the same dataset, or "".
        separated_fix: What would merge it ("re-run `crs eval` with ..."), or "": the pages show it
            after `separated`, a LaTeX caption (for a paper) leaves it out.
        unpaired: Rows left out of the paired differences because another ranker scored them, in words.
        whole: Ablation rows paired with the reference although their rankers differ: every run of both
            ran over a ranker pre-trained with its variant's switches, so the variants compare whole.
        ranker_diffs: The rankers alone: each rule over the reference's ranker minus the same rule over
            an ablation's own ranker ("ask-4" minus "ask-4 (persona-blind ranker)"), same conversations.
        own_rule_diffs: Each variant paired whole minus each rule over its own ranker ("rl · persona-blind"
            minus "ask-4 (persona-blind ranker)"): what its trained policy adds to the rule it sits on.
    """

    test_set: TestSet
    fingerprints: tuple[str, ...]
    rows: tuple[Row, ...]
    reference: str | None
    diffs: tuple[PairedDiff, ...]
    interaction: Mapping[str, MetricSummary] | None = None
    n_interaction: int = 0
    separated: str = ""
    separated_fix: str = ""
    unpaired: tuple[str, ...] = ()
    whole: tuple[str, ...] = ()
    ranker_diffs: tuple[PairedDiff, ...] = ()
    own_rule_diffs: tuple[PairedDiff, ...] = ()

    @property
    def title(self) -> str:
        return self.test_set.describe()

    @property
    def heading(self) -> str:
        """`title` with the conversations per run and their eval seeds: two tables of one test set but
        other conversations read apart, and a trained run's row (whose "runs" column gives its training
        seed) says which conversations it played."""
        return f"{self.title}, {_sizes_and_seeds(self)}"

    @property
    def conversations_per_run(self) -> str:
        """The runs' sizes: "200", or "200/300" when they differ."""
        sizes = sorted({len(run.records) for row in self.rows for run in row.runs})
        return "/".join(f"{size:,}" for size in sizes)

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)

    def by_ablation(self) -> dict[str, Row]:
        return {r.ablation: r for r in self.rows if r.ablation is not None}


# ------------------------------------------------------------------------------------------- rows
def _row_order(group: Sequence[EvalRun]) -> tuple[bool, int, bool]:
    """Trained policies first (the full model and its ablations in `ABLATIONS` order), then the rest, the
    baselines over an ablation's own ranker last; otherwise in the order they were read."""
    run = group[0]
    ablation = run.train.ablation if run.train is not None else None
    rank = ABLATIONS.index(ablation) if ablation in ABLATIONS else len(ABLATIONS)
    return run.train is None, rank, run.ranker_variant is not None


def _config_key(run: EvalRun) -> tuple[str, ...]:
    """The configuration of a run (see the module's rules): its policy, and a returning-user run's
    memory (frozen and updating memory of one policy are two configurations)."""
    memory = () if run.summary.sessions is None else (series_name(run),)
    return (*_policy_key(run), *memory)


def _policy_key(run: EvalRun) -> tuple[str, ...]:
    if run.task is not None:  # an eval task's seeds share a ranker; a train task may pre-train one per seed
        ranker = () if run.task.kind == "train" else (run.ranker_identity,)
        return ("sweep", *run.task.config_key(), *ranker)
    if run.tested_by is not None:  # one baseline of a sweep's tasks: its seeds are the tasks' seeds
        variant = run.ranker_variant or ""
        return ("sweep baseline", str(run.tested_by.sweep), run.tested_by.dataset, run.policy, variant)
    if run.train is not None:
        return ("train", run.train.config_key())
    return ("policy", run.policy, run.ranker_identity)  # a ranker by content: copies are one ranker


def _base_label(run: EvalRun) -> str:
    if run.task is not None:
        return run.task.label
    if run.train is not None:
        if run.train.ablation is not None:
            return run.train.ablation
        return without_seed(run.train.name)
    if run.ranker_variant is not None:
        return f"{run.policy} ({run.ranker_variant} ranker)"
    return run.policy


PROPORTIONS: frozenset[str] = frozenset({"SR@5", "SR@10", "SR@15", "hDCG"})
"""Metrics that lie in [0, 1]: their intervals are clipped to it."""


def seeds_interval(
    metric: str, means: Sequence[float], *, clip: bool = True, max_turns: int | None = None
) -> MetricSummary:
    """Mean over seeds and its 95% Student-t interval (n − 1 degrees of freedom), clipped to the values
    the metric can take unless `clip` is False (a difference lies on both sides of 0): [0, 1] for a
    proportion, [1, `max_turns`] for AT (at least one turn; the upper bound where given). A t-interval
    over a few seeds can otherwise leave them, e.g. [0.646, 1.154] or AT 7.88 [−6.42, 22.17]."""
    values = np.asarray(means, dtype=np.float64)
    n = values.size
    half = float(stats.t.ppf(0.975, n - 1)) * values.std(ddof=1) / math.sqrt(n)
    mean = float(values.mean())
    interval = MetricSummary(mean, mean - half, mean + half)
    return _clipped(metric, interval, max_turns) if clip else interval


def _clipped(metric: str, interval: MetricSummary, max_turns: int | None) -> MetricSummary:
    """`interval` within the values `metric` can take (see `seeds_interval`)."""
    low, high = interval.low, interval.high
    if metric in PROPORTIONS:
        low, high = max(low, 0.0), min(high, 1.0)
    elif metric == "AT":
        low, high = max(low, 1.0), high if max_turns is None else min(high, float(max_turns))
    return MetricSummary(interval.mean, low, high)


def seed_contrast(weighted: Sequence[tuple[Row, int]], metric: str) -> MetricSummary | None:
    """Σ weight × row mean on `metric`, per training seed (runs matched by replica seed), Student-t
    over the seeds; None unless at least 2 seeds are in every row and their values differ (no spread: a
    zero-width interval that proves nothing). E.g. ((full, 1), (both-off, −1)): full minus both-off
    across seeds, the seeds' spread included (a bootstrap over conversations leaves it out)."""
    by_seed = [({run.replica_seed: run for run in row.runs}, weight) for row, weight in weighted]
    seeds = sorted(set.intersection(*(set(runs) for runs, _ in by_seed)))
    if len(seeds) < 2:
        return None

    def mean(run: EvalRun) -> float:
        return float(per_episode_metrics(run.records, run.max_turns)[metric].mean())

    values = [sum(weight * mean(runs[seed]) for runs, weight in by_seed) for seed in seeds]
    if max(values) - min(values) == 0.0:
        return None
    return seeds_interval(metric, values, clip=False)


def row_metrics(
    runs: Sequence[EvalRun], units: Mapping[tuple[str, int], int]
) -> tuple[dict[str, MetricSummary], str]:
    """Mean and 95% CI per metric of one configuration, and how the CI was formed.

    One run: `bootstrap_ci` over its conversations (whole users in a `crs eval --sessions` run, by
    `units`: `conversation_units` of the runs) with the run's seed (what `crs eval` wrote).
    Several: the mean of the runs' means, Student-t interval with n−1 degrees of freedom, never
    narrower on either side than the bootstrap over all their conversations (whole users and whole
    runs' conversations apart): over a few seeds whose means happen to agree, the t-interval alone is of
    zero width, certainty that the conversations do not give.
    """
    per_run = [per_episode_metrics(run.records, run.max_turns) for run in runs]
    if len(runs) == 1:
        clusters = [units[(runs[0].fingerprint, r.goal_index)] for r in runs[0].records] if units else None
        return {
            m: bootstrap_ci(per_run[0][m], seed=runs[0].seed, clusters=clusters) for m in METRICS
        }, "conversations"
    # a conversation that several runs walked (seeds of a trained policy) is resampled whole
    labels: dict[tuple[str, int], int] = {}
    pooled_clusters = [
        units[key] if units else labels.setdefault(key, len(labels))
        for run in runs
        for key in ((run.fingerprint, r.goal_index) for r in run.records)
    ]
    most = max(run.max_turns for run in runs)
    out = {}
    for m in METRICS:
        seeds = seeds_interval(m, [values[m].mean() for values in per_run], clip=False)
        pooled = bootstrap_ci(
            np.concatenate([values[m] for values in per_run]), seed=runs[0].seed, clusters=pooled_clusters
        )
        low = min(seeds.low, seeds.mean - (pooled.mean - pooled.low))
        high = max(seeds.high, seeds.mean + (pooled.high - pooled.mean))
        out[m] = _clipped(m, MetricSummary(seeds.mean, low, high), most)
    return out, "seeds"


def conversation_values(runs: Sequence[EvalRun]) -> dict[str, dict[tuple[str, int], float]]:
    """Per metric, each conversation's value, averaged over the runs that walked it."""
    sums: dict[str, dict[tuple[str, int], float]] = {m: {} for m in METRICS}
    counts: dict[tuple[str, int], int] = {}
    for run in runs:
        values = per_episode_metrics(run.records, run.max_turns)
        keys = [(run.fingerprint, r.goal_index) for r in run.records]
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        for m in METRICS:
            bucket = sums[m]
            for key, value in zip(keys, values[m].tolist(), strict=True):
                bucket[key] = bucket.get(key, 0.0) + value
    return {m: {k: v / counts[k] for k, v in bucket.items()} for m, bucket in sums.items()}


def conversation_units(runs: Sequence[EvalRun]) -> dict[tuple[str, int], int]:
    """Each conversation's returning user, as an int label, when the runs are `crs eval --sessions`
    runs (goal index = sequence × S + session); empty otherwise (see `Row.units`)."""
    labels: dict[tuple[str, int], int] = {}
    units: dict[tuple[str, int], int] = {}
    for run in runs:
        if run.summary.sessions is None:
            continue
        per_user = run.summary.sessions.sessions
        for record in run.records:
            unit = labels.setdefault((run.fingerprint, record.goal_index // per_user), len(labels))
            units[(run.fingerprint, record.goal_index)] = unit
    return units


def _clusters(row: Row, keys: Sequence[tuple[str, int]]) -> tuple[list[int] | None, int]:
    """The bootstrap clusters of `keys` in `row` (None: each key its own) and how many units they are; a
    key `row.units` does not hold (a conversation of no returning user) is a unit of its own."""
    if not row.units:
        return None, len(keys)
    own = itertools.count(max(row.units.values()) + 1)
    clusters = [row.units[key] if key in row.units else next(own) for key in keys]
    return clusters, len(set(clusters))


def _best(rows: Sequence[Row]) -> dict[str, frozenset[str]]:
    best: dict[str, set[str]] = {r.label: set() for r in rows}
    if len(rows) < 2:
        return {label: frozenset() for label in best}
    for m in METRICS:
        means = np.array([r.metrics[m].mean for r in rows])
        target = means.min() if m in LOWER_IS_BETTER else means.max()
        for r, value in zip(rows, means, strict=True):
            if abs(value - target) <= 1e-12:
                best[r.label].add(m)
    return {label: frozenset(ms) for label, ms in best.items()}


def paired_difference(reference: Row, other: Row) -> PairedDiff:
    """Reference minus `other` on the conversations both walked; 95% bootstrap CI over them (over
    returning users in rows of `crs eval --sessions` runs, whose pairs are then counted in users)."""
    keys = sorted(set(reference.values[PRIMARY]) & set(other.values[PRIMARY]))
    clusters, n_units = _clusters(reference, keys)
    out = {}
    for m in METRICS:
        d = np.array([reference.values[m][k] - other.values[m][k] for k in keys])
        out[m] = bootstrap_ci(d, seed=DIFF_SEED, clusters=clusters)
    return PairedDiff(label=other.label, reference=reference.label, metrics=out, n_pairs=n_units)


def interaction_contrast(rows: Mapping[str, Row]) -> tuple[dict[str, MetricSummary], int]:
    """full − persona-blind − aspect-blind + both-off per conversation (> 0: the two help each other)."""
    keys = set.intersection(*(set(rows[a].values[PRIMARY]) for a in ABLATIONS))
    ordered = sorted(keys)
    clusters, n_units = _clusters(rows["full"], ordered)
    out = {}
    for m in METRICS:
        v = {a: np.array([rows[a].values[m][k] for k in ordered]) for a in ABLATIONS}
        contrast = v["full"] - v["persona-blind"] - v["aspect-blind"] + v["both-off"]
        out[m] = bootstrap_ci(contrast, seed=DIFF_SEED, clusters=clusters)
    return out, n_units


# ----------------------------------------------------------------------------------------- tables
def duplicates(runs: Iterable[EvalRun]) -> list[tuple[EvalRun, EvalRun]]:
    """Runs that repeat an earlier one (same test set, configuration, seed and conversations), each
    with the run it repeats, in input order; `build_tables` reads each such pair once."""
    seen: dict[tuple[object, ...], EvalRun] = {}
    repeats: list[tuple[EvalRun, EvalRun]] = []
    for run in runs:
        key = (TestSet.of(run), _config_key(run), run.replica_seed, run.fingerprint)
        if key in seen:
            repeats.append((run, seen[key]))
        else:
            seen[key] = run
    return repeats


def build_tables(runs: Iterable[EvalRun]) -> tuple[list[Table], list[str]]:
    """Group runs into comparison tables (a run that repeats another, see `duplicates`, is read once).

    Returns:
        The tables (one per test set and conversation set) and notes about what was split apart, in
        words (the datasets and question settings the inputs cover).
    """
    runs = list(runs)
    repeats = {id(run) for run, _ in duplicates(runs)}
    notes: list[str] = []
    by_test: dict[TestSet, dict[tuple[str, ...], list[list[EvalRun]]]] = {}
    for run in runs:
        if id(run) in repeats:
            continue
        groups = by_test.setdefault(TestSet.of(run), {}).setdefault(_config_key(run), [])
        # runs of one configuration are its seeds; another run with a seed already in the group walked
        # other conversations (a duplicate was dropped above): it starts a group of its own, which lands
        # in the table of its conversations
        group = next((g for g in groups if run.replica_seed not in {r.replica_seed for r in g}), None)
        if group is None:
            groups.append([run])
        else:
            group.append(run)

    tables: list[Table] = []
    for test_set, configs in by_test.items():
        by_conversations: dict[frozenset[str], list[list[EvalRun]]] = {}
        all_groups = [g for groups in configs.values() for g in groups]
        for group in sorted(all_groups, key=_row_order):
            by_conversations.setdefault(frozenset(r.fingerprint for r in group), []).append(group)
        subsets = list(by_conversations.items())
        for fingerprints, groups in subsets:
            separated = fix = ""
            if len(subsets) > 1:
                others = [_describe_conversations(g) for f, g in subsets if f != fingerprints]
                # named as their own tables name their rows
                elsewhere = sorted({x for f, gs in subsets if f != fingerprints for x in _row_labels(gs)})
                shared = any(f != fingerprints and f & fingerprints for f, _ in subsets)
                same_draw = all(_draw(gs) == _draw(groups) for f, gs in subsets if f != fingerprints)
                separated = (
                    "not compared with "
                    f"{', '.join(elsewhere)} "
                    "in one table: they were evaluated on other test conversations "
                    f"({_describe_conversations(groups)} "
                    f"here; {'; '.join(others)} there). "
                )
                if shared:
                    separated += (
                        "Some conversation lists are shared: a row pools all its seeds' runs, so rows pair "
                        "only when they walked the same lists"
                    )
                    fix = (
                        "evaluate every row with the same seeds (or leave the extra runs out) to compare them"
                    )
                elif same_draw:
                    separated += (
                        "Same sizes and seeds with another conversation list mean the catalogue or its "
                        "split differed (another world size or data version)"
                    )
                    fix = (
                        "re-run `crs eval` with the same --episodes and --seed on the same data to compare "
                        "them"
                    )
                else:
                    separated += "Their numbers of conversations or eval seeds differ"
                    fix = "re-run `crs eval` with the same --episodes and --seed to compare them"
                rerankered = _named_alike_over_other_rankers(
                    groups, [gs for f, gs in subsets if f != fingerprints]
                )
                if rerankered:
                    separated += (
                        f". Also, {'; '.join(rerankered)}: those rows are not one configuration's seeds"
                    )
            tables.append(_table(test_set, tuple(sorted(fingerprints)), groups, separated, fix))
    for dataset in sorted({t.test_set.dataset_label for t in tables}):
        settings = sorted({t.test_set.setting for t in tables if t.test_set.dataset_label == dataset})
        if len(settings) > 1:
            notes.append(
                f"{dataset} was evaluated in {len(settings)} question settings ({', '.join(settings)}): each "
                "has its own table and no figure is compared across them (envs.setting says which "
                "published figures each one compares with)"
            )
    datasets = sorted({t.test_set.dataset_label for t in tables})
    if len(datasets) > 1:
        notes.append(
            f"inputs cover {len(datasets)} datasets ({', '.join(datasets)}): each has its own table; "
            "figures from different datasets are not comparable"
        )
    return tables, notes


def pairing_note(table: Table) -> str:
    """What a table's paired differences rest on, in words (no final period)."""
    note = f"a CI counts only over at least {MIN_PAIRED} pairs"
    if any(row.units for row in table.rows):
        note += (
            "; rows of returning-user runs (`crs eval --sessions`) pair session by session but resample "
            "whole users (one user's sessions are correlated), and their pairs are counted in users"
        )
    if any(row.n_runs > 1 for row in table.rows):
        note += (
            "; rows of several seeds are paired over their conversations here, which leaves out "
            "the seeds' spread (the answer's comparisons use the interval across seeds where every row "
            "compared has two seeds or more that differ)"
        )
    return note


def separation(table: Table, first: Table) -> str:
    """What sets `table` apart from `first` (the report's table 1), in a few words.

    E.g. "other question setting (binary)", or for the same test set on other conversations their sizes
    and seeds, and the fix when sizes and seeds agree (the data differed).
    """
    mine, theirs = table.test_set, first.test_set
    parts = []
    if mine.dataset != theirs.dataset:
        parts.append(f"other dataset ({mine.dataset_label})")
    elif (mine.world_seed, mine.world) != (theirs.world_seed, theirs.world):
        parts.append(f"other persona world ({mine.world_label})")
    if mine.split != theirs.split:
        parts.append(f"other split ({mine.split})")
    if mine.setting != theirs.setting:
        parts.append(f"other question setting ({mine.setting})")
    if mine.user != theirs.user:
        parts.append(f"other simulated user ({mine.user})")
    if mine.max_turns != theirs.max_turns:
        parts.append(f"other turn limit (T = {mine.max_turns})")
    if (mine.sessions, mine.regime) != (theirs.sessions, theirs.regime):
        parts.append(mine.returning_label or "plain conversations (no returning users)")
    if parts:
        return ", ".join(parts)
    here, there = _sizes_and_seeds(table), _sizes_and_seeds(first)
    if here != there:
        return f"other test conversations ({here}; table 1: {there})"
    return (
        f"other test conversations of the same size and seed ({here}): the data differed (another world "
        "size or data version); re-run `crs eval` on the same data to compare them"
    )


def _sizes_and_seeds(table: Table) -> str:
    """ "40 conversations, eval seed 1": the sizes and eval seeds of a table's runs."""
    runs = [run for row in table.rows for run in row.runs]
    sizes = sorted({len(run.records) for run in runs})
    seeds = sorted({run.seed for run in runs})
    return (
        f"{'/'.join(str(s) for s in sizes)} conversations, eval seed{'s' if len(seeds) > 1 else ''} "
        f"{', '.join(str(s) for s in seeds)}"
    )


def _draw(groups: Sequence[list[EvalRun]]) -> tuple[frozenset[int], frozenset[int]]:
    """The numbers of conversations and the eval seeds of `groups`' runs: what draws their lists."""
    runs = [r for g in groups for r in g]
    return frozenset(len(r.records) for r in runs), frozenset(r.seed for r in runs)


def _named_alike_over_other_rankers(
    groups: Sequence[list[EvalRun]], elsewhere: Sequence[Sequence[list[EvalRun]]]
) -> list[str]:
    """For each row label of `groups` that a row of another table shares while its runs ran over other
    rankers (`EvalRun.ranker_identity`), what differs: the rankers' names ("probe-2-ask-5 ran over
    uniform here, rk/mc there"), else their weights under one name."""
    here = dict(zip(_row_labels(groups), groups, strict=True))
    said: dict[str, str] = {}
    for other in elsewhere:
        for label, group in zip(_row_labels(other), other, strict=True):
            if label not in here or {r.ranker_identity for r in group} == {
                r.ranker_identity for r in here[label]
            }:
                continue
            names_here = "/".join(sorted({r.ranker_name for r in here[label]}))
            names_there = "/".join(sorted({r.ranker_name for r in group}))
            said.setdefault(
                label,
                f"{label} ran over {names_here} here, {names_there} there"
                if names_here != names_there
                else f"{label} ran over {names_here} here and there, but of other weights (a ranker "
                "pre-trained again in place, or another one at that path)",
            )
    return [said[label] for label in sorted(said)]


def _describe_conversations(groups: Sequence[list[EvalRun]]) -> str:
    runs = [r for g in groups for r in g]
    sizes = sorted({len(r.records) for r in runs})
    seeds = sorted({r.seed for r in runs})
    prints = sorted({r.fingerprint for r in runs})
    return (
        f"{'/'.join(str(s) for s in sizes)} conversations, eval seed{'s' if len(seeds) > 1 else ''} "
        f"{', '.join(str(s) for s in seeds)}, conversation list {'/'.join(prints)}"
    )


def _table(
    test_set: TestSet,
    fingerprints: tuple[str, ...],
    groups: list[list[EvalRun]],
    separated: str,
    separated_fix: str,
) -> Table:
    labels = _row_labels(groups)
    rows = []
    for group, label in zip(groups, labels, strict=True):
        values, units = conversation_values(group), conversation_units(group)
        metrics, ci = row_metrics(group, units)
        ablation = group[0].train.ablation if group[0].train is not None else None
        rows.append(Row(label, tuple(group), metrics, ci, ablation, values=values, units=units))
    ablations = [r.ablation for r in rows if r.ablation is not None]
    if len(set(ablations)) != len(ablations):  # two configs per ablation: do not guess which is "the" one
        rows = [dataclasses.replace(r, ablation=None) for r in rows]
    best = _best(rows)
    rows = [dataclasses.replace(r, best=best[r.label]) for r in rows]
    reference = _reference(rows)
    diffs: tuple[PairedDiff, ...] = ()
    unpaired: tuple[str, ...] = ()
    whole: tuple[str, ...] = ()
    ranker_diffs: tuple[PairedDiff, ...] = ()
    own_rule_diffs: tuple[PairedDiff, ...] = ()
    interaction, n_interaction = None, 0
    if reference is not None:
        ref_row = next(r for r in rows if r.label == reference)
        whole = tuple(
            r.label
            for r in rows
            if r.label != reference and _rankers(r) != _rankers(ref_row) and _whole_variants(r, ref_row)
        )
        same = [
            r
            for r in rows
            if r.label != reference
            and (_rankers(r) == _rankers(ref_row) or r.label in whole or _same_rule(r, ref_row))
        ]
        diffs = tuple(paired_difference(ref_row, r) for r in same)
        others = [r for r in rows if r.label != reference and r not in same]
        variants = [r.label for r in others if r.runs[0].ranker_variant is not None]
        variant_rules = [r for r in others if r.label in variants]
        ranker_diffs = _rankers_alone(ref_row, rows, variant_rules)
        own_rule_diffs = tuple(
            paired_difference(row, rule)
            for row in rows
            if row.label in whole
            for rule in variant_rules
            if _rankers(rule) == _rankers(row)
        )
        unpaired = tuple(
            f"{r.label} (ranker {_ranker_names(r)}) is not paired with {reference} (ranker "
            f"{_ranker_names(ref_row)}): a difference would mix the policy with its ranker; evaluate "
            f"it with {reference}'s ranker (`crs eval --ranker ...`) to compare them"
            for r in others
            if r.label not in variants
        ) + (
            (
                f"{', '.join(variants)}: rules over an ablation's own ranker, not paired with {reference} (a "
                "difference would mix the rule with that ranker)"
                + (
                    f"; each is paired with the same rule over {reference}'s ranker (the rankers alone)"
                    if ranker_diffs
                    else ""
                )
                + ("; and with the variant over its ranker" if own_rule_diffs else ""),
            )
            if variants
            else ()
        )
        by_ablation = {r.ablation: r for r in [ref_row, *same] if r.ablation is not None}
        if all(a in by_ablation for a in ABLATIONS):
            interaction, n_interaction = interaction_contrast(by_ablation)
    return Table(
        test_set,
        fingerprints,
        tuple(rows),
        reference,
        diffs,
        interaction,
        n_interaction,
        separated,
        separated_fix,
        unpaired,
        whole,
        ranker_diffs,
        own_rule_diffs,
    )


def _rankers_alone(
    reference: Row, rows: Sequence[Row], variant_rules: Sequence[Row]
) -> tuple[PairedDiff, ...]:
    """Each rule over an ablation's own ranker, paired with the same rule over the reference's ranker (the
    one row of that policy whose rankers are the reference's), where the table holds it."""
    candidates = [r for r in rows if r.ablation is None and _rankers(r) == _rankers(reference)]
    policies = [r.runs[0].policy for r in candidates]
    over_reference = {p: r for p, r in zip(policies, candidates, strict=True) if policies.count(p) == 1}
    return tuple(
        paired_difference(over_reference[r.runs[0].policy], r)
        for r in variant_rules
        if r.runs[0].policy in over_reference
    )


def trained_run_label(name: str, dataset: str) -> str:
    """A trained policy named after its train run `name` without the seed; "RL (<that>)" where it is
    the `dataset`'s name (`crs train`'s default run name), which alone would read as the dataset."""
    base = without_seed(name)
    return f"RL ({base})" if base == dataset else base


def _row_labels(groups: Sequence[list[EvalRun]]) -> list[str]:
    """One label per group, never two alike: its base label, and where two groups share one, what tells
    them apart (the sweep, the train run's name without its seed, else the full name, or the ranker's
    last path part, else as many as it takes; with a returning-user run's memory, which a rule's name
    holds and a trained policy's does not). Groups that are still alike are numbered. A trained full
    model is "full" only beside one of its ablations; alone, it is named after its run, as "RL (<run>)"
    where the run is named after its dataset (the default name: "persona_world-s0" read "persona_world")."""
    labels = [_base_label(g[0]) for g in groups]
    if set(labels) & set(ABLATIONS) == {"full"}:
        labels = [
            trained_run_label(g[0].train.name, g[0].dataset) if label == "full" and g[0].train else label
            for g, label in zip(groups, labels, strict=True)
        ]
    shared = {label for label in labels if labels.count(label) > 1}

    def suffix(run: EvalRun, keep_seed: bool, ranker_parts: int) -> str:
        if run.task is not None:
            name = run.task.sweep.name
        elif run.train is not None:
            name = run.train.name if keep_seed else without_seed(run.train.name)
        else:
            return _tail(run.ranker_name, ranker_parts)
        return name if run.summary.sessions is None else f"{name}, memory {series_name(run)}"

    def named(keep_seed: bool, ranker_parts: int = 1) -> list[str]:
        return [
            f"{label} ({suffix(g[0], keep_seed, ranker_parts)})" if label in shared else label
            for g, label in zip(groups, labels, strict=True)
        ]

    depth = max((g[0].ranker_name.count("/") + 1 for g in groups), default=1)
    attempts = [named(False), *(named(True, parts) for parts in range(1, depth + 1))]
    for attempt in attempts:
        if len(set(attempt)) == len(attempt):
            return attempt
    last = attempts[-1]
    return [
        f"{label} #{last[:index].count(label) + 1}" if last.count(label) > 1 else label
        for index, label in enumerate(last)
    ]


def without_seed(name: str) -> str:
    """A run name without a trailing seed after a separator ("full-s1", "full_seed1" -> "full"); "ws2",
    whose s2 is part of its name, and a name that is only a seed are kept."""
    return re.sub(r"[-_.](s|seed)\d+$", "", name) or name


def _rankers(row: Row) -> frozenset[str]:
    """The rankers of a row's runs, by content (`EvalRun.ranker_identity`)."""
    return frozenset(run.ranker_identity for run in row.runs)


def _same_rule(row: Row, reference: Row) -> bool:
    """Whether two rows run one rule (over other rankers): their difference is the rankers' alone."""
    specs = {run.summary.policy_spec for run in (*row.runs, *reference.runs)}
    return row.kind == reference.kind == "rule" and len(specs) == 1


def _whole_variants(row: Row, reference: Row) -> bool:
    """Whether two ablation rows are variants compared whole: every run of both trained a policy over a
    ranker pre-trained with its variant's switches (`crs.report.inputs.TrainInfo.ranker_follows_ablation`)."""
    runs = (*row.runs, *reference.runs)
    return (
        row.ablation is not None
        and reference.ablation is not None
        and all(run.train is not None and run.train.ranker_follows_ablation for run in runs)
    )


def _ranker_names(row: Row) -> str:
    """The rankers of a row's runs as shown: a trained policy's is its run's ranker."""
    return ", ".join(sorted({run.ranker_name for run in row.runs}))


def _tail(ranker: str, parts: int) -> str:
    """The last `parts` parts of a ranker's path ("runs/a/ranker", 2 -> "a/ranker")."""
    return "/".join(ranker.rstrip("/").split("/")[-parts:]) or ranker


def _reference(rows: Sequence[Row]) -> str | None:
    if len(rows) < 2:
        return None
    full = [r for r in rows if r.ablation == "full"]
    if full:
        return full[0].label
    return max(rows, key=lambda r: (r.metrics[PRIMARY].mean, r.metrics["hDCG"].mean)).label


# --------------------------------------------------------------------------------- distributions
def pooled_records(row: Row) -> list:
    """All records of a row's runs."""
    return [record for run in row.runs for record in run.records]


def sr_curve(row: Row) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SR@t for t = 1 .. T−1 agent actions, pooled over runs: (t, mean, low, high), each shape (T−1,);
    the band resamples whole users in a row of returning-user runs (`Row.units`)."""
    records = pooled_records(row)
    clusters, _ = _clusters(row, [(run.fingerprint, r.goal_index) for run in row.runs for r in run.records])
    ts = np.arange(1, row.runs[0].max_turns)
    summaries = [
        bootstrap_ci(sr_at(records, int(t)), seed=DIFF_SEED, n_resamples=400, clusters=clusters) for t in ts
    ]
    return (
        ts,
        np.array([s.mean for s in summaries]),
        np.array([s.low for s in summaries]),
        np.array([s.high for s in summaries]),
    )


def turn_distribution(row: Row) -> tuple[np.ndarray, np.ndarray, float]:
    """Share of conversations that succeed at each agent action t = 1 .. T−1, and the failure share."""
    records = pooled_records(row)
    ts = np.arange(1, row.runs[0].max_turns)
    shares = np.array([sum(r.success and r.agent_actions == t for r in records) for t in ts]) / len(records)
    return ts, shares, float(np.mean([not r.success for r in records]))


def action_mix(row: Row) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Per agent action t = 1 .. T−1: share of each action kind among conversations still running.

    Returns:
        t (shape (T−1,)), {kind: share, shape (T−1,)} (NaN where no conversation is left), and the
        number of conversations still running at each t, shape (T−1,).
    """
    records = pooled_records(row)
    ts = np.arange(1, row.runs[0].max_turns)
    counts = {kind: np.zeros(ts.size) for kind in ACTION_KINDS}
    running = np.zeros(ts.size)
    for record in records:
        for position, kind in enumerate(record.kinds[: ts.size]):
            running[position] += 1
            if kind in counts:
                counts[kind][position] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {
            kind: np.where(running > 0, c / np.maximum(running, 1), np.nan) for kind, c in counts.items()
        }
    return ts, shares, running


# ------------------------------------------------------------------------------------------ answer
def _fmt(summary: MetricSummary, signed: bool = False, digits: int = 3) -> str:
    sign = "+" if signed else ""
    return (
        f"{summary.mean:{sign}.{digits}f} [{summary.low:{sign}.{digits}f}, {summary.high:{sign}.{digits}f}]"
    )


def answer(tables: Sequence[Table]) -> tuple[str, dict[str, str]]:
    """The answer to "do persona and aspect attention work better together than apart?", from numbers.

    Returns:
        The paragraph, and a verdict per dataset label ("yes", "no", "inconclusive"; a dataset with
        several tables, e.g. two settings, gets one per table, named by setting and table number);
        datasets without a full model and its ablations get no verdict.
    """
    sentences: list[str] = []
    verdicts: dict[str, str] = {}
    datasets = [table.test_set.dataset_label for table in tables]
    for number, table in enumerate(tables, 1):
        paired = {d.label for d in table.diffs}  # an ablation scored by another ranker is not compared
        rows = {a: r for a, r in table.by_ablation().items() if a == "full" or r.label in paired}
        if "full" not in rows or len(rows) < 2:
            continue
        dataset = table.test_set.dataset_label
        full = rows["full"]
        diffs = {d.label: d for d in table.diffs}
        parts = []
        wins, losses = 0, 0
        for ablation in ABLATIONS[1:]:
            if ablation not in rows:
                continue
            d = diffs[rows[ablation].label]
            across_seeds = seed_contrast(((full, 1), (rows[ablation], -1)), PRIMARY)
            m = d.metrics[PRIMARY] if across_seeds is None else across_seeds
            side = ci_sign(m, d.n_pairs)
            if side > 0:
                wins += 1
                word = "beats"
            elif side < 0:
                losses += 1
                word = "loses to"
            seeds = "" if across_seeds is None else " across training seeds"
            if side == 0:  # "within noise of X by +0.037" read as a gain
                parts.append(f"is not told apart from {ablation} ({_fmt(m, signed=True)}{seeds})")
            else:
                parts.append(f"{word} {ablation} by {_fmt(m, signed=True)}{seeds}")
        missing = [a for a in ABLATIONS[1:] if a not in rows]
        ablation_labels = {rows[a].label for a in ABLATIONS[1:] if a in rows}
        n_conv = min(d.n_pairs for d in table.diffs if d.label in ablation_labels)
        unit = table.test_set.pair_unit
        text = (
            f"On {dataset} ({table.test_set.split} split, {table.test_set.setting} setting, {n_conv} paired "
            f"{unit}), the full model reaches {PRIMARY} {_fmt(full.metrics[PRIMARY])} and "
            f"{'; '.join(parts)} ({PRIMARY}, full minus ablation, 95% CI)."
        )
        if n_conv < MIN_PAIRED:
            text += (
                f" Fewer than {MIN_PAIRED} paired {unit}: no interval over them counts as evidence either "
                "way."
            )
        if losses:
            verdict = "no"
            text += (
                " So on this dataset persona and aspect attention do **not** work better together: an "
                "ablation does better."
            )
        elif missing:
            verdict = "inconclusive"
            text += (
                f" So on this dataset the question stays **open**: {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing (or scored by another ranker), and only the "
                "full model against all three ablations (persona-blind, aspect-blind, both-off) says "
                "whether the two attentions work better together than apart."
            )
        elif wins == len(ABLATIONS) - 1:
            verdict = "yes"
            text += (
                " So on this dataset persona and aspect attention work **better together than apart**: the "
                "full "
                "model beats every ablation with CIs that exclude zero."
            )
        else:
            verdict = "inconclusive"
            text += (
                " So on this dataset the evidence is **inconclusive**: the full model is not clearly better "
                "than "
                "every ablation (a CI includes zero); more conversations or seeds would narrow it."
            )
        if table.interaction is not None:
            signs = (1, -1, -1, 1)  # full − persona-blind − aspect-blind + both-off
            weighted = tuple((rows[a], w) for a, w in zip(ABLATIONS, signs, strict=True))
            seeded = seed_contrast(weighted, PRIMARY)
            inter = table.interaction[PRIMARY] if seeded is None else seeded
            side = ci_sign(inter, table.n_interaction)
            if side > 0:
                how = "together they add more than the sum of their separate gains (they help each other)"
            elif side < 0:
                how = "together they add less than the sum of their separate gains (they overlap)"
            else:  # "about the sum" claimed more than an interval around 0 (or too few pairs) supports
                why = (
                    "its interval includes 0"
                    if inter.low <= 0 <= inter.high
                    else f"it rests on fewer than {MIN_PAIRED} paired {table.test_set.pair_unit}"
                )
                sums = "more or less than the sum of their gains"
                how = f"{why}, so whether together they add {sums} is not told"
            text += (
                " The interaction full − persona-blind − aspect-blind + both-off is "
                f"{_fmt(inter, signed=True)}{'' if seeded is None else ' across training seeds'}: {how}."
            )
        if table.ranker_diffs:
            alone = "; ".join(
                f"{d.reference} − {d.label} {_fmt(d.metrics[PRIMARY], signed=True)}"
                for d in table.ranker_diffs
            )
            text += (
                f" The rankers alone, each rule over the full model's ranker minus the same rule over an "
                f"ablation's own ({PRIMARY}, same conversations): {alone}."
            )
        # two tables of one dataset (e.g. two settings) each keep their verdict
        where = f"{dataset} ({table.test_set.setting} setting, table {number})"
        verdicts[where if datasets.count(dataset) > 1 else dataset] = verdict
        sentences.append(text)
    if not sentences:
        best = []
        for number, table in enumerate(tables, 1):
            # an oracle memory knows each session's true persona: a bound for the others, not a contender
            contenders = [row for row in table.rows if not _is_oracle(row)] or list(table.rows)
            top = max(contenders, key=lambda r: (r.metrics[PRIMARY].mean, r.metrics["hDCG"].mean))
            where = f" on {table.test_set.dataset_label}" + (f", table {number}" if len(tables) > 1 else "")
            if len({t.test_set.setting for t in tables if t.test_set.dataset == table.test_set.dataset}) > 1:
                where += f" ({table.test_set.setting} setting)"  # two tables of one dataset read apart
            tied = [r for r in contenders if r.metrics[PRIMARY].mean == top.metrics[PRIMARY].mean]
            the = "The" if number == 1 else "the"
            if len(tied) > 1:  # no best to name; each keeps its own interval
                best.append(
                    f"{the} best {PRIMARY} mean among the policies compared{where} is shared by "
                    + _names([f"{row.label} ({_figure(row)})" for row in tied])
                )
            elif len(contenders) > 1:
                lead = f"{the} best by {PRIMARY} among the policies compared{where}"
                best.append(_top_row(table, top, contenders, lead))
            else:  # one policy: nothing to be best among
                best.append(f"{top.label} alone was evaluated{where} ({_figure(top)})")
            oracles = [row.label for row in table.rows if row not in contenders]
            if oracles:
                best[-1] += (
                    f"; {_names(oracles)} knows each session's true persona: their bound, not a contender"
                )
        return (
            "; ".join(best)
            + ". Whether persona and aspect attention work better together than apart needs a trained full "
            "model and its ablations (train runs with persona_attention / aspect_attention switched off, "
            "evaluated on the same test conversations): add those `crs train` runs to the inputs.",
            {},
        )
    summary = ", ".join(f"{d}: {v}" for d, v in verdicts.items())
    return " ".join(sentences) + f" Verdict per dataset — {summary}.", verdicts


def _top_row(table: Table, top: Row, contenders: Sequence[Row], lead: str) -> str:
    """`lead` naming `top`, the row of the highest mean among `contenders`, and whether its paired
    differences tell it apart from the other contenders: a mean alone names no best (two seeds'
    intervals are wide), and neither does a difference to only some of them (a row it is not paired
    with, e.g. over another ranker)."""
    figure = _figure(top)
    others = {row.label for row in contenders if row is not top}
    diffs = [d for d in table.diffs if d.reference == top.label and d.label in others]
    if not diffs:  # the differences are taken from another row (the full model)
        return f"{lead} is {top.label} ({figure}, the highest mean)"
    few = [d.label for d in diffs if d.n_pairs < MIN_PAIRED]
    close = [
        d.label for d in diffs if d.n_pairs >= MIN_PAIRED and ci_sign(d.metrics[PRIMARY], d.n_pairs) <= 0
    ]
    unpaired = sorted(others - {d.label for d in diffs})
    reasons = []
    if few:
        reasons.append(
            f"its paired differences to {_names(few)} rest on fewer than {MIN_PAIRED} conversations"
        )
    if close:
        reasons.append(f"its paired difference to {_names(close)} has a 95% CI that includes 0")
    if unpaired:
        reasons.append(f"it is not paired with {_names(unpaired)} (see the table's notes)")
    if not reasons:
        above = "paired 95% CI of the difference above 0"
        return f"{lead} is {top.label} ({figure}), ahead of each of the others ({above})"
    return f"{lead} is not told apart: {top.label} has the highest mean ({figure}), but {'; '.join(reasons)}"


def _figure(row: Row) -> str:
    """`row`'s primary metric with its interval, e.g. "SR@15 0.900 [0.880, 0.920], across its 3 seeds"."""
    # a row of several seeds has the table's Student-t interval across them, not the pooled bootstrap
    across = f", across its {row.n_runs} seeds" if row.ci == "seeds" else ""
    return f"{PRIMARY} {_fmt(row.metrics[PRIMARY])}{across}"


def _is_oracle(row: Row) -> bool:
    """Whether `row` is of returning-user runs whose memory is the oracle (knows the true persona)."""
    return all(
        run.summary.sessions is not None and run.summary.sessions.memory == "oracle" for run in row.runs
    )


def _names(labels: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return ", ".join(labels[:-1]) + (" and " if len(labels) > 1 else "") + labels[-1]


# ------------------------------------------------------------------------------ train-run summaries
@dataclass(frozen=True)
class TrainSummaryRow:
    """A train configuration's own final test figures (``runs/<name>/summary.json``), over its seeds.

    Attributes:
        label: Configuration label ("full", "persona-blind", ... or the run name without its seed).
        runs: Its runs that wrote a test summary.
        metrics: The trained policy's test metrics: the run's bootstrap CI for one run, Student-t across
            runs for several.
        ci: "conversations" or "seeds".
        timesteps: Training steps of each run.
        test_episodes: Test conversations of each run.
    """

    label: str
    runs: tuple[TrainRun, ...]
    metrics: Mapping[str, MetricSummary]
    ci: str
    timesteps: tuple[int, ...]
    test_episodes: tuple[int, ...]

    @property
    def ablation(self) -> str | None:
        return self.runs[0].info.ablation


def _trained_entry(run: TrainRun) -> Mapping[str, MetricSummary] | None:
    """The trained policy's row of a run's test summary ("RL (<name>)"), else None."""
    if not run.test_summary:
        return None
    for label, metrics in run.test_summary.items():
        if label.startswith("RL") or run.info.name in label:
            return metrics
    return None


def train_summary_rows(groups: Mapping[str, Sequence[TrainRun]]) -> list[TrainSummaryRow]:
    """One row per train configuration with a final test summary: one run's own interval, or over
    several the Student-t interval across them, as the comparison tables form it (`row_metrics`):
    within the values the metric can take (AT at most T) and never narrower on either side than the
    runs' own bootstrap intervals pooled (their mean half-width over √runs, since the records behind
    the summaries are not read here); two seeds that agree gave a zero-width interval."""
    rows = []
    for label, runs in groups.items():
        found = [(run, _trained_entry(run)) for run in runs]
        entries = [(run, e) for run, e in found if e is not None and all(m in e for m in METRICS)]
        if not entries:
            continue
        if len(entries) == 1:
            metrics, ci = dict(entries[0][1]), "conversations"
        else:
            limit = max(
                run.final_eval.max_turns if run.final_eval else DEFAULT_MAX_TURNS for run, _ in entries
            )
            metrics = {m: _pooled_seeds_interval(m, [e[m] for _, e in entries], limit) for m in METRICS}
            ci = "seeds"
        rows.append(
            TrainSummaryRow(
                label=label,
                runs=tuple(run for run, _ in entries),
                metrics=metrics,
                ci=ci,
                timesteps=tuple(run.summary.timesteps if run.summary else 0 for run, _ in entries),
                test_episodes=tuple(run.summary.test_episodes if run.summary else 0 for run, _ in entries),
            )
        )
    return rows


def _pooled_seeds_interval(metric: str, runs: Sequence[MetricSummary], max_turns: int) -> MetricSummary:
    """The Student-t interval across `runs`' means, never narrower on either side than their own
    intervals' mean half-widths over √n, within [1, `max_turns`] for AT (see `train_summary_rows`)."""
    seeds = seeds_interval(metric, [run.mean for run in runs], clip=False)
    shrink = math.sqrt(len(runs))
    below = float(np.mean([run.mean - run.low for run in runs])) / shrink
    above = float(np.mean([run.high - run.mean for run in runs])) / shrink
    low, high = min(seeds.low, seeds.mean - below), max(seeds.high, seeds.mean + above)
    return _clipped(metric, MetricSummary(seeds.mean, low, high), max_turns)


def unpaired_answer(rows: Sequence[TrainSummaryRow]) -> str | None:
    """What the train runs' own test summaries say about full vs ablations (unpaired), or None.

    Rows of two configurations of one ablation (e.g. two sweeps) are never pooled: the answer then says
    that it compares one configuration at a time.
    """
    ablated = [r for r in rows if r.ablation is not None]
    by_ablation = {r.ablation: r for r in ablated}
    if "full" not in by_ablation or len(by_ablation) < 2:
        return None
    if len(ablated) > len(by_ablation):
        labels = ", ".join(r.label for r in ablated)
        return (
            f"The inputs hold more than one configuration of the full model and its ablations ({labels}). "
            "The tables compare them row by row, but no verdict is drawn across configurations: pass one "
            "configuration (e.g. one sweep folder) to `crs report` for its answer."
        )
    parts = [
        f"{a} {_fmt(by_ablation[a].metrics[PRIMARY])} ({len(by_ablation[a].runs)} run"
        f"{'s' if len(by_ablation[a].runs) > 1 else ''})"
        for a in ABLATIONS
        if a in by_ablation
    ]
    names = " ".join(str(r.runs[0].info.path) for r in by_ablation.values())
    return (
        "From the train runs' own test summaries (unpaired, not recomputed from episode records), "
        f"{PRIMARY} is: "
        + "; ".join(parts)
        + ". No verdict without paired records: evaluate every run on the same conversations (e.g. `crs eval "
        f"--policy <run> --seed 1 -n 600 -o out/eval/<run>` for {names}) and pass those folders to `crs "
        "report`."
    )
