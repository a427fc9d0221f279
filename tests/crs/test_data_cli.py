"""`crs data info|validate`: exit codes, counts in the output, one-line errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crs.cli import app
from simulators.datasets import DATA_DIR_ENV, clear_cache, load_catalog

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    clear_cache()


def _write_tiny_lastfm(root: Path, items: dict[str, list[int]]) -> Path:
    """A LastFM tree: 3 aspects, `items`, users 0..1 with 1 train, 1 valid, 2 test pairs."""
    files = {
        "Graph_generate_data/item_dict.json": {k: {"feature_index": v} for k, v in items.items()},
        "Graph_generate_data/merged_tag_map.json": {"13": 0, "18": 1, "73": 2},
        "UI_Interaction_data/review_dict_train.json": {"0": [0]},
        "UI_Interaction_data/review_dict_valid.json": {"1": [0]},
        "UI_Interaction_data/review_dict_test.json": {"0": [1], "1": [1]},
    }
    for name, obj in files.items():
        path = root / "lastfm" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))
    return root / "lastfm"


def test_data_help_has_examples() -> None:
    for command in ("info", "validate"):
        result = runner.invoke(app, ["data", command, "--help"])
        assert result.exit_code == 0
        assert "Examples" in result.output and "--data-dir" in result.output


def test_info_defaults_to_the_persona_world() -> None:
    result = runner.invoke(app, ["data", "info"])
    assert result.exit_code == 0, result.output
    world = load_catalog("persona_world", seed=0)
    assert "persona_world" in result.output
    assert f"{world.n_users:,}" in result.output and f"{len(world.split('train')):,}" in result.output
    assert "personas (ground truth)" in result.output
    # no categories: no enumerated setting (it did say "binary questions", but the world asks multiple choice)
    wide = runner.invoke(app, ["data", "info"], env={"COLUMNS": "300"}).output  # table cells unwrapped
    assert "none (no categories over the aspects, so no enumerated setting)" in wide
    assert "binary questions" not in wide


def test_info_seed_changes_the_world() -> None:
    result = runner.invoke(app, ["data", "info", "--seed", "5"])
    assert result.exit_code == 0 and "seed 5" in result.output


@pytest.mark.parametrize("command", ["info", "validate"])
def test_a_negative_world_seed_is_a_usage_error(command) -> None:
    result = runner.invoke(app, ["data", command, "persona_world", "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unknown_dataset_is_a_one_line_error() -> None:
    result = runner.invoke(app, ["data", "info", "lastfm-star"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unknown dataset 'lastfm-star'" in lines[0] and "lastfm_star" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("lastfm-star", "lastfm_star"),
        ("LastFM*", "lastfm_star"),
        ("Yelp*", "yelp_star"),
        ("mcmipl_movies", "mcmipl_movie"),
    ],
)
def test_a_mistyped_dataset_is_answered_with_the_closest_name(typed: str, meant: str) -> None:
    for command in (["data", "info", typed], ["eval", "-d", typed, "-n", "1"]):
        result = runner.invoke(app, command, env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output
        assert f"unknown dataset {typed!r}; did you mean {meant!r}?" in result.output, result.output
    unlike = runner.invoke(app, ["data", "info", "netflix"], env={"COLUMNS": "300"})
    assert "did you mean" not in unlike.output and "valid names: persona_world" in unlike.output


def test_real_dataset_without_a_data_dir_says_how_to_give_one() -> None:
    result = runner.invoke(app, ["data", "info", "lastfm"])
    assert result.exit_code == 2
    assert "--data-dir" in result.output and "CRS_DATA_DIR" in result.output


def test_an_empty_data_dir_is_no_data_dir_and_a_file_is_named_as_one(tmp_path: Path, monkeypatch) -> None:
    _write_tiny_lastfm(tmp_path, {"0": [0]})  # a dataset in the current folder is not taken for ""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["data", "info", "lastfm", "--data-dir", ""])
    assert result.exit_code == 2 and "none given" in result.output, result.output
    (tmp_path / "notes.txt").write_text("not a folder")
    result = runner.invoke(app, ["data", "info", "lastfm", "--data-dir", str(tmp_path / "notes.txt")])
    assert result.exit_code == 2 and "a file, not a directory" in " ".join(result.output.split())


def test_validate_tiny_tree_ok(tmp_path: Path) -> None:
    _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    result = runner.invoke(app, ["data", "validate", "lastfm", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # 2 users (ids 0, 1), 2 items, 3 aspects; train 1, valid 1, test 2.
    assert "OK lastfm: 2 users, 2 items, 3 aspects, train 1, valid 1, test 2" in result.output


@pytest.mark.parametrize("given", ["data folder", "lastfm folder"])
def test_validate_lastfm_checks_its_transe_embeddings(tmp_path: Path, given: str) -> None:
    import pickle

    import numpy as np

    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    args = ["data", "validate", "lastfm", "--data-dir", str(tmp_path if given == "data folder" else folder)]
    missing = runner.invoke(app, args, env={"COLUMNS": "300"})  # table cells unwrapped
    assert missing.exit_code == 0 and "only --ranker transe needs it" in " ".join(missing.output.split())
    embeds = folder / "embeds"
    embeds.mkdir()
    (embeds / "transe.pkl").write_bytes(b"")
    empty = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert empty.exit_code == 1 and "FAILED lastfm: 1 check(s) failed" in empty.output, empty.output
    good = {"ui_emb": np.zeros((2 + 2, 4)), "feature_emb": np.zeros((3, 4))}  # 2 users + 2 items, 3 aspects
    (embeds / "transe.pkl").write_bytes(pickle.dumps(good))
    fits = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert fits.exit_code == 0 and "fits lastfm" in " ".join(fits.output.split()), fits.output


def test_validate_corrupt_json_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    path = folder / "UI_Interaction_data" / "review_dict_test.json"
    path.write_text('{"0": [1], "1": [')
    result = runner.invoke(app, ["data", "validate", "lastfm", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "review_dict_test.json" in result.output and "valid JSON" in result.output
    assert "Traceback" not in result.output


def test_validate_wrong_shape_exits_2(tmp_path: Path) -> None:
    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    (folder / "Graph_generate_data" / "item_dict.json").write_text('{"0": {"feature_index": 3}}')
    result = runner.invoke(app, ["data", "validate", "lastfm", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "item_dict.json [0.feature_index]" in result.output and "a list of integer ids" in result.output


def test_validate_failed_check_exits_1(tmp_path: Path) -> None:
    _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": []})  # item 1 has no aspect
    result = runner.invoke(app, ["data", "validate", "lastfm", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAILED lastfm" in result.output and "1 of 2 items have none" in result.output


def test_validate_another_datasets_folder_exits_2(tmp_path: Path) -> None:
    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    result = runner.invoke(app, ["data", "validate", "lastfm_star", "--data-dir", str(folder)])
    assert result.exit_code == 2 and "load it as 'lastfm'" in result.output


@pytest.mark.real_data
def test_info_lastfm_star_real_counts(real_data_dir: Path) -> None:
    result = runner.invoke(app, ["data", "info", "lastfm_star", "--data-dir", str(real_data_dir)])
    assert result.exit_code == 0, result.output
    for figure in ("1,801", "7,432", "8,438", "52,910", "11,891", "11,892"):
        assert figure in result.output


@pytest.mark.real_data
def test_info_yelp_star_from_environment(real_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(real_data_dir))
    result = runner.invoke(app, ["data", "info", "yelp_star"])
    assert result.exit_code == 0, result.output
    for figure in ("27,675", "70,311", "590", "211,319", "29 categories", "absent", "no train split"):
        assert figure in result.output


@pytest.mark.real_data
def test_validate_real_lastfm(real_data_dir: Path) -> None:
    result = runner.invoke(app, ["data", "validate", "lastfm", "--data-dir", str(real_data_dir)])
    assert result.exit_code == 0, result.output
    assert (
        "OK lastfm: 1,801 users, 7,432 items, 33 aspects, train 52,910, valid 11,891, test 11,892"
        in result.output
    )


def _validate_one_line_error(tmp_path: Path) -> str:
    """Run `crs data validate lastfm` on tmp_path; assert exit 2, one line, no traceback; return it."""
    result = runner.invoke(app, ["data", "validate", "lastfm", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_validate_a_huge_user_id_exits_2_in_one_line(tmp_path: Path) -> None:
    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    (folder / "UI_Interaction_data" / "review_dict_test.json").write_text('{"0": [1], "2000000000": [1]}')
    line = _validate_one_line_error(tmp_path)
    assert "review_dict_test.json [2000000000]" in line and "user id 2,000,000,000" in line
    assert "dense" in line


def test_validate_an_empty_test_split_exits_2_like_eval_would(tmp_path: Path) -> None:
    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    (folder / "UI_Interaction_data" / "review_dict_test.json").write_text('{"0": [], "1": []}')
    line = _validate_one_line_error(tmp_path)
    assert "review_dict_test.json" in line and "at least one (user, item) interaction" in line
    assert "2 users, every one with an empty list" in line


def test_validate_a_unicode_digit_user_key_exits_2(tmp_path: Path) -> None:
    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    path = folder / "UI_Interaction_data" / "review_dict_valid.json"
    path.write_text('{"1": [0], "\u0660": [1]}', encoding="utf-8")  # Arabic-Indic zero: int() reads 0
    line = _validate_one_line_error(tmp_path)
    assert "review_dict_valid.json [keys]" in line and r"'\u0660'" in line


def test_validate_prints_keys_that_look_like_markup_verbatim(tmp_path: Path) -> None:
    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    (folder / "UI_Interaction_data" / "review_dict_test.json").write_text('{"0": [1], "[/]": [1]}')
    line = _validate_one_line_error(tmp_path)
    assert "review_dict_test.json [keys]" in line and "key '[/]'" in line


def test_validate_deeply_nested_json_exits_2(tmp_path: Path) -> None:
    folder = _write_tiny_lastfm(tmp_path, {"0": [0, 1], "1": [2]})
    (folder / "Graph_generate_data" / "item_dict.json").write_text("[" * 200_000 + "]" * 200_000)
    line = _validate_one_line_error(tmp_path)
    assert "item_dict.json" in line and "nesting too deep" in line
