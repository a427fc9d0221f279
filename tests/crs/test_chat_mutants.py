"""`crs chat` as a person types it and reads it: answers however they are spelled, the numbers the
chat prints and reads, the turn numbers it shows and records, and the transcript file it writes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.chat import ChatError, choose_goal, run_chat
from crs.chat.question import candidates_after
from crs.chat.transcript import free_path, write_transcript
from crs.cli import app
from crs.explain import Explainer
from envs.actions import ask, probe
from envs.env import ConversationEnv
from envs.registry import make_env
from policies.rankers import build_ranker
from policies.rules import make_rule_policy
from simulators.catalog import Catalog
from simulators.persona_world import make_persona_world
from tests.crs.test_chat import FickleAskingPolicy, flat, lines_reader, quiet, world_with_categories

runner = CliRunner()


@pytest.fixture(scope="module")
def world() -> Catalog:
    return make_persona_world()


def talk(
    catalog: Catalog, lines: list[str], policy: Any = None, seed: int = 0, **env_options: Any
) -> tuple[Any, str]:
    """Chat in-process on `catalog`'s test split with `lines` typed (default policy: ask-2 over
    popularity; `env_options`: `make_env`'s); the result and the flattened printed text."""
    env = make_env(catalog=catalog, split="test", **env_options)
    policy = policy or make_rule_policy("ask-2", build_ranker("popularity", catalog))
    console = quiet()
    result = run_chat(env, policy, seed=seed, console=console, read=lines_reader(lines))
    return result, flat(console.file.getvalue())  # type: ignore[attr-defined]


def numbered(text: str, after: str) -> dict[int, str]:
    """The numbered aspects (with item counts) printed after the line starting with `after` and before
    the next turn, the next hint or the summary: number -> name."""
    start = text.index(after)
    end = min(text.find(word, start) % (len(text) + 1) for word in (" have ", " has ", "Conversation"))
    listing = text[start:end]
    return {int(n): name for n, name in re.findall(r"\b(\d+) ([a-z][a-z0-9 ]*?) \(\d+\)", listing)}


class PairProbingPolicy:
    """Probes persona 1 with the first two reachable aspects some candidate has together, then
    recommends the ranker's slate."""

    def __init__(self, ranker: Any) -> None:
        self.rule = make_rule_policy("always-recommend", ranker)

    def reset(self, rng: np.random.Generator) -> None:
        self.rule.reset(rng)

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        if env.state.turn == 1:
            aspects = [int(a) for a in env.state.reachable_aspects()]
            pair = next(
                (a, b)
                for i, a in enumerate(aspects)
                for b in aspects[i + 1 :]
                if 0 < candidates_after(env, [a, b]) < env.state.n_candidates
            )
            return probe(1, list(pair))
        return self.rule.act(env)


# ------------------------------------------------------------------------------- what is typed
def test_answers_are_read_whatever_their_spacing_and_case(world: Catalog) -> None:
    """A typed answer is stripped and case-folded before it is read: " Y " is a yes, "BACK" undoes and
    "QUIT" quits (guards against reading the raw line)."""
    result, text = talk(world, ["  jazz ", " Y ", "BACK", "No", "QUIT"])
    turns = result.transcript["turns"]
    assert [t["answer"]["said"] for t in turns] == ["open", "no"]
    assert 'Undone your "yes"' in text
    assert result.ended == "quit"
    assert "Type y, n or skip" not in text  # no line was hinted at


def test_a_signed_number_at_the_opening_is_off_the_list_and_back_names_a_choice_in_words(
    world: Catalog,
) -> None:
    """ "-1" opened with the aspect its digits spell (MCMIPL's LastFM* has a tag "1"); `back` after a
    multiple-choice answer said "Undone (choose)", the transcript's word."""
    catalog = dataclasses.replace(world, aspect_names=(*world.aspect_names[:-1], "1"))
    result, text = talk(
        catalog,
        ["-1", "+2", "jazz", "1", "back", "quit"],
        PairProbingPolicy(build_ranker("popularity", catalog)),
    )
    assert "-1 is not on the list; pick 1-10 or type a name." in text and "+2 is not on the list" in text
    assert result.transcript["turns"][0]["answer"]["accepted_names"] == ["jazz"]
    assert "Undone your choice. Back at turn 2." in text
    _, text = talk(catalog, ["1", "quit"])  # a number on the list still picks a suggestion
    assert "is not on the list" not in text


def test_all_picks_every_option_and_numbers_may_be_repeated_or_comma_separated(world: Catalog) -> None:
    """At a multiple-choice question "all" takes every option, and "2,1" or "2 1 1" take the two
    options once each, in the options' order (guards against an "all" that drops the last option, a
    separator read as part of a number, and a repeated number taken twice)."""
    policy = PairProbingPolicy(build_ranker("popularity", world))
    for typed in ("all", "2,1", "2 1 1", "1; 2"):
        result, text = talk(world, ["jazz", typed, "quit"], policy)
        turn = result.transcript["turns"][1]
        a, b = turn["action"]["aspects"]
        assert turn["kind"] == "probe"
        assert turn["answer"]["accepted"] == sorted([a, b]), typed
        assert turn["answer"]["rejected"] == [], typed
        both = set(world.items_with(a).tolist()) & set(world.items_with(b).tolist())
        assert turn["candidates_left"] == len(both & set(world.items_with(0).tolist())), typed  # 0: jazz
        # the candidate rule keeps items with both: the count says "and", not "or"
        names = f"{world.aspect_names[a]} and {world.aspect_names[b]}"
        assert f"only those with {names})" in text, typed


def test_a_slate_item_may_be_taken_as_hash_number(world: Catalog) -> None:
    """ "#2" takes the slate's second item, as "2" does (guards against the "#" being kept)."""
    policy = make_rule_policy("always-recommend", build_ranker("popularity", world))
    result, _ = talk(world, ["jazz", "#2"], policy)
    slate = result.transcript["turns"][1]["action"]["items"]
    assert result.transcript["outcome"]["accepted_item"] == slate[1]
    assert result.transcript["outcome"]["rank"] == 2


class WideProbingPolicy:
    """Probes persona 1 with the first `width` reachable aspects, then recommends."""

    def __init__(self, ranker: Any, width: int) -> None:
        self.rule = make_rule_policy("always-recommend", ranker)
        self.width = width

    def reset(self, rng: np.random.Generator) -> None:
        self.rule.reset(rng)

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        if env.state.turn == 1:
            return probe(1, env.state.reachable_aspects()[: self.width])
        return self.rule.act(env)


def test_a_long_question_shows_thirty_options_and_more_lists_the_rest(world: Catalog) -> None:
    """A question of 31 options lists the first 30 and says one more is on "more", which lists all 31;
    every number up to 31 can be picked; 30 options are all shown, with no such note (guards against
    an off-by-one in what is shown and what is said to be hidden)."""
    ranker = build_ranker("popularity", world)
    result, text = talk(world, ["jazz", "more", "31", "quit"], WideProbingPolicy(ranker, 31), max_choices=31)
    turn = result.transcript["turns"][1]
    options = turn["action"]["aspects"]
    assert len(options) == 31
    first = text[text.index("Which of these fits you today?") : text.index("rarer ones not shown")]
    listed = {int(n): name for n, name in re.findall(r"\b(\d+) ([a-z]+)", first)}
    assert listed == {n: world.aspect_names[a] for n, a in enumerate(options[:30], start=1)}
    assert "(1 rarer ones not shown: type more to list all)" in text
    assert turn["answer"]["accepted"] == [options[30]]
    _, text = talk(world, ["jazz", "quit"], WideProbingPolicy(ranker, 30), max_choices=30)
    assert "rarer ones not shown" not in text


def test_a_slate_s_tags_leave_out_what_the_dialogue_settled(world: Catalog) -> None:
    """The tags beside a recommended item are its aspects the dialogue has not settled, most common
    first, three at most and "+N" for the rest (guards against showing the settled ones instead), after
    the ones the person said no to (they were hidden, so an item with them looked clean)."""
    from crs.chat.view import ChatView

    env = make_env(catalog=world, split="test")
    view = ChatView(quiet(), env, Explainer(world, None, None))
    frequency = np.diff(world.aspect_items.indptr)
    item = next(i for i in range(world.n_items) if world.aspects_of(i).size >= 5)
    own = [int(a) for a in world.aspects_of(item)]
    said = {own[0], own[2]}
    rest = sorted((a for a in own if a not in said), key=lambda a: (-frequency[a], a))
    expected = ", ".join(world.aspect_names[a] for a in rest[:3])
    expected += f" +{len(rest) - 3}" if len(rest) > 3 else ""
    assert view._tags(item, said, set()) == expected
    # what the person said no to stays in view, first: a "no" rules nothing out, so the item has it
    refused = f"{world.aspect_names[own[2]]} (you said no); "
    assert view._tags(item, said, {own[2]}) == refused + expected


# ------------------------------------------------------------------------------- the opening
def test_the_opening_suggests_ten_ideas_numbered_from_1_and_the_tenth_can_be_picked(world: Catalog) -> None:
    """The ideas are the user's five most characteristic aspects, then the most common ones, ten in
    all, numbered 1 to 10 as the opening reads them (guards against numbering from 0, a last number
    that cannot be picked, more than ten ideas, and ideas from the rarest aspects)."""
    result, text = talk(world, ["10", "quit"])
    user = result.transcript["user"]
    shown = numbered(text, "Recommender: Tell me one thing you like.")
    frequency = np.diff(world.aspect_items.indptr)
    profile = [int(a) for a in Explainer(world, None, None).profile(user)[:5]]
    popular = [int(a) for a in np.argsort(-frequency, kind="stable")]
    expected = list(dict.fromkeys(profile + popular))[:10]
    assert shown == {n: world.aspect_names[a] for n, a in enumerate(expected, start=1)}
    assert "is not on the list" not in text
    assert result.transcript["turns"][0]["answer"]["accepted"] == [expected[9]]


def test_a_part_of_names_lists_them_most_common_first(world: Catalog) -> None:
    """Three letters found inside several names list those names, most common first; the next number
    picks from that list (guards against too short a key being refused, and the list's order)."""
    result, text = talk(world, ["ies", "2", "quit"])
    frequency = np.diff(world.aspect_items.indptr)
    having = [a for a, name in enumerate(world.aspect_names) if "ies" in name]
    expected = sorted(having, key=lambda a: (-frequency[a], a))
    assert len(expected) == 4  # sixties, seventies, eighties, nineties
    assert numbered(text, "Did you mean") == {
        n: world.aspect_names[a] for n, a in enumerate(expected, start=1)
    }
    assert result.transcript["turns"][0]["answer"]["accepted"] == [expected[1]]


def test_a_close_name_lists_at_most_ten(world: Catalog) -> None:
    """A key inside more than ten names lists ten of them (guards against listing every match)."""
    names = [f"tag{n:02d}" if n < 15 else name for n, name in enumerate(world.aspect_names)]
    catalog = dataclasses.replace(world, aspect_names=tuple(names))
    _, text = talk(catalog, ["tag", "quit"])
    listing = numbered(text, "Did you mean")
    assert sorted(listing) == list(range(1, 11))
    assert set(listing.values()) <= set(names[:15])


def test_names_that_differ_in_digits_are_told_apart(world: Catalog) -> None:
    """ "80s" and "90s" are two names, not one (guards against dropping digits when names are
    compared)."""
    names = list(world.aspect_names)
    eighties, nineties = names.index("eighties"), names.index("nineties")
    names[eighties], names[nineties] = "80s", "90s"
    catalog = dataclasses.replace(world, aspect_names=tuple(names))
    for typed, aspect in (("80s", eighties), ("90s", nineties), ("80S", eighties)):
        result, text = talk(catalog, [typed, "quit"])
        assert result.transcript["turns"][0]["answer"]["accepted"] == [aspect], typed
        assert "Did you mean" not in text


def test_an_aspect_of_the_first_category_can_open_the_enumerated_chat(world: Catalog) -> None:
    """In the enumerated setting every aspect some category lists may open, those of category 0 too
    (guards against taking category 0 for "none")."""
    catalog = world_with_categories(world, "swahili")
    assert catalog.taxonomy is not None and catalog.taxonomy.parent_of[0] == 0  # jazz
    result, text = talk(catalog, ["jazz", "quit"], setting="enumerated")
    assert result.transcript["turns"][0]["answer"]["accepted"] == [0]
    assert "is in no category" not in text


# ------------------------------------------------------------------------------- turns
def test_turns_are_numbered_alike_on_screen_and_in_the_transcript(world: Catalog) -> None:
    """The opening is turn 1 and each recommender turn the next, as the header above it says
    "turn N of 15" (guards against a header or a record off by one)."""
    result, text = talk(world, ["jazz", "y", "n", "1"])
    turns = result.transcript["turns"]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4]
    headers = [int(n) for n in re.findall(r"turn (\d+) of 15", text)]
    assert headers == [2, 3, 4]


def test_an_answer_dropped_by_a_diverged_replay_is_not_undone_again(world: Catalog) -> None:
    """When a `back` replay meets another question, the answers from there on are dropped: the next
    `back`s undo the new answer, then the opening, not the dropped answer (guards against keeping the
    answer that met the other question)."""
    lines = ["jazz", "y", "y", "back", "n", "back", "back", "folk", "quit"]
    result, text = talk(world, lines, FickleAskingPolicy())
    assert text.count("The recommender now asks something else") == 1
    assert 'Undone your "no"' in text and "Undone your opening" in text
    assert text.count('Undone your "yes"') == 1  # the first back only
    assert result.transcript["turns"][0]["answer"]["accepted_names"] == ["folk"]
    assert len(result.transcript["turns"]) == 1


def test_the_intro_says_how_many_turns_the_recommender_may_take(world: Catalog) -> None:
    """The intro's "it may take N turns, up to turn T" is the number of recommender turns a person who
    rejects every slate gets before the turn limit (guards against counting the opening as one of them),
    and T is the last turn the view's rule shows ("turn T of T"; it said 14 turns beside "turn 2 of 15")."""
    policy = make_rule_policy("always-recommend", build_ranker("popularity", world))
    result, text = talk(world, ["jazz"] + ["n"] * 20, policy)
    match = re.search(r"After your opening \(turn 1\) it may take (\d+) turns, up to turn (\d+)\.", text)
    assert match is not None
    assert result.ended == "turn limit"
    assert int(match.group(1)) == len(result.transcript["turns"]) - 1 == 14
    last = int(match.group(2))
    assert f"turn {last} of {last}" in text and f"turn {last + 1} of" not in text


class SharedAspectAskingPolicy:
    """Asks the aspect fewest candidates have (the person says yes) until every candidate left shares
    one, asks that one, then recommends."""

    def __init__(self, ranker: Any) -> None:
        self.rule = make_rule_policy("always-recommend", ranker)
        self.shared_asked = False

    def reset(self, rng: np.random.Generator) -> None:
        self.rule.reset(rng)
        self.shared_asked = False

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        n = env.state.n_candidates
        counts = {int(a): candidates_after(env, [a]) for a in env.state.reachable_aspects()}
        shared = [a for a in counts if counts[a] == n]
        if self.shared_asked:
            return self.rule.act(env)
        if shared:
            self.shared_asked = True
            return ask([shared[0]])
        return ask([min(counts, key=lambda a: counts[a])])


def test_a_yes_every_candidate_fits_is_said_to_keep_them_all(world: Catalog) -> None:
    """A yes to an aspect every candidate has rules nothing out, and the count says so ("all have"),
    not that only those with it are left (guards against <= for <)."""
    policy = SharedAspectAskingPolicy(build_ranker("popularity", world))
    result, text = talk(world, ["jazz", *["y"] * 10, "quit"], policy)
    *_, before, last = [t for t in result.transcript["turns"] if t["kind"] != "recommend"]
    assert last["candidates_left"] == before["candidates_left"] and last["answer"]["said"] == "yes"
    name = last["action"]["aspect_names"][0]
    assert f"left (all have {name})." in text
    assert f"only those with {name})" not in text


def test_watched_yes_no_answers_are_recorded_as_said(world: Catalog) -> None:
    """In watch mode a binary answer is recorded as "yes" exactly when the simulated user accepted the
    aspect (guards against the two being swapped)."""
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-4", build_ranker("popularity", world))
    saids = set()
    for seed in range(3):
        result = run_chat(env, policy, seed=seed, console=quiet(), simulate=True)
        for turn in result.transcript["turns"][1:]:
            if turn["kind"] == "ask":
                expected = "yes" if turn["answer"]["accepted"] else "no"
                assert turn["answer"]["said"] == expected
                saids.add(expected)
    assert saids == {"yes", "no"}


def test_the_last_user_id_is_refused_past_the_catalogue(world: Catalog) -> None:
    """--user-id is a user of the catalogue, 0 to n_users - 1 (guards against an off-by-one bound)."""
    env = make_env(catalog=world, split="test")
    with pytest.raises(ChatError, match=f"--user-id {world.n_users} outside"):
        choose_goal(env, 0, world.n_users)
    users = env.goals.interactions.users
    last = int(users.max())
    assert int(users[choose_goal(env, 0, last)]) == last


# ------------------------------------------------------------------------------- the transcript file
def test_a_transcript_path_below_a_file_is_refused_before_the_chat(tmp_path: Path) -> None:
    """A --transcript whose folder is a file is refused before the person types anything, not after
    the conversation (guards against a check that only the final write makes)."""
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = runner.invoke(
        app, ["chat", "--transcript", str(blocked / "sub" / "chat.json")], input="jazz\nquit\n"
    )
    assert result.exit_code == 2
    assert "could not write the transcript" in flat(result.output)
    assert "you>" not in result.output


def test_free_path_skips_every_name_taken(tmp_path: Path) -> None:
    """The first free ``-N`` name is after all the taken ones (guards against trying only ``-1``)."""
    path = tmp_path / "chat.json"
    assert free_path(path) == tmp_path / "chat-1.json"
    (tmp_path / "chat-1.json").write_text("{}")
    (tmp_path / "chat-2.json").write_text("{}")
    assert free_path(path) == tmp_path / "chat-3.json"


def test_a_transcript_is_replaced_whole_not_rewritten_in_place(tmp_path: Path) -> None:
    """Writing a transcript over an older one never shows a reader the file half-written: a reader that
    opened the old file keeps reading it whole, and the new one reads back equal (guards against a
    non-atomic write)."""
    path = tmp_path / "chat.json"
    old = {"turns": list(range(1000))}
    write_transcript(path, old)
    with path.open() as reader:
        new = {"turns": ["x"] * 10}
        write_transcript(path, new)
        assert json.loads(reader.read()) == old
    assert json.loads(path.read_text()) == new
    assert sorted(os.listdir(tmp_path)) == ["chat.json"]  # no temporary file left


def test_a_transcript_file_created_during_the_chat_is_kept(tmp_path: Path, world: Catalog) -> None:
    """A file that appears at --transcript while the person chats is kept, and the transcript goes to
    the first free ``-N`` name beside it (guards against overwriting it)."""
    path = tmp_path / "chat.json"
    typed = iter(["jazz", "quit"])

    def read(prompt: str) -> str:
        line = next(typed)
        if line == "quit":
            path.write_text("theirs")
        return line

    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", build_ranker("popularity", world))
    result = run_chat(env, policy, seed=0, console=quiet(), read=read, transcript=path)
    assert path.read_text() == "theirs"
    assert json.loads((tmp_path / "chat-1.json").read_text()) == json.loads(json.dumps(result.transcript))


def test_the_most_common_of_names_that_read_alike_typed_as_shown_is_taken(world: Catalog) -> None:
    """LastFM* has "trip-hop" (the most common) and "trip hop": typing "trip-hop" takes it (it listed
    both and asked, with it first); "trip hop", or anything only reading like them, lists both."""
    names = list(world.aspect_names)
    common, rare = sorted(range(len(names)), key=lambda a: -world.item_aspects[:, a].sum())[:2]
    names[common], names[rare] = "trip-hop", "trip hop"
    catalog = dataclasses.replace(world, aspect_names=tuple(names))
    for typed in ("trip-hop", "TRIP-HOP"):
        result, text = talk(catalog, [typed, "quit"])
        assert result.transcript["turns"][0]["answer"]["accepted"] == [common], typed
        assert "Did you mean" not in text
    for typed in ("trip hop", "trip hop!"):
        _, text = talk(catalog, [typed, "quit"])
        assert "Did you mean" in text, typed
