"""A trained run pins the ranker it was trained with: loading it (`crs eval`, `crs chat`, `crs eval
--sessions`) or resuming it refuses a ranker file or folder that is gone or now holds another ranker
(an artifact's tensors or the model and hold-out its config.json records), a resume from another
directory keeps the recorded one, and the refusals name a fix the command has. The run's own test and
every evaluation record the ranker they started with, and a report reads that record."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from functools import cache
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crs.app.evaluation import evaluated_ranker_identity, resolve_policy
from crs.app.sessions import resolve_session_policy
from crs.app.training import run_training
from crs.chat_cmd import personal_commands
from crs.cli import app
from envs.registry import make_env
from policies.rankers import RankerChangedError, RankerSpec
from policies.rl import load_trained_policy
from simulators.catalog import Catalog
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from tests.crs.test_train_cmd import WORLD, tiny_settings

runner = CliRunner()


@cache
def catalog() -> Catalog:
    """The tiny persona world of `tests.crs.test_train_cmd.WORLD`."""
    return load_catalog("persona_world", None, seed=0, **WORLD)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny `crs pretrain` artifacts of `catalog` (as `tests.crs.tiny_runs.PRETRAIN`): "a", another
    seed "b", and "k2" with 2 personas."""
    from policies.pretrain.artifact import save_artifact
    from policies.pretrain.config import TrainConfig
    from policies.pretrain.train import pretrain

    root = tmp_path_factory.mktemp("artifacts")
    configs = {"a": (0, 3), "b": (1, 3), "k2": (0, 2)}  # (seed, personas)
    for name, (seed, personas) in configs.items():
        config = TrainConfig(epochs=1, dim=8, layers=0, prototypes=3, seed=seed, personas=personas)
        save_artifact(pretrain(catalog(), config), root / name)
    return {name: root / name for name in configs}


def train(runs: Path, ranker: str) -> Path:
    """A tiny run (128 steps) with `ranker`, in `runs`."""
    run_training(tiny_settings(ranker=ranker), name="run", runs_dir=runs, show=False)
    return runs / "run"


def replace_folder(folder: Path, source: Path) -> None:
    """`folder` now holds a copy of `source` (what `crs pretrain --out folder --overwrite` leaves)."""
    shutil.rmtree(folder)
    shutil.copytree(source, folder)


def phases(run: Path) -> list[dict[str, object]]:
    return list(yaml.safe_load((run / "config.yaml").read_text())["phases"])


# ----------------------------------------------------------------------------------- F1: loading
@pytest.mark.parametrize("other", ["b", "k2"])  # another seed; other personas (a model-file error before)
def test_a_run_refuses_an_artifact_replaced_since_it_trained(tmp_path, artifacts, other) -> None:
    artifact = tmp_path / "ranker"
    shutil.copytree(artifacts["a"], artifact)
    run = train(tmp_path / "runs", str(artifact))
    recorded = json.loads((run / "policy.json").read_text())["ranker_identity"]
    assert recorded == RankerSpec.parse(str(artifact)).identity()
    replace_folder(artifact, artifacts[other])
    expected = (
        rf"run {re.escape(str(run))} was trained with ranker {re.escape(str(artifact))} \(identity "
        rf"{recorded}\); {re.escape(str(artifact))} now holds another artifact \(identity artifact:\w+\): "
        "restore it, or train again"
    )
    with pytest.raises(CRSError, match=expected):
        load_trained_policy(run, catalog())
    replace_folder(artifact, artifacts["a"])  # a copy of the one it trained with is that ranker
    load_trained_policy(run, catalog())


def test_a_gone_ranker_names_the_run_and_an_old_run_loads_unchecked(tmp_path, artifacts, caplog) -> None:
    artifact = tmp_path / "ranker"
    shutil.copytree(artifacts["a"], artifact)
    run = train(tmp_path / "runs", str(artifact))
    shutil.rmtree(artifact)
    gone = rf"run {re.escape(str(run))} was trained with ranker .* no longer exists: restore it"
    with pytest.raises(CRSError, match=gone):
        load_trained_policy(run, catalog())
    # a run from before the identity was recorded loads whatever the folder holds, with a warning
    shutil.copytree(artifacts["b"], artifact)
    meta = json.loads((run / "policy.json").read_text())
    del meta["ranker_identity"]
    (run / "policy.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="policies.rankers"):
        load_trained_policy(run, catalog())
    assert "records no identity of its ranker" in caplog.text


# ----------------------------------------------------------------------------------- F2: resuming
def test_a_resume_from_another_directory_keeps_the_recorded_ranker(tmp_path, artifacts, monkeypatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(artifacts["a"], first / "ranker")
    shutil.copytree(artifacts["b"], second / "ranker")  # the same relative name, another artifact
    monkeypatch.chdir(first)
    run = train(tmp_path / "runs", "ranker")
    before = json.loads((run / "policy.json").read_text())
    monkeypatch.chdir(second)
    run_training(None, name="run", runs_dir=tmp_path / "runs", resume=True, steps=192, show=False)
    after = json.loads((run / "policy.json").read_text())
    assert after["ranker"] == before["ranker"] == f"artifact:{first / 'ranker'}"
    assert after["ranker_identity"] == before["ranker_identity"]
    assert [phase["start"] for phase in phases(run)] == [0, 128]
    # a run killed before it wrote policy.json reads config.yaml's --ranker as typed, and says so
    (run / "policy.json").unlink()
    (run / "checkpoint.zip").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CRSError, match=r"config.yaml records --ranker 'ranker' as it was typed, and ranker"):
        run_training(None, name="run", runs_dir=tmp_path / "runs", resume=True, show=False)


def test_a_resume_with_a_changed_ranker_is_refused_and_adds_no_phase(tmp_path, artifacts) -> None:
    artifact = tmp_path / "ranker"
    shutil.copytree(artifacts["a"], artifact)
    run = train(tmp_path / "runs", str(artifact))
    recorded = RankerSpec.parse(str(artifact)).identity()
    replace_folder(artifact, artifacts["b"])
    for _ in range(2):  # repeated failed resumes leave config.yaml as it was
        with pytest.raises(CRSError, match=rf"\(identity {recorded}\); .* another artifact \(identity "):
            run_training(None, name="run", runs_dir=tmp_path / "runs", resume=True, steps=192, show=False)
    shutil.rmtree(artifact)
    with pytest.raises(CRSError, match="no longer exists: restore it"):
        run_training(None, name="run", runs_dir=tmp_path / "runs", resume=True, steps=192, show=False)
    assert [phase["start"] for phase in phases(run)] == [0]
    assert json.loads((run / "policy.json").read_text())["ranker_identity"] == recorded


# ----------------------------------------------------------------------------- F5: --sessions
def test_sessions_refuse_a_ranker_for_a_trained_run_as_plain_eval_does(tmp_path, artifacts) -> None:
    run = train(tmp_path / "runs", str(artifacts["a"]))
    given = f"{artifacts['a']}+profile"  # the run's own personas and priors, but another ranker
    with pytest.raises(CRSError) as sessions:
        resolve_session_policy(str(run), given, catalog(), 0)
    with pytest.raises(CRSError) as plain:
        resolve_policy(str(run), make_env(catalog=catalog(), split="test"), given, None)
    assert str(sessions.value) == str(plain.value)
    assert "ranks with its own ranker" in str(sessions.value)
    assert resolve_session_policy(str(run), "run", catalog(), 0).ranker_name == "run"


# ---------------------------------------------------------------------- F6: fixes the command has
def test_refusals_of_a_run_name_a_fix_the_command_has(tmp_path, artifacts) -> None:
    run = train(tmp_path / "runs", str(artifacts["a"]))
    default_world = load_catalog("persona_world", seed=0)
    with pytest.raises(CRSError) as sizes:
        load_trained_policy(run, default_world)
    message = str(sizes.value)
    assert "cannot be evaluated again" in message and str(run / "tested" / "trained") in message
    assert (run / "tested" / "trained" / "summary.json").is_file()
    meta = json.loads((run / "policy.json").read_text())
    (run / "policy.json").write_text(json.dumps({**meta, "catalog": "lastfm"}))
    with pytest.raises(CRSError, match="catalogue is 'persona_world': pass --dataset lastfm"):
        load_trained_policy(run, catalog())


def test_chat_takes_the_world_seed_as_eval_does(tmp_path) -> None:
    transcript = tmp_path / "chat.json"
    args = ["chat", "--world-seed", "1", "--simulate", "--policy", "ask-2", "--transcript", str(transcript)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(transcript.read_text())["meta"]["world_seed"] == 1
    pretrain, chat = personal_commands("persona_world", None, "ask-2", None, world_seed=1)
    assert "--world-seed 1" in pretrain and "--world-seed 1" in chat


def test_a_report_tells_two_artifacts_of_one_typed_name_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crs.app.evaluation import run_evaluation
    from crs.report import load_inputs
    from crs.report.analysis import duplicates
    from tests.crs.tiny_runs import pretrain_tiny

    outs = []
    for seed in ("1", "2"):  # "art" names another artifact in each folder
        folder = tmp_path / f"from-{seed}"
        pretrain_tiny(folder / "art", "--seed", seed)
        monkeypatch.chdir(folder)
        out = tmp_path / f"eval-{seed}"
        run_evaluation("ask-4", episodes=20, seed=1, ranker="art", out=out, show_progress=False)
        outs.append(out)
    monkeypatch.chdir(tmp_path)  # where neither "art" is
    runs = load_inputs(outs).evals
    assert runs[0].ranker_identity != runs[1].ranker_identity
    assert duplicates(runs) == []  # two rankers: neither run repeats the other


# ----------------------------------------------------- the identity covers the artifact's config.json
def tensor_digest(artifact: Path) -> str:
    """The identity runs recorded before config.json was covered: the SHA-1 of the tensor files alone."""
    digest = hashlib.sha1()
    for file in sorted(artifact.glob("*.pt")):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return f"artifact:{digest.hexdigest()[:16]}"


def test_an_edited_model_block_or_hold_out_is_another_ranker_and_timings_are_not(tmp_path, artifacts) -> None:
    artifact = tmp_path / "ranker"
    shutil.copytree(artifacts["a"], artifact)
    spec = RankerSpec.parse(str(artifact))
    recorded = spec.identity()
    assert spec.identity() == recorded  # read after read
    config_file = artifact / "config.json"
    config = json.loads(config_file.read_text())
    # timings, metrics and history say how pre-training went, not what the ranker computes
    config_file.write_text(json.dumps({**config, "seconds": 99.0, "metrics": {}, "history": []}))
    assert spec.identity() == recorded
    spec.check_pinned(recorded, "run")
    edits = {
        "model": {**config["model"], "aspect_mode": "none"},  # what load_ranker scores with
        "split": {**config["split"], "holdout_fraction": 0.5},  # which data it held out
        "seed": config["seed"] + 1,  # which slice it held out
    }
    for key, value in edits.items():
        config_file.write_text(json.dumps({**config, key: value}))
        with pytest.raises(
            RankerChangedError, match=rf"\(identity {recorded}\); .* now holds another artifact"
        ):
            spec.check_pinned(recorded, "run")
    config_file.write_text(json.dumps(config, indent=4))  # the same settings, written otherwise
    assert spec.identity() == recorded


def test_a_run_that_recorded_the_tensor_digest_alone_still_loads(tmp_path, artifacts, caplog) -> None:
    artifact = tmp_path / "ranker"
    shutil.copytree(artifacts["a"], artifact)
    run = train(tmp_path / "runs", str(artifact))
    meta = json.loads((run / "policy.json").read_text())
    (run / "policy.json").write_text(json.dumps({**meta, "ranker_identity": tensor_digest(artifact)}))
    with caplog.at_level(logging.WARNING, logger="policies.rankers"):
        load_trained_policy(run, catalog())
    assert "in the form from before config.json was covered" in caplog.text
    # an evaluation of it records the identity the run recorded, in its form, not the artifact's now
    legacy = tensor_digest(artifact)
    assert evaluated_ranker_identity(str(run), "run") == legacy != RankerSpec.parse(str(artifact)).identity()
    replace_folder(artifact, artifacts["b"])  # its tensors are still checked
    with pytest.raises(RankerChangedError, match="now holds another artifact"):
        load_trained_policy(run, catalog())


# ------------------------------------------------------- a run's own test records the run's ranker
def test_a_report_keeps_each_runs_ranker_when_the_artifact_at_its_path_was_replaced(
    tmp_path, artifacts
) -> None:
    from crs.report import load_inputs

    artifact = tmp_path / "art"
    shutil.copytree(artifacts["a"], artifact)
    runs = tmp_path / "runs"
    identities = {}
    for name, source in (("run1", "a"), ("run2", "b")):  # `crs pretrain --out art --overwrite` between
        replace_folder(artifact, artifacts[source])
        run_training(tiny_settings(ranker=str(artifact)), name=name, runs_dir=runs, show=False)
        identities[name] = json.loads((runs / name / "policy.json").read_text())["ranker_identity"]
        for summary in (runs / name / "tested").glob("*/summary.json"):
            assert json.loads(summary.read_text())["ranker_identity"] == identities[name], summary
    assert identities["run1"] != identities["run2"]
    tested = {folder for name in identities for folder in (runs / name / "tested").iterdir()}

    def report_identities() -> dict[Path, str]:
        evals = load_inputs([runs / "run1", runs / "run2"]).evals
        return {run.path: run.ranker_identity for run in evals}

    expected = {folder: identities[folder.parent.parent.name] for folder in tested}
    assert report_identities() == expected  # no baseline of run2 is dropped as a repeat of run1's
    for summary in (runs / "run1" / "tested").glob("*/summary.json"):  # a run older than that record
        data = json.loads(summary.read_text())
        del data["ranker_identity"]
        summary.write_text(json.dumps(data))
    assert report_identities() == expected  # its policy.json's identity, not the artifact's now


# ------------------------------------------------------------ chat --memory refuses a run's --ranker
def test_chat_memory_refuses_a_ranker_for_a_trained_run_as_plain_chat_does(tmp_path, artifacts) -> None:
    from crs.chat import policy_with_memory

    run = train(tmp_path / "runs", str(artifacts["a"]))
    env = make_env(catalog=catalog(), split="test")
    for given in ("popularity", str(artifacts["b"])):
        with pytest.raises(CRSError) as memory:
            policy_with_memory(str(run), env, given, None, tmp_path / "me.json", user_id=None, drawn_user=0)
        with pytest.raises(CRSError) as plain:
            resolve_policy(str(run), env, given, None)
        assert str(memory.value) == str(plain.value)
    assert not (tmp_path / "me.json").exists()
    *_, ranker_name, _ = policy_with_memory(
        str(run), env, "run", None, tmp_path / "me.json", user_id=None, drawn_user=0
    )
    assert ranker_name == "run"


# ------------------------------------------- an evaluation records the ranker it started with
def test_an_evaluation_records_the_ranker_it_started_with(tmp_path, monkeypatch) -> None:
    import crs.app.evaluation as evaluation
    import crs.app.sessions as sessions
    from tests.crs.tiny_runs import pretrain_tiny

    first = pretrain_tiny(tmp_path / "first")
    artifact = tmp_path / "art"
    shutil.copytree(first, artifact)
    before = RankerSpec.parse(str(artifact)).identity()

    def replacing(walk):  # the artifact changes once the conversations have started
        def walk_and_replace(*args, **kwargs):
            (artifact / "weights.pt").write_bytes(b"another")
            return walk(*args, **kwargs)

        return walk_and_replace

    monkeypatch.setattr(evaluation, "_walk", replacing(evaluation._walk))
    result = evaluation.run_evaluation(
        "ask-4", episodes=5, seed=1, ranker=str(artifact), out=tmp_path / "eval", show_progress=False
    )
    assert result.summary.ranker_identity == before != RankerSpec.parse(str(artifact)).identity()
    replace_folder(artifact, first)
    monkeypatch.setattr(sessions, "evaluate_returning", replacing(sessions.evaluate_returning))
    summary, *_ = sessions.run_session_evaluation(
        policy="ask-2",
        ranker=str(artifact),
        regime="switch",
        sessions=2,
        sequences=2,
        memory="update",
        seed=0,
        out=tmp_path / "sessions",
        show_progress=False,
    )
    assert summary.ranker_identity == before != RankerSpec.parse(str(artifact)).identity()


def test_a_report_from_another_folder_finds_an_artifact_an_evaluation_named_relatively(
    tmp_path, monkeypatch
) -> None:
    """`crs eval --ranker art` records the folder it read by its absolute path too (summary.json's
    ``ranker_resolved``; ``ranker`` stays as typed): a report run from another folder analyses that
    ranker's personas and replays the dialogues with it."""
    from crs.report import build_report
    from policies.pretrain.artifact import save_artifact
    from policies.pretrain.config import TrainConfig
    from policies.pretrain.train import pretrain

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = TrainConfig(epochs=1, dim=8, layers=0, prototypes=3, seed=0, personas=3)
    save_artifact(pretrain(load_catalog("persona_world", None, seed=0), config), work / "art")
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["eval", "-p", "ask-4", "--ranker", "art+profile", "-n", "6", "-o", "ev"])
    assert result.exit_code == 0, result.output
    summary = json.loads((work / "ev" / "summary.json").read_text())
    assert (summary["ranker"], summary["ranker_resolved"]) == ("art+profile", f"{work / 'art'}+profile")

    monkeypatch.chdir(elsewhere)
    report = build_report([work / "ev"], elsewhere / "report", examples=1, figures=False)
    assert "persona" not in report.unavailable and "examples" not in report.unavailable, report.unavailable
    assert [analysis.source for analysis in report.persona] == [str(work / "art")]
