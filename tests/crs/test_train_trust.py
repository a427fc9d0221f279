"""Issue 13 for `crs train` and trained runs, each test written as the attack or fault itself: a model
zip that would run code, two writers racing for one run, a kill before the first checkpoint, a stale
best score, non-finite settings and divergence, damaged run files."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crs.app.settings import make_settings
from crs.app.training import run_training
from crs.claims import LOCK_FILE
from crs.cli import app
from policies.rl import load_trained_policy
from policies.rl.model_file import (
    PLAIN_FIELDS,
    ModelFileError,
    UnsafeModelFileError,
    read_model_data,
    safe_custom_objects,
)
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from tests.crs.test_train_cmd import TINY, WORLD, tiny_settings

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained run (popularity ranker): 128 steps, evaluations at 64 and 128."""
    runs = tmp_path_factory.mktemp("runs")
    run_training(tiny_settings(), name="good", runs_dir=runs, show=False)
    return runs / "good"


RESUME_MORE = ["train", "--name", "run", "--resume", "--steps", "256", "--runs-dir"]
"""Resume the finished run "run" to train more: its checkpoint is loaded (a finished run's plain
`--resume` is refused before it is read)."""


def copy_run(run: Path, where: Path) -> Path:
    """A copy of a run directory (files only) to tamper with."""
    where.mkdir()
    for file in run.iterdir():
        if file.is_file():
            (where / file.name).write_bytes(file.read_bytes())
    return where


class _Payload:
    """Unpickling this runs `os.system("touch <marker>")`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def set_field(zip_path: Path, key: str, value: object) -> None:
    """Replace (or add) the `key` field of a model zip's data JSON by `value`."""
    with zipfile.ZipFile(zip_path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    data[key] = value
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def poison(zip_path: Path, key: str, marker: Path) -> None:
    """Replace (or add) the `key` field of a model zip's data JSON by a cloudpickle payload."""
    import cloudpickle

    payload = base64.b64encode(cloudpickle.dumps(_Payload(marker))).decode()
    set_field(zip_path, key, {":type:": "<class 'object'>", ":serialized:": payload})


def catalog():
    return load_catalog("persona_world", seed=0, **WORLD)


def test_a_run_refuses_another_world_of_the_same_sizes(trained, tmp_path) -> None:
    other = load_catalog("persona_world", seed=3, **WORLD)  # same sizes, other items and users
    with pytest.raises(
        CRSError, match=r"another 'persona_world' catalogue of the same sizes .*--world-seed 0"
    ):
        load_trained_policy(trained, other)
    load_trained_policy(trained, catalog())  # its own world loads
    # a run from before the fingerprint was recorded still loads (nothing to compare)
    old = copy_run(trained, tmp_path / "old")
    meta = json.loads((old / "policy.json").read_text())
    del meta["fingerprint"]
    (old / "policy.json").write_text(json.dumps(meta))
    load_trained_policy(old, other)


def test_a_run_of_another_setting_is_refused_before_any_conversation(trained) -> None:
    """`resolve_policy` (what `crs eval` and `crs chat` build their policy with) refuses it at once."""
    from crs.app.evaluation import resolve_policy
    from envs.registry import make_env

    own = make_env(catalog=catalog(), split="test")
    with pytest.raises(CRSError, match=r"ranks with its own ranker .* leave out --ranker"):
        resolve_policy(str(trained), own, "uniform", None)  # was silently ignored
    resolve_policy(str(trained), own, "run", None)  # naming its own ranker is fine
    env = make_env(catalog=catalog(), split="test", setting="binary")
    with pytest.raises(CRSError, match=r"trained in the multiple_choice setting .* --setting multiple_c"):
        resolve_policy(str(trained), env, None, None)


# --------------------------------------------------------------------------------- code from a file
@pytest.mark.parametrize(
    "key",
    [
        "policy_class",
        "observation_space",
        "action_space",
        "clip_range",
        "lr_schedule",
        "rollout_buffer_class",
        "my_extra_field",
    ],
)
def test_a_model_zip_with_a_pickled_payload_never_runs_it(trained, tmp_path, key) -> None:
    run = copy_run(trained, tmp_path / "run")
    marker = tmp_path / "pwned"
    for name in ("best_model.zip", "model.zip", "checkpoint.zip"):
        poison(run / name, key, marker)
    if key == "my_extra_field":  # nothing rebuilds an unknown pickled field: the file is refused
        with pytest.raises(UnsafeModelFileError, match="my_extra_field"):
            load_trained_policy(run, catalog())
    else:  # known fields are rebuilt from the run's config; the file's value is never unpickled
        assert load_trained_policy(run, catalog()) is not None
    assert not marker.exists()
    # the same through the CLI's `crs train --resume` (the checkpoint is loaded to continue training)
    result = runner.invoke(app, [*RESUME_MORE, str(tmp_path)])
    assert not marker.exists()
    if key == "my_extra_field":
        assert result.exit_code == 2 and "my_extra_field" in flat(result.output)


def test_a_model_zip_naming_a_module_as_its_env_never_imports_it(trained, tmp_path, monkeypatch) -> None:
    """SB3 passes a file's ``env`` string to `gym.make`, which imports the module an id like
    ``module:Env-v0`` names: a run folder could ship that module beside its zips."""
    marker = tmp_path / "pwned"
    (tmp_path / "shipped_env.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = copy_run(trained, tmp_path / "run")
    for name in ("best_model.zip", "model.zip", "checkpoint.zip"):
        set_field(run / name, "env", "shipped_env:Pwn-v0")
    with pytest.raises(UnsafeModelFileError, match="field 'env' is not one `crs train` writes"):
        load_trained_policy(run, catalog())  # what `crs eval`, `crs chat` and `crs report` load through
    result = runner.invoke(app, [*RESUME_MORE, str(tmp_path)])
    assert not marker.exists()
    assert result.exit_code == 2 and "field 'env'" in flat(result.output), result.output


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("n_steps", "256", "writes int"),
        ("tensorboard_log", 3, "writes str or null"),
        ("rollout_buffer_kwargs", {"device": "cuda"}, "writes {}"),
        ("target_kl", [0.02], "writes int or float or null"),
    ],
)
def test_a_model_zip_field_of_another_type_is_refused(trained, tmp_path, key, value, expected) -> None:
    run = copy_run(trained, tmp_path / "run")
    set_field(run / "best_model.zip", key, value)
    with pytest.raises(UnsafeModelFileError, match=f"field '{key}' holds .*{re.escape(expected)}"):
        load_trained_policy(run, catalog())


@pytest.mark.parametrize("key", sorted(PLAIN_FIELDS))
def test_every_plain_field_of_another_type_is_refused(trained, key) -> None:
    """Each field `crs train` writes as plain JSON is refused holding a list, which none of them takes;
    the file as written passes."""
    path = trained / "best_model.zip"
    data = read_model_data(path)
    rebuilt = dict.fromkeys(("policy_class", "observation_space", "action_space", "clip_range"))
    assert key in data
    safe_custom_objects(path, data, rebuilt)  # as written: accepted
    with pytest.raises(UnsafeModelFileError, match=rf"field '{key}' holds \[7\], where `crs train` writes"):
        safe_custom_objects(path, {**data, key: [7]}, rebuilt)


def test_policy_kwargs_beyond_the_policy_s_own_are_refused(trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "run")
    for name in ("best_model.zip", "model.zip", "checkpoint.zip"):
        with zipfile.ZipFile(run / name) as archive:
            entries = {n: archive.read(n) for n in archive.namelist()}
        data = json.loads(entries["data"])
        data["policy_kwargs"]["features_extractor_class"] = "os.system"
        entries["data"] = json.dumps(data).encode()
        with zipfile.ZipFile(run / name, "w") as archive:
            for n, content in entries.items():
                archive.writestr(n, content)
    with pytest.raises(UnsafeModelFileError, match="policy_kwargs"):
        load_trained_policy(run, catalog())


def rewrite_zip(zip_path: Path, change, compression: int = zipfile.ZIP_STORED) -> None:
    """Rewrite a model zip with `change` applied to its {entry: bytes}."""
    with zipfile.ZipFile(zip_path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    change(entries)
    with zipfile.ZipFile(zip_path, "w", compression=compression) as archive:
        for n, content in entries.items():
            archive.writestr(n, content)


def _torch_bytes(value: object) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _with_encoder(entries: dict[str, bytes], **kwargs: object) -> None:
    data = json.loads(entries["data"])
    data["policy_kwargs"]["features_extractor_kwargs"].update(kwargs)
    entries["data"] = json.dumps(data).encode()


def _without_encoder_key(entries: dict[str, bytes], key: str) -> None:
    data = json.loads(entries["data"])
    del data["policy_kwargs"]["features_extractor_kwargs"][key]
    entries["data"] = json.dumps(data).encode()


@pytest.mark.parametrize(
    ("change", "compression", "message"),
    [
        # SB3 loads an X.pth entry into the model's attribute X
        (
            lambda e: e.update({"features_extractor.pth": e["policy.pth"]}),
            zipfile.ZIP_STORED,
            "holds the entries",
        ),
        # SB3 sets each name it holds on the model
        (
            lambda e: e.update({"pytorch_variables.pth": _torch_bytes({"policy.features_extractor.x": 1.0})}),
            zipfile.ZIP_STORED,
            "pytorch_variables.pth holds",
        ),
        # a data entry padded with 50 MB of spaces: 50 KB stored, 50 MB held in memory when read
        (lambda e: e.update({"data": e["data"] + b" " * 50_000_000}), zipfile.ZIP_DEFLATED, "inflates from"),
        # a network of the file's own size: built before any weight is checked
        (lambda e: _with_encoder(e, hidden=100_000), zipfile.ZIP_STORED, "hidden 100000, not"),
        # a file whose encoder names no hidden size: built at the encoder's default, not the run's
        (lambda e: _without_encoder_key(e, "hidden"), zipfile.ZIP_STORED, "hidden None, not 64"),
        (lambda e: e.update({"pytorch_variables.pth": _torch_bytes(7)}), zipfile.ZIP_STORED, "holds 7"),
    ],
    ids=[
        "extra entry",
        "torch variables",
        "inflation",
        "encoder sizes",
        "encoder size missing",
        "variables not a mapping",
    ],
)
def test_a_model_zip_beyond_what_crs_train_writes_is_refused_before_it_is_built(
    trained, tmp_path, change, compression, message
) -> None:
    run = copy_run(trained, tmp_path / "run")
    rewrite_zip(run / "best_model.zip", change, compression)
    with pytest.raises(ModelFileError, match=message):
        load_trained_policy(run, catalog())


def test_a_resume_refuses_a_checkpoint_of_other_encoder_sizes_before_building_it(trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "run")
    rewrite_zip(run / "checkpoint.zip", lambda e: _with_encoder(e, hidden=100_000))
    result = runner.invoke(app, [*RESUME_MORE, str(tmp_path)])
    assert result.exit_code == 2 and "hidden 100000, not" in flat(result.output), result.output
    assert "Traceback" not in result.output and not (run / LOCK_FILE).exists()


def test_a_model_zip_s_rollout_sizes_are_not_allocated_to_act(trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "run")
    set_field(run / "best_model.zip", "n_steps", 3_000_000)  # a 3.6 GB rollout buffer if built as is
    set_field(run / "best_model.zip", "n_envs", 1_000)
    policy = load_trained_policy(run, catalog())
    assert policy.name == "run"


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "no data", "nan weights"])
def test_a_damaged_model_zip_is_a_named_error_with_exit_2(trained, tmp_path, damage) -> None:
    import torch

    run = copy_run(trained, tmp_path / "run")
    for name in ("best_model.zip", "checkpoint.zip"):
        zip_path = run / name
        if damage == "truncated":
            zip_path.write_bytes(zip_path.read_bytes()[: zip_path.stat().st_size // 2])
            continue
        if damage == "not a zip":
            zip_path.write_text("hello")
            continue
        with zipfile.ZipFile(zip_path) as archive:
            entries = {n: archive.read(n) for n in archive.namelist()}
        if damage == "no data":
            del entries["data"]
        else:
            weights_file = tmp_path / "policy.pth"
            weights_file.write_bytes(entries["policy.pth"])
            weights = torch.load(weights_file, weights_only=True)
            for key in weights:  # the shared extractor appears under three prefixes
                if key.endswith("features_extractor.relation"):
                    weights[key] = torch.full_like(weights[key], float("nan"))
            torch.save(weights, weights_file)
            entries["policy.pth"] = weights_file.read_bytes()
        with zipfile.ZipFile(zip_path, "w") as archive:
            for n, content in entries.items():
                archive.writestr(n, content)
    with pytest.raises(ModelFileError, match=r"best_model\.zip"):
        load_trained_policy(run, catalog())
    result = runner.invoke(app, [*RESUME_MORE, str(tmp_path)])
    assert result.exit_code == 2 and ".zip" in flat(result.output), result.output
    assert "Traceback" not in result.output and not (run / LOCK_FILE).exists()


@pytest.mark.parametrize(
    ("file", "text"),
    [("policy.json", '{"catalog": "persona_world", "rank'), ("policy.json", "{}"), ("policy.json", "[1]")],
)
def test_a_damaged_policy_json_is_a_named_error(trained, tmp_path, file, text) -> None:
    run = copy_run(trained, tmp_path / "run")
    (run / file).write_text(text)
    with pytest.raises(CRSError, match=file):
        load_trained_policy(run, catalog())


# ------------------------------------------------------------------------------ settings and divergence
@pytest.mark.parametrize(
    "settings",
    [
        {"rewards": {"recommend_success": float("nan")}},
        {"ppo": {"learning_rate": float("inf")}},
        {"ppo": {"ent_coef": float("inf")}},
        {"ppo": {"slate_entropy_scale": float("nan")}},
        {"user_kwargs": {"noise": float("nan")}},
        {"user_kwargs": {"nosie": 0.1}},
        {"world": {"n_itmes": 10}},
        {"world": {"n_items": 0}},
        {"seed": -1},
        {"world_seed": -3},
        {"baselines": ["bogus"]},
        {"user": "alien"},
        {"ppo": {"n_epochs": True}},
        {"ppo": {"hidden": 64.5}},
        {"ppo": {"learning_rate": "0.001"}},
        {"ppo": {"train_embeddings": "yes"}},
        {"ppo": {"target_kl": True}},
        {"ppo": {"bogus": 1}},
        {"wrapper": {"probes": 1}},
        {"wrapper": {"n_items": True}},
        {"imitation": {"steps": True}},
        {"persona_attention": "yes"},
        {"ablate_ranker": 1},
    ],
)
def test_bad_settings_are_refused_when_read(settings) -> None:
    with pytest.raises(CRSError, match="bad training settings"):
        make_settings(settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"setting": "enumerated"},
            "setting enumerated asks a taxonomy's categories, and persona_world has none",
        ),
        ({"dataset": "lastfm_star", "setting": "enumerated"}, "and lastfm_star has none (only yelp_star,"),
        ({"ranker": "transe"}, "ranker: TransE embeddings are published for lastfm only, not persona_world"),
        ({"dataset": "yelp_star", "ranker": "transe"}, "published for lastfm only, not yelp_star"),
        ({"dataset": "lastfm", "world_seed": 3}, "world_seed 3 seeds the persona world, and lastfm is real"),
    ],
)
def test_settings_the_data_cannot_have_are_refused_without_reading_it(settings, message) -> None:
    """What --print-config printed and a training then refused (the data has no taxonomy for the
    enumerated setting; TransE's published file is LastFM's) is refused when the settings are read."""
    with pytest.raises(CRSError) as caught:
        make_settings(settings)
    assert message in str(caught.value)


def test_the_datasets_with_a_taxonomy_are_those_named(real_data_dir) -> None:
    from simulators.datasets import TAXONOMY_DATASETS, load_catalog

    for name in ("persona_world", "lastfm", "lastfm_star", "yelp_star"):
        catalog = load_catalog(name, None if name == "persona_world" else str(real_data_dir))
        assert (catalog.taxonomy is not None) == (name in TAXONOMY_DATASETS), name
    assert make_settings({"dataset": "yelp_star", "setting": "enumerated"}).setting == "enumerated"


def test_a_bad_value_is_named_and_only_an_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(CRSError, match=r"steps: .*got '1e3'") as wrong_type:
        make_settings({"steps": "1e3"})
    assert "known keys" not in str(wrong_type.value)
    with pytest.raises(CRSError, match=r"stepz: Extra inputs are not permitted \(known keys: dataset"):
        make_settings({"stepz": 3})
    # a block's own check names its key once (it said "ppo: ppo: unknown key(s)")
    with pytest.raises(CRSError) as caught:
        make_settings({"ppo": {"ent_coeff": 1}})
    assert "bad training settings: ppo: unknown key(s) ent_coeff" in str(caught.value)
    # in a block, the block's own keys
    for block, known in (("user_kwargs", "noise, patience, drift"), ("world", "n_users, n_items, n_groups")):
        with pytest.raises(CRSError) as caught:
            make_settings({block: {"typo": 1}})
        assert f"{block}.typo: Extra inputs are not permitted (known keys: {known}" in str(caught.value)
        assert "dataset" not in str(caught.value)


def test_a_nested_value_of_another_type_is_named_and_an_integer_rate_is_a_float() -> None:
    with pytest.raises(CRSError, match=r"ppo\.n_epochs=True must be of type int"):
        make_settings({"ppo": {"n_epochs": True}})
    with pytest.raises(CRSError, match=r"wrapper\.probes=1 must be of type bool"):
        make_settings({"wrapper": {"probes": 1}})
    with pytest.raises(CRSError, match=r"ppo\.ent_coef=None must be of type float"):  # null: no default
        make_settings({"ppo": {"ent_coef": None}})
    settings = make_settings({"ppo": {"learning_rate": 1, "target_kl": None}, "wrapper": {"n_items": 12}})
    assert isinstance(settings.ppo.learning_rate, float) and settings.ppo.learning_rate == 1.0
    assert settings.ppo.target_kl is None and settings.wrapper.n_items == 12


@pytest.mark.parametrize("value", [True, 1000.0, "1000"])
def test_a_count_is_an_integer_not_a_boolean_float_or_string(value) -> None:
    with pytest.raises(CRSError, match=f"steps: Input should be a valid integer, got {value!r}"):
        make_settings({"steps": value})


def test_a_nan_reward_in_a_config_file_exits_2_before_training(tmp_path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("rewards: {recommend_success: .nan}\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "recommend_success" in flat(result.output)
    assert not (tmp_path / "runs").exists()  # nothing was started
    config.write_text("steps: 10\nsteps: 20\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "duplicate key" in flat(result.output)
    for option in (["--learning-rate", "inf"], ["--ent-coef", "nan"], ["--seed", "-1"]):
        result = runner.invoke(app, ["train", *option, "--runs-dir", str(tmp_path / "runs")])
        assert result.exit_code == 2, option


def test_training_that_diverges_stops_with_a_named_error_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    # a finite but absurd learning rate blows the weights up within a few updates
    settings = tiny_settings(
        steps=640,
        eval_every=0,
        checkpoint_every=64,
        ppo={"n_steps": 32, "batch_size": 32, "n_epochs": 4, "learning_rate": 1e12, "subprocess": False},
    )
    with pytest.raises(CRSError, match="diverged"):
        run_training(settings, name="d", runs_dir=tmp_path, show=False)
    run = tmp_path / "d"
    assert not (run / LOCK_FILE).exists()  # the claim is released on the error
    assert not (run / "model.zip").exists()
    if (run / "checkpoint.zip").exists():  # whatever checkpoint there is holds finite weights
        from policies.rl.run_files import PolicyMeta

        assert PolicyMeta.read(run).rl.learning_rate == 1e12
        state = json.loads((run / "state.json").read_text())
        assert state["timesteps"] == read_model_data(run / "checkpoint.zip")["num_timesteps"]
        load_trained_policy(run, catalog())  # loads: its weights are finite


# ------------------------------------------------------------------------------------ exact resume
def test_an_evaluation_scores_the_weights_after_the_update_its_step_count_includes(tmp_path) -> None:
    # run A evaluates at 64 on the way to 128; run B stops at 64 and evaluates its final weights.
    # Same seed: identical first rollout and update, so both rows at step 64 score the same weights.
    run_training(tiny_settings(steps=128, eval_every=64), name="a", runs_dir=tmp_path, show=False)
    run_training(tiny_settings(steps=64, eval_every=64), name="b", runs_dir=tmp_path, show=False)
    a = next(r for r in csv.DictReader((tmp_path / "a" / "eval.csv").open()) if r["timesteps"] == "64")
    b = next(r for r in csv.DictReader((tmp_path / "b" / "eval.csv").open()) if r["timesteps"] == "64")
    assert {k: a[k] for k in ("SR@15", "AT", "hDCG")} == {k: b[k] for k in ("SR@15", "AT", "hDCG")}


def test_resume_drops_orphan_rows_and_never_replaces_the_best_model_with_a_worse_one(
    trained, tmp_path
) -> None:
    run = copy_run(trained, tmp_path / "r")
    best_steps = read_model_data(run / "best_model.zip")["num_timesteps"]
    best_bytes = (run / "best_model.zip").read_bytes()
    # a kill can leave a stale state.json and rows newer than the checkpoint
    (run / "state.json").write_text(json.dumps({"timesteps": 128, "best_score": [-1.0, -1.0]}))
    rows = list(csv.DictReader((run / "eval.csv").open()))
    for row in rows:  # make the best model's own score unbeatable
        if int(row["timesteps"]) == best_steps:
            row["SR@15"], row["hDCG"] = "1.0", "1.0"
    rows.append({**rows[-1], "timesteps": "999", "SR@15": "0.0"})
    with (run / "eval.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run_training(None, name="r", runs_dir=tmp_path, resume=True, steps=256, show=False)
    steps = [int(r["timesteps"]) for r in csv.DictReader((run / "eval.csv").open())]
    assert 999 not in steps and steps == sorted(steps) and steps[-1] == 256
    assert [json.loads(line)["timesteps"] for line in (run / "eval.jsonl").read_text().splitlines()] == steps
    assert (run / "best_model.zip").read_bytes() == best_bytes  # nothing scored above 1.0
    state = json.loads((run / "state.json").read_text())
    assert state["timesteps"] == 256 == read_model_data(run / "checkpoint.zip")["num_timesteps"]


# --------------------------------------------------------------------------- racing and killed runs
def crs(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "crs.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def tiny_config(path: Path, **extra) -> Path:
    """The tiny test settings as a YAML config file for the CLI."""
    path.write_text(yaml.safe_dump({**TINY, "test_episodes": 8, "baselines": ["ask-4"], **extra}))
    return path


@pytest.mark.slow
def test_two_runs_racing_for_one_name_one_wins_the_other_is_told(tmp_path) -> None:
    config = tiny_config(tmp_path / "c.yaml")
    common = ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "same"]
    first, second = crs(*common, "--seed", "1"), crs(*common, "--seed", "2")
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], outputs
    loser = outputs[[first.returncode, second.returncode].index(2)]
    assert "being written by process" in loser or "already holds results" in loser, loser
    winner_seed = 1 if first.returncode == 0 else 2
    run = tmp_path / "same"
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == winner_seed
    assert len({int(r["timesteps"]) for r in csv.DictReader((run / "eval.csv").open())}) == 3  # copy + 2
    assert not (run / LOCK_FILE).exists()


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_is_continued_with_the_commands_the_errors_name(
    tmp_path,
) -> None:
    # no checkpoint or evaluation before the end: the kill lands before the first checkpoint. The resume
    # starts again from step 0 with the recorded copy of ask-7, which a run of 100,000 steps would make
    # 8,192 turns long (45 s); 128 keep the test about the kill.
    config = tiny_config(
        tmp_path / "c.yaml", steps=100_000, eval_every=0, checkpoint_every=1_000_000, imitation={"steps": 128}
    )
    process = crs("train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "k")
    run = tmp_path / "k"
    deadline = time.time() + 120
    while not (run / "policy.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "checkpoint.zip").exists()
    # a plain rerun is told the run exists, and how to continue it
    again = runner.invoke(app, ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "k"])
    assert again.exit_code == 2 and "no longer running" in flat(again.output)
    message = flat(again.output)
    assert f"rm {run / LOCK_FILE}" in message
    os.remove(run / LOCK_FILE)  # the command the error names
    again = runner.invoke(app, ["train", "--config", str(config), "--runs-dir", str(tmp_path), "--name", "k"])
    named = f"crs train --name k --runs-dir {shlex.quote(str(tmp_path))} --resume"  # not the default
    assert again.exit_code == 2 and named in flat(again.output)
    resumed = runner.invoke(
        app, ["train", "--name", "k", "--runs-dir", str(tmp_path), "--resume", "--steps", "128"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert "starts again from step 0" in flat(resumed.output)
    assert read_model_data(run / "checkpoint.zip")["num_timesteps"] == 128


def test_resume_of_a_run_without_a_usable_config_names_the_restart_command(trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "c")
    (run / "config.yaml").write_text("settings: [1, 2")
    result = runner.invoke(app, ["train", "--name", "c", "--runs-dir", str(tmp_path), "--resume"])
    assert result.exit_code == 2 and "--overwrite" in flat(result.output)
    (run / "config.yaml").unlink()
    result = runner.invoke(app, ["train", "--name", "c", "--runs-dir", str(tmp_path), "--resume"])
    assert result.exit_code == 2 and "--overwrite" in flat(result.output)
    assert not (run / LOCK_FILE).exists()


def test_a_run_recorded_before_ablate_ranker_reads_as_pretraining_its_ranker_whole(trained, tmp_path) -> None:
    from crs.app.run_folder import RunRecord

    run = copy_run(trained, tmp_path / "old")
    data = yaml.safe_load((run / "config.yaml").read_text())
    del data["settings"]["ablate_ranker"]  # config.yaml as written before the key existed
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    legacy, recorded = RunRecord.read(run).settings, RunRecord.read(trained).settings
    # what it ran with, not today's default (on: a pre-trained ranker of the run's ablation)
    assert legacy.ablate_ranker is False and recorded.ablate_ranker is True
    assert legacy.model_copy(update={"ablate_ranker": True}) == recorded


def test_overwrite_never_empties_a_folder_that_is_no_run(tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own file")
    with pytest.raises(CRSError, match=r"no config\.yaml, so it is not an earlier run"):
        run_training(tiny_settings(steps=64), name="mine", runs_dir=tmp_path, overwrite=True, show=False)
    assert [path.name for path in mine.iterdir()] == ["notes.txt"]


def test_an_overwrite_that_cannot_load_its_data_keeps_the_earlier_run(trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "o")
    before = {path.name: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}
    settings = tiny_settings(dataset="lastfm", data_dir=str(tmp_path / "no-data"))
    with pytest.raises(CRSError, match="no-data"):
        run_training(settings, name="o", runs_dir=tmp_path, overwrite=True, show=False)
    assert {path.name: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()} == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ranker": "bogus"}, "ranker 'bogus' is neither one of"),
        ({"ranker": "uniform+pop:abc"}, "(+pop:abc: 'abc' is not a number"),
        ({"baselines": ["ask-4", "lookahead-2"]}, "baselines: lookahead-2 plans yes/no questions"),
        (
            {"baselines": ["probe-2-ask-5"]},
            "baselines: probe-2-ask-5 probes personas, which the ranker given (PopularityRanker) does not "
            "model: pass --ranker with a `crs pretrain` artifact folder",
        ),
        ({"imitation": {"rule": "lookahead-2", "steps": 64}}, "imitation.rule: lookahead-2 plans yes/no"),
    ],
)
def test_a_ranker_or_rule_the_run_cannot_use_is_refused_before_the_earlier_run_is_emptied(
    trained, tmp_path, overrides, message
) -> None:
    """Each of these failed only once pre-training or training was done (the run could never finish),
    and --overwrite had already emptied the earlier run: now the earlier run is kept whole, and a new
    run leaves no folder."""
    run = copy_run(trained, tmp_path / "o")
    before = {path.name: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}
    with pytest.raises(CRSError) as caught:  # the rules' settings are refused as soon as they are read
        settings = tiny_settings(**overrides)  # the popularity ranker, on the persona world (multiple choice)
        run_training(settings, name="o", runs_dir=tmp_path, overwrite=True, show=False)
    assert message in str(caught.value)
    assert {path.name: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()} == before
    with pytest.raises(CRSError):
        run_training(tiny_settings(**overrides), name="new", runs_dir=tmp_path, show=False)
    assert not (tmp_path / "new").exists()


def test_a_baseline_listed_twice_is_refused_with_the_settings() -> None:
    with pytest.raises(CRSError, match=r"ask-4 and ask-04 are one rule \(ask-4\); list each baseline once"):
        tiny_settings(baselines=["ask-4", "ask-04"])


def test_overwrite_starts_an_existing_run_again(trained, tmp_path) -> None:
    run = copy_run(trained, tmp_path / "o")
    (run / "eval.csv").write_text("junk\n")
    run_training(tiny_settings(steps=64), name="o", runs_dir=tmp_path, overwrite=True, show=False)
    assert [int(r["timesteps"]) for r in csv.DictReader((run / "eval.csv").open())] == [
        0,
        64,
    ]  # copy, then 64


def test_the_test_folders_record_the_trained_policy_as_a_run_and_the_rules_over_its_ranker(trained) -> None:
    """Guards against test folders that do not read as `crs eval` writes them: the trained policy's is a
    run (ranker "run", its own ranker named in ``run_ranker``), each rule's ranks with the run's ranker
    and has no ``run_ranker``, and all walk the same seeded test conversations."""
    from crs.app.evaluation import conversations_fingerprint
    from crs.app.run_folder import TEST_DIR, TRAINED_TEST, EvalSummary
    from envs.rollout import evaluation_indices

    settings = tiny_settings()
    catalog = load_catalog("persona_world", None, seed=0, **WORLD)
    indices = evaluation_indices(len(catalog.split("test").users), settings.test_episodes, settings.seed)
    folders = sorted(path.name for path in (trained / TEST_DIR).iterdir())
    assert folders == sorted([TRAINED_TEST, *settings.baselines])
    for folder in folders:
        summary = EvalSummary.read(trained / TEST_DIR / folder)
        assert summary.episodes == settings.test_episodes and summary.seed == settings.seed
        assert summary.conversations == conversations_fingerprint("test", indices)
        if folder == TRAINED_TEST:
            assert (summary.policy, summary.policy_spec) == ("good", str(trained))
            assert (summary.ranker, summary.run_ranker) == ("run", "popularity")
        else:
            assert (summary.policy, summary.policy_spec) == (folder, folder)
            assert (summary.ranker, summary.run_ranker) == ("popularity", None)


def test_the_summary_counts_no_env_processes_for_envs_run_in_this_process(trained) -> None:
    """Guards against a summary that counts env worker processes for envs run in this process (TINY's
    ``subprocess: False``), and against its step and test counts drifting from the settings'."""
    from crs.app.run_folder import TrainSummary

    summary = TrainSummary.read(trained)
    assert summary.timesteps == 128 and summary.test_episodes == 12
    assert (summary.envs, summary.env_processes) == (2, 0)


@pytest.mark.slow  # a resume trains 64 more steps and tests again
def test_a_run_recorded_before_phases_resumes_with_its_first_session_as_phase_0(trained, tmp_path) -> None:
    """Guards against losing a run's first session when config.yaml records no ``phases`` (a run from
    before they were): the resume lists the session from step 0 with its recorded budget, then its own."""
    from crs.app.run_folder import RunPhase, RunRecord

    run = copy_run(trained, tmp_path / "legacy")
    data = yaml.safe_load((run / "config.yaml").read_text())
    data.pop("phases", None)
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    assert RunRecord.read(run).phases == ()
    run_training(None, name="legacy", runs_dir=tmp_path, resume=True, steps=192, show=False)
    assert RunRecord.read(run).phases == (RunPhase(0, 128, {}), RunPhase(128, 192, {}))
