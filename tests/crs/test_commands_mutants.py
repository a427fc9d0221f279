"""The command-line layer (`crs data`, `crs chat`, `crs report`, `crs pretrain`): defaults a user relies
on, options passed through unchanged, and outputs that are never silently overwritten."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.chat import ChatError
from crs.chat_cmd import check_files_outside_inputs, personal_commands
from crs.cli import app
from simulators.datasets import load_catalog
from tests.crs.tiny_runs import pretrain_tiny

runner = CliRunner()


def test_data_info_defaults_to_the_seed_0_world_with_its_own_counts() -> None:
    """`crs data info` with no --seed describes the persona world of seed 0, the one `crs eval` and
    `crs chat` use by default (guards against another default seed, whose worlds share their sizes)."""
    result = runner.invoke(app, ["data", "info"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    world = load_catalog("persona_world", seed=0)
    per_item = np.diff(world.item_aspects.indptr)  # type: ignore[attr-defined]
    per_aspect = np.bincount(world.item_aspects.indices, minlength=world.n_aspects)  # type: ignore[attr-defined]
    assert "seed 0" in result.output and "seed 1" not in result.output
    assert f"mean {per_item.mean():.2f}, min {per_item.min()}, max {per_item.max()}" in result.output
    assert f"mean {per_aspect.mean():.1f}, max {per_aspect.max():,}" in result.output


def test_the_suggested_pretrain_names_the_world_seed_only_for_the_persona_world() -> None:
    """A persona world other than seed 0 gets its own --world-seed and artifact folder; a real dataset
    ignores the world seed (guards against a folder shared by two worlds, or a --world-seed given to a
    dataset that has none)."""
    assert personal_commands("persona_world", None, "ask-4", None, 2) == [
        "crs pretrain -d persona_world --world-seed 2 -o runs/pretrain/persona_world-w2",
        "crs chat -d persona_world --world-seed 2 --ranker runs/pretrain/persona_world-w2",
    ]
    assert personal_commands("lastfm_star", "data", "ask-4", None, 2) == [
        "crs pretrain -d lastfm_star --data-dir data -o runs/pretrain/lastfm_star",
        "crs chat -d lastfm_star --data-dir data --ranker runs/pretrain/lastfm_star",
    ]


def test_a_trained_run_gets_no_pretrain_suggestion(tmp_path: Path) -> None:
    """A --policy run folder brings its own ranker, so no `crs pretrain` is suggested for it (guards
    against suggesting a ranker the run would not use)."""
    assert personal_commands("persona_world", None, str(tmp_path), None) == []


def test_a_transcript_inside_a_folder_the_chat_reads_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--transcript may not lie anywhere under the --policy run, the --ranker artifact or the data
    folder, however deep (guards against a check of the folder itself only, or an input left out)."""
    run, ranker, data = (tmp_path / name for name in ("run", "ranker", "data"))
    for folder in (run, ranker, data):
        (folder / "sub").mkdir(parents=True)
    inside = {
        "--policy run": (run / "sub" / "t.json", str(run), None, None),
        "--ranker artifact": (ranker / "sub" / "t.json", "ask-4", str(ranker), None),
        "data folder": (data / "sub" / "t.json", "ask-4", None, str(data)),
    }
    for what, (transcript, policy, ranker_arg, data_dir) in inside.items():
        with pytest.raises(ChatError, match=f"lies in the {what}"):
            check_files_outside_inputs(transcript, policy, ranker_arg, data_dir, "lastfm", None)
    # beside them, not inside: accepted
    check_files_outside_inputs(tmp_path / "t.json", str(run), str(ranker), str(data), "lastfm", None)
    # the persona world reads no data folder: $CRS_DATA_DIR is not its input (a real dataset's it is)
    monkeypatch.setenv("CRS_DATA_DIR", str(data))
    check_files_outside_inputs(data / "sub" / "t.json", "ask-4", None, None, "persona_world", None)
    with pytest.raises(ChatError, match="lies in the data folder"):
        check_files_outside_inputs(data / "sub" / "t.json", "ask-4", None, None, "lastfm", None)
    # a --memory file in any of them is refused too: the next --overwrite of that run or artifact would
    # delete the person's memory
    for what, (transcript, policy, ranker_arg, data_dir) in inside.items():
        with pytest.raises(ChatError, match=f"--memory {re.escape(str(transcript))} lies in the {what}"):
            check_files_outside_inputs(None, policy, ranker_arg, data_dir, "lastfm", transcript)
    # and with the suffixes and prefix a ranker may be written with (the same folder, parsed)
    for form in ("{}+profile", "artifact:{}"):
        with pytest.raises(ChatError, match="lies in the --ranker artifact"):
            check_files_outside_inputs(ranker / "t.json", "ask-4", form.format(ranker), None, "lastfm", None)


def test_a_transcript_that_is_the_memory_file_by_another_spelling_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--memory me.json --transcript ./sub/../me.json` name one file: refused, or the transcript would
    overwrite the person's memory (guards against comparing the paths as typed)."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ChatError, match="--memory and --transcript are both"):
        check_files_outside_inputs(Path("sub/../me.json"), "ask-4", None, None, "lastfm", Path("me.json"))


class ReportReachedError(Exception):
    """Raised by a stand-in for the report builder once it has recorded what `crs report` gave it."""


def reach_report(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Replace the input loading and the report building `crs report` runs by recorders of their
    arguments; the CLI call then ends with `ReportReachedError`."""
    import crs.report

    seen: dict[str, object] = {}

    def load(inputs: list[Path]) -> str:
        seen["inputs"] = inputs
        return "loaded"

    def build(loaded: object, staging: Path, **options: object) -> None:
        seen.update(loaded=loaded, **options)
        raise ReportReachedError

    monkeypatch.setattr(crs.report, "load_inputs", load)
    monkeypatch.setattr(crs.report, "build_report", build)
    return seen


def test_report_options_reach_the_report_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`crs report` gives the builder 3 example dialogues, the persona analysis, no title, seed 0 and
    figures by default, and each option's value when given (guards against a changed default, or an
    option dropped or replaced on its way)."""
    monkeypatch.delenv("CRS_DATA_DIR", raising=False)
    seen = reach_report(monkeypatch)
    inputs = [tmp_path / "a", tmp_path / "b"]
    for folder in inputs:
        folder.mkdir()
    result = runner.invoke(app, ["report", *map(str, inputs), "--out", str(tmp_path / "r")])
    assert isinstance(result.exception, ReportReachedError), result.output
    assert seen == {
        "inputs": inputs,
        "loaded": "loaded",
        "data_dir": None,
        "examples": 3,
        "persona": True,
        "title": None,
        "seed": 0,
        "figures": True,
    }
    seen.clear()
    data = tmp_path / "data"
    data.mkdir()
    args = ["--examples", "0", "--no-persona", "--title", "Mine", "--seed", "4", "--data-dir", str(data)]
    result = runner.invoke(
        app, ["report", str(inputs[0]), *args, "--no-figures", "--out", str(tmp_path / "s")]
    )
    assert isinstance(result.exception, ReportReachedError), result.output
    assert (seen["examples"], seen["persona"], seen["title"], seen["seed"]) == (0, False, "Mine", 4)
    assert seen["figures"] is False
    assert seen["data_dir"] == str(data)


def test_chat_talks_about_the_world_of_its_world_seed_not_its_conversation_seed(tmp_path: Path) -> None:
    """`crs chat --world-seed 2 --seed 5` opens with aspects whose item counts are those of world 2, and
    records world 2 in its transcript (guards against the world drawn by the conversation seed)."""
    path = tmp_path / "chat.json"
    args = ["chat", "--world-seed", "2", "--seed", "5", "--transcript", str(path)]
    result = runner.invoke(app, args, input="quit\n", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = re.findall(r"\d+ ([a-z][\w -]*?) \((\d+)\)", result.output)
    assert len(shown) >= 5, result.output
    world = load_catalog("persona_world", seed=2)
    counts = [(name, str(world.items_with(world.aspect_names.index(name)).size)) for name, _ in shown]
    assert shown == counts
    meta = json.loads(path.read_text())["meta"]
    assert (meta["world_seed"], meta["chat_seed"], meta["dataset"]) == (2, 5, "persona_world")


@pytest.mark.slow  # a tiny pre-training and three chats: about 9 s
def test_a_remembered_person_is_the_user_of_the_next_chat(tmp_path: Path) -> None:
    """A --memory file of user 7 makes the next chat (no --user-id) play user 7, not the user its --seed
    draws, and a new memory file is the user --seed draws (guards against remembering one person while
    talking as another, and against a seed dropped on the way to the memory)."""
    artifact = pretrain_tiny(tmp_path / "art")
    memory = tmp_path / "me.json"
    base = ["chat", "--ranker", str(artifact), "--memory", str(memory), "--policy", "ask-2"]
    first = tmp_path / "first.json"
    result = runner.invoke(app, [*base, "--user-id", "7", "-t", str(first)], input="jazz\ny\nn\n1\n")
    assert result.exit_code == 0 and memory.is_file(), result.output
    drawn = tmp_path / "drawn.json"  # the user seed 0 draws, without a memory
    result = runner.invoke(app, ["chat", "--seed", "0", "-t", str(drawn)], input="quit\n")
    assert result.exit_code == 0, result.output
    assert json.loads(drawn.read_text())["user"] != 7
    second = tmp_path / "second.json"
    result = runner.invoke(app, [*base, "--seed", "0", "-t", str(second)], input="quit\n")
    assert result.exit_code == 0, result.output
    assert json.loads(second.read_text())["user"] == 7
    # a new memory file is the person --seed draws, as without a memory
    again = [tmp_path / name for name in ("plain5.json", "new5.json")]
    result = runner.invoke(app, ["chat", "--seed", "5", "-t", str(again[0])], input="quit\n")
    assert result.exit_code == 0, result.output
    fresh = ["--memory", str(tmp_path / "new.json"), "-t", str(again[1])]
    result = runner.invoke(app, [*base[:-4], *fresh, "--seed", "5"], input="quit\n")
    assert result.exit_code == 0, result.output
    users = [json.loads(path.read_text())["user"] for path in again]
    assert users[0] == users[1] != json.loads(drawn.read_text())["user"]


@pytest.mark.slow  # a tiny pre-training: about 3 s
def test_pretrain_moves_its_config_into_the_artifact_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`crs pretrain` moves config.json (the mark of a whole artifact) in after the tensor files, so a
    move interrupted midway never leaves a folder that looks like an artifact (guards against the mark
    moved in first)."""
    import os

    import crs.claims

    out = tmp_path / "art"
    moved: list[str] = []
    replace = os.replace

    def spy(source: Path, target: Path) -> None:
        if Path(target).parent == out:  # a move into the artifact folder itself
            moved.append(Path(target).name)
        replace(source, target)

    monkeypatch.setattr(crs.claims.os, "replace", spy)
    pretrain_tiny(out)
    assert len(moved) >= 3 and moved[-1] == "config.json", moved
    assert sorted(moved) == sorted(path.name for path in out.iterdir())
