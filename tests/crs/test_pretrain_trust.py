"""`crs pretrain` and its artifacts against a careless or hostile user: an --overwrite that fails keeps
the earlier artifact, a model too large for memory, a file that would run code, tensors of another
shape, type or run, another persona world, and held-out pairs inside the pre-training split."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from crs.cli import app
from policies.pretrain.artifact import (
    EXPORT_FILE,
    load_ranker,
    pretraining_holdout,
    unseen_valid_interactions,
)
from policies.pretrain.graph import pretrain_split
from simulators.catalog import Interactions
from simulators.datasets import load_catalog, pretrain_overlap
from simulators.errors import CRSError
from tests.crs.test_output_claims import files, refused
from tests.crs.tiny_runs import PRETRAIN, pretrain_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrain_tiny(tmp_path_factory.mktemp("pretrain") / "art")


def copy_without_digests(artifact: Path, out: Path) -> Path:
    """A copy of `artifact` whose config.json records no file digests (as artifacts before them)."""
    shutil.copytree(artifact, out)
    config = json.loads((out / "config.json").read_text())
    del config["sha256"]
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_an_overwrite_that_fails_keeps_the_earlier_artifact(
    tmp_path: Path, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "art"
    shutil.copytree(artifact, out)
    before = files(out)
    refusal = runner.invoke(app, [*PRETRAIN, "--out", str(out), "--overwrite", "--holdout-unit", "group"])
    assert refused(refusal, "drop the 'group' hold-out unit"), refusal.output
    assert files(out) == before

    def fail(*args, **kwargs):
        raise CRSError("pre-training failed halfway")

    monkeypatch.setattr("policies.pretrain.train.pretrain", fail)
    failed = runner.invoke(app, [*PRETRAIN, "--out", str(out), "--overwrite", "--seed", "3"])
    assert refused(failed, "pre-training failed halfway"), failed.output
    assert files(out) == before  # emptied only right before the new artifact is written
    monkeypatch.undo()

    def disk_full(result, path, *args):  # the new artifact's first file written, then no space left
        (Path(path) / "weights.pt").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("policies.pretrain.artifact.save_artifact", disk_full)
    full = runner.invoke(app, [*PRETRAIN, "--out", str(out), "--overwrite", "--seed", "3"])
    assert refused(full, "cannot write the artifact", "No space left on device", "nothing there changed")
    assert files(out) == before  # the staging folder inside it is gone too
    assert [p.name for p in tmp_path.iterdir()] == ["art"]


def test_an_overwrite_of_the_current_folder_replaces_its_artifact(
    tmp_path: Path, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(artifact, tmp_path / "here")
    monkeypatch.chdir(tmp_path / "here")  # --out . : a staging folder beside it would lie inside it
    result = runner.invoke(app, [*PRETRAIN, "--out", ".", "--overwrite", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads(Path("config.json").read_text())["seed"] == 3
    assert sorted(p.name for p in Path(".").iterdir()) == ["config.json", "ranker.pt", "weights.pt"]


def test_a_model_too_large_for_memory_is_refused_before_any_work(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pretrain", "--dim", "99999999999999999999", "--out", str(tmp_path / "a")])
    assert refused(result, "parameters", "lower --dim, --personas or --prototypes"), result.output
    assert not (tmp_path / "a").exists()


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("wrap", ["torch.save", "plain pickle"])
def test_an_artifact_that_would_run_code_is_refused_in_one_line(
    tmp_path: Path, artifact: Path, wrap: str
) -> None:
    """torch's refusal is reworded (it advises `weights_only=False`), and its warning about a plain
    pickle's protocol is not printed above ours."""
    marker = tmp_path / "PWNED"
    hostile = copy_without_digests(artifact, tmp_path / "hostile")
    if wrap == "torch.save":
        torch.save({"user": _RunsCode(marker)}, hostile / EXPORT_FILE)
        words = ("ranker.pt refused", "system", "loading it could run code")
    else:
        (hostile / EXPORT_FILE).write_bytes(pickle.dumps({"user": _RunsCode(marker)}))
        words = ("ranker.pt refused", "Unsupported operand", "an object whose loading could run code")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        args = ["eval", "-n", "2", "--ranker", str(hostile), "-o", str(tmp_path / "out")]
        result = runner.invoke(app, args)
    assert refused(result, *words), result.output
    assert "weights_only" not in result.output  # torch's advice to switch the guard off is not relayed
    assert not [w for w in shown if "pickle protocol" in str(w.message)]
    assert not marker.exists()


def test_tensors_of_another_shape_type_or_run_are_refused(tmp_path: Path, artifact: Path) -> None:
    catalog = load_catalog("persona_world")
    for n, (key, value, message) in enumerate(
        (
            ("mixtures", torch.zeros(600, 3, 9), "mixtures has shape (600, 3, 9), expected (600, 3, 3)"),
            ("personas", torch.zeros(600, 2, 8), "personas has shape (600, 2, 8), expected (600, 3, 8)"),
            ("personas", torch.zeros(600, 3, 5), "personas has shape (600, 3, 5), expected (600, 3, 8)"),
            ("prototypes", torch.zeros(8, 5), "prototypes has shape (8, 5)"),
            ("log_prior", torch.zeros(600, 3, dtype=torch.int64), "log_prior are not real float tensors"),
            # one stored number expanded to any shape: a huge one would fill the memory when checked
            ("user", torch.zeros(1).expand(600, 8), "user are views, not plain arrays"),
        )
    ):
        damaged = copy_without_digests(artifact, tmp_path / f"{n}-{key}")
        tensors = torch.load(damaged / EXPORT_FILE, weights_only=True)
        torch.save({**tensors, key: value}, damaged / EXPORT_FILE)
        with pytest.raises(CRSError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_ranker(damaged, catalog)
    other = pretrain_tiny(tmp_path / "seed-1", "--seed", "1")
    swapped = tmp_path / "swapped"
    shutil.copytree(artifact, swapped)
    shutil.copy(other / EXPORT_FILE, swapped / EXPORT_FILE)  # another run's weights under this config
    with pytest.raises(CRSError, match=r"ranker\.pt is not the one its config\.json describes"):
        load_ranker(swapped, catalog)


def test_pretrain_builds_an_artifact_for_another_persona_world(tmp_path: Path) -> None:
    out = pretrain_tiny(tmp_path / "world-1", "--world-seed", "1")
    assert json.loads((out / "config.json").read_text())["split"]["shared_pairs"] == {"valid": 0, "test": 0}
    args = ["eval", "-n", "2", "--ranker", str(out)]
    assert runner.invoke(app, [*args, "--world-seed", "1", "-o", str(tmp_path / "e1")]).exit_code == 0
    refusal = runner.invoke(app, [*args, "-o", str(tmp_path / "e0")])
    assert refused(refusal, "different 'persona_world' catalogue", "(--world-seed 1,"), refusal.output


def test_held_out_pairs_inside_the_pre_training_split_are_counted_and_recorded(tmp_path: Path) -> None:
    catalog = load_catalog("persona_world")
    assert pretrain_overlap(catalog) == {"valid": 0, "test": 0}
    train, test = catalog.split("train"), catalog.split("test")
    leaky = replace(
        catalog,
        splits={
            **catalog.splits,
            "train": Interactions(
                np.concatenate([train.users, test.users[:50]]), np.concatenate([train.items, test.items[:50]])
            ),
        },
    )
    leaked = len(set(zip(test.users[:50].tolist(), test.items[:50].tolist(), strict=True)))
    assert pretrain_overlap(leaky) == {"valid": 0, "test": leaked}


@pytest.mark.parametrize("text", [b'{"kind": "\xff"}', b"[" * 100_000])
def test_a_config_that_is_not_utf8_or_nested_too_deep_is_refused(
    tmp_path: Path, artifact: Path, text: bytes
) -> None:
    damaged = tmp_path / "art"
    shutil.copytree(artifact, damaged)
    (damaged / "config.json").write_bytes(text)
    with pytest.raises(CRSError, match=r"config\.json is corrupt"):
        load_ranker(damaged, load_catalog("persona_world"))


def test_an_artifact_recording_no_hold_out_unit_held_out_single_interactions(
    tmp_path: Path, artifact: Path
) -> None:
    """Artifacts written before the unit was recorded held out single interactions: a config without
    ``holdout_unit`` reads as the "interaction" unit, and one recording its unit keeps it."""
    config = json.loads((artifact / "config.json").read_text())
    config["split"] = {**config["split"], "pretrained_on_valid": True, "holdout_fraction": 0.2}
    config["split"]["holdout_unit"] = "group"
    assert pretraining_holdout(config) == (config["seed"], 0.2, "group")
    del config["split"]["holdout_unit"]
    assert pretraining_holdout(config) == (config["seed"], 0.2, "interaction")
    legacy = tmp_path / "legacy"
    shutil.copytree(artifact, legacy)
    (legacy / "config.json").write_text(json.dumps(config))
    catalog = load_catalog("persona_world")
    unseen = unseen_valid_interactions(legacy, catalog)
    expected = pretrain_split(catalog, config["seed"], 0.2, "interaction").valid
    assert unseen is not None and np.array_equal(unseen.users, expected.users)
    assert np.array_equal(unseen.items, expected.items)


class AppReachedError(Exception):
    """Raised by a stand-in for the pre-training once it has recorded what the CLI gave it."""


def reach_pretraining(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Replace the pre-training `crs pretrain` runs by a recorder of its catalogue, config and world
    seed; the CLI call then ends with `AppReachedError`."""
    import crs.pretrain_cmd

    seen: dict[str, object] = {}

    def record(out: Path, catalog: object, config: object, claim: object, world_seed: object) -> None:
        seen.update(out=out, catalog=catalog, config=config, world_seed=world_seed)
        raise AppReachedError

    monkeypatch.setattr(crs.pretrain_cmd, "_pretrain_into", record)
    return seen


def test_pretrain_options_reach_the_training_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `crs pretrain` option sets its own field of the training config, the switches turn their
    part off, and --world-seed picks the world trained on (guards against a dropped or swapped option,
    or a switch that does nothing)."""
    from policies.pretrain.config import TrainConfig

    seen = reach_pretraining(monkeypatch)
    result = runner.invoke(app, ["pretrain", "--out", str(tmp_path / "a")])
    assert isinstance(result.exception, AppReachedError), result.output
    assert seen["config"] == TrainConfig() and seen["world_seed"] == 0
    args = ["pretrain", "-k", "2", "--prototypes", "5", "--dim", "6", "--layers", "1", "--epochs", "3"]
    args += ["--patience", "2", "--batch-size", "64", "--seed", "9", "--world-seed", "3"]
    args += ["--persona-init", "random", "--no-shared-persona", "--no-aspect-attention"]
    args += ["--negatives-from", "warm", "--holdout-unit", "interaction", "--out", str(tmp_path / "b")]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, AppReachedError), result.output
    config = seen["config"]
    assert isinstance(config, TrainConfig)
    got = {key: getattr(config, key) for key in ("personas", "prototypes", "dim", "layers", "epochs")}
    assert got == {"personas": 2, "prototypes": 5, "dim": 6, "layers": 1, "epochs": 3}
    assert (config.patience, config.batch_size, config.seed, config.persona_init) == (2, 64, 9, "random")
    assert config.shared_persona is False and config.aspect_mode == "uniform"
    assert config.negative_pool == "warm" and config.holdout_unit == "interaction"
    assert seen["world_seed"] == 3 and seen["out"] == tmp_path / "b"
    world = load_catalog("persona_world", seed=3)
    catalog = seen["catalog"]
    assert (catalog.item_aspects != world.item_aspects).nnz == 0  # type: ignore[attr-defined]
    assert (catalog.item_aspects != load_catalog("persona_world").item_aspects).nnz > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--persona-init", "spectral"], "--persona-init must be one of"),
        (["--holdout-unit", "user"], "--holdout-unit must be one of"),
        (["--negatives-from", "cold"], "--negatives-from must be one of"),
        (["--personas", "4", "--prototypes", "3"], "prototypes (3) must be >= personas per user (4)"),
        (["--dim", "99999999999999999999"], "lower --dim, --personas or --prototypes"),
    ],
)
def test_a_bad_pretrain_option_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: list[str], message: str
) -> None:
    """A value `crs pretrain` cannot use is a one-line error naming it, before any data is read or
    anything written (guards against a check removed, and a bad value silently replaced)."""
    seen = reach_pretraining(monkeypatch)
    result = runner.invoke(app, ["pretrain", *option, "--out", str(tmp_path / "a")])
    assert refused(result, message), result.output
    assert not seen and not (tmp_path / "a").exists()


@pytest.mark.parametrize("kind", ["folder", "device"])
def test_an_artifact_file_that_is_no_regular_file_is_named_so_not_missing(
    tmp_path: Path, artifact: Path, kind: str
) -> None:
    """ranker.pt as a folder, or a link to /dev/zero, exists: "is missing" sent the user looking for it."""
    odd = tmp_path / "odd"
    shutil.copytree(artifact, odd)
    (odd / EXPORT_FILE).unlink()
    if kind == "folder":
        (odd / EXPORT_FILE).mkdir()
    else:
        (odd / EXPORT_FILE).symlink_to("/dev/zero")
    with pytest.raises(
        CRSError, match=r"ranker\.pt is not a regular file \(a folder, or a link to a device\)"
    ):
        load_ranker(odd, load_catalog("persona_world"))


def test_an_artifact_without_digests_loads_with_a_warning_that_its_files_are_unchecked(
    tmp_path: Path, artifact: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An artifact written before digests (or whose config.json lost them) still loads, since its
    tensors are checked for shapes and values, but the user is told that an edit would go unnoticed."""
    with caplog.at_level("WARNING"):
        load_ranker(artifact, load_catalog("persona_world"))
    assert "records no sha256" not in caplog.text
    with caplog.at_level("WARNING"):
        load_ranker(copy_without_digests(artifact, tmp_path / "old"), load_catalog("persona_world"))
    assert f"records no sha256 of {tmp_path / 'old' / EXPORT_FILE}" in caplog.text


def test_a_log_not_on_a_terminal_reports_each_epochs_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent to a file (nohup, a CI log), `crs pretrain` printed nothing until an epoch ended: its steps
    had no total when added, and such a task is not logged. Each epoch's steps are now a task of their
    own (here every tenth is logged at once: no quiet start)."""
    monkeypatch.setattr("crs.progress.QUIET_SECONDS", 0.0)
    args = [*PRETRAIN, "--patience", "5", "--out", str(tmp_path / "a")]
    args[args.index("--epochs") + 1] = "2"
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for epoch in (1, 2):
        done = re.search(rf"epoch {epoch} steps: (\d+)/(\d+) \(100%\)", result.output)
        assert done is not None and done.group(1) == done.group(2), result.output
