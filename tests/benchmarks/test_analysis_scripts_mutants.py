"""Tests from a mutation audit of the benchmark analysis scripts whose figures BENCHMARKS.md quotes:
failure_anatomy.py, stop_deviations.py, copy_fidelity.py, bench_ablation.py, ablation_by_seed.py,
rules_over_ablated_rankers.py, tempered_ranker.py, belief_temperature.py and bench_probe_information.py.
Each guards one plausible bug in how a figure is computed: which conversations or seeds are counted,
how they are paired, the direction of a difference, and what a share divides by."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from crs.app.run_folder import EvalSummary, RunRecord, TrainSummary, write_episodes
from crs.app.settings import make_settings
from crs.report.analysis import Row
from envs.belief_fit import fit_temperature
from envs.metrics import EpisodeRecord, MetricSummary, bootstrap_ci, per_episode_metrics
from envs.registry import make_env
from envs.rollout import episode_seed, evaluate, evaluation_indices, run_episode
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.rankers import RankerSpec
from policies.rl.imitation import Demonstrations
from policies.rules import AskThenRecommendPolicy
from simulators.datasets import DatasetSpec
from simulators.errors import CRSError
from tests.benchmarks.running import call_main
from tests.crs.tiny_runs import pretrain_tiny


def ci_text(summary: MetricSummary) -> str:
    """A paired difference as the scripts print it: mean [low, high], signed, three decimals."""
    return f"{summary.mean:+.3f} [{summary.low:+.3f}, {summary.high:+.3f}]"


def t_interval(values: list[float]) -> MetricSummary:
    """Mean and unclipped 95% Student-t interval over `values` (n − 1 degrees of freedom), by hand."""
    array = np.asarray(values, dtype=np.float64)
    half = stats.t.ppf(0.975, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size)
    return MetricSummary(float(array.mean()), float(array.mean() - half), float(array.mean() + half))


def table_rows(out: str) -> dict[str, list[str]]:
    """The Markdown rows of a script's output by their first cell, each row's other cells."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def world_env():
    """The persona world's test conversations."""
    return make_env("persona_world", split="test")


# --- failure_anatomy.py ----------------------------------------------------------------------------

# items 0..7 by aspect: a0 splits them 4/4, a1 2/6, a2 2/6 and a3 7/1 (most held, least balanced)
ASPECT_HOLDERS = {0: [0, 1, 2, 3], 1: [0, 1], 2: [2, 4], 3: [0, 1, 2, 3, 4, 5, 6]}


def by_aspect_matrix() -> sp.csc_matrix:
    """`ASPECT_HOLDERS` as the (items, aspects) 0/1 matrix failure_anatomy asks over."""
    dense = np.zeros((8, 4))
    for aspect, items in ASPECT_HOLDERS.items():
        dense[items, aspect] = 1.0
    return sp.csc_matrix(dense)


def test_counting_questions_asks_the_most_even_split_answered_as_the_target(script) -> None:
    """Guards against the question chosen by how many items hold an aspect rather than how evenly it
    splits them, a "yes" dropping the holders instead of keeping them, and the stop once the rest fits
    one slate being off by one. Target 2 holds a0, a2 and a3: a0 (4/4) keeps items 0-3, then a1 (2/2)
    drops 0 and 1, then a2 keeps 2 alone."""
    anatomy = script("failure_anatomy")
    everything = np.ones(8, dtype=bool)
    assert anatomy.counting_questions(by_aspect_matrix(), everything, 2, 5, 1) == [8, 4, 2, 1]
    assert anatomy.counting_questions(by_aspect_matrix(), everything, 2, 5, 2) == [8, 4, 2]
    assert anatomy.counting_questions(by_aspect_matrix(), everything, 2, 1, 1) == [8, 4]


def test_counting_questions_counts_only_the_candidates_and_leaves_them_as_given(script) -> None:
    """Guards against the first count taken over every item instead of the conversation's candidates,
    and against the caller's candidate mask narrowed in place. Without items 2 and 3, target 5 (a3
    only): a0 splits the six 2/4 as a1 does and a3 5/1, so a0 (first of the ties) drops 0 and 1."""
    anatomy = script("failure_anatomy")
    candidates = np.array([1, 1, 0, 0, 1, 1, 1, 1], dtype=bool)
    kept = candidates.copy()
    left = anatomy.counting_questions(by_aspect_matrix(), candidates, 5, 1, 1)
    assert left == [6, 4]
    assert np.array_equal(candidates, kept)


def write_eval(
    folder: Path, targets: list[int], successes: list[int], dataset: str = "persona_world"
) -> None:
    """An eval folder of the persona world's test split: goal i aimed at targets[i], a success when
    successes[i]; records written in reverse goal order."""
    summary = {"policy": "ask-4", "dataset": dataset, "split": "test", "episodes": len(targets), "seed": 0}
    folder.mkdir()
    EvalSummary.from_dict({**summary, "max_turns": 15, "setting": "multiple_choice"}).write(folder)
    records = [
        EpisodeRecord(goal_index=g, user=g, targets=(t,), success=bool(s), agent_actions=3 if s else 14,
                      rank=1 if s else None, total_reward=1.0 if s else -1.0,
                      kinds=("ask", "ask", "recommend") if s else ("ask",) * 13 + ("recommend",))
        for g, (t, s) in enumerate(zip(targets, successes, strict=True))
    ]  # fmt: skip
    write_episodes(folder, records[::-1])


def test_failure_anatomy_bins_shares_and_failures(script, monkeypatch, capsys, tmp_path) -> None:
    """Guards against a bin's upper end left out (6 and 10 aspects are inside), a bin's share not
    being the mean success of its own conversations, the win/loss counts taken the wrong way round,
    the failed targets and the replays taken from another folder than the first, and the
    reachability line counted over something other than the first folder's failures."""
    catalog = DatasetSpec("persona_world", None, 0).load()
    holds = sp.csr_matrix(catalog.item_aspects)
    n_aspects = np.diff(holds.indptr)
    six = [int(i) for i in np.flatnonzero(n_aspects == 6)[:3]]
    seven = [int(i) for i in np.flatnonzero(n_aspects == 7)[:2]]
    four = [int(i) for i in np.flatnonzero(n_aspects == 4)[:1]]
    targets = [*six, *seven, *four]  # goals 0-2: 6 aspects, 3-4: 7, 5: 4
    first = [1, 0, 0, 1, 0, 1]  # fails 1, 2, 4
    second = [1, 1, 1, 0, 0, 1]  # fails 3, 4: wins back 1 and 2, loses 3
    write_eval(tmp_path / "a", targets, first)
    write_eval(tmp_path / "b", targets, second)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    call_main(script("failure_anatomy"), monkeypatch, a, b, "--slate", "10")
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows["4–6"] == ["4 (67%)", "0.500", "1.000"]
    assert rows["7–10"] == ["2 (33%)", "0.500", "0.000"]
    assert "1–3" not in rows and "11 or more" not in rows
    assert f"failures: {a} 3, {b} 2" in out
    assert "failed by all: 1" in out
    assert f"{b} vs {a}: wins back 2, loses 1" in out
    assert f"{a}'s failed targets, aspects: [6, 6, 7]" in out
    isolating = sorted(
        int((np.asarray(holds[:, holds[t].indices].sum(1)).ravel() == n_aspects[t]).sum())
        for t in (targets[1], targets[2], targets[4])
    )
    assert f"... items holding all of the target's aspects: {isolating}" in out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("goal ")] == [
        "goal 1",
        "goal 2",
        "goal 4",
    ]
    assert f"{a}'s failures reachable by count-halving questions: {reachable_by_hand(out, 10)} of 3" in out


def reachable_by_hand(out: str, slate: int) -> int:
    """The failures whose printed counts of consistent items fit the 14 agent turns: q questions then
    ceil(left_q / slate) slates, for some q."""
    reachable = 0
    for line in out.splitlines():
        if line.startswith("goal "):
            left = json.loads(line.rsplit(": ", 1)[1])
            assert all(x >= y for x, y in itertools.pairwise(left))
            reachable += min(q + math.ceil(n / slate) for q, n in enumerate(left)) <= 14
    return reachable


@pytest.mark.parametrize("slate", [3, 4])
def test_failure_anatomy_reachability_uses_the_agent_turns_left(script, monkeypatch, capsys, tmp_path, slate):
    """Guards against the turn limit counting the user's opening as an agent turn, and a conversation
    that fits the agent turns exactly counted as unreachable: goal 4 of the persona world's test split
    needs 14 agent turns with slates of 4 and 15 with slates of 3 (checked from the printed counts)."""
    write_eval(tmp_path / "a", [0, 1, 2, 3, 4], [1, 1, 0, 0, 0])
    write_eval(tmp_path / "b", [0, 1, 2, 3, 4], [1, 1, 1, 1, 1])
    call_main(
        script("failure_anatomy"),
        monkeypatch,
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        "--slate",
        str(slate),
    )
    out = capsys.readouterr().out
    goal_4 = json.loads(
        next(line for line in out.splitlines() if line.startswith("goal 4:")).rsplit(": ", 1)[1]
    )
    assert min(q + math.ceil(n / slate) for q, n in enumerate(goal_4)) == {3: 15, 4: 14}[slate]
    reachable = reachable_by_hand(out, slate)
    assert f"reachable by count-halving questions: {reachable} of 3" in out


def test_failure_anatomy_refuses_folders_of_other_conversations(script, monkeypatch, tmp_path) -> None:
    """Guards against the folders' conversations compared by count only: as many conversations of
    other goals would be paired goal by goal as if they were the same."""
    write_eval(tmp_path / "a", [1, 2, 3], [1, 0, 1])
    write_eval(tmp_path / "b", [1, 2, 3, 4], [1, 0, 1, 1])
    records = [
        dict(json.loads(line)) for line in (tmp_path / "b" / "episodes.jsonl").read_text().splitlines()
    ]
    kept = [line for line in records if line["goal_index"] != 0]  # goals 1, 2, 3: as many as a's 0, 1, 2
    (tmp_path / "b" / "episodes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    with pytest.raises(CRSError, match="the folders hold different conversations"):
        call_main(script("failure_anatomy"), monkeypatch, str(tmp_path / "a"), str(tmp_path / "b"))


# --- ablation_by_seed.py ---------------------------------------------------------------------------

ABLATION_SR = {  # SR@15 of each variant's run per training seed (seeds 2 and 10: 10 sorts first as text)
    "full": {2: 0.5, 10: 0.7},
    "persona-blind": {2: 0.4, 10: 0.3},
    "aspect-blind": {2: 0.45, 10: 0.6},
    "both-off": {2: 0.1, 10: 0.2},
}


def metric_table(sr15: float) -> dict[str, MetricSummary]:
    """A test row whose SR@15 is `sr15` and every other metric something else (AT 10 × SR@15)."""
    values = {"SR@5": sr15 / 4, "SR@10": sr15 / 2, "SR@15": sr15, "AT": 10 * sr15, "hDCG": sr15 / 3}
    return {metric: MetricSummary(v, v, v) for metric, v in values.items()}


def write_train_task(sweep: Path, name: str, ablation: str | None, seed: int, sr15: float, done: bool = True):
    """A finished (or, without `done`, unfinished) train task of a sweep whose run's own test row has
    SR@15 `sr15`."""

    folder = sweep / "runs" / name
    folder.mkdir(parents=True)
    task = {"name": name, "group": "g", "kind": "train", "seed": seed, "ablation": ablation}
    (folder / "task.json").write_text(json.dumps(task))
    TrainSummary(
        name=name,
        dataset="persona_world",
        ranker="popularity",
        timesteps=100,
        train_seconds_this_session=1.0,
        steps_per_second=100.0,
        envs=1,
        env_processes=0,
        test_episodes=10,
        best_valid={"SR@15": sr15},
        test={f"RL ({name})": metric_table(sr15), "ask-4": metric_table(0.99)},
        conversations_per_second={f"RL ({name})": 1.0},
    ).write(folder)
    if done:
        (folder / "done").write_text("")


@pytest.fixture
def ablation_sweep(tmp_path: Path) -> Path:
    """A train sweep of the four variants over seeds 2 and 10, a task of no ablation, and an
    unfinished full run of seed 3."""
    sweep = tmp_path / "sweep"
    for variant, by_seed in ABLATION_SR.items():
        for seed, sr15 in by_seed.items():
            write_train_task(sweep, f"{variant}-s{seed}", variant, seed, sr15)
    write_train_task(sweep, "plain-s2", None, 2, 0.9)
    write_train_task(sweep, "full-s3", "full", 3, 0.9, done=False)
    return sweep


def test_ablation_by_seed_pairs_the_variants_by_seed(script, monkeypatch, capsys, ablation_sweep) -> None:
    """Guards against the seeds ordered as text (10 before 2) or the variants' values not paired by
    seed, a contrast taken the wrong way round, the interaction's or a main effect's sign or halving
    wrong, the intervals clipped to [0, 1], and an unfinished or non-ablation task read."""
    call_main(script("ablation_by_seed"), monkeypatch, str(ablation_sweep))
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert out.splitlines()[0] == "| variant | seed 2 | seed 10 | mean |"
    for variant, by_seed in ABLATION_SR.items():
        mean = (by_seed[2] + by_seed[10]) / 2
        assert rows[variant] == [f"{by_seed[2]:.3f}", f"{by_seed[10]:.3f}", f"{mean:.3f}"], variant
    v = {variant: np.array([by_seed[2], by_seed[10]]) for variant, by_seed in ABLATION_SR.items()}
    full, persona, aspect, both = v["full"], v["persona-blind"], v["aspect-blind"], v["both-off"]
    expected = {
        "full − persona-blind": full - persona,
        "full − aspect-blind": full - aspect,
        "full − both-off": full - both,
        "interaction": full - persona - aspect + both,
        "persona attention's main effect": (full + aspect - persona - both) / 2,
        "aspect attention's main effect": (full + persona - aspect - both) / 2,
    }
    for name, values in expected.items():
        per_seed = ", ".join(f"{x:+.3f}" for x in values)
        assert rows[name] == [per_seed, ci_text(t_interval(list(values)))], name
    assert rows["full − both-off"][1].startswith("+0.450 [-")  # unclipped: below 0


def test_ablation_by_seed_reads_the_metric_asked(script, monkeypatch, capsys, ablation_sweep) -> None:
    """Guards against --metric ignored (SR@15 read whatever is asked)."""
    call_main(script("ablation_by_seed"), monkeypatch, str(ablation_sweep), "--metric", "AT")
    rows = table_rows(capsys.readouterr().out)
    assert rows["full"] == ["5.000", "7.000", "6.000"]
    assert rows["full − persona-blind"][0] == "+1.000, +4.000"


def test_ablation_by_seed_refuses_variants_of_other_seeds(script, tmp_path) -> None:
    """Guards against a variant missing a seed being paired over the seeds it has (its values then
    shifted against the other variants' seeds), and against the check comparing only how many."""
    sweep = tmp_path / "sweep"
    for variant in ABLATION_SR:
        for seed in (0, 1) if variant != "both-off" else (0, 2):
            write_train_task(sweep, f"{variant}-s{seed}", variant, seed, 0.5)
    with pytest.raises(CRSError, match=r"the same finished seeds.*both-off: \[0, 2\]"):
        script("ablation_by_seed").per_seed(str(sweep), "SR@15")


# --- bench_ablation.py -----------------------------------------------------------------------------


def test_bench_ablation_mean_ci_is_the_student_t_half_width(script) -> None:
    """Guards against the half-width from the normal quantile, the population standard deviation,
    n degrees of freedom, or a missing square root of n; one seed has no interval."""
    bench = script("bench_ablation")
    values = [0.2, 0.4, 0.9]
    mean, half = bench.mean_ci(values)
    expected = t_interval(values)
    assert mean == pytest.approx(0.5) and half == pytest.approx(expected.high - expected.mean)
    assert bench.mean_ci([0.3]) == (pytest.approx(0.3), 0.0)


def test_bench_ablation_run_settings_plays_the_baselines_once(script) -> None:
    """Guards against the rule baselines dropped from the first run (or played in every run), a
    variant's attention switches swapped, --no-ranker-features not inverted into the wrapper's
    switch, and the evaluation interval not a third of the steps (at least 1)."""
    bench = script("bench_ablation")
    args = SimpleNamespace(
        seeds=[3, 1],
        variants=["aspect-off", "full"],
        steps=10,
        drift=0.2,
        test_episodes=7,
        no_ranker_features=True,
    )
    first = bench.run_settings(args, 3, "aspect-off", "r")
    assert "baselines" not in first
    assert (first["persona_attention"], first["aspect_attention"]) == (True, False)
    assert first["wrapper"] == {"ranker_features": False}
    assert (first["seed"], first["eval_every"], first["user_kwargs"], first["test_episodes"]) == (
        3,
        3,
        {"drift": 0.2},
        7,
    )
    for seed, variant in ((3, "full"), (1, "aspect-off"), (1, "full")):
        assert bench.run_settings(args, seed, variant, "r")["baselines"] == [], (seed, variant)
    persona_off = bench.run_settings(args, 1, "persona-off", "r")
    assert (persona_off["persona_attention"], persona_off["aspect_attention"]) == (False, True)
    args.steps, args.no_ranker_features = 2, False
    tiny = bench.run_settings(args, 1, "full", "r")
    assert tiny["eval_every"] == 1 and tiny["wrapper"] == {"ranker_features": True}


def test_bench_ablation_table_is_over_seeds_and_baselines_from_the_first_run(
    script, monkeypatch, capsys, tmp_path
) -> None:
    """Guards against the table's mean or interval taken over something other than the seeds' test
    rows, the seeds listed out of the order given, and the rule baselines read from a run other than
    the first (every later run's summary also lists a rule here, at another value)."""

    bench = script("bench_ablation")
    argv = ("--runs-dir", str(tmp_path), "--ranker", "r", "--seeds", "5", "0", "--variants", "persona-off")
    argv += ("--steps", "300", "--test-episodes", "4")
    args = SimpleNamespace(
        seeds=[5, 0],
        variants=["persona-off"],
        steps=300,
        drift=0.1,
        test_episodes=4,
        no_ranker_features=False,
    )
    sr = {5: 0.25, 0: 0.75}
    for seed, value in sr.items():
        name = f"persona-off-s{seed}"
        (tmp_path / name).mkdir()
        settings = make_settings(bench.run_settings(args, seed, "persona-off", "r"))
        RunRecord(settings=settings, name=name, versions={}, written="").write(tmp_path / name)
        metrics = {"SR@15": {"mean": value}, "AT": {"mean": 20 * value}, "hDCG": {"mean": value / 5}}
        rule = {"SR@15": {"mean": 0.125 if seed == 5 else 0.875}}
        summary = {"test": {f"RL ({name})": metrics, "ask-4": rule}, "train_seconds_this_session": 1.0}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    call_main(bench, monkeypatch, *argv)
    out = capsys.readouterr().out
    cells = table_rows(out)["persona-off"]
    for cell, values, digits in (
        (cells[0], [0.25, 0.75], 3),
        (cells[1], [5.0, 15.0], 2),
        (cells[2], [0.05, 0.15], 3),
    ):
        ci = t_interval(values)
        assert cell == f"{ci.mean:.{digits}f} ± {ci.high - ci.mean:.{digits}f}"
    assert cells[3] == "0.250, 0.750"
    assert out.rstrip().endswith("rule baselines (same conversations, from run persona-off-s5): ask-4 0.125")


# --- rules_over_ablated_rankers.py -----------------------------------------------------------------


def ranker_row(label: str, seeds_fingerprints: list[tuple[int, str]], values: dict[tuple[str, int], float]):
    """A report row of runs (replica seed, conversations' fingerprint) whose per-conversation AT is
    `values` and SR@15 its tenth."""

    runs = tuple(SimpleNamespace(replica_seed=seed, fingerprint=fp) for seed, fp in seeds_fingerprints)
    per_metric = {"AT": values, "SR@15": {k: v / 10 for k, v in values.items()}}
    return Row(label=label, runs=runs, metrics={}, ci="seeds", ablation=None, values=per_metric)


def test_rules_over_ablated_rankers_per_seed_pairs_each_seeds_own_conversations(script) -> None:
    """Guards against the seeds listed in run order rather than by seed, a difference taken the
    wrong way round, a conversation only one row holds counted, another seed's conversations mixed
    in, a seed with no shared conversation listed, and --metric ignored."""
    per_seed = script("rules_over_ablated_rankers").per_seed
    reference = ranker_row(
        "ask-4",
        [(7, "f7"), (4, "f4"), (1, "f1")],
        {("f1", 0): 9.0, ("f1", 1): 4.0, ("f7", 0): 8.0, ("f7", 1): 14.0, ("f7", 2): 6.0, ("f4", 0): 3.0},
    )
    other = ranker_row(
        "ask-4 (persona-blind ranker)",
        [(7, "f7"), (1, "f1")],
        {("f1", 0): 5.0, ("f1", 1): 6.0, ("f7", 0): 2.0, ("f7", 2): 5.0, ("f9", 0): 1.0},
    )
    # seed 1: (9 − 5, 4 − 6) → 1.0; seed 7: (8 − 2, 6 − 5) → 3.5 (conversation 1 only the reference has)
    assert per_seed(reference, other, "AT") == [(1, pytest.approx(1.0)), (7, pytest.approx(3.5))]
    assert per_seed(reference, other, "SR@15") == [(1, pytest.approx(0.1)), (7, pytest.approx(0.35))]


# --- copy_fidelity.py ------------------------------------------------------------------------------


def test_copy_fidelity_part_slices_every_turn_array_alike(script) -> None:
    """Guards against one of the demonstrations' per-turn arrays left whole or sliced differently
    (the held-out turns' actions then scored against other turns' observations or masks), and the
    conversation counts changed."""

    turns = 5
    demos = Demonstrations(
        observations={"a": np.arange(turns), "b": np.arange(2 * turns).reshape(turns, 2)},
        actions=np.arange(3 * turns).reshape(turns, 3),
        masks=np.arange(4 * turns).reshape(turns, 4) % 3 == 0,
        returns=np.linspace(0.0, 1.0, turns),
        ends=np.array([0, 1, 0, 0, 1], dtype=bool),
        matched=np.array([1, 1, 0, 1, 0], dtype=bool),
        conversations=2,
        successes=1,
    )
    held = script("copy_fidelity").part(demos, slice(3, 5))
    assert held.observations["a"].tolist() == [3, 4]
    assert held.observations["b"].tolist() == [[6, 7], [8, 9]]
    assert held.actions.tolist() == demos.actions[3:].tolist()
    assert held.masks.tolist() == demos.masks[3:].tolist()
    assert held.returns.tolist() == demos.returns[3:].tolist()
    assert held.ends.tolist() == [False, True] and held.matched.tolist() == [True, False]
    assert (held.conversations, held.successes) == (2, 1)


# --- stop_deviations.py ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def popularity(world_env):
    """The popularity ranker of the persona world."""
    return RankerSpec.parse("popularity").build(world_env.catalog, None)


@pytest.fixture(scope="module")
def uniform(world_env):
    """The uniform ranker of the persona world (ask-N plays long conversations with it)."""
    return RankerSpec.parse("uniform").build(world_env.catalog, None)


@pytest.mark.parametrize("at_turn", [2, 4])
def test_deviating_policy_takes_the_opposite_action_at_its_turn_only(script, world_env, uniform, at_turn):
    """Guards against the deviation made at another turn than asked (or at every turn from it), and
    the opposite action not taken: a slate where ask-2 asks (turn 2), a question where it recommends
    (turn 4)."""
    deviations = script("stop_deviations")
    env = first_turn_of(world_env, 1)
    plain = AskThenRecommendPolicy(uniform, 2)
    deviating = deviations.DeviatingPolicy(uniform, 2, at_turn=at_turn)
    kinds = {}
    done = False
    while not done:
        expected, action = plain.act(env), deviating.act(env)
        kinds[env.state.turn] = expected["kind"]
        if env.state.turn == at_turn:
            slate = plain.slate(env)
            assert action == slate if expected["kind"] != slate["kind"] else action["kind"] != slate["kind"]
        else:
            assert action == expected, env.state.turn
        _, _, terminated, truncated, _ = env.step(expected)
        done = terminated or truncated
    assert kinds[2] != kinds[4]  # turn 2 asks, turn 4 recommends
    assert deviating.seen == {}  # a replay at one turn computes no features


def first_turn_of(env, goal: int):
    """`env` reset to goal `goal`'s opening (seed 0)."""
    env.reset(seed=0, options={"goal_index": goal})
    return env


def test_stop_deviations_features_describe_the_state(script, world_env, popularity) -> None:
    """Guards against a feature computed from the wrong thing: the softmax masses of the top 10/30/50
    taken from the least likely candidates, the entropy's sign, questions counted without probes or
    slates counted as questions, and accepted and rejected aspects swapped."""
    deviations = script("stop_deviations")
    env = first_turn_of(world_env, 2)
    policy = deviations.DeviatingPolicy(popularity, 2)
    for _ in range(3):  # two questions, then a slate
        env.step(policy.act(env))
    x = deviations.features(policy, env)
    assert len(x) == deviations.N_FEATURES
    state = env.state
    facts, candidates = state.facts(), state.candidate_items()
    scores = np.asarray(popularity.item_scores(facts, candidates), dtype=np.float64)
    p = np.exp(scores - scores.max())
    p /= p.sum()
    top = np.sort(p)[::-1]
    assert x[0] == state.turn and x[2] == pytest.approx(np.log1p(candidates.size))
    assert x[3:6] == pytest.approx([top[:10].sum(), top[:30].sum(), top[:50].sum()])
    assert x[6] == pytest.approx(-(p[p > 0] * np.log(p[p > 0])).sum()) and x[6] > 0
    kinds = [r.kind for r in state.history]
    assert x[8] == sum(k in ("ask", "probe") for k in kinds) == 2 and x[9] == kinds.count("recommend") == 1
    assert (x[10], x[11]) == (len(facts.accepted), len(facts.rejected))
    assert x[10] != x[11]


def test_stop_deviations_collect_gains_are_deviation_minus_ask_n(script, world_env, uniform) -> None:
    """Guards against the gain taken as ask-N minus the deviation, the deviations tried before
    --first-turn, a conversation replayed with another seed than the one ask-N played it with, and
    the rows' conversation or features not the base play's."""
    deviations = script("stop_deviations")
    indices, seed, first = np.array([0, 1, 2, 3]), 4, 3
    rows = deviations.collect(world_env, uniform, 2, indices, seed, first)
    assert rows.shape[1] == 2 + deviations.N_FEATURES
    expected = []
    for index in indices.tolist():
        s = episode_seed(seed, index)

        def play(policy, index=index, s=s):
            options = {"goal_index": index}
            return run_episode(world_env, policy, np.random.default_rng(s), seed=s, options=options)

        ok = play(AskThenRecommendPolicy(uniform, 2))
        for turn in range(first, ok.agent_actions + 1):  # the agent acts at turns 1 .. actions
            dev = play(deviations.DeviatingPolicy(uniform, 2, at_turn=turn)).success
            expected.append((index, turn, float(dev) - float(ok.success)))
    assert [(int(r[0]), int(r[1]), r[-1]) for r in rows] == expected
    assert any(gain != 0 for *_, gain in expected)


def test_stop_deviations_prints_shares_per_turn_and_gain_per_conversation(
    script, monkeypatch, capsys
) -> None:
    """Guards against the conversations played from another split or seed than asked, a turn's
    help/hurt shares of all rows instead of that turn's, the summed gain divided by the rows instead
    of the conversations, and ask-N's test figures of other conversations than the test split's. Ask-3 over
    these 6 conversations from turn 2: deviations hurt in a third of turns 2 to 4's states, a quarter of
    turn 5's."""
    deviations = script("stop_deviations")
    argv = ("-d", "persona_world", "--ranker", "uniform", "-n", "6", "--seed", "4", "--asks", "3")
    call_main(
        deviations, monkeypatch, *argv, "--first-turn", "2", "--taus", "-2", "--test", "3", "--tau", "9"
    )
    out = capsys.readouterr().out.splitlines()
    valid = make_env("persona_world", split="valid")
    ranker = RankerSpec.parse("uniform").build(valid.catalog, None)
    indices = evaluation_indices(valid.goals.n_goals, 6, 4)
    rows = deviations.collect(valid, ranker, 3, indices, 4, 2)
    assert out[0] == f"persona_world valid: 6 conversations, {len(rows)} one-step deviations"
    turn, gain = rows[:, 1], rows[:, -1]
    assert len({np.mean(gain[turn == t] < 0) for t in np.unique(turn)}) > 1  # the turns' shares differ
    for t in np.unique(turn).astype(int):
        at = turn == t
        line = f"turn {t}: {at.sum()} states; a deviation helps in {np.mean(gain[at] > 0):.3f}, "
        assert line + f"hurts in {np.mean(gain[at] < 0):.3f}" in out
    # τ −2: the prediction exceeds it nearly everywhere; each chosen gain is −1, 0 or +1
    tau = next(line for line in out if line.startswith("out of fold"))
    chosen = int(tau.split("> -2: ")[1].split(" states")[0])
    helps, hurts = (int(tau.split(f"{word} ")[1].rstrip(",)").split(",")[0]) for word in ("helps", "hurts"))
    assert 0 < chosen <= len(rows) and helps + hurts <= chosen
    assert f"summed gain per conversation {(helps - hurts) / 6:+.4f} " in tau
    test = make_env("persona_world", split="test")
    test_indices = evaluation_indices(test.goals.n_goals, 3, 4)
    ask = per_episode_metrics(evaluate(test, AskThenRecommendPolicy(ranker, 3), test_indices, 4))
    # τ 9 is never exceeded: the learned deviations are ask-3 itself, a zero difference
    assert out[-1].startswith(
        f"test, 3 conversations: ask-3 SR@15 {ask['SR@15'].mean():.3f}, AT {ask['AT'].mean():.2f}"
    )
    assert out[-1].endswith("SR@15 − ask-3 +0.000 [+0.000, +0.000]")


def test_stop_deviations_refuses_a_first_turn_no_conversation_reaches(script, monkeypatch) -> None:
    """Guards against an empty set of deviations reaching the model (a shape error) instead of
    the fix named."""
    argv = ("-d", "persona_world", "--ranker", "uniform", "-n", "2", "--first-turn", "40")
    with pytest.raises(CRSError, match=r"no conversation reached turn 40 .*lower --first-turn"):
        call_main(script("stop_deviations"), monkeypatch, *argv)


# --- tempered_ranker.py ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def persona_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny `crs pretrain` artifact of the persona world (a persona ranker)."""

    return pretrain_tiny(tmp_path_factory.mktemp("pretrain") / "art")


def test_tempered_ranker_pairs_every_temperature_with_t_1(
    script, monkeypatch, capsys, persona_artifact
) -> None:
    """Guards against a temperature paired with the one played before it instead of T 1, the
    difference taken the wrong way round, a temperature not applied (or applied to the ranker as
    trained), and the conversations played from another split or seed than asked."""
    argv = ("-d", "persona_world", "--ranker", str(persona_artifact), "--policy", "ask-3", "-n", "6")
    call_main(script("tempered_ranker"), monkeypatch, *argv, "--seed", "3", "--split", "valid",
              "--temperatures", "0.1", "8")  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    env = make_env("persona_world", split="valid")
    base = RankerSpec.parse(str(persona_artifact)).build(env.catalog, None)
    indices = evaluation_indices(env.goals.n_goals, 6, 3)

    def play(temperature: float) -> dict[str, np.ndarray]:
        policy = AskThenRecommendPolicy(base.with_temperature(temperature), 3)
        return per_episode_metrics(evaluate(env, policy, indices, 3))

    def line(metrics: dict[str, np.ndarray]) -> str:
        return ", ".join(f"{k} {v.mean():.3f}" for k, v in metrics.items())

    assert out[0] == f"persona_world valid, ask-3, {persona_artifact}: 6 conversations (seed 3)"
    first = play(1.0)
    assert out[1] == f"T 1 (as trained): {line(first)}"
    for row, temperature in zip(out[2:], (0.1, 8.0), strict=True):
        metrics = play(temperature)
        paired = ci_text(bootstrap_ci(metrics["SR@15"] - first["SR@15"]))
        assert row == f"T {temperature:g}: {line(metrics)}; SR@15 − T 1 {paired}"
    assert play(0.1)["SR@15"].tolist() != first["SR@15"].tolist()  # T 0.1 plays otherwise than T 1


def test_tempered_ranker_refuses_a_ranker_without_learned_preferences(script, monkeypatch) -> None:
    """Guards against a ranker with nothing to temper (popularity) played as if tempered."""
    argv = ("-d", "persona_world", "--ranker", "popularity", "-n", "2")
    with pytest.raises(CRSError, match="--ranker 'popularity' is not a persona ranker"):
        call_main(script("tempered_ranker"), monkeypatch, *argv)


# --- belief_temperature.py -------------------------------------------------------------------------


def test_belief_temperature_fits_the_asked_conversations(script, monkeypatch, capsys) -> None:
    """Guards against the conversations opened from another split or seed than asked, a
    --temperatures value left out, and a log-likelihood printed beside another temperature."""

    argv = ("-d", "persona_world", "--ranker", "popularity", "-n", "5", "--seed", "2", "--split", "test")
    call_main(script("belief_temperature"), monkeypatch, *argv, "--temperatures", "4", "0.5", "1")
    out = capsys.readouterr().out.splitlines()
    env = make_env("persona_world", split="test")
    ranker = RankerSpec.parse("popularity").build(env.catalog, None)
    fit = fit_temperature(env, ranker, evaluation_indices(env.goals.n_goals, 5, 2), 2, [4.0, 0.5, 1.0])
    assert out[0] == (
        f"persona_world test, popularity: {fit.scored} conversations (seed 2); {fit.excluded} whose "
        "opening excluded the target left out"
    )
    assert fit.scored + fit.excluded == 5
    likelihoods = dict(zip(fit.temperatures, fit.log_likelihoods, strict=True))
    assert len(set(np.round(list(likelihoods.values()), 3))) == 3
    assert out[1:4] == [
        f"T {t:g}: mean log-likelihood of the target {likelihoods[t]:.3f}" for t in (4, 0.5, 1)
    ]
    assert out[4] == f"best T: {max(likelihoods, key=likelihoods.__getitem__):g}"


def test_belief_temperature_refuses_a_holdout_where_valid_is_whole(script, monkeypatch, capsys) -> None:
    """Guards against --holdout on a catalogue with no pre-training hold-out (the persona world)
    playing its whole valid split as if it were one."""
    argv = ("-d", "persona_world", "--ranker", "popularity", "-n", "2", "--holdout")
    with pytest.raises(SystemExit) as stopped:
        call_main(script("belief_temperature"), monkeypatch, *argv)
    assert stopped.value.code == 2
    assert "persona_world pre-trains on train: its whole valid split is held out" in capsys.readouterr().err


# --- bench_probe_information.py --------------------------------------------------------------------


def test_target_rank_orders_by_score_then_item_and_takes_the_best_target(
    script, world_env, popularity
) -> None:
    """Guards against the candidates ranked lowest score first, ties broken other than by item id,
    the rank counted from 0, and with several targets the worst one's rank taken (or a target no
    longer a candidate ranked)."""
    target_rank = script("bench_probe_information").target_rank
    env = first_turn_of(world_env, 3)
    candidates = env.state.candidate_items()
    scores = np.asarray(popularity.item_scores(env.state.facts(), candidates), dtype=np.float64)

    def by_hand(item: int) -> int:
        own = scores[candidates == item][0]
        return int((scores > own).sum() + ((scores == own) & (candidates < item)).sum()) + 1

    (target,) = env.user.targets
    assert target_rank(env, popularity) == by_hand(target)
    uniform = RankerSpec.parse("uniform").build(world_env.catalog, None)
    assert target_rank(env, uniform) == int((candidates < target).sum()) + 1  # all tied: by item id
    top, worst = candidates[np.argmax(scores)], candidates[np.argmin(scores)]
    excluded = int(np.flatnonzero(~env.state.candidates)[0])

    def aiming_at(*targets: int) -> SimpleNamespace:
        """The conversation's state with a user aiming at `targets`."""
        return SimpleNamespace(state=env.state, user=SimpleNamespace(targets=targets))

    assert target_rank(aiming_at(worst, excluded, top), popularity) == by_hand(top)
    assert target_rank(aiming_at(worst, excluded), popularity) == by_hand(worst) > 1
    assert target_rank(aiming_at(excluded), popularity) == float("inf")


def test_bench_probe_information_first_pick_and_best_slot(
    script, monkeypatch, capsys, persona_artifact
) -> None:
    """Guards against the conversations drawn with another seed or count than asked, the first pick's
    and the best slot's figures swapped, the best slot taken as the worst, a lost target's infinite
    rank averaged in, and the acceptance share of other answers than the question slots'."""
    probe = script("bench_probe_information")
    argv = ("--ranker", str(persona_artifact), "--conversations", "3", "--seed", "5")
    call_main(probe, monkeypatch, *argv)
    out = capsys.readouterr().out

    env = make_env("persona_world", split="test")
    ranker = RankerSpec.parse(str(persona_artifact)).build(env.catalog, None)
    wrapper = SlateActionWrapper(env, ranker, WrapperConfig())
    indices = np.random.default_rng(5).permutation(env.goals.n_goals)[:3].tolist()
    before, first, best, accepted = [], [], [], []
    for index in indices:
        wrapper.reset(seed=index, options={"goal_index": index})
        before.append(np.log2(probe.target_rank(env, ranker)))
        ranks = []
        for choice in range(wrapper.question_ids.size):
            wrapper.reset(seed=index, options={"goal_index": index})
            wrapper.step(np.array([choice, *range(wrapper.slate_size)]))
            ranks.append(np.log2(probe.target_rank(env, ranker)))
            accepted.append(bool(env.state.history[-1].accepted))
        first.append(ranks[0])
        best.append(min(ranks))
    assert "3 conversations (seed 5)" in out and f"before turn 2: {np.mean(before):.2f}" in out
    first_a, best_a = np.array(first), np.array(best)
    kept = np.isfinite(first_a)
    question = table_rows(out)["question"]
    assert question == [
        "3",
        f"{first_a[kept].mean():.2f}",
        f"{1 - kept.mean():.3f}",
        f"{best_a[np.isfinite(best_a)].mean():.2f}",
        f"{np.mean(accepted):.3f}",
    ]
    assert best_a[np.isfinite(best_a)].mean() < first_a[kept].mean()  # the oracle over slots does better


def test_failure_anatomy_final_ranks_are_the_targets_rank_at_the_last_slate(
    script, world_env, uniform
) -> None:
    """Guards against the replay seeded otherwise than the evaluation (the conversation's own seed),
    the rank read at the first slate instead of the last, and ties ranked ahead of the target (the
    uniform ranker ties every candidate: rank 1 wherever the target is still a candidate)."""
    anatomy = script("failure_anatomy")
    fields = {"policy": "ask-2", "dataset": "persona_world", "split": "test", "episodes": 4, "seed": 6}
    summary = EvalSummary.from_dict(
        {**fields, "max_turns": 15, "setting": "multiple_choice", "ranker": "popularity"}
    )
    goals = [0, 1, 2, 3]
    ranks = anatomy.final_slate_ranks(summary, None, goals)
    popularity = RankerSpec.parse("popularity").build(world_env.catalog, None)
    expected = []
    for goal in goals:
        seed = episode_seed(6, goal)
        world_env.reset(seed=seed, options={"goal_index": goal})
        policy = AskThenRecommendPolicy(popularity, 2)
        policy.reset(np.random.default_rng(seed))
        rank, done = 0, False
        while not done:
            action = policy.act(world_env)
            if action["items"]:
                candidates = world_env.state.candidate_items()
                scores = popularity.item_scores(world_env.state.facts(), candidates)
                (target,) = world_env.user.targets
                own = scores[candidates == target]
                rank = int((scores > own[0]).sum()) + 1 if own.size else candidates.size + 1
            _, _, terminated, truncated, _ = world_env.step(action)
            done = terminated or truncated
        expected.append(rank)
    assert ranks == expected
    assert len(set(ranks)) > 1
