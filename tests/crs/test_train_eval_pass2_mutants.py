"""`crs train` and `crs eval` checked against rules worked out by hand, second pass of a mutation audit
of `crs.app.training`, `crs.app.evaluation` and `crs.eval_cmd` (the first pass:
`tests.crs.test_train_eval_mutants`): the types an evaluation's settings take, what summary.json records
(a run's folder and ranker, the bootstrap's seed, the catalogue's notes, a run's test on real data), the
notes `crs eval` prints, UNICORN's order with another seed, TransE read from the --data-dir given, what
a run's directory must not hold, the conversations training, validation and the temperature fit draw
from, a resume without a name or a checkpoint, the verdicts' bootstrap seed, and a fault: an output
inside a ranker artifact named with a suffix or prefix."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.app.evaluation import EvalSpec, run_evaluation
from crs.app.run_folder import EvalSummary, TrainSummary
from crs.app.sessions import run_session_evaluation
from crs.app.settings import make_settings
from crs.app.training import (
    FIT_CONVERSATIONS,
    _fit_plan_temperature,
    _prepare,
    _resolve_ranker,
    _test_summary,
    _training_goals,
    run_training,
    training_inputs,
    verdicts,
)
from crs.claims import OutputOverInputError
from crs.cli import app
from crs.common import METRIC_ORDER
from envs import evaluation_indices, make_env
from envs.belief_fit import fit_temperature
from envs.metrics import DIFF_SEED, bootstrap_ci, per_episode_metrics, summarize
from envs.rollout import evaluate
from policies.content_profile import profile_holdout
from policies.rankers import RankerSpec, build_ranker
from policies.rl import load_trained_policy
from policies.rl.run_files import PolicyMeta
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from tests.crs.test_train_cmd import TINY, TINY_PPO, WORLD, tiny_settings
from tests.crs.tiny_runs import pretrain_tiny, untrained_run


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny `crs pretrain` artifact of the default persona world (`tests.crs.tiny_runs.pretrain_tiny`)."""
    return pretrain_tiny(tmp_path_factory.mktemp("artifacts") / "artifact")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, artifact: Path) -> Path:
    """A loadable run folder of the default persona world (`tests.crs.tiny_runs.untrained_run`)."""
    folder = tmp_path_factory.mktemp("runs") / "r"
    folder.mkdir()
    return untrained_run(folder, artifact, load_catalog("persona_world"))


# ------------------------------------------------------------------------------------- evaluation
@pytest.mark.parametrize(("settings", "field"), [({"episodes": True}, "episodes"), ({"seed": "3"}, "seed")])
def test_an_evaluation_setting_of_another_type_is_refused_not_coerced(
    settings: dict[str, object], field: str
) -> None:
    """Guards against `EvalSpec` coercing a value of another type (a sweep file's ``episodes: true`` would
    run one conversation, ``seed: "3"`` pass as seed 3) instead of naming it."""
    with pytest.raises(CRSError, match=f"bad evaluation settings: {field}: Input should be a valid integer"):
        EvalSpec.of(**settings)


@pytest.mark.slow  # builds a run's model (torch)
def test_an_evaluation_of_a_run_names_the_run_folder_and_its_ranker(run: Path, tmp_path: Path) -> None:
    """summary.json of a trained run names the run by its folder name and its path (``policy_spec``, how
    `crs report` finds the run again), ranks with "run", and records the run's ranker (guards against the
    folder name alone kept as ``policy_spec``)."""
    result = run_evaluation(str(run), episodes=2, out=tmp_path / "e", show_progress=False)
    summary = EvalSummary.read(tmp_path / "e")
    assert summary == result.summary
    assert (summary.policy, summary.policy_spec, summary.ranker) == ("r", str(run), "run")
    assert summary.run_ranker is not None and Path(summary.run_ranker).resolve() == (run / "ranker").resolve()
    assert summary.ranker_identity == RankerSpec.parse(str(run / "ranker")).identity()


def test_an_evaluations_intervals_are_bootstrapped_with_its_seed(tmp_path: Path) -> None:
    """The 95% intervals of summary.json are bootstrapped with the evaluation's seed, as its conversations
    are (guards against the bootstrap's own default seed: two evaluations of one seed agree either way,
    but the run's test and `crs eval --seed` of it would not)."""
    result = run_evaluation("random", episodes=30, seed=5, out=tmp_path / "e", show_progress=False)
    max_turns = result.summary.max_turns
    assert result.summary.metrics == summarize(result.records, max_turns, seed=5)
    assert summarize(result.records, max_turns, seed=5) != summarize(result.records, max_turns, seed=0)


def test_an_evaluation_keeps_its_catalogues_notes(tmp_path: Path) -> None:
    """summary.json carries the catalogue's notes (what `crs eval` prints and a report shows: here the
    persona world's seed), guarding against them dropped from the summary."""
    result = run_evaluation("ask-2", episodes=2, world_seed=3, out=tmp_path / "e", show_progress=False)
    notes = tuple(load_catalog("persona_world", seed=3).notes)
    assert "synthetic persona world (seed 3)" in notes
    assert EvalSummary.read(tmp_path / "e").notes == notes == result.summary.notes


def test_a_rules_transe_ranker_is_read_from_the_data_dir_given(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule's TransE ranker comes from ``--data-dir`` like its catalogue (guards against the ranker
    looked up in ``$CRS_DATA_DIR`` alone: without it, the evaluation would fail though the folder was
    named)."""
    monkeypatch.delenv("CRS_DATA_DIR", raising=False)
    result = run_evaluation(
        "ask-2",
        dataset="lastfm",
        data_dir=str(real_data_dir),
        ranker="transe",
        episodes=2,
        out=tmp_path / "e",
        show_progress=False,
    )
    assert result.summary.ranker == "transe" and result.summary.episodes == 2


@pytest.mark.parametrize("sessions", [False, True], ids=["conversations", "returning users"])
@pytest.mark.parametrize("form", ["{}", "{}+profile", "artifact:{}"])
def test_an_output_inside_a_ranker_artifact_is_refused_however_the_ranker_is_written(
    artifact: Path, form: str, sessions: bool, tmp_path: Path
) -> None:
    """An evaluation, of conversations or of returning users' sessions, never writes inside the ranker
    artifact it reads, whether --ranker names the folder bare, with a suffix or with the ``artifact:``
    prefix (the same folder, parsed); guards against the check taking --ranker as typed for a path."""
    copy = tmp_path / "artifact"
    shutil.copytree(artifact, copy)
    ranker, out = form.format(copy), copy / "eval"
    with pytest.raises(OutputOverInputError, match="lies inside the --ranker artifact"):
        if sessions:
            run_session_evaluation(
                policy="ask-2",
                ranker=ranker,
                regime="stable",
                sessions=2,
                sequences=2,
                memory="update",
                seed=1,
                out=out,
                show_progress=False,
            )
        else:
            run_evaluation("ask-2", ranker=ranker, episodes=2, out=out, show_progress=False)
    assert not out.exists()


def test_crs_eval_prints_the_catalogues_notes(tmp_path: Path) -> None:
    """`crs eval` prints each note of its evaluation (here the persona world's seed) under the table
    (guards against the notes kept in summary.json alone, unseen by whoever reads the table)."""
    result = CliRunner().invoke(
        app, ["eval", "-p", "ask-2", "-n", "2", "--world-seed", "3", "-o", str(tmp_path / "e")]
    )
    assert result.exit_code == 0, result.output
    assert "note: synthetic persona world (seed 3)" in " ".join(result.output.split())


def test_unicorn_order_shuffles_the_test_pairs_with_the_seed_given(
    tmp_path: Path, real_data_dir: Path
) -> None:
    """``--order unicorn --seed 3`` walks UNICORN's shuffle of the test (user, item) pairs with seed 3, not
    the seed 1 UNICORN ran with (guards against the order's seed fixed at UNICORN's own)."""
    result = run_evaluation(
        "ask-2",
        dataset="lastfm_star",
        data_dir=str(real_data_dir),
        order="unicorn",
        seed=3,
        episodes=5,
        out=tmp_path / "e",
        show_progress=False,
    )
    # UNICORN's __test_tuple_generate__: [user, item] rows in the JSON's order, shuffled in place by numpy's
    # global generator right after it is seeded
    split = json.loads((real_data_dir / "lastfm_star/UI_Interaction_data/review_dict_test.json").read_text())
    pairs = np.array([[int(user), item] for user, items in split.items() for item in items])
    np.random.RandomState(3).shuffle(pairs)
    assert [[record.user, *record.targets] for record in result.records] == pairs[:5].tolist()


# ------------------------------------------------------------------------------------- training
def test_a_persona_world_run_reads_no_data_folder_even_with_crs_data_dir_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The persona world is built from its seed: a run of it reads no data folder, so a --runs-dir
    inside ``$CRS_DATA_DIR`` is not refused (guards against the data folder taken from the environment
    for every dataset), while a real dataset's run names its --data-dir."""
    monkeypatch.setenv("CRS_DATA_DIR", str(tmp_path / "data"))
    assert training_inputs(make_settings({})) == [("--ranker file", None), ("data folder", None)]
    real = make_settings({"dataset": "lastfm", "data_dir": str(tmp_path / "mine")})
    assert training_inputs(real) == [("--ranker file", None), ("data folder", tmp_path / "mine")]


def test_persona_world_outputs_inside_crs_data_dir_are_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like a training run, a persona-world evaluation (of conversations or of returning users) and its
    pre-training read no data folder: an output inside ``$CRS_DATA_DIR`` is accepted (`crs eval`
    refused it while `crs train` accepted it)."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("CRS_DATA_DIR", str(data))
    run_evaluation("ask-2", episodes=2, out=data / "e", show_progress=False)
    artifact = pretrain_tiny(data / "p")
    run_session_evaluation(
        policy="ask-2",
        ranker=str(artifact),
        regime="stable",
        sessions=2,
        sequences=2,
        memory="update",
        seed=1,
        out=data / "s",
        show_progress=False,
    )
    assert all((data / name / "summary.json").is_file() for name in ("e", "s"))


def test_a_popularity_ranker_on_a_dataset_with_a_train_split_trains_on_all_of_valid(tmp_path: Path) -> None:
    """Popularity counts the train split where there is one: training conversations are all of valid,
    described as plain "valid" (guards against the Yelp*-only wording, "all of which the popularity
    ranker counts", written into every popularity run's policy.json and model card)."""
    assert _training_goals("popularity", tmp_path, load_catalog("persona_world")) == (None, "valid")


@pytest.mark.slow  # loads Yelp*: about 3 s on a shared 2-core machine
def test_a_popularity_prior_learned_from_yelp_valid_keeps_training_to_its_hold_out(
    tmp_path: Path, real_data_dir: Path
) -> None:
    """On Yelp* (no train split) a ``+pop`` prior counts valid: training conversations come only from the
    interactions held out of it, as with tag profiles (guards against the hold-out kept for ``+profile``
    alone, so that training would converse about targets its prior has counted)."""
    yelp = load_catalog("yelp_star", str(real_data_dir))
    held_out, described = _training_goals("uniform+pop", tmp_path, yelp)
    expected = profile_holdout(yelp)
    assert held_out is not None and expected is not None
    assert np.array_equal(held_out.users, expected.users) and np.array_equal(held_out.items, expected.items)
    assert described.startswith(f"valid, the {len(expected):,} interactions held out")


def test_a_runs_transe_ranker_is_recorded_from_the_data_dir_it_trains_on(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """policy.json's ranker entry of ``--ranker transe`` is the TransE file of the run's ``--data-dir``, by
    absolute path (guards against the entry looked up in ``$CRS_DATA_DIR``: a run would record, and load
    on every `crs eval`, another folder's file than the one it trained with)."""
    monkeypatch.setenv("CRS_DATA_DIR", str(tmp_path / "elsewhere"))
    settings = make_settings({"dataset": "lastfm", "data_dir": str(real_data_dir), "ranker": "transe"})
    catalog = settings.dataset_spec().load()
    _, entry, identity = _resolve_ranker(settings, catalog, tmp_path, show=False, resumed=False)
    assert entry.startswith(f"transe:{real_data_dir.resolve()}{os.sep}") and entry.endswith(".pkl")
    assert identity == RankerSpec.parse(entry).identity()


@pytest.mark.slow  # trains a tiny run: about 5 s on a shared 2-core machine
def test_validation_walks_the_valid_conversations_of_seed_plus_one(tmp_path: Path) -> None:
    """A run's validation points score the policy on ``eval_episodes`` valid conversations drawn and played
    with the run's seed + 1, apart from the test's seed (guards against validation seeded as the test
    is: the best model would be chosen on conversations drawn like the test's)."""

    settings = tiny_settings(steps=64, eval_every=64, eval_episodes=8, baselines=[], test_episodes=2, seed=2)
    run_training(settings, name="r", runs_dir=tmp_path, show=False)
    rows = [json.loads(line) for line in (tmp_path / "r" / "eval.jsonl").read_text().splitlines()]
    best = [row for row in rows if row["best"]][-1]  # the weights best_model.zip holds
    catalog = load_catalog("persona_world", seed=0, **WORLD)
    env = make_env(catalog=catalog, split="valid")
    policy = load_trained_policy(tmp_path / "r", catalog)

    def means(seed: int) -> dict[str, float]:
        records = evaluate(env, policy, evaluation_indices(env.goals.n_goals, 8, seed), seed)
        return {name: float(v.mean()) for name, v in per_episode_metrics(records, env.max_turns).items()}

    scored = {name: best[name] for name in ("SR@15", "AT", "hDCG")}
    assert scored == pytest.approx({name: means(3)[name] for name in scored}, abs=1e-9)
    assert scored != pytest.approx({name: means(2)[name] for name in scored}, abs=1e-9)


def test_a_new_runs_missing_ranker_file_is_named_without_a_resume_hint(tmp_path: Path) -> None:
    """A new run whose --ranker file is missing is told the file is missing (guards against the resume's
    hint, "resume from the directory the run was started in", given to a run that was never started)."""
    settings = make_settings({"ranker": f"transe:{tmp_path / 'none.pkl'}"})
    with pytest.raises(CRSError, match=r"none\.pkl") as refused:
        _resolve_ranker(settings, settings.dataset_spec().load(), tmp_path, show=False, resumed=False)
    assert "resume" not in str(refused.value) and "found missing" in str(refused.value)


@pytest.mark.slow  # fits twice on 1,000 openings of the default world: about 5 s on a shared 2-core machine
def test_the_plan_temperature_is_fitted_on_openings_seeded_apart_from_validation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--fit-plan-temperature` fits on 1,000 training openings drawn and played with the run's seed + 2,
    apart from validation's seed + 1 (guards against the openings drawn as validation's are: the
    temperature would be chosen on the very conversations the best model is then picked on). The default
    world's 2,400 valid conversations are more than the fit takes, so the draw matters."""

    settings = make_settings(
        {"setting": "binary", "wrapper": {"plan_depth": 2}, "fit_plan_temperature": True, "seed": 1}
    )
    catalog = load_catalog("persona_world")
    env = make_env(catalog=catalog, split="valid", setting="binary")
    ranker = build_ranker("popularity", catalog)
    assert env.goals.n_goals > FIT_CONVERSATIONS
    fitted = _fit_plan_temperature(settings, ranker, env, show=True)
    out = " ".join(capsys.readouterr().out.split())
    fit = fit_temperature(env, ranker, evaluation_indices(env.goals.n_goals, FIT_CONVERSATIONS, 3), 3)
    best = fit.log_likelihoods[fit.temperatures.index(fit.best)]
    assert f"T {fit.best:g} (the target's mean log-likelihood {best:.3f} over 1,000 training" in out
    assert fitted.wrapper.plan_temperature == fit.best


def test_a_resume_without_a_name_is_refused_even_where_a_default_named_run_exists(tmp_path: Path) -> None:
    """``resume`` names the run to continue: without a name it is refused before anything is read (guards
    against a resume that picks a run by a default name and continues someone else's run)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "persona_world-s0").mkdir()
    with pytest.raises(CRSError, match="--resume needs --name: the run to continue"):
        run_training(None, runs_dir=tmp_path, resume=True, show=False)
    with pytest.raises(CRSError, match="--resume needs --name: the run to continue"):
        run_training(make_settings({}), runs_dir=tmp_path, resume=True, show=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["persona_world-s0", "run"]
    assert not any((tmp_path / "run").iterdir()) and not any((tmp_path / "persona_world-s0").iterdir())


def test_a_real_data_runs_test_records_its_user_kind_and_no_world_seed(
    tmp_path: Path, real_data_dir: Path
) -> None:
    """Each tested policy's summary.json of a run on real data records the run's user kind and no world
    seed, as `crs eval` of real data does (guards against the settings' unused ``world_seed`` recorded,
    or the default user kind: a report would take the run's test for another than `crs eval` folders of
    the same data and users)."""

    settings = {"dataset": "lastfm", "data_dir": str(real_data_dir), "ranker": "popularity", "user": "single"}
    with pytest.raises(CRSError, match="world_seed 4 seeds the persona world, and lastfm is real data"):
        make_settings({**settings, "world_seed": 4})  # refused now, not recorded
    (tmp_path / "p").mkdir()
    prepared = _prepare(make_settings(settings), "p", tmp_path / "p", show=False)
    env = prepared.test_env()
    for label, trained in (("p", True), ("ask-2", False)):
        summary = _test_summary(prepared, label, trained, "popularity", env, np.arange(3), {}, 1.0)
        assert (summary.dataset, summary.episodes, summary.world_seed) == ("lastfm", 3, None)
        assert summary.user == "single"


@pytest.mark.slow  # pre-trains a tiny ranker and trains 32 steps: about 6 s on a shared 2-core machine
def test_a_runs_summary_names_its_ranker_as_policy_json_does(tmp_path: Path) -> None:
    """summary.json's ``ranker`` of a run whose ranker was pre-trained into it is policy.json's entry,
    "artifact:ranker", a folder of the run wherever it is moved (guards against the ranker's absolute
    path written instead, which names the old place once the run is copied)."""

    settings = {key: value for key, value in TINY.items() if key != "ranker"}
    settings |= {"pretrain_epochs": 1, "steps": 32, "envs": 1, "eval_every": 0, "imitation": None}
    settings |= {"baselines": [], "test_episodes": 2, "ppo": {**TINY_PPO, "subprocess": False}}
    run_training(make_settings(settings), name="r", runs_dir=tmp_path, show=False)
    assert (
        TrainSummary.read(tmp_path / "r").ranker
        == "artifact:ranker"
        == PolicyMeta.read(tmp_path / "r").ranker
    )


def test_policy_json_records_the_simulated_users_options_the_run_trained_with(tmp_path: Path) -> None:
    """policy.json's ``env`` keeps the run's simulated-user options (guards against them dropped: the
    record of what the policy was trained against would read as `crs eval`'s default users)."""

    (tmp_path / "p").mkdir()
    _prepare(tiny_settings(user_kwargs={"noise": 0.0}), "p", tmp_path / "p", show=False)
    assert PolicyMeta.read(tmp_path / "p").env["user_kwargs"] == {"noise": 0.0}


@pytest.mark.slow  # trains a tiny run twice: about 8 s on a shared 2-core machine
def test_a_resume_without_a_checkpoint_starts_a_fresh_curve(tmp_path: Path) -> None:
    """A run with no checkpoint.zip starts again from step 0 and drops its earlier progress files: its
    curve then holds each validation step once (guards against the old rows kept, so the curve would
    list step 64 twice and a report draw two curves in one)."""

    run_training(
        tiny_settings(steps=64, baselines=[], test_episodes=2), name="r", runs_dir=tmp_path, show=False
    )
    first = (tmp_path / "r" / "eval.csv").read_text().splitlines()
    steps = [line.split(",")[0] for line in first[1:]]
    assert steps and len(set(steps)) == len(steps)
    (tmp_path / "r" / "checkpoint.zip").unlink()
    run_training(None, name="r", runs_dir=tmp_path, resume=True, show=False)
    again = (tmp_path / "r" / "eval.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in again[1:]] == steps


def test_the_verdicts_intervals_are_the_reports_paired_differences() -> None:
    """Each verdict's 95% interval of the paired difference is bootstrapped as `crs report`'s are
    (`DIFF_SEED`, pairs in goal order): the console said +0.032 [+0.007, +0.055] where the report of the
    same run said +0.032 [+0.008, +0.058]."""
    draw = np.random.default_rng(0)
    per_episode = {
        label: {metric: draw.random(40) for metric in METRIC_ORDER} for label in ("RL (x)", "ask-2", "ask-4")
    }
    for verdict in verdicts("RL (x)", per_episode):
        paired = per_episode["RL (x)"][verdict.metric] - per_episode[verdict.baseline][verdict.metric]
        assert verdict.difference == bootstrap_ci(paired, seed=DIFF_SEED) != bootstrap_ci(paired, seed=5)
