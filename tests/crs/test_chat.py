"""`crs chat`: whole conversations driven through standard input, checked on the transcript and text."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pty
import re
import select
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from rich.console import Console
from typer.testing import CliRunner

from crs.chat import ChatError, HumanUser, PersonAnswer, choose_goal, human_env, run_chat
from crs.chat.question import candidates_after, rejection_effect
from crs.chat.view import ChatView
from crs.chat_cmd import personal_commands
from crs.cli import app
from crs.explain import LABEL_ASPECTS, LABEL_POOL, Explainer
from envs.actions import ask, probe, recommend
from envs.env import ConversationEnv
from envs.metrics import hdcg_value
from envs.ranker import DialogueFacts
from envs.registry import make_env
from envs.rollout import evaluate, evaluation_indices
from policies.pretrain.ranker import PersonaRanker
from policies.rankers import build_ranker
from policies.rules import EVERY_SETTING_RULES, make_rule_policy
from simulators.catalog import Catalog, Taxonomy
from simulators.datasets import load_catalog
from simulators.mcmipl import load_release
from simulators.persona_world import make_persona_world
from simulators.users import Goal

runner = CliRunner()


@pytest.fixture(scope="module")
def world() -> Catalog:
    return make_persona_world()


def chat(tmp_path: Path, lines: list[str], *args: str) -> tuple[Any, dict[str, Any]]:
    """Run `crs chat` with `lines` on standard input; return the CLI result and the transcript (a new
    file per call: an existing transcript is refused)."""
    path = tmp_path / f"chat-{len(list(tmp_path.glob('chat-*.json')))}.json"
    result = runner.invoke(
        app, ["chat", "--transcript", str(path), *args], input="".join(f"{x}\n" for x in lines)
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result, json.loads(path.read_text())


def with_aspect(catalog: Catalog, name: str) -> set[int]:
    return set(catalog.items_with(catalog.aspect_names.index(name)).tolist())


# ------------------------------------------------------------------------------- binary questions
def test_binary_questions_then_accept(tmp_path: Path, world: Catalog) -> None:
    result, transcript = chat(tmp_path, ["jazz", "y", "n", "1"], "--policy", "ask-2")
    assert result.exit_code == 0
    turns = transcript["turns"]
    assert [t["kind"] for t in turns] == ["open", "ask", "ask", "recommend"]
    assert [t["answer"]["said"] for t in turns] == ["open", "yes", "no", "accept"]
    # candidates: items with jazz; then jazz ∩ the aspect said yes to; "no" filters nothing
    jazz = with_aspect(world, "jazz")
    yes_aspect = turns[1]["action"]["aspect_names"][0]
    assert turns[0]["candidates_left"] == len(jazz)
    assert turns[1]["candidates_left"] == len(jazz & with_aspect(world, yes_aspect))
    assert turns[2]["candidates_left"] == turns[1]["candidates_left"]
    assert turns[2]["answer"]["rejected"] == turns[2]["action"]["aspects"]
    slate = turns[3]["action"]["items"]
    assert len(slate) == 10
    assert set(slate) <= jazz & with_aspect(world, yes_aspect)
    outcome = transcript["outcome"]
    assert outcome["ended"] == "accepted" and outcome["success"] is True
    assert outcome["accepted_item"] == slate[0] and outcome["rank"] == 1
    # 3 agent actions; success at 0-based step 2, rank 1: 1/log2(5) + (1/log2(4) - 1/log2(5)) / 1 = 0.5
    assert outcome["agent_actions"] == 3
    assert outcome["metrics"]["hDCG"] == pytest.approx(0.5) == pytest.approx(hdcg_value(2, 1))
    assert outcome["metrics"]["SR@5"] == 1.0 and outcome["metrics"]["AT"] == 3.0
    assert "targets" not in outcome  # a person has no hidden target
    # the printed dialogue: the question, the slate with names and explanations, the summary
    assert f"Do you want {yes_aspect}?" in result.output
    assert world.item_names[slate[0]] in result.output
    assert turns[3]["explanation"][0]["text"].startswith(f"has jazz & {yes_aspect}, as you asked; ranked by")
    assert "as you asked; ranked by" in result.output
    assert f"You took {world.item_names[slate[0]]} (rank 1)" in result.output


def test_explanations_in_transcript_name_item_match_and_popularity(tmp_path: Path, world: Catalog) -> None:
    _, transcript = chat(tmp_path, ["jazz", "1"], "--policy", "always-recommend")
    explanations = transcript["turns"][1]["explanation"]
    assert len(explanations) == 10
    popularity = build_ranker("popularity", world).item_popularity  # type: ignore[attr-defined]
    for entry, item in zip(explanations, transcript["turns"][1]["action"]["items"], strict=True):
        assert entry["item"] == item and entry["item_name"] == world.item_names[item]
        # a popularity ranking has no personas: the item's match and its popularity, no persona claimed
        assert entry["source"] == "popularity" and entry["persona"] is None and entry["persona_label"] is None
        assert entry["matched_names"] == ["jazz"] and entry["popularity"] == int(popularity[item])
        users = "1 user has" if entry["popularity"] == 1 else f"{entry['popularity']} users have"
        assert entry["text"] == f"has jazz, as you asked; ranked by popularity: {users} it in their history"
    # items of different popularity read differently
    texts = {e["text"] for e in explanations}
    assert len(texts) == len({e["popularity"] for e in explanations}) > 1


def test_explanations_name_every_accepted_aspect_the_item_has(tmp_path: Path, world: Catalog) -> None:
    """The aspect just accepted is named beside the opening (it used to be dropped for the rarer one)."""
    result, transcript = chat(tmp_path, ["jazz", "y", "n"], "--policy", "ask-1")
    yes_aspect = transcript["turns"][1]["action"]["aspect_names"][0]
    turn = transcript["turns"][2]
    assert turn["kind"] == "recommend"
    for entry, item in zip(turn["explanation"], turn["action"]["items"], strict=True):
        own = {world.aspect_names[a] for a in world.aspects_of(item)}
        assert entry["matched_names"] == [n for n in ("jazz", yes_aspect) if n in own] == ["jazz", yes_aspect]
        assert entry["text"].startswith(f"has jazz & {yes_aspect}, as you asked; ")
    assert " side" not in " ".join(e["text"] for e in turn["explanation"])
    assert "for your" not in result.output  # no persona model, no persona claimed


def test_skip_counts_as_no_but_is_recorded(tmp_path: Path) -> None:
    _, transcript = chat(tmp_path, ["jazz", "skip", "quit"], "--policy", "ask-2")
    turn = transcript["turns"][1]
    assert turn["answer"]["said"] == "skip"
    assert turn["answer"]["accepted"] == [] and turn["answer"]["rejected"] == turn["action"]["aspects"]


# --------------------------------------------------------------------------------- rejecting slates
def test_rejecting_every_slate_runs_to_the_turn_limit(tmp_path: Path, world: Catalog) -> None:
    result, transcript = chat(tmp_path, ["jazz"] + ["n"] * 14, "--policy", "always-recommend")
    turns = transcript["turns"]
    assert len(turns) == 15 and all(t["answer"]["said"] == "reject" for t in turns[1:])
    # each rejected slate of 10 leaves the candidates: |jazz| - 10 t after t slates
    jazz = len(with_aspect(world, "jazz"))
    assert [t["candidates_left"] for t in turns] == [jazz - 10 * t for t in range(15)]
    shown = [item for t in turns[1:] for item in t["action"]["items"]]
    assert len(shown) == len(set(shown)) == 140  # no item offered twice
    outcome = transcript["outcome"]
    assert outcome["ended"] == "turn limit" and outcome["success"] is False
    assert outcome["metrics"] == {"SR@5": 0.0, "SR@10": 0.0, "SR@15": 0.0, "AT": 15.0, "hDCG": 0.0}
    assert "No item was taken within 15 turns" in result.output


# -------------------------------------------------------------------------------- robust to people
def test_bad_input_reprompts_with_a_hint(tmp_path: Path) -> None:
    lines = ["zzqqxx", "99", "jazz", "maybe", "", "y", "n", "11", "two", "0", "2"]
    result, transcript = chat(tmp_path, lines, "--policy", "ask-2")
    assert result.exit_code == 0
    out = result.output
    assert "I know nothing called 'zzqqxx'" in out
    assert "99 is not on the list" in out
    assert out.count("Type y, n or skip (or help, back, quit).") == 2  # "maybe" and ""
    assert out.count("Type a number between 1 and 10, or n to reject them all.") == 3  # "11", "two", "0"
    assert [t["answer"]["said"] for t in transcript["turns"]] == ["open", "yes", "no", "accept"]
    assert transcript["outcome"]["rank"] == 2


def test_typed_markup_is_shown_as_typed_not_rendered(tmp_path: Path) -> None:
    """Square brackets, rich's escaping backslash and emoji codes a person types are repeated as typed
    (a typed "zzz[/]" used to crash the chat, and "[bold]..." to be rendered)."""
    typed = ["zzz[/]", "[bold]zz[/bold]", "[link=https://evil.example]zzz[/link]", "a\\", ":smile:"]
    result, transcript = chat(tmp_path, [*typed, "jazz", "quit"], "--policy", "ask-2")
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    for text in typed:
        assert f"I know nothing called {text!r}; try another word" in out
    assert transcript["turns"][0]["answer"]["accepted_names"] == ["jazz"]


def test_a_watched_chat_s_transcript_names_the_seed_that_replays_it(tmp_path: Path) -> None:
    _, first = chat(tmp_path, [], "--simulate", "--seed", "3", "--policy", "ask-2")
    assert first["meta"]["chat_seed"] == 3
    _, again = chat(
        tmp_path, [], "--simulate", "--seed", str(first["meta"]["chat_seed"]), "--policy", "ask-2"
    )
    assert again == first


def test_digits_int_cannot_read_get_a_hint_not_a_traceback(tmp_path: Path) -> None:
    result, transcript = chat(tmp_path, ["²", "9" * 5000, "jazz", "y", "n", "²", "2"], "--policy", "ask-2")
    assert result.exit_code == 0, result.output
    assert "Type a number between 1 and 10, or n to reject them all." in result.output  # the slate's "²"
    assert [t["answer"]["said"] for t in transcript["turns"]] == ["open", "yes", "no", "accept"]


def test_bytes_that_are_not_utf8_get_a_hint_not_a_traceback(tmp_path: Path) -> None:
    """Standard input decoded strictly as UTF-8 (CliRunner's, or ``PYTHONIOENCODING=utf-8``): a line
    holding other bytes is hinted at, and the chat goes on and writes its transcript."""
    path = tmp_path / "chat.json"
    typed = b"ja\xffzz\njazz\ny\xe9\ny\nquit\n"
    result = runner.invoke(app, ["chat", "--policy", "ask-2", "--transcript", str(path)], input=typed)
    assert result.exit_code == 0, result.output
    assert flat(result.output).count("That line held bytes that are not text") == 2
    transcript = json.loads(path.read_text())
    assert [t["answer"]["said"] for t in transcript["turns"]] == ["open", "yes"]
    assert transcript["turns"][0]["answer"]["accepted_names"] == ["jazz"]


def test_opening_by_number_and_by_close_spelling(tmp_path: Path, world: Catalog) -> None:
    _, by_number = chat(tmp_path, ["1", "quit"], "--policy", "ask-2")
    suggested = by_number["turns"][0]["answer"]["accepted"][0]
    _, by_typo = chat(tmp_path, ["Melancolic", "quit"], "--policy", "ask-2")
    assert by_typo["turns"][0]["answer"]["accepted_names"] == ["melancholic"]
    # the first suggestion is the user's most characteristic aspect (their history profile)
    user = by_number["user"]
    assert suggested == int(Explainer(world, None, None).profile(user)[0])


def test_aspects_of_one_name_are_one_choice(tmp_path: Path, world: Catalog) -> None:
    """Two aspects with one name (LastFM* has three tags "80s") are not listed twice: the name opens
    with the more common one."""
    names = list(world.aspect_names)
    jazz, folk = names.index("jazz"), names.index("folk")
    names[folk] = "jazz"
    catalog = dataclasses.replace(world, aspect_names=tuple(names))
    frequency = np.diff(catalog.aspect_items.indptr)
    assert frequency[jazz] != frequency[folk]
    console = quiet()
    env = make_env(catalog=catalog, split="test")
    policy = make_rule_policy("ask-2", build_ranker("popularity", catalog))
    result = run_chat(env, policy, seed=0, console=console, read=lines_reader(["jazz", "quit"]))
    assert "Did you mean" not in console.file.getvalue()  # type: ignore[attr-defined]
    more_common = jazz if frequency[jazz] > frequency[folk] else folk
    assert result.transcript["turns"][0]["answer"]["accepted"] == [more_common]


def test_a_typo_close_to_two_names_lists_them_instead_of_guessing(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", build_ranker("popularity", world))
    console = quiet()
    # "rmantic" is one letter from "romantic" and close to "frantic": listed, the person picks
    result = run_chat(env, policy, seed=0, console=console, read=lines_reader(["rmantic", "2", "quit"]))
    text = flat(console.file.getvalue())  # type: ignore[attr-defined]
    assert "Did you mean one of these?" in text and "(taking" not in text
    assert result.transcript["turns"][0]["answer"]["accepted_names"] == ["frantic"]


class RareAskingPolicy:
    """Asks about the aspect fewest candidates have (the person says yes, so they narrow) until one
    only one candidate has was asked, then recommends."""

    def __init__(self, ranker: Any) -> None:
        self.ranker = ranker
        self.rule = make_rule_policy("always-recommend", ranker)
        self.done = False

    def reset(self, rng: np.random.Generator) -> None:
        self.rule.reset(rng)
        self.done = False

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        counts = {int(a): candidates_after(env, [a]) for a in env.state.reachable_aspects()}
        counts = {a: n for a, n in counts.items() if 0 < n < env.state.n_candidates}
        if self.done or not counts:
            return self.rule.act(env)
        rarest = min(counts, key=lambda a: counts[a])
        self.done = counts[rarest] == 1
        return ask([rarest])


def test_one_item_having_an_aspect_is_said_in_the_singular(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    console = quiet()
    policy = RareAskingPolicy(build_ranker("popularity", world))
    run_chat(env, policy, seed=0, console=console, read=lines_reader(["jazz"] + ["y"] * 8 + ["quit"]))
    text = flat(console.file.getvalue())  # type: ignore[attr-defined]
    assert re.search(r"\(1 of the \d+ items left has it\)", text), text[-3000:]
    assert not re.search(r"\b1 of the \d+ items? left have it", text)


def test_help_is_shown_and_changes_nothing(tmp_path: Path) -> None:
    result, transcript = chat(tmp_path, ["help", "jazz", "help", "y", "quit"], "--policy", "ask-2")
    assert result.output.count("back: undo your last answer") == 2
    assert [t["answer"]["said"] for t in transcript["turns"]] == ["open", "yes"]


def test_back_undoes_the_last_answer(tmp_path: Path) -> None:
    _, straight = chat(tmp_path, ["jazz", "n", "y", "1"], "--policy", "ask-2")
    result, undone = chat(tmp_path, ["jazz", "y", "back", "n", "y", "1"], "--policy", "ask-2")
    assert 'Undone your "yes"' in result.output
    # replaying with the same seed reaches the same state: the corrected chat equals the straight one
    assert undone["turns"] == straight["turns"]
    assert undone["outcome"] == straight["outcome"]


class FickleAskingPolicy:
    """Asks about the first reachable aspect, but the second one after its second reset (a `back`
    replays the conversation from a reset): its replay acts differently."""

    def __init__(self) -> None:
        self.resets = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.resets += 1

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return ask([int(env.state.reachable_aspects()[1 if self.resets >= 2 else 0])])


def test_back_says_when_the_replayed_policy_asks_something_else(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    console = quiet()
    lines = ["jazz", "y", "y", "back", "n", "quit"]
    result = run_chat(env, FickleAskingPolicy(), seed=0, console=console, read=lines_reader(lines))
    text = flat(console.file.getvalue())  # type: ignore[attr-defined]
    assert "The recommender now asks something else; answer from here." in text
    # the first "y" answered another question: it is dropped, and the "n" answers the new one
    turns = result.transcript["turns"]
    assert [t["answer"]["said"] for t in turns] == ["open", "no"]
    straight = run_chat(env, FickleAskingPolicy(), seed=0, console=quiet(), read=lines_reader(["jazz", "n"]))
    assert turns[1]["action"]["aspects"] != straight.transcript["turns"][1]["action"]["aspects"]


def test_back_at_the_first_question_reopens(tmp_path: Path) -> None:
    result, transcript = chat(tmp_path, ["jazz", "back", "back", "folk", "quit"], "--policy", "ask-2")
    assert "Undone your opening" in result.output
    assert "Nothing to undo yet" in result.output
    assert transcript["turns"][0]["answer"]["accepted_names"] == ["folk"]
    assert len(transcript["turns"]) == 1


def test_end_of_input_ends_with_a_summary(tmp_path: Path) -> None:
    result, transcript = chat(tmp_path, ["jazz", "y"], "--policy", "ask-4")
    assert result.exit_code == 0
    assert transcript["outcome"]["ended"] == "end of input"
    assert transcript["outcome"]["metrics"] is None  # the conversation did not finish
    # the second question was asked when the input ended: it counts, unanswered
    said = "Conversation ended (end of input) after 2 recommender turns, the last (a question) unanswered."
    assert said in flat(result.output)
    assert "summary" in result.output
    pending = transcript["outcome"]["pending"]
    assert pending["turn"] == 3 and pending["kind"] == "ask" and "answer" not in pending
    assert pending["action"]["aspect_names"][0] in flat(result.output)
    assert pending["candidates_left"] == transcript["turns"][-1]["candidates_left"]


def test_a_slate_shown_but_not_answered_is_in_the_transcript(tmp_path: Path) -> None:
    """Quitting at a slate records it (and its explanations) as the outcome's pending turn; the summary
    counts it (it used to say "after 0 recommender turns" with no trace of the slate)."""
    result, transcript = chat(tmp_path, ["1", "quit"], "--policy", "always-recommend")
    assert [t["kind"] for t in transcript["turns"]] == ["open"]
    pending = transcript["outcome"]["pending"]
    assert pending["turn"] == 2 and pending["kind"] == "recommend"
    assert len(pending["action"]["items"]) == len(pending["explanation"]) == 10
    assert pending["action"]["item_names"][0] in result.output
    out = flat(result.output)
    assert "Conversation ended (quit) after 1 recommender turn, the last (a slate) unanswered." in out
    # an answered slate leaves nothing pending
    _, answered = chat(tmp_path, ["1", "n", "quit"], "--policy", "always-recommend")
    assert answered["turns"][1]["action"] == pending["action"]
    assert answered["outcome"]["pending"]["turn"] == 3
    _, accepted = chat(tmp_path, ["1", "1"], "--policy", "always-recommend")
    assert accepted["outcome"]["ended"] == "accepted" and accepted["outcome"]["pending"] is None


def test_quit_at_the_opening_writes_an_empty_transcript(tmp_path: Path) -> None:
    result, transcript = chat(tmp_path, ["quit"])
    assert result.exit_code == 0
    assert transcript["turns"] == [] and transcript["outcome"]["ended"] == "quit"


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["chat", "--policy", "ask-many"], input="")
    assert result.exit_code == 2 and "unknown rule policy 'ask-many'" in result.output
    result = runner.invoke(app, ["chat", "--user-id", "100000"], input="")
    assert result.exit_code == 2 and "--user-id 100000 outside" in result.output
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = runner.invoke(app, ["chat", "--transcript", str(blocked / "chat.json")], input="quit\n")
    assert result.exit_code == 2 and "could not write the transcript" in result.output
    assert "Traceback" not in result.output
    # a rule the setting does not suit is refused before the person types anything
    # naming the setting that suits it and the rules that suit every one (not ask-N alone)
    result = runner.invoke(app, ["chat", "--policy", "lookahead-2"], input="jazz\n")
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "needs the binary setting" in said and "pass --setting binary" in said
    assert f"({EVERY_SETTING_RULES})" in said and "you>" not in result.output


def test_a_transcript_path_that_is_no_regular_file_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    """A FIFO (or a device) at --transcript would be replaced by the atomic write: refused before the
    chat, and left as it is."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["chat", "--transcript", str(fifo), "--overwrite"], input="jazz\nquit\n")
    assert result.exit_code == 2, result.output
    assert f"--transcript {fifo} is not a regular file" in flat(result.output)
    assert "you>" not in result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_transcript_in_a_folder_that_takes_no_file_is_refused_before_the_chat(tmp_path: Path) -> None:
    """/proc takes no new file (even for root): the chat is refused before it starts, instead of losing
    the transcript after the whole conversation."""
    result = runner.invoke(app, ["chat", "--transcript", "/proc/crs-chat.json"], input="jazz\nquit\n")
    assert result.exit_code == 2, result.output
    assert "could not write the transcript to /proc/crs-chat.json (/proc: " in flat(result.output)
    assert "you>" not in result.output


def test_user_id_picks_the_user(tmp_path: Path) -> None:
    _, transcript = chat(tmp_path, ["quit"], "--user-id", "7")
    assert transcript["user"] == 7


def test_user_id_picks_the_users_first_goal_in_the_seeded_order(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    users = env.goals.interactions.users
    order = evaluation_indices(env.goals.n_goals, env.goals.n_goals, 5)
    later = 0  # users whose first goal in the seeded order is not their lowest goal index
    for user in range(10):
        first = next(int(i) for i in order if users[i] == user)
        assert choose_goal(env, 5, user) == first
        later += first != int(np.flatnonzero(users == user)[0])
    assert later > 0


# --------------------------------------------------------------------------------- watch mode
def test_watch_mode_reveals_target_and_outcome_that_agree_with_info(tmp_path: Path, world: Catalog) -> None:
    result, transcript = chat(tmp_path, [], "--simulate", "--seed", "3", "--policy", "ask-4")
    assert result.exit_code == 0
    outcome = transcript["outcome"]
    # the watched conversation is the one `crs eval --seed 3` holds first: same goal, same seed
    env = make_env("persona_world", split="test")
    policy = make_rule_policy("ask-4", build_ranker("popularity", env.catalog))
    (record,) = evaluate(env, policy, np.array([transcript["goal_index"]]), seed=3)
    assert outcome["targets"] == list(record.targets)
    assert outcome["success"] == record.success and outcome["rank"] == record.rank
    assert outcome["agent_actions"] == record.agent_actions == len(transcript["turns"]) - 1
    assert outcome["total_reward"] == pytest.approx(record.total_reward)
    expected_hdcg = hdcg_value(record.agent_actions - 1, record.rank) if record.success else 0.0
    assert outcome["metrics"]["hDCG"] == pytest.approx(expected_hdcg)
    assert outcome["metrics"]["SR@15"] == float(record.success)
    names = ", ".join(world.item_names[t] for t in record.targets)
    assert f"Hidden target: {names}" in result.output
    if record.success:
        assert outcome["accepted_item"] in record.targets
        assert f"I'll take #{record.rank}, {world.item_names[outcome['accepted_item']]}" in result.output


def test_watch_mode_names_the_answers_the_noisy_simulated_user_gave_against_its_target(
    tmp_path: Path, world: Catalog
) -> None:
    """The persona world's user flips 5% of its answers: the transcript marks exactly the answers that
    disagree with the revealed target, and the summary names them, so a watcher can tell a recommender's
    mistake from a misleading answer (they were silent, and a "yes" the target contradicts looked like
    the simulator's bug)."""
    slipped = 0
    for seed in range(1, 13):
        result, transcript = chat(tmp_path, [], "--simulate", "--seed", str(seed), "--policy", "ask-4")
        held = set().union(*(world.aspects_of(t).tolist() for t in transcript["outcome"]["targets"]))
        lines = []
        for turn in transcript["turns"][1:]:
            answer = turn["answer"]
            if turn["kind"] == "recommend":
                assert "slips" not in answer
                continue
            against = {a for a in turn["action"]["aspects"] if (a in answer["accepted"]) != (a in held)}
            assert set(answer["slips"]) == against
            lines += [
                f"{'yes' if a in answer['accepted'] else 'no'} to {world.aspect_names[a]}" for a in against
            ]
        output = " ".join(result.output.split())
        assert ("answered against its target" in output) == bool(lines)
        assert all(line in output for line in lines)
        slipped += bool(lines)
    assert slipped > 0  # the seeds hold at least one conversation with a slip


def test_watch_mode_needs_no_input_and_shows_every_turn(tmp_path: Path) -> None:
    result, transcript = chat(tmp_path, [], "--simulate", "--seed", "5", "--policy", "always-recommend")
    assert result.output.count("How about one of these?") == len(transcript["turns"]) - 1
    assert transcript["meta"]["mode"] == "simulate"
    # a rejected slate is said, recorded and shown as a rejection (the env's info holds -1 / 0 there)
    *rejected, last = transcript["turns"][1:]
    assert rejected and all(t["answer"]["said"] == "reject" for t in rejected)
    assert all(t["answer"]["accepted_item"] is None and t["answer"]["rank"] is None for t in rejected)
    assert result.output.count("None of these.") == len(rejected) + (not transcript["outcome"]["success"])
    assert "I'll take #0" not in result.output
    if not transcript["outcome"]["success"]:
        assert last["answer"]["said"] == "reject" and transcript["outcome"]["accepted_item"] is None


# ----------------------------------------------------------------------------- multiple choice
class ProbingPolicy:
    """Probes `persona` (1 unless given) with `width` (4 unless given) aspects the candidates have, then
    recommends the ranker's slate."""

    def __init__(self, ranker: Any, persona: int = 1, width: int = 4) -> None:
        self.ranker = ranker
        self.persona = persona
        self.width = width
        self.rule = make_rule_policy("always-recommend", ranker)

    def reset(self, rng: np.random.Generator) -> None:
        self.rule.reset(rng)

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        if env.state.turn == 1:
            return probe(self.persona, env.state.reachable_aspects()[: self.width])
        return self.rule.act(env)


def lines_reader(lines: list[str]) -> Any:
    feed: Iterator[str] = iter(lines)

    def read(prompt: str) -> str:
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    return read


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def test_multiple_choice_probe_with_several_numbers(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    policy = ProbingPolicy(build_ranker("popularity", world))
    console = quiet()
    result = run_chat(env, policy, seed=0, console=console, read=lines_reader(["jazz", "1 3", "n", "quit"]))
    probe_turn = result.transcript["turns"][1]
    options = probe_turn["action"]["aspects"]
    assert probe_turn["kind"] == "probe" and len(options) == 4
    assert probe_turn["action"]["persona"] == 1
    assert probe_turn["answer"]["accepted"] == sorted([options[0], options[2]])
    assert probe_turn["answer"]["rejected"] == [options[1], options[3]]
    expected = with_aspect(world, "jazz") & with_aspect(world, world.aspect_names[options[0]])
    expected &= with_aspect(world, world.aspect_names[options[2]])
    assert probe_turn["candidates_left"] == len(expected)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Which of these fits you today?" in text
    assert "(about your" not in text  # no persona model: a probe's persona has no label
    assert probe_turn["action"]["persona_label"] is None
    assert result.transcript["turns"][2]["answer"]["said"] == "reject"


def test_multiple_choice_none_and_impossible_combinations(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    policy = ProbingPolicy(build_ranker("popularity", world))
    console = quiet()
    # "1 2 3 4": no candidate has all four (checked below) -> hint; "7": out of range -> hint
    result = run_chat(
        env, policy, seed=0, console=console, read=lines_reader(["jazz", "1 2 3 4", "7", "none"])
    )
    options = result.transcript["turns"][1]["action"]["aspects"]
    together = with_aspect(world, "jazz")
    for aspect in options:
        together &= with_aspect(world, world.aspect_names[aspect])
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert not together  # no item has all four of these genres
    assert "No remaining item has all of" in text and "pick fewer" in text
    assert "7: not on the list" in text
    turn = result.transcript["turns"][1]
    assert turn["answer"]["said"] == "none" and turn["answer"]["accepted"] == []
    assert turn["candidates_left"] == len(with_aspect(world, "jazz"))


def test_multiple_choice_zero_is_not_an_option(world: Catalog) -> None:
    """The options are numbered from 1: a 0 is hinted at, neither the last option nor a "none"."""
    env = make_env(catalog=world, split="test")
    policy = ProbingPolicy(build_ranker("popularity", world))
    console = quiet()
    result = run_chat(env, policy, seed=0, console=console, read=lines_reader(["jazz", "0", "1", "quit"]))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "0: not on the list; use numbers between 1 and 4." in text
    turn = result.transcript["turns"][1]
    assert turn["kind"] == "probe" and turn["answer"]["accepted"] == [turn["action"]["aspects"][0]]


@pytest.mark.real_data
def test_enumerated_questions_on_yelp_star(tmp_path: Path, real_data_dir: Path) -> None:
    args = [
        "--dataset",
        "yelp_star",
        "--data-dir",
        str(real_data_dir),
        "--policy",
        "ask-2",
        "--setting",
        "enumerated",
    ]
    result, transcript = chat(tmp_path, ["Pizza", "1", "none", "quit"], *args)
    ask = transcript["turns"][1]
    assert ask["kind"] == "ask" and "category_name" in ask["action"]
    # the options are the category's fine aspects, most common among the candidates first
    assert ask["answer"]["accepted"] == [ask["action"]["aspects"][0]]
    assert f"About {ask['action']['category_name']}: which of these fits you today?" in result.output
    assert transcript["turns"][2]["answer"]["accepted"] == []
    assert transcript["meta"]["setting"] == "enumerated"


def world_with_categories(world: Catalog, unlisted: str) -> Catalog:
    """`world` with a taxonomy of 4 categories that lists every aspect but `unlisted` (as Yelp* lists 73
    of its aspects under no category)."""
    parent = np.arange(world.n_aspects) % 4
    parent[world.aspect_names.index(unlisted)] = -1
    listed = np.flatnonzero(parent >= 0)
    ones = np.ones(listed.size, dtype=np.bool_)
    members = sp.csr_matrix((ones, (parent[listed], listed)), shape=(4, world.n_aspects))
    return dataclasses.replace(world, taxonomy=Taxonomy(parent, ("a", "b", "c", "d"), members))


def test_enumerated_opening_refuses_an_aspect_of_no_category_with_a_hint(
    world: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enumerated opening names a category: an aspect of none is never suggested, and typed it gets
    a hint and a new prompt (a suggestion of none used to end the chat with an error)."""
    suggested: list[list[int]] = []
    monkeypatch.setattr(ChatView, "ask_opening", lambda self, ideas: suggested.append(list(ideas)))
    policy = make_rule_policy("ask-2", build_ranker("popularity", world))
    run_chat(make_env(catalog=world, split="test"), policy, seed=0, console=quiet(), read=lines_reader([]))
    first = suggested.pop()[0]  # the first suggestion without a taxonomy
    name = world.aspect_names[first]
    catalog = world_with_categories(world, name)
    env = make_env(catalog=catalog, split="test", setting="enumerated")
    console = quiet()
    policy = make_rule_policy("ask-2", build_ranker("popularity", catalog))
    result = run_chat(env, policy, seed=0, console=console, read=lines_reader([name, "1", "none", "quit"]))
    text = flat(console.file.getvalue())  # type: ignore[attr-defined]
    assert f"{name!r} is in no category, and this chat (the enumerated setting) opens" in text
    (ideas,) = suggested
    assert len(ideas) == 10 and first not in ideas
    assert result.transcript["turns"][0]["answer"]["accepted"] == [ideas[0]]
    assert result.transcript["turns"][1]["action"]["category_name"] in ("a", "b", "c", "d")


@pytest.mark.real_data
def test_enumerated_yelp_star_opens_with_any_suggestion(real_data_dir: Path) -> None:
    env = make_env("yelp_star", data_dir=real_data_dir, split="test", setting="enumerated")
    taxonomy = env.catalog.taxonomy
    assert taxonomy is not None
    policy = make_rule_policy("ask-2", build_ranker("popularity", env.catalog))
    for number in range(1, 11):
        result = run_chat(env, policy, seed=0, console=quiet(), read=lines_reader([str(number), "quit"]))
        (opening,) = result.transcript["turns"][0]["answer"]["accepted"]
        assert taxonomy.parent_of[opening] >= 0
    console = quiet()
    lines = ["Restaurants", "Fast Food", "quit"]
    result = run_chat(env, policy, seed=0, console=console, read=lines_reader(lines))
    assert "'Restaurants' is in no category" in flat(console.file.getvalue())  # type: ignore[attr-defined]
    assert result.transcript["turns"][0]["answer"]["accepted_names"] == ["Fast Food"]


@pytest.mark.real_data
def test_lastfm_star_uses_artist_and_tag_names(tmp_path: Path, real_data_dir: Path) -> None:
    args = ["--dataset", "lastfm_star", "--data-dir", str(real_data_dir), "--policy", "ask-1"]
    # "hip hop" names several tags (hip-hop, hip hop, hiphop ...): the person picks from a list, most
    # common first
    result, transcript = chat(tmp_path, ["hip hop", "1", "y", "n", "quit"], *args)
    assert "Did you mean one of these?" in result.output and "hip-hop (377)" in result.output
    assert transcript["turns"][0]["answer"]["accepted_names"] == ["hip-hop"]
    slate = transcript["turns"][2]["action"]["item_names"]
    assert all(name in result.output for name in slate[:3])
    assert "Eminem" in slate or "Rihanna" in slate  # popular hip hop artists lead a popularity slate


# ------------------------------------------------------------------------- explanation sources
class ExplainingRanker:
    """A ranker with persona explanations: persona 1 for every item, labelled by aspects 0 and 1."""

    def __init__(self, catalog: Catalog) -> None:
        self.inner = build_ranker("popularity", catalog)
        self.catalog = catalog

    def item_scores(self, facts: Any, items: np.ndarray) -> np.ndarray:
        return self.inner.item_scores(facts, items)

    def aspect_scores(self, facts: Any, aspects: np.ndarray) -> np.ndarray:
        return self.inner.aspect_scores(facts, aspects)

    def explain(self, facts: Any, items: np.ndarray) -> list[tuple[int, int]]:
        return [(1, int(self.catalog.aspects_of(int(i))[-1])) for i in items]

    def signature_aspects(self, user: int, k: int, m: int, among: Any = None) -> np.ndarray:
        return np.array([k - 1, k][:m]) if among is None else np.asarray(among)[-m:]


def _stub_label(world: Catalog, user: int) -> str:
    """A persona's label with `ExplainingRanker`'s signatures: the last two of the user's profile pool."""
    pool = Explainer(world, None, None).profile(user)[:LABEL_POOL]
    return " & ".join(world.aspect_names[int(a)] for a in pool[-2:])


class ExplainingPolicy:
    def __init__(self, ranker: Any) -> None:
        self.rule = make_rule_policy("always-recommend", ranker)
        self.ranker = ranker

    def reset(self, rng: np.random.Generator) -> None:
        self.rule.reset(rng)

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return self.rule.act(env)

    def explain(self, env: ConversationEnv, items: np.ndarray) -> list[tuple[int, int]]:
        return [(2, int(env.catalog.aspects_of(int(i))[0])) for i in items]


def test_explanations_come_from_the_ranker_with_signature_labels(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    ranker = ExplainingRanker(world)
    policy = make_rule_policy("always-recommend", ranker)
    result = run_chat(env, policy, seed=0, console=quiet(), read=lines_reader(["jazz", "n"]))
    turn = result.transcript["turns"][1]
    label = _stub_label(world, result.transcript["user"])
    jazz = world.aspect_names.index("jazz")
    for entry, item in zip(turn["explanation"], turn["action"]["items"], strict=True):
        assert entry["source"] == "ranker" and entry["persona"] == 1 and entry["persona_label"] == label
        own = world.aspects_of(item)
        # the ranker's aspect; when it is the accepted jazz, the item's other aspect the persona's
        # signature ranks first among them (this ranker's: the last)
        others = own[own != jazz]
        assert entry["aspect"] == (int(own[-1]) if own[-1] != jazz else int(others[-1]))
        assert (
            entry["text"]
            == f"has jazz, as you asked; for your {label} side, because of "
            + (world.aspect_names[entry["aspect"]])
        )


def test_a_persona_is_labelled_with_aspects_of_the_user_s_own_history(world: Catalog) -> None:
    """Over all aspects a persona's most distinctive ones need not be tags the user ever met (LastFM*:
    4% were); the label picks them among the user's own most characteristic aspects."""
    ranker = random_persona_ranker(world, 3)
    explainer = Explainer(world, None, ranker)
    empty = np.zeros(0, dtype=np.int64)
    for user in range(0, world.n_users, 7):
        counts = np.asarray(world.item_aspects[explainer.history(user)].sum(axis=0)).ravel()
        pool = set(explainer.profile(user)[:LABEL_POOL].tolist())
        assert pool and pool <= set(np.flatnonzero(counts > 0).tolist())
        for k in range(3):
            names = explainer.persona_label(DialogueFacts(user, empty, empty, empty), k).split(" & ")
            assert len(names) == LABEL_ASPECTS and {world.aspect_names.index(n) for n in names} <= pool


def test_explanations_prefer_the_policy(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    policy = ExplainingPolicy(ExplainingRanker(world))
    result = run_chat(env, policy, seed=0, console=quiet(), read=lines_reader(["jazz", "n"]))
    turn = result.transcript["turns"][1]
    label = _stub_label(world, result.transcript["user"])
    jazz = world.aspect_names.index("jazz")
    replaced = 0
    for entry, item in zip(turn["explanation"], turn["action"]["items"], strict=True):
        assert entry["source"] == "policy" and entry["persona"] == 2 and entry["persona_label"] == label
        own = world.aspects_of(item)
        replaced += int(own[0]) == jazz
        assert entry["aspect"] == (int(own[0]) if own[0] != jazz else int(own[own != jazz][-1]))
    assert replaced  # every item has jazz, the first aspect id: the policy's aspect is the accepted one


# ------------------------------------------------------------------------------- the human user
def test_human_user_answers_what_it_was_told(world: Catalog) -> None:
    human = HumanUser(world)
    human.reset(Goal(user=3, targets=(5,)), np.random.default_rng(0))
    assert human.targets == () and human.goal.user == 3
    with pytest.raises(ChatError, match="before a reply was told"):
        human.answer([1, 2])
    human.tell(PersonAnswer(question=None, said="choose", aspects=(2,)))
    assert human.answer([1, 2]) == frozenset({2})
    human.tell(PersonAnswer(question=None, said="choose", aspects=(9,)))
    with pytest.raises(ChatError, match=r"aspect\(s\) \[9\] that were not asked"):
        human.answer([1, 2])
    human.tell(PersonAnswer(question=None, said="accept", item=40))
    reaction = human.react([10, 20, 40])
    assert reaction.accepted == 40 and reaction.rank == 3 and not reaction.leaves
    human.tell(PersonAnswer(question=None, said="reject"))
    assert human.react([10, 20]).accepted is None


def test_human_env_keeps_the_setting_and_the_rules(world: Catalog) -> None:
    simulated = make_env(catalog=world, split="test")
    env = human_env(simulated)
    assert isinstance(env.user, HumanUser)
    assert (env.question_mode, env.max_turns, env.slate_size) == ("multiple_choice", 15, 10)
    assert env.user.catalog is world
    jazz = world.aspect_names.index("jazz")
    env.user.tell(PersonAnswer(question=None, said="open", aspects=(jazz,)))
    _, info = env.reset(seed=0, options={"goal_index": 0})
    assert info["answer"] == (jazz,) and info["n_candidates"] == world.items_with(jazz).size
    slate = env.state.candidate_items()[:10].tolist()
    env.user.tell(PersonAnswer(question=None, said="accept", item=slate[4]))
    _, reward, terminated, _, info = env.step(recommend(slate))
    assert terminated and info["success"] and info["rank"] == 5 and reward == 1.0
    assert info["targets"] == ()


# --------------------------------------------------------------------------------- a terminal
def test_works_in_a_terminal(tmp_path: Path) -> None:
    """The same chat through a pseudo-terminal (line editing via console.input) instead of a pipe."""
    path = tmp_path / "tty.json"
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "crs.cli", "chat", "--policy", "ask-2", "--transcript", str(path)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        close_fds=True,
    )
    os.close(terminal)
    output = b""

    def wait_for(done: Callable[[], bool], timeout: float = 30.0) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, output.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    output += os.read(controller, 65536)
                except OSError:
                    break

    try:
        for number, reply in enumerate(["jazz", "y", "n", "1"], start=1):
            wait_for(lambda n=number: output.count(b"you>") >= n)
            os.write(controller, reply.encode() + b"\r")
        wait_for(lambda: b"summary" in output)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    transcript = json.loads(path.read_text())
    assert [t["answer"]["said"] for t in transcript["turns"]] == ["open", "yes", "no", "accept"]


def test_one_recommender_turn_is_said_in_the_singular(tmp_path: Path) -> None:
    for seed in range(60):  # a watched always-recommend conversation whose first slate hits
        result, transcript = chat(
            tmp_path / str(seed), [], "--simulate", "--seed", str(seed), "--policy", "always-recommend"
        )
        if transcript["outcome"]["success"] and transcript["outcome"]["agent_actions"] == 1:
            break
    else:
        pytest.fail("no first-slate hit among 60 seeds")
    flat = " ".join(result.output.split())
    assert "after 1 recommender turn." in flat and "1 recommender turns" not in flat


def test_ctrl_c_ends_with_the_summary_and_exit_status_130(tmp_path: Path, monkeypatch) -> None:
    from crs.chat.session import ChatSession

    def interrupted(self: ChatSession) -> None:  # the person presses Ctrl-C mid-conversation
        raise KeyboardInterrupt

    monkeypatch.setattr(ChatSession, "_watch", interrupted)
    result = runner.invoke(app, ["chat", "--simulate", "--transcript", str(tmp_path / "t.json")])
    assert result.exit_code == 130, result.output
    assert "Conversation ended (interrupted) after 0 recommender turns." in " ".join(result.output.split())
    assert json.loads((tmp_path / "t.json").read_text())["outcome"]["ended"] == "interrupted"


def signalled_chat(tmp_path: Path, signals: list[signal.Signals]) -> tuple[int, str, dict[str, Any]]:
    """Run ``python -m crs.cli chat`` reading from a pipe that stays open; once it prompts for the first
    answer, send it `signals` one after the other; return its exit status, its output and its
    transcript."""
    path = tmp_path / "chat.json"
    command = [sys.executable, "-m", "crs.cli", "chat", "--policy", "ask-2", "--transcript", str(path)]
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert process.stdin is not None and process.stdout is not None
    output = b""
    try:
        process.stdin.write(b"jazz\n")
        process.stdin.flush()
        deadline = time.monotonic() + 60
        while output.count(b"you>") < 2:  # the opening, then the first question's prompt
            assert time.monotonic() < deadline, output.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([process.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                assert chunk, output.decode(errors="replace")[-2000:]  # it ended before asking
                output += chunk
        for signum in signals:
            process.send_signal(signum)
        rest, _ = process.communicate(timeout=60)
        output += rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert path.exists(), output.decode(errors="replace")[-2000:]
    return process.returncode, output.decode(errors="replace"), json.loads(path.read_text())


@pytest.mark.parametrize(
    ("signals", "status", "ended"),
    [
        ([signal.SIGTERM], 143, "terminated"),
        ([signal.SIGHUP], 129, "hung up"),
        ([signal.SIGINT, signal.SIGINT], 130, "interrupted"),
    ],
)
def test_a_signal_ends_the_chat_and_keeps_its_transcript(
    tmp_path: Path, signals: list[signal.Signals], status: int, ended: str
) -> None:
    """SIGTERM and SIGHUP (the terminal closed) end the chat as Ctrl-C does: summary, transcript, exit
    status 128 + the signal (they used to kill it with nothing saved); Ctrl-C twice saves too."""
    code, output, transcript = signalled_chat(tmp_path, signals)
    assert code == status, output[-2000:]
    assert transcript["outcome"]["ended"] == ended
    assert transcript["turns"][0]["answer"]["accepted_names"] == ["jazz"]
    assert transcript["outcome"]["pending"]["kind"] == "ask"  # the question it was waiting on
    assert f"Conversation ended ({ended}) after 1 recommender turn" in flat(output)
    assert "Traceback" not in output


def test_ctrl_c_while_saving_waits_for_the_transcript(
    tmp_path: Path, world: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second Ctrl-C while the transcript is written (the first ended the dialogue) is ignored until
    it is written, instead of losing it."""
    import crs.chat.session

    write = crs.chat.session.write_transcript

    def pressed_during(path: Path, transcript: dict[str, Any]) -> None:
        signal.raise_signal(signal.SIGINT)  # a real SIGINT, handled as the chat's handler says
        write(path, transcript)

    def interrupted(prompt: str) -> str:
        if prompt == "[bold]you>[/] ":
            return "jazz"
        raise KeyboardInterrupt  # Ctrl-C at the first question

    monkeypatch.setattr(crs.chat.session, "write_transcript", pressed_during)
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", build_ranker("popularity", world))
    path = tmp_path / "chat.json"
    try:
        result = run_chat(env, policy, seed=0, console=quiet(), read=interrupted, transcript=path)
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C interrupted the save")
    assert result.ended == "interrupted"
    assert json.loads(path.read_text())["outcome"]["ended"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after the chat


@pytest.mark.real_data
def test_mcmipl_questions_list_values_of_one_type_and_follow_its_candidate_rule(
    tmp_path: Path, real_data_dir: Path
) -> None:
    """On MCMIPL's LastFM* a question lists 2 values of one attribute type; the person's answer keeps
    the candidates having a chosen value and drops those having the other (MCMIPL's rule)."""
    args = ["--dataset", "mcmipl_lastfm_star", "--data-dir", str(real_data_dir), "--policy", "ask-2"]
    result, transcript = chat(tmp_path, ["rock", "1", "quit"], *args)
    assert result.exit_code == 0 and transcript["meta"]["setting"] == "multiple_choice"
    opened, asked = transcript["turns"][0], transcript["turns"][1]
    options = asked["action"]["aspects"]
    types = load_release("mcmipl_lastfm_star", real_data_dir).attribute_types.question_type
    assert len(options) == 2 and len({types[a] for a in options}) == 1
    assert asked["answer"]["accepted"] == [options[0]]
    catalog = load_catalog("mcmipl_lastfm_star", real_data_dir)
    before = set(catalog.items_with(opened["answer"]["accepted"][0]).tolist())
    expected = (before & set(catalog.items_with(options[0]).tolist())) - set(
        catalog.items_with(options[1]).tolist()
    )
    assert asked["candidates_left"] == len(expected)
    kept, dropped = (catalog.aspect_names[a] for a in options)
    assert 0 < len(expected) < len(before)
    said = f"{len(expected)} artists left (of {len(before)}: only those with {kept}, without {dropped})."
    assert said in flat(result.output)
    # several picks mean "any of them" here, "all of them" on the persona world: the question says which
    # ... and that "none" keeps the artists having no listed value ("needs one you pick" said none)
    picks = "an artist stays if it has none you leave out and one you pick (if you pick any)"
    assert f"(pick every one that fits: {picks})" in flat(result.output)


@pytest.mark.real_data
def test_mcmipls_kept_slates_and_repeated_targets_are_said_as_they_are(
    tmp_path: Path, real_data_dir: Path
) -> None:
    """MCMIPL's rule keeps a rejected slate when 10 or fewer are left: the count line said "they are not
    offered again" while the one artist left was shown seven times (a walkthrough's chat)."""
    args = ["-d", "mcmipl_lastfm_star", "--data-dir", str(real_data_dir), "-p", "probe-2-ask-5"]
    result, transcript = chat(tmp_path, [], *args, "--ranker", "uniform", "--simulate", "--seed", "1")
    actions = [t["action"] for t in transcript["turns"] if t["action"]]  # the opening has none
    slates = [tuple(a["items"]) for a in actions if a["kind"] == "recommend"]
    assert len(slates) > len(set(slates))  # the same slate again: what the line must not deny
    said = flat(result.output)
    assert "not offered again" not in said
    assert "MCMIPL's rule keeps the ones shown; nothing else is left, so they can only be shown again" in said
    # a group of MCMIPL's that lists one item twice names it once ("Amorphous Androgynous, Amorphous ...")
    result, transcript = chat(tmp_path, [], *args[:-1], "ask-2", "--simulate", "--seed", "9")
    (target,) = set(transcript["outcome"]["targets"])
    assert transcript["outcome"]["targets"] == [target, target]  # the release's own group, kept as it is
    name = transcript["outcome"]["target_names"][0]
    assert f"Hidden target: {name} (item {target})." in flat(result.output)


# ------------------------------------------------------------------------- why candidates change
def random_persona_ranker(world: Catalog, personas: int) -> PersonaRanker:
    """A persona ranker with seeded random weights (`personas` per user, 3 prototypes, d = 4)."""
    rng = np.random.default_rng(7)
    users, items, aspects, k, p, d = world.n_users, world.n_items, world.n_aspects, personas, 3, 4
    weights = {
        "user": rng.normal(size=(users, d)),
        "item": rng.normal(size=(items, d)),
        "aspect": rng.normal(size=(aspects, d)),
        "personas": rng.normal(size=(users, k, d)),
        "log_prior": np.zeros((users, k)),
        "mixtures": rng.dirichlet(np.ones(p), size=(users, k)),
        "prototypes": rng.normal(size=(p, d)),
    }
    return PersonaRanker(weights, world.item_aspects, "attention")


def flat(text: str) -> str:
    """`text` without panel borders and line breaks (rich wraps long lines in an 80-column console)."""
    return " ".join(text.replace("│", " ").split())


def test_candidate_counts_say_why_they_changed(tmp_path: Path, world: Catalog) -> None:
    result, transcript = chat(tmp_path, ["jazz", "y", "n", "skip", "n", "quit"], "--policy", "ask-3")
    out = flat(result.output)
    turns = transcript["turns"]
    yes, no, skipped = (turns[t]["action"]["aspect_names"][0] for t in (1, 2, 3))
    jazz, kept = turns[0]["candidates_left"], turns[1]["candidates_left"]
    assert kept < jazz
    assert f"{kept} items left (of {jazz}: only those with {yes})." in out
    # a "no" keeps the candidates, and the popularity ranking does not read it
    assert f"{kept} items left (a 'no' rules nothing out, and the ranking ignores it)." in out
    assert f"{kept} items left (a 'skip' counts as a 'no', which rules nothing out, and the ranking" in out
    assert turns[2]["candidates_left"] == turns[3]["candidates_left"] == kept
    assert {no, skipped} <= set(world.aspect_names)
    assert turns[4]["kind"] == "recommend" and turns[4]["candidates_left"] == kept - 10
    assert f"{kept - 10} items left (the 10 shown are ruled out)." in out
    assert f"{kept} items left." not in out  # every count says why


def test_a_no_is_said_to_rank_lower_when_the_ranker_scores_it_down(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", random_persona_ranker(world, 2))
    console = quiet()
    result = run_chat(env, policy, seed=0, console=console, read=lines_reader(["jazz", "n", "quit"]))
    turn = result.transcript["turns"][1]
    (aspect,) = turn["action"]["aspect_names"]
    text = flat(console.file.getvalue())  # type: ignore[attr-defined]
    left = turn["candidates_left"]
    assert f"{left} items left (a 'no' rules nothing out; those with {aspect} are ranked lower)." in text


def test_rejection_effect_reads_the_rankers_scores(world: Catalog) -> None:
    env = human_env(make_env(catalog=world, split="test"))
    jazz = world.aspect_names.index("jazz")
    env.user.tell(PersonAnswer(question=None, said="open", aspects=(jazz,)))
    env.reset(seed=0, options={"goal_index": 0})
    asked = int(env.state.reachable_aspects()[0])
    env.user.tell(PersonAnswer(question=None, said="no"))
    env.step(ask([asked]))
    assert rejection_effect(env, random_persona_ranker(world, 2), [asked]) == "lower"
    assert rejection_effect(env, build_ranker("popularity", world), [asked]) == "ignored"
    assert rejection_effect(env, None, [asked]) is None
    assert rejection_effect(env, build_ranker("popularity", world), [jazz]) is None  # every candidate has it


# ------------------------------------------------------------------------ popularity, not personal
def test_a_popularity_ranking_says_so_and_how_to_get_personal_ones(tmp_path: Path) -> None:
    result, _ = chat(tmp_path, ["quit"], "--policy", "ask-2")
    out = flat(result.output)
    assert "Recommendations are popularity-based, not personal" in out
    pretrain = "crs pretrain -d persona_world -o runs/pretrain/persona_world"
    again = "crs chat -d persona_world --policy ask-2 --ranker runs/pretrain/persona_world"
    assert pretrain in out and again in out
    # the suggested options exist (--help parses them all, then stops)
    for command in (pretrain, again):
        shown = runner.invoke(app, [*shlex.split(command)[1:], "--help"])
        assert shown.exit_code == 0, shown.output


def test_the_suggested_commands_keep_the_data_folder_and_setting() -> None:
    assert personal_commands("yelp_star", "/my data", "ask-4", "enumerated") == [
        "crs pretrain -d yelp_star --data-dir '/my data' -o runs/pretrain/yelp_star",
        "crs chat -d yelp_star --data-dir '/my data' --setting enumerated --ranker runs/pretrain/yelp_star",
    ]


def test_a_persona_ranker_is_personal_and_names_personas(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    console = quiet()
    policy = make_rule_policy("always-recommend", random_persona_ranker(world, 2))
    result = run_chat(env, policy, seed=0, console=console, read=lines_reader(["jazz", "n"]))
    text = flat(console.file.getvalue())  # type: ignore[attr-defined]
    assert "popularity" not in text and "knows their history" in text
    explanations = result.transcript["turns"][1]["explanation"]
    assert all(e["text"].startswith("has jazz, as you asked; for your ") for e in explanations)
    assert all(e["aspect_name"] != "jazz" for e in explanations)  # the asked-for aspect is said already
    # same words only for the same reasons
    reasons = {(tuple(e["matched"]), e["persona"], e["aspect"]) for e in explanations}
    assert len({e["text"] for e in explanations}) == len(reasons) > 1


def test_a_ranker_with_one_persona_claims_none(world: Catalog) -> None:
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("always-recommend", random_persona_ranker(world, 1))
    result = run_chat(env, policy, seed=0, console=quiet(), read=lines_reader(["jazz", "n"]))
    for entry in result.transcript["turns"][1]["explanation"]:
        assert entry["persona"] is None and " side" not in entry["text"]
        assert entry["text"].startswith("has jazz, as you asked; also ")
        assert entry["text"].endswith(", close to your taste")


def test_ctrl_c_while_loading_exits_130_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import crs.chat_cmd

    def interrupted(*args: Any, **kwargs: Any) -> ConversationEnv:  # Ctrl-C while the data loads
        raise KeyboardInterrupt

    monkeypatch.setattr(crs.chat_cmd, "make_env", interrupted)
    result = runner.invoke(app, ["chat"], input="")
    assert result.exit_code == 130
    assert result.output.strip() == "interrupted before the chat started"
