"""The chat's dialogue loop as a person meets it: what is taken from a typed line, what a `back`
replays, what is left pending when the person leaves, and which conversation is held."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crs.chat import ChatError, PersonAnswer, choose_goal, human_env, run_chat
from crs.chat.question import candidates_after, read_question
from envs.actions import ask, probe, recommend
from envs.env import ConversationEnv
from envs.registry import make_env
from policies.rankers import build_ranker
from policies.rules import make_rule_policy
from simulators.catalog import Catalog
from simulators.persona_world import make_persona_world
from tests.crs.test_chat import (
    ProbingPolicy,
    RareAskingPolicy,
    lines_reader,
    quiet,
    random_persona_ranker,
    world_with_categories,
)
from tests.crs.test_chat_memory import label
from tests.crs.test_chat_mutants import PairProbingPolicy, talk


@pytest.fixture(scope="module")
def world() -> Catalog:
    return make_persona_world()


def popular(catalog: Catalog, rule: str = "ask-2") -> Any:
    return make_rule_policy(rule, build_ranker("popularity", catalog))


class FickleProbingPolicy:
    """Probes persona 1 with two reachable aspects, persona 2 with the same aspects after its second
    reset (a `back` replays from a reset), then asks about the next reachable aspect."""

    def __init__(self) -> None:
        self.resets = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.resets += 1

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        aspects = [int(a) for a in env.state.reachable_aspects()]
        if env.state.turn == 1:
            return probe(2 if self.resets >= 2 else 1, aspects[:2])
        return ask(aspects[:1])


class FickleRecommendingPolicy:
    """Recommends the first three candidates, the next three after its second reset."""

    def __init__(self) -> None:
        self.resets = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.resets += 1

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        items = [int(i) for i in env.state.candidate_items()]
        start = 3 if self.resets >= 2 else 0
        return recommend(items[start : start + 3])


# ------------------------------------------------------------------------------- what is typed
def test_the_last_item_of_a_slate_can_be_taken_and_one_past_it_is_hinted(world: Catalog) -> None:
    """A slate of 10 takes "10" as its tenth item, and "11" gets a hint (guards against a bound that
    refuses the last item)."""
    result, text = talk(world, ["jazz", "11", "10"], popular(world, "always-recommend"))
    slate = result.transcript["turns"][1]["action"]["items"]
    assert len(slate) == 10
    assert "Type a number between 1 and 10, or n to reject them all." in text
    assert result.transcript["outcome"]["accepted_item"] == slate[9]
    assert result.transcript["outcome"]["rank"] == 10


class OneItemPolicy:
    """Recommends a slate of one item: the first candidate."""

    def reset(self, rng: np.random.Generator) -> None:
        pass

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return recommend([int(env.state.candidate_items()[0])])


def test_a_slate_of_one_item_is_hinted_as_one_not_as_a_range(world: Catalog) -> None:
    """A one-item slate's hint and help speak of taking "it", as its prompt does, not of "a number
    between 1 and 1"; "2" is hinted and "1" takes the item."""
    result, text = talk(world, ["jazz", "2", "help", "1"], OneItemPolicy())
    assert "Type 1 to take it, or n to reject it." in text
    assert "between 1 and 1" not in text and "(1-1)" not in text
    slate = result.transcript["turns"][1]["action"]["items"]
    assert len(slate) == 1 and result.transcript["outcome"]["accepted_item"] == slate[0]


def test_an_empty_line_at_a_multiple_choice_question_is_hinted_not_taken(world: Catalog) -> None:
    """An empty line (or bare separators) at a multiple-choice question gets a hint and takes no choice
    (guards against reading no numbers as choosing nothing)."""
    policy = PairProbingPolicy(build_ranker("popularity", world))
    result, text = talk(world, ["jazz", "", ", ;", "quit"], policy)
    # the example is a valid answer: "1 3" with two options was not
    assert text.count("Type numbers between 1 and 2 (e.g. 1 2), or none.") == 2
    assert [t["answer"]["said"] for t in result.transcript["turns"]] == ["open"]
    assert result.transcript["outcome"]["pending"]["kind"] == "probe"


# ------------------------------------------------------------------------------- back and replay
def test_undoing_the_opening_then_leaving_leaves_no_question_pending(world: Catalog) -> None:
    """A `back` at the first question undoes the opening: quitting then records no turn and no pending
    question (guards against a stale question from before the undo)."""
    result, text = talk(world, ["jazz", "back", "quit"])
    assert "Undone your opening" in text
    assert result.ended == "quit"
    assert result.transcript["turns"] == []
    assert result.transcript["outcome"]["pending"] is None


def test_a_replay_whose_probe_asks_another_persona_diverges(world: Catalog) -> None:
    """A replayed probe of the same aspects but another persona is another question: the earlier answer
    is dropped (guards against comparing questions without their persona)."""
    lines = ["jazz", "1", "y", "back", "quit"]
    result, text = talk(world, lines, FickleProbingPolicy())
    assert "The recommender now asks something else; answer from here." in text
    assert [t["answer"]["said"] for t in result.transcript["turns"]] == ["open"]
    pending = result.transcript["outcome"]["pending"]
    assert pending["kind"] == "probe" and pending["action"]["persona"] == 2


def test_a_replay_whose_slate_holds_other_items_diverges(world: Catalog) -> None:
    """A replayed slate of other items is another question: the rejection said to the first slate is not
    applied to the new one (guards against comparing slates without their items)."""
    result, text = talk(world, ["jazz", "n", "n", "back", "quit"], FickleRecommendingPolicy())
    assert "The recommender now asks something else; answer from here." in text
    assert [t["answer"]["said"] for t in result.transcript["turns"]] == ["open"]


def test_an_unanswered_probe_records_its_persona_s_label(world: Catalog) -> None:
    """Leaving at a probe of a persona records the pending probe with the persona's label, as an
    answered probe records it (guards against a pending probe losing its label)."""
    ranker = random_persona_ranker(world, 3)
    result, _ = talk(world, ["jazz", "quit"], ProbingPolicy(ranker, persona=2))
    pending = result.transcript["outcome"]["pending"]
    assert pending["kind"] == "probe" and pending["action"]["persona"] == 2
    assert pending["action"]["persona_label"] == label(ranker, world, result.transcript["user"], 2)


# ------------------------------------------------------------------------------- which conversation
def test_a_goal_index_is_held_whatever_user_id_says(world: Catalog) -> None:
    """`goal_index` overrides `user_id`: the chat holds that goal (guards against choosing a goal of the
    user instead)."""
    env = make_env(catalog=world, split="test")
    users = env.goals.interactions.users
    goal = 5
    other = int(users[goal]) + 1
    assert other in set(users.tolist())
    result = run_chat(
        env,
        popular(world),
        seed=0,
        console=quiet(),
        read=lines_reader(["quit"]),
        user_id=other,
        goal_index=goal,
    )
    assert result.transcript["goal_index"] == goal
    assert result.transcript["user"] == int(users[goal])


def test_an_overwritten_transcript_replaces_the_file_in_place(tmp_path: Path, world: Catalog) -> None:
    """With `overwrite`, an existing transcript file is replaced at its own path, not moved aside to a
    ``-N`` name (guards against treating it as created during the chat)."""
    path = tmp_path / "chat.json"
    path.write_text("old")
    run_chat(
        make_env(catalog=world, split="test"),
        popular(world),
        seed=0,
        console=quiet(),
        read=lines_reader(["jazz", "quit"]),
        transcript=path,
        overwrite=True,
    )
    assert path.read_text() != "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.json"]


# ------------------------------------------------------------------------------- enumerated questions
def test_an_enumerated_question_lists_held_aspects_most_held_first(world: Catalog) -> None:
    """An enumerated ask lists the category's aspects some candidate has, most held first, and counts
    the others as hidden (guards against listing aspects no candidate has, the wrong order, and a
    hidden count of 0)."""
    catalog = world_with_categories(world, "swahili")
    taxonomy = catalog.taxonomy
    assert taxonomy is not None
    env = make_env(catalog=catalog, split="test", setting="enumerated")
    italian = catalog.aspect_names.index("italian")
    env = human_env(env)
    human = env.user
    human.tell(PersonAnswer(question=None, said="open", aspects=(italian,)))  # type: ignore[attr-defined]
    env.reset(seed=0, options={"goal_index": 0})
    for category in (0, 1, 2):  # narrow the candidates: take the first option of three categories
        asked = read_question(env, ask([category]))
        human.tell(PersonAnswer(asked.key, "choose", asked.options[:1]))  # type: ignore[attr-defined]
        env.step(ask([category]))
    candidates = env.state.candidates
    hidden = 0
    for category in range(4):
        fine = [a for a in range(catalog.n_aspects) if taxonomy.parent_of[a] == category]
        held = {a: int(candidates[catalog.items_with(a)].sum()) for a in fine}
        question = read_question(env, ask([category]))
        expected = sorted((a for a in fine if held[a] > 0), key=lambda a: (-held[a], fine.index(a)))
        assert list(question.options) == expected
        assert question.hidden == sum(1 for a in fine if held[a] == 0)
        assert question.category == category and not question.is_binary
        hidden += question.hidden
    assert hidden > 0  # some aspect no candidate left has


# ------------------------------------------------------------------------------- the opening
def test_in_the_binary_setting_an_aspect_of_no_category_opens(world: Catalog) -> None:
    """Only the enumerated opening names a category: in the binary setting an aspect no category lists
    opens like any other (guards against applying the enumerated restriction to every catalogue with a
    taxonomy)."""
    catalog = world_with_categories(world, "swahili")
    result, text = talk(catalog, ["swahili", "quit"])
    assert result.transcript["turns"][0]["answer"]["accepted_names"] == ["swahili"]
    assert "is in no category" not in text


def rock_catalog(world: Catalog, unlisted: str) -> Catalog:
    """`world` with "folk" renamed "folk rock" and a taxonomy that lists every aspect but `unlisted`."""
    names = list(world.aspect_names)
    names[names.index("folk")] = "folk rock"
    return world_with_categories(dataclasses.replace(world, aspect_names=tuple(names)), unlisted)


def test_an_enumerated_opening_of_no_category_lists_a_name_containing_it(world: Catalog) -> None:
    """Typing "rock" (in no category) where "folk rock" can open says rock is in no category and lists
    folk rock to pick, rather than silently taking it (guards against forgetting the exact name when
    other names contain it)."""
    catalog = rock_catalog(world, "rock")
    result, text = talk(catalog, ["rock", "1", "quit"], setting="enumerated")
    assert "'rock' is in no category" in text and "Did you mean one of these?" in text
    assert "(taking folk rock)" not in text
    assert result.transcript["turns"][0]["answer"]["accepted_names"] == ["folk rock"]


def test_an_enumerated_opening_lists_no_name_of_no_category(world: Catalog) -> None:
    """A close spelling ("roc") of one openable name takes it, without listing a name that contains it
    but is in no category ("folk rock"; guards against offering an aspect the opening refuses)."""
    catalog = rock_catalog(world, "folk rock")
    result, text = talk(catalog, ["roc", "quit"], setting="enumerated")
    assert "(taking rock)" in text and "Did you mean" not in text
    assert result.transcript["turns"][0]["answer"]["accepted_names"] == ["rock"]


def test_help_is_read_whatever_its_case_and_at_a_multiple_choice_question(world: Catalog) -> None:
    """ "HELP" at the opening and "help" at a multiple-choice question show the prompt's help and take
    nothing (guards against reading help as a name or as a bad list of numbers)."""
    policy = PairProbingPolicy(build_ranker("popularity", world))
    result, text = talk(world, ["HELP", "jazz", "help", "quit"], policy)
    assert "Type the name of something you like" in text and "I know nothing called" not in text
    assert "Type the numbers of every option that fits (e.g. 1 2), each between 1 and 2" in text
    # what several picks mean, under the question and in its help (the persona world keeps items having all)
    flat = " ".join(text.split())
    assert "(pick every one that fits: an item must have every one you pick)" in flat
    assert "again. An item must have every one you pick." in flat
    assert "more lists every option again" in " ".join(text.split())  # `more` works there: say so
    assert "Type numbers between 1 and 2" not in text
    assert [t["answer"]["said"] for t in result.transcript["turns"]] == ["open"]


def test_a_negative_user_id_is_refused(world: Catalog) -> None:
    """A user id below 0 is outside the catalogue: refused with the range (guards against numpy reading
    -1 as the last user)."""
    env = make_env(catalog=world, split="test")
    with pytest.raises(ChatError, match=rf"--user-id -1 outside \[0, {world.n_users}\)"):
        choose_goal(env, 0, -1)


# ------------------------------------------------------------------------------- how it ends
def test_rejecting_the_last_candidate_ends_with_no_candidates(world: Catalog) -> None:
    """Narrowed to one candidate and rejecting it, the chat ends "no candidates" before the turn limit
    (guards against the ending being read from the wrong candidate count)."""
    policy = RareAskingPolicy(build_ranker("popularity", world))
    result, text = talk(world, ["jazz", "y", "y", "n"], policy)
    turns = result.transcript["turns"]
    assert [t["answer"]["said"] for t in turns] == ["open", "yes", "yes", "reject"]
    assert turns[-2]["candidates_left"] == 1 and turns[-1]["candidates_left"] == 0
    assert len(turns) < 15
    assert result.ended == "no candidates" == result.transcript["outcome"]["ended"]
    assert "No item is left that fits everything that was said." in text
    assert "0 items left (the one shown is ruled out)." in text  # which answer left none


def test_a_typo_of_a_name_of_no_category_says_it_is_in_none(world: Catalog) -> None:
    """A close spelling of an aspect no category lists says that aspect is in no category, rather than
    that nothing is called so (guards against only exact names being told apart)."""
    catalog = world_with_categories(world, "swahili")
    _, text = talk(catalog, ["swahilli", "quit"], setting="enumerated")
    assert "'swahili' is in no category" in text and "I know nothing called" not in text


def test_of_two_aspects_of_one_name_the_enumerated_opening_takes_the_one_that_can_open(
    world: Catalog,
) -> None:
    """Two aspects share a name and the more common one is in no category: the name opens with the other
    (guards against preferring the more common aspect over the one that can open)."""
    names = list(world.aspect_names)
    jazz, italian = names.index("jazz"), names.index("italian")
    names[italian] = "jazz"
    frequency = np.diff(world.aspect_items.indptr)
    assert frequency[jazz] > frequency[italian]
    # the first aspect named "jazz", the more common one, is the one left out of every category
    catalog = world_with_categories(dataclasses.replace(world, aspect_names=tuple(names)), "jazz")
    assert catalog.taxonomy is not None and catalog.taxonomy.parent_of[jazz] == -1
    result, text = talk(catalog, ["jazz", "quit"], setting="enumerated")
    assert result.transcript["turns"][0]["answer"]["accepted"] == [italian]
    assert "is in no category" not in text


def test_no_aspect_accepted_keeps_every_candidate(world: Catalog) -> None:
    """`candidates_after` with nothing accepted keeps the candidates as they are, under either rule
    (guards against an empty "any of" keeping nothing)."""
    for rule in ("all", "any"):
        env = make_env(catalog=world, split="test", candidate_rule=rule)
        env.reset(seed=0, options={"goal_index": 0})
        assert 0 < env.state.n_candidates == candidates_after(env, [])


def test_more_at_a_multiple_choice_question_lists_the_options_again(world: Catalog) -> None:
    """ "more" at a multiple-choice question lists its options (numbered) and takes nothing (guards
    against reading it as a bad list of numbers)."""
    policy = PairProbingPolicy(build_ranker("popularity", world))
    result, text = talk(world, ["jazz", "more", "quit"], policy)
    pending = result.transcript["outcome"]["pending"]
    first, second = pending["action"]["aspect_names"]
    assert "Type numbers between" not in text
    listing = text[text.rindex("Which of these") :]
    assert text.count(f"1 {first}") >= 2 and f"2 {second}" in listing
    assert [t["answer"]["said"] for t in result.transcript["turns"]] == ["open"]
