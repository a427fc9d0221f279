"""`crs chat` as a person relies on it: the suggested commands, the options' refusals, the opening's
numbers and short words, the words that skip or reject, and what the chat says once done."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.chat import choose_goal, run_chat
from crs.chat.question import candidates_after
from crs.chat_cmd import personal_commands
from crs.cli import app
from envs.registry import make_env
from envs.rollout import episode_seed
from policies.rankers import build_ranker
from policies.rules import make_rule_policy
from simulators.catalog import Catalog
from simulators.persona_world import make_persona_world
from tests.crs.test_chat import ProbingPolicy, flat, quiet
from tests.crs.test_chat_mutants import numbered, talk
from tests.crs.tiny_runs import pretrain_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def world() -> Catalog:
    return make_persona_world()


# ------------------------------------------------------------------------------- crs chat's options
def test_a_world_seed_is_named_only_for_the_persona_world() -> None:
    """The persona world of seed 3 is pre-trained into its own folder with --world-seed 3; a real
    dataset has no world seed, so none is suggested for it."""
    assert personal_commands("persona_world", None, "ask-4", None, 3) == [
        "crs pretrain -d persona_world --world-seed 3 -o runs/pretrain/persona_world-w3",
        "crs chat -d persona_world --world-seed 3 --ranker runs/pretrain/persona_world-w3",
    ]
    assert personal_commands("lastfm_star", None, "ask-4", None, 3) == [
        "crs pretrain -d lastfm_star -o runs/pretrain/lastfm_star",
        "crs chat -d lastfm_star --ranker runs/pretrain/lastfm_star",
    ]


def test_a_trained_run_gets_no_pretrain_suggestion(tmp_path: Path) -> None:
    """A --policy that is a run folder ranks with its own ranker: nothing to suggest."""
    assert personal_commands("persona_world", None, str(tmp_path), None) == []
    assert personal_commands("persona_world", None, str(tmp_path / "ask-4"), None) != []


def test_memory_and_transcript_naming_one_file_differently_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`me.json` (relative) and its absolute path are one file: refused before anything is read."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["chat", "--memory", "me.json", "--transcript", str(tmp_path / "me.json")], input="quit\n"
    )
    assert result.exit_code == 2, result.output
    assert "give them different files" in flat(result.output)
    assert not (tmp_path / "me.json").exists()


def test_a_transcript_inside_the_policy_run_folder_is_refused(tmp_path: Path) -> None:
    """A --policy run folder is read by the chat: a transcript there (which could replace one of the run's
    files with --overwrite) is refused before the chat starts."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "policy.json").write_text("{}")
    args = ["chat", "--policy", str(run), "--transcript", str(run / "policy.json"), "--overwrite"]
    result = runner.invoke(app, args, input="quit\n")
    assert result.exit_code == 2, result.output
    assert "lies in the --policy run" in flat(result.output) and "you>" not in result.output
    assert (run / "policy.json").read_text() == "{}"


def test_a_real_dataset_s_transcript_has_no_world_seed(tmp_path: Path, real_data_dir: Path) -> None:
    """Only the persona world is made from a world seed; a real dataset's transcript names none."""
    out = tmp_path / "chat.json"
    args = ["chat", "-d", "lastfm_star", "--data-dir", str(real_data_dir), "--transcript", str(out)]
    result = runner.invoke(app, args, input="quit\n")
    assert result.exit_code == 0, result.output
    meta = json.loads(out.read_text())["meta"]
    assert meta["dataset"] == "lastfm_star" and "world_seed" not in meta
    world_out = tmp_path / "world.json"
    result = runner.invoke(app, ["chat", "--world-seed", "2", "--transcript", str(world_out)], input="quit\n")
    assert json.loads(world_out.read_text())["meta"]["world_seed"] == 2


def test_without_user_id_the_memory_file_s_user_is_played(tmp_path: Path) -> None:
    """A memory file that remembers user 5 is played as user 5 when --user-id is left out (not the
    user the seed would draw)."""
    artifact = pretrain_tiny(tmp_path / "art")
    memory = tmp_path / "me.json"
    args = ["chat", "--ranker", str(artifact), "--memory", str(memory)]
    first = runner.invoke(app, [*args, "--user-id", "5"], input="jazz\nquit\n")
    assert first.exit_code == 0, first.output
    out = tmp_path / "again.json"
    again = runner.invoke(app, [*args, "--transcript", str(out)], input="jazz\nquit\n")
    assert again.exit_code == 0, again.output
    env = make_env(catalog=make_persona_world(), split="test")
    assert int(env.goals.interactions.users[choose_goal(env, 0)]) != 5  # not the seed's user anyway
    assert json.loads(out.read_text())["user"] == 5
    assert json.loads(memory.read_text())["user"] == 5


def test_the_chat_says_where_it_wrote_the_transcript(tmp_path: Path) -> None:
    out = tmp_path / "chat.json"
    result = runner.invoke(app, ["chat", "--transcript", str(out)], input="quit\n")
    assert result.exit_code == 0 and out.is_file()
    assert f"transcript written to {out}" in "".join(result.output.split("\n"))


def test_t_is_short_for_transcript(tmp_path: Path) -> None:
    out = tmp_path / "chat.json"
    result = runner.invoke(app, ["chat", "-t", str(out)], input="quit\n")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["outcome"]["ended"] == "quit"


def test_overwrite_replaces_an_existing_transcript(tmp_path: Path) -> None:
    out = tmp_path / "chat.json"
    out.write_text("old")
    result = runner.invoke(app, ["chat", "-t", str(out), "--overwrite"], input="jazz\nquit\n")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["turns"][0]["answer"]["said"] == "open"
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize("option", ["--seed", "--world-seed"])
def test_a_negative_seed_is_a_usage_error(option: str) -> None:
    result = runner.invoke(app, ["chat", option, "-1"], input="quit\n")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "you>" not in result.output and option in result.output


def test_a_last_line_without_a_newline_is_read_whole(tmp_path: Path) -> None:
    """Piped input whose last line lacks its newline: "quit" is still quit (not "qui")."""
    out = tmp_path / "chat.json"
    result = runner.invoke(app, ["chat", "--transcript", str(out)], input="jazz\nquit")
    assert result.exit_code == 0, result.output
    transcript = json.loads(out.read_text())
    assert transcript["outcome"]["ended"] == "quit" and len(transcript["turns"]) == 1


def test_the_transcript_names_the_env_seed_of_the_conversation(world: Catalog) -> None:
    """meta.seed is the episode seed `crs eval` gives the chat's goal under chat_seed."""
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", build_ranker("popularity", world))
    result = run_chat(env, policy, seed=4, console=quiet(), simulate=True)
    transcript = result.transcript
    assert transcript["meta"]["chat_seed"] == 4
    assert transcript["meta"]["seed"] == episode_seed(4, transcript["goal_index"])
    assert transcript["goal_index"] == choose_goal(env, 4)


# ------------------------------------------------------------------------------- the opening
def test_a_zero_at_the_opening_is_hinted_not_the_last_suggestion(world: Catalog) -> None:
    """The suggestions are numbered from 1: a 0 picks nothing (it would index the last one)."""
    result, text = talk(world, ["0", "quit"])
    assert result.transcript["turns"] == []
    assert "0 is not on the list; pick 1-10 or type a name" in text


def test_after_a_listing_a_number_past_it_names_the_listing_s_range(world: Catalog) -> None:
    """ "ies" lists the four decades; a 9 is then out of that list of 4 (not of the 10 first ideas)."""
    result, text = talk(world, ["ies", "9", "quit"])
    assert len(numbered(text, "Did you mean")) == 4
    assert "9 is not on the list; pick 1-4 or type a name" in text
    assert result.transcript["turns"] == []


def test_two_letters_are_no_part_of_a_name_to_list(world: Catalog) -> None:
    """ "ja" is inside "jazz" and "japanese" but is too short a part to list them; nothing is opened."""
    assert {"jazz", "japanese"} <= {n for n in world.aspect_names if "ja" in n}
    result, text = talk(world, ["ja", "quit"])
    assert "I know nothing called 'ja'" in text and "Did you mean" not in text
    assert result.transcript["turns"] == []


def test_an_opening_of_no_letter_or_digit_says_so(world: Catalog) -> None:
    result, text = talk(world, ["!!!", "quit"])
    assert "Type a name made of letters or digits" in text
    assert result.transcript["turns"] == []


def test_the_opening_says_how_many_items_it_keeps(world: Catalog) -> None:
    """After "jazz" the chat says how many items have jazz (all of the person's candidates)."""
    result, text = talk(world, ["jazz", "quit"])
    jazz = world.aspect_names.index("jazz")
    n = len(world.items_with(jazz))
    assert result.transcript["turns"][0]["candidates_left"] == n
    assert re.search(rf"\b{n} \w+ have jazz\.", text), text


# ------------------------------------------------------------------------------- answers
def test_a_dash_skips_a_question_and_rejects_a_slate(world: Catalog) -> None:
    """ "-" reads as skip at a yes/no question and as none at a slate."""
    result, _ = talk(world, ["jazz", "-", "-", "-", "quit"])
    said = [turn["answer"]["said"] for turn in result.transcript["turns"][1:]]
    kinds = [turn["kind"] for turn in result.transcript["turns"][1:]]
    assert kinds[:3] == ["ask", "ask", "recommend"]
    assert said[:3] == ["skip", "skip", "reject"]


def test_nothing_rejects_a_slate(world: Catalog) -> None:
    result, _ = talk(world, ["jazz", "y", "n", "nothing", "quit"])
    slate = result.transcript["turns"][3]
    assert slate["kind"] == "recommend" and slate["answer"]["said"] == "reject"


def test_a_multiple_choice_question_reads_question_mark_list_and_exit(world: Catalog) -> None:
    """At a probe of four options: "?" shows the help, "list" the options, "5 9" names both numbers
    that are off the list, and "exit" leaves the chat as quit does."""
    result, text = talk(
        world, ["jazz", "?", "list", "5 9", "exit"], ProbingPolicy(build_ranker("popularity", world))
    )
    names = result.transcript["outcome"]["pending"]["action"]["aspect_names"]
    assert len(names) == 4
    assert "Type the numbers of every option that fits" in text and "between 1 and 4" in text
    listing = text[text.index("Type the numbers of every option") :]
    assert f"1 {names[0]}" in listing and f"4 {names[3]}" in listing
    assert "Type numbers between" not in text
    assert "5, 9: not on the list; use numbers between 1 and 4." in text
    assert result.ended == "quit"
    assert [t["answer"]["said"] for t in result.transcript["turns"]] == ["open"]


def test_under_the_any_rule_an_answer_keeps_only_candidates_left(world: Catalog) -> None:
    """With candidate_rule="any", accepting aspects keeps the candidates having one of them: never an
    item the opening already ruled out."""
    env = make_env(catalog=world, split="test", candidate_rule="any")
    env.reset(seed=0, options={"goal_index": 0})
    left = set(np.flatnonzero(env.state.candidates).tolist())
    checked = 0
    for a in range(world.n_aspects):
        for b in (a + 1, a + 2):
            if b >= world.n_aspects:
                continue
            having = set(world.items_with(a).tolist()) | set(world.items_with(b).tolist())
            assert candidates_after(env, [a, b]) == len(left & having)
            checked += bool(having - left)
    assert checked > 0  # some pair has items outside the candidates


def test_help_at_a_slate_names_its_whole_range(world: Catalog) -> None:
    result, text = talk(world, ["jazz", "y", "n", "help", "quit"])
    items = result.transcript["outcome"]["pending"]["action"]["items"]
    assert len(items) > 1
    assert f"Type the number (1-{len(items)}) of the one you'd take" in text


def test_a_watched_random_policy_replays_from_the_transcript_s_seed(world: Catalog) -> None:
    """A random policy draws from the conversation's seed: resetting env and policy with meta.seed and
    acting again asks the same questions the transcript records."""
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("random", build_ranker("popularity", world))
    transcript = run_chat(env, policy, seed=2, console=quiet(), simulate=True).transcript
    seed, goal = transcript["meta"]["seed"], transcript["goal_index"]
    assert seed != 0
    env.reset(seed=seed, options={"goal_index": goal})
    policy.reset(np.random.default_rng(seed))
    asked = []
    while not env.done:
        action = policy.act(env)
        asked.append(sorted(int(a) for a in env.parse(action).aspects))
        env.step(action)
    recorded = [sorted(turn["action"].get("aspects", [])) for turn in transcript["turns"][1:]]
    assert len(asked) > 1 and asked == recorded
