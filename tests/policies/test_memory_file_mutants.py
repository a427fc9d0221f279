"""Tests written from a mutation audit of `policies.atomic`, `policies.memory_file`, `crs.chat.memory`
and `crs.report.examples`: each guards against a plausible bug the other tests let through."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from crs.app.run_folder import EvalSummary
from crs.chat.errors import ChatError
from crs.chat.memory import ChatMemory, policy_with_memory
from crs.explain import prototype_explanations
from crs.report.examples import check_targets, example_dialogues, pick_examples, replay
from crs.report.inputs import EvalRun
from crs.report.persona import prototype_names
from envs.metrics import EpisodeRecord
from envs.registry import make_env
from envs.rollout import episode_seed
from policies.atomic import FolderBusyError, atomic_path, folder_lock, read_json_mapping, write_json_atomic
from policies.memory import DEFAULT_RULE, PersonaMemory, SessionEvidence
from policies.memory_file import (
    HISTORY_KEPT,
    Belief,
    MemoryContext,
    MemoryFileError,
    MemoryRecord,
    read_memory,
    write_memory,
)
from policies.pretrain.artifact import load_ranker
from policies.rankers import build_ranker
from policies.rules import make_rule_policy
from simulators.catalog import Catalog
from simulators.errors import CRSError
from simulators.persona_world import make_persona_world
from tests.crs.test_chat import random_persona_ranker
from tests.crs.tiny_runs import pretrain_tiny
from tests.policies.test_memory import tiny_ranker
from tests.policies.test_memory_file import context_of, remembered


# ------------------------------------------------------------------------------------ policies.atomic
def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """Ctrl-C (a BaseException, not an Exception) in the middle of a write must not leave a temporary."""
    path = tmp_path / "me.json"
    path.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as temporary:
        temporary.write_text("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["me.json"]


def test_json_is_written_indented_with_a_final_newline(tmp_path: Path) -> None:
    """The file ends in a newline (a text file a shell `cat` or a diff reads cleanly)."""
    path = tmp_path / "data.json"
    write_json_atomic(path, {"a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'


def test_a_lock_without_waiting_is_refused_while_another_holds_it(tmp_path: Path) -> None:
    """`wait=False` raises `FolderBusyError` at once (it must not wait for the holder), and succeeds once
    the holder is gone. (flock locks of two descriptors conflict even in one process.)"""
    outcome: list[BaseException | None] = []

    def try_lock() -> None:
        try:
            with folder_lock(tmp_path, wait=False):
                outcome.append(None)
        except FolderBusyError as error:
            outcome.append(error)

    with folder_lock(tmp_path):
        attempt = threading.Thread(target=try_lock)
        attempt.start()
        attempt.join(timeout=5)
        waited = attempt.is_alive()
    attempt.join()
    assert not waited, "folder_lock(wait=False) waited for the holder"
    assert len(outcome) == 1 and isinstance(outcome[0], FolderBusyError)
    assert str(tmp_path) in str(outcome[0])
    with folder_lock(tmp_path, wait=False):  # free again
        pass


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "is missing"),
        ('{"a": 1', "is corrupt (JSONDecodeError"),
        ("[1, 2]", "must hold a JSON mapping, found list"),
        ('{"b": 1}', "lacks a"),
        ('{"a": 1}', "lacks b"),
    ],
)
def test_a_bad_json_mapping_is_refused_naming_the_file_and_the_fix(
    tmp_path: Path, text: str | None, problem: str
) -> None:
    """Each problem of `read_json_mapping` is a CRSError with the file, the problem and the fix, never a
    raw JSONDecodeError, a list taken for a mapping, or a missing key found later as a KeyError."""
    path = tmp_path / "run.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(CRSError) as raised:
        read_json_mapping(path, ("a", "b"), fix="train again")
    message = str(raised.value)
    assert message.startswith(str(path)) and problem in message and message.endswith("; train again")


def test_a_good_json_mapping_is_read(tmp_path: Path) -> None:
    """The counterpart of the refusals: a mapping with the required keys is returned whole."""
    path = tmp_path / "run.json"
    path.write_text('{"a": 1, "b": [2]}')
    assert read_json_mapping(path, ("a", "b")) == {"a": 1, "b": [2]}


# ------------------------------------------------------------------------------ policies.memory_file
@pytest.mark.parametrize("key", ["users", "items", "aspects"])
def test_a_file_of_a_catalogue_of_other_sizes_is_refused(tmp_path: Path, key: str) -> None:
    """Every size of the catalogue is checked, not only the items."""
    path = tmp_path / "me.json"
    _, context, _ = remembered(path)
    data = json.loads(path.read_text())
    data["catalog"][key] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(MemoryFileError, match="belongs to another tiny_world catalogue"):
        read_memory(path, context)


def _rewritten(path: Path, change: dict[str, Any]) -> None:
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))


def test_a_file_without_history_is_refused(tmp_path: Path) -> None:
    """A file is written after a conversation, so it holds at least one belief in its history."""
    path = tmp_path / "me.json"
    _, context, _ = remembered(path)
    _rewritten(path, {"history": []})
    with pytest.raises(MemoryFileError, match=r"remembers 2 conversation\(s\) with 0 history entries"):
        read_memory(path, context)


def test_a_file_with_more_history_than_is_kept_is_refused(tmp_path: Path) -> None:
    """At most `HISTORY_KEPT` beliefs, even when as many conversations were had."""
    path = tmp_path / "me.json"
    _, context, record = remembered(path)
    count = HISTORY_KEPT + 1
    entry = {"ended": "quit", "prior": list(record.prior)}
    _rewritten(
        path, {"conversations": count, "history": [{"conversation": n, **entry} for n in range(count)]}
    )
    with pytest.raises(MemoryFileError, match=f"with {count} history entries"):
        read_memory(path, context)


def test_a_history_entry_of_a_negative_conversation_is_refused(tmp_path: Path) -> None:
    """Conversation numbers count from 1: a hand edit to -1 is refused like a negative user."""
    path = tmp_path / "me.json"
    _, context, _ = remembered(path)
    data = json.loads(path.read_text())
    data["history"][0]["conversation"] = -1
    path.write_text(json.dumps(data))
    with pytest.raises(MemoryFileError, match=r"history\[0\]\.conversation must be an integer >= 0, not -1"):
        read_memory(path, context)


@pytest.mark.parametrize(("conversations", "numbers"), [(2, [2, 7]), (2, [2, 1]), (3, [1, 2])])
def test_history_numbers_other_than_the_last_conversations_in_order_are_refused(
    tmp_path: Path, conversations: int, numbers: list[int]
) -> None:
    """The writer keeps the beliefs after the last conversations, numbered up to ``conversations`` (here
    [1, 2] of 2): an entry numbered past them, out of order, or of conversations the count has left
    behind is a hand edit and refused (it was read as it came)."""
    path = tmp_path / "me.json"
    _, context, _ = remembered(path)
    data = json.loads(path.read_text())
    assert data["conversations"] == 2 and [entry["conversation"] for entry in data["history"]] == [1, 2]
    data["conversations"] = conversations
    for entry, number in zip(data["history"], numbers, strict=True):
        entry["conversation"] = number
    path.write_text(json.dumps(data))
    with pytest.raises(MemoryFileError, match=r"history numbers conversations \[.*\]; a memory of \d keeps"):
        read_memory(path, context)


@pytest.mark.parametrize("ended", [None, 3, "drop"])
def test_a_history_entry_without_a_text_ending_is_refused(tmp_path: Path, ended: object) -> None:
    """An entry whose "ended" is missing (``drop``) or not text is a named refusal, not a KeyError or
    a number carried into the next file."""
    path = tmp_path / "me.json"
    _, context, _ = remembered(path)
    data = json.loads(path.read_text())
    if ended == "drop":
        del data["history"][1]["ended"]
    else:
        data["history"][1]["ended"] = ended
    path.write_text(json.dumps(data))
    with pytest.raises(
        MemoryFileError, match=r"history\[1\] must be an object with conversation, ended and prior"
    ):
        read_memory(path, context)


def test_a_prior_a_hundredth_off_one_is_refused(tmp_path: Path) -> None:
    """A hand-edited prior summing to 1.01 is refused (tolerance is rounding, 1e-6), one off by 1e-9
    is read."""
    path = tmp_path / "me.json"
    _, context, _ = remembered(path)
    _rewritten(path, {"prior": [0.5, 0.51]})
    with pytest.raises(MemoryFileError, match=r"sums to 1\.01"):
        read_memory(path, context)
    _rewritten(path, {"prior": [0.5, 0.5 + 1e-9]})
    record = read_memory(path, context)
    assert record is not None and record.prior == (0.5, 0.5 + 1e-9)


def test_a_home_of_zero_is_kept(tmp_path: Path) -> None:
    """A home probability of exactly 0 is written and read back as 0, not dropped as if absent."""
    context = context_of(tiny_ranker())
    record = MemoryRecord(context, 1, (0.25, 0.75), 1, (Belief(1, (0.25, 0.75), "quit"),), 0.0)
    write_memory(tmp_path / "me.json", record)
    assert json.loads((tmp_path / "me.json").read_text())["home"] == 0.0
    back = read_memory(tmp_path / "me.json", context)
    assert back is not None and back.home == 0.0


def test_the_most_likely_persona_is_the_largest_weight_first_on_ties() -> None:
    """`MemoryRecord.most_likely` is the argmax of the prior (not another slot), the first on ties."""
    context = MemoryContext("w", 1, 1, 1, "f", 3)
    assert MemoryRecord(context, 0, (0.2, 0.7, 0.1)).most_likely() == 1
    assert MemoryRecord(context, 0, (0.6, 0.1, 0.3)).most_likely() == 0
    assert MemoryRecord(context, 0, (0.1, 0.45, 0.45)).most_likely() == 1


# ---------------------------------------------------------------------------------- crs.chat.memory
TINY_WORLD = cast(Catalog, SimpleNamespace(name="tiny_world", n_users=2, n_items=4, n_aspects=2))
"""The catalogue `context_of` names (a memory context reads only its name and sizes)."""


def test_a_chat_reopened_from_its_file_continues_as_one_memory(tmp_path: Path) -> None:
    """`ChatMemory.open` restores the file's prior *and* home: two conversations with a save and a
    reopen between them end where one memory that had both ends (a lost home moves the second step)."""
    sessions = [SessionEvidence(user=1, accepted_item=0), SessionEvidence(user=1, accepted_item=1)]
    assert DEFAULT_RULE.home_rate > 0  # else there is no home to lose
    one = PersonaMemory(tiny_ranker((0.6, 0.4)), "update")
    for evidence in sessions:
        one.update(evidence)
    path = tmp_path / "me.json"
    for n, evidence in enumerate(sessions, start=1):
        chat = ChatMemory.open(
            path,
            tiny_ranker((0.6, 0.4)),
            TINY_WORLD,
            "tiny",
            user_id=None,
            drawn_user=1,
        )
        assert chat.user == 1 and chat.conversations == n - 1
        change = chat.save(chat._change(evidence, "accepted"))
        assert change.record.conversations == n
    np.testing.assert_allclose(change.after, one.prior(1), rtol=0, atol=1e-12)
    record = read_memory(path, chat.context)
    assert record is not None and record.home == pytest.approx(one.home(1), abs=1e-12)


def test_a_file_of_user_1_refuses_user_id_0(tmp_path: Path) -> None:
    """``--user-id 0`` is a user asked for like any other (not "none asked"): a file of user 1 refuses it."""
    path = tmp_path / "me.json"
    ranker, _, _ = remembered(path)  # user 1's memory after two conversations
    with pytest.raises(ChatError, match="remembers user 1, not --user-id 0"):
        ChatMemory.open(path, ranker, TINY_WORLD, "tiny", user_id=0, drawn_user=0)
    for user_id in (1, None):
        chat = ChatMemory.open(path, ranker, TINY_WORLD, "tiny", user_id=user_id, drawn_user=0)
        assert chat.user == 1 and chat.conversations == 2


@pytest.mark.slow  # a `crs pretrain` of the persona world (seconds)
def test_a_rule_policy_with_memory_ranks_with_the_remembered_belief(tmp_path: Path) -> None:
    """`policy_with_memory` gives a rule the memory's view of its ranker (the user's prior row is the
    file's belief), not the shared ranker, which would chat as if nothing were remembered."""
    world = make_persona_world()
    artifact = pretrain_tiny(tmp_path / "art")
    env = make_env(catalog=world, split="test")
    path = tmp_path / "me.json"
    shared = load_ranker(artifact, world)
    for item in (0, 1):  # two conversations, each accepting an item
        chat = ChatMemory.open(path, shared, world, str(artifact), user_id=3, drawn_user=0)
        chat.save(chat._change(SessionEvidence(user=3, accepted_item=item), "accepted"))
    stored = json.loads(path.read_text())
    policy, name, ranker_name, chat = policy_with_memory(
        "ask-2", env, str(artifact), None, path, user_id=None, drawn_user=0
    )
    assert name == "ask-2" and ranker_name == str(artifact) and chat.user == 3
    held = DEFAULT_RULE.view_of(np.asarray(stored["prior"]), stored["home"])
    assert not np.allclose(held, _softmax(shared.log_prior[3]), atol=1e-3)  # the memory moved it
    view = policy.ranker  # type: ignore[attr-defined]
    np.testing.assert_allclose(_softmax(view.log_prior[3]), held, atol=1e-12)
    np.testing.assert_array_equal(view.log_prior[4], shared.log_prior[4])  # another user as pre-trained


def _softmax(row: np.ndarray) -> np.ndarray:
    z = np.exp(row - row.max())
    out: np.ndarray = z / z.sum()
    return out


# ------------------------------------------------------------------------------ crs.report.examples
def _run(name: str, outcomes: list[tuple[int, bool, tuple[str, ...]]]) -> EvalRun:
    summary = {"policy": name, "dataset": "persona_world", "split": "test", "seed": 1, "max_turns": 15}
    records = tuple(
        EpisodeRecord(goal, 0, (0,), success, len(kinds), 1 if success else None, 0.0, kinds)
        for goal, success, kinds in outcomes
    )
    return EvalRun(Path(name), EvalSummary.from_dict(summary), records)


def _shown(picks: list[tuple[str, EvalRun, EpisodeRecord]]) -> list[tuple[str, int]]:
    for label, run, record in picks:
        assert run.path.name == label and record in run.records  # each record with its own run
    return [(label, record.goal_index) for label, _, record in picks]


ASK, REC = "ask", "recommend"
REFERENCE = _run(
    "ref",
    [
        (0, True, (REC,)),  # a win at once: no question, not worth showing
        (1, True, ("probe", REC)),  # the first real win, but it asked nothing
        (2, True, (ASK, REC)),  # the first win by asking where the contrast lost
        (3, True, (ASK, ASK, REC)),  # another such (only one pair is shown)
        (4, False, (ASK, REC)),  # the first failure
        (5, False, (REC,)),
    ],
)
# the contrast's records in another order: they are matched by goal, not position
CONTRAST = _run(
    "other",
    [(5, False, ()), (4, True, (REC,)), (3, False, ()), (2, False, ()), (1, False, ()), (0, False, ())],
)


def test_examples_are_a_contrast_pair_then_a_win_and_a_failure() -> None:
    """Worked by hand: the pair is goal 2 (the first win with a question that the contrast lost; goals 0
    and 1 asked nothing), then the first win of two or more actions not shown yet (1), then the first
    failure (4)."""
    assert _shown(pick_examples(("ref", REFERENCE), ("other", CONTRAST), 4)) == [
        ("ref", 2),
        ("other", 2),
        ("ref", 1),
        ("ref", 4),
    ]
    assert _shown(pick_examples(("ref", REFERENCE), ("other", CONTRAST), 3)) == [
        ("ref", 2),
        ("other", 2),
        ("ref", 1),
    ]


def test_one_example_is_no_half_pair() -> None:
    """With room for one dialogue the contrast pair (two) is not begun: the reference's win is shown."""
    assert _shown(pick_examples(("ref", REFERENCE), ("other", CONTRAST), 1)) == [("ref", 1)]


def test_without_a_contrast_a_win_and_a_failure_are_shown() -> None:
    """No contrast run: the first win of two or more actions and the first failure, nothing more."""
    assert _shown(pick_examples(("ref", REFERENCE), None, 5)) == [("ref", 1), ("ref", 4)]


def test_a_conversation_of_the_pair_is_not_shown_twice() -> None:
    """When the pair's win is also the first win, the next win is shown instead of repeating it."""
    reference = _run("ref", [(0, True, (ASK, REC)), (1, True, (ASK, REC)), (2, False, (REC,))])
    contrast = _run("other", [(0, False, ()), (1, True, (REC,)), (2, False, ())])
    picks = pick_examples(("ref", reference), ("other", contrast), 4)
    assert _shown(picks) == [("ref", 0), ("other", 0), ("ref", 1), ("ref", 2)]


def test_no_pair_when_the_contrast_also_won() -> None:
    """A pair shows a conversation the reference won and the contrast lost, never one both won."""
    reference = _run("ref", [(0, True, (ASK, REC)), (1, False, (REC,))])
    contrast = _run("other", [(0, True, (REC,)), (1, False, ())])
    assert _shown(pick_examples(("ref", reference), ("other", contrast), 4)) == [("ref", 0), ("ref", 1)]


# conversation 5 of ask-4 (popularity ranker, eval seed 1) on the K = 3 persona world, as an independent
# env-and-policy loop plays it: user 1, four questions, a rejected slate, then an accepted one
GOAL, USER, KINDS = 5, 1, ("open", "ask", "ask", "ask", "ask", "recommend", "recommend")


@pytest.fixture(scope="module")
def ask4() -> tuple[Any, EvalRun]:
    """The persona world (K = 3) and an ask-4 eval run (summary only, eval seed 1)."""
    world = make_persona_world(personas_per_user=3)
    summary = {"policy": "ask-4", "dataset": "persona_world", "split": "test", "seed": 1, "max_turns": 15}
    return world, EvalRun(Path("ask-4"), EvalSummary.from_dict(summary), ())


def test_a_replay_matches_its_record_only_on_both_outcome_and_length(ask4: tuple[Any, EvalRun]) -> None:
    """A record whose action count differs from the replay's is said to differ, not only one whose
    success does (the report notes such a replay); the title names the record's user and outcome."""
    world, run = ask4
    for took, won, matches in [(6, True, True), (7, True, False), (6, False, False)]:
        record = EpisodeRecord(GOAL, USER, (0,), won, took, 1 if won else None, 0.0)
        dialogue = replay(run, record, world, "ask-4")
        assert dialogue.matches_record is matches, (took, won)
        assert tuple(turn.kind for turn in dialogue.turns) == KINDS  # the record only names the goal
    assert dialogue.goal_index == GOAL and dialogue.policy == "ask-4"
    assert dialogue.title == f"ask-4: user {USER} looking for {world.item_names[0]!r}, failure"


def test_a_replayed_turn_is_a_success_only_where_the_item_was_accepted(ask4: tuple[Any, EvalRun]) -> None:
    """The accepted slate, and only it, is marked a success (the report highlights it)."""
    world, run = ask4
    dialogue = replay(run, EpisodeRecord(GOAL, USER, (0,), True, 6, 1, 0.0), world, "ask-4")
    assert [turn.success for turn in dialogue.turns] == [False] * 6 + [True]
    assert dialogue.title.endswith(", success after 6 actions")


def test_a_replay_that_fails_or_differs_is_a_note_not_a_failed_report(ask4: tuple[Any, EvalRun]) -> None:
    """A run evaluated with another T cannot be replayed (a CRSError the report turns into a note), and
    a replay that differs from its record is shown with a note saying so."""
    world, run = ask4
    summary = {"policy": "ask-4", "dataset": "persona_world", "split": "test", "seed": 1, "max_turns": 14}
    other_t = EvalRun(Path("ask-4-t14"), EvalSummary.from_dict(summary), ())
    exact = EpisodeRecord(GOAL, USER, (0,), True, 6, 2, 0.0)
    longer = EpisodeRecord(GOAL, USER, (0,), True, 7, 2, 0.0)
    picks = [("ask-4", run, exact), ("T14", other_t, exact), ("edited", run, longer)]
    dialogues, notes = example_dialogues(picks, world, None)
    assert [(d.policy, d.matches_record) for d in dialogues] == [("ask-4", True), ("edited", False)]
    assert len(notes) == 2
    assert (
        notes[0].startswith("could not replay a T14 conversation (") and "evaluated with T = 14" in notes[0]
    )
    assert notes[1] == f"the replay of edited conversation {GOAL} differs from its record"


def test_only_the_runs_that_rank_with_the_explainer_are_explained(ask4: tuple[Any, EvalRun]) -> None:
    """A replay of a run outside `explained` shows no persona explanation; one inside shows one for each
    slate, of the facts known before that slate (an independent env-and-policy loop gives them)."""
    world, run = ask4
    explainer = random_persona_ranker(world, personas=2)
    other = EvalRun(Path("popularity"), run.summary, ())
    record = EpisodeRecord(GOAL, USER, (0,), True, 6, 2, 0.0)
    picks = [("ask-4", run, record), ("popularity", other, record)]
    (mine, theirs), notes = example_dialogues(picks, world, None, explainer, frozenset({run.path}))
    assert not notes and not any(turn.explanation for turn in theirs.turns)
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-4", build_ranker("popularity", world))
    seed = episode_seed(1, GOAL)
    env.reset(seed=seed, options={"goal_index": GOAL})
    policy.reset(np.random.default_rng(seed))
    want, done = [""], False
    names = prototype_names(explainer, world)
    while not done:
        facts = env.state.facts()
        _, _, terminated, truncated, _ = env.step(policy.act(env))
        done = terminated or truncated
        turn = env.state.history[-1]
        if turn.kind != "recommend":
            want.append("")
            continue
        item = turn.accepted_item if turn.accepted_item is not None else turn.slate[0]
        (why,) = prototype_explanations(explainer, facts, [item], names, world)
        want.append(why.report_text(world))
    assert [turn.explanation for turn in mine.turns] == want
    assert [bool(text) for text in want] == [False] * 5 + [True, True]


def test_a_failure_is_never_shown_as_the_win() -> None:
    """A failed conversation of two actions that comes first is the failure shown, not the win."""
    reference = _run("ref", [(0, False, (ASK, REC)), (1, True, (ASK, REC))])
    assert _shown(pick_examples(("ref", reference), None, 4)) == [("ref", 1), ("ref", 0)]


def test_the_last_item_is_a_target_and_the_next_id_is_refused(ask4: tuple[Any, EvalRun]) -> None:
    """Item ids run from 0 to n_items - 1: a record naming n_items is of another catalogue."""
    world, run = ask4
    last = world.n_items - 1
    check_targets(run, [EpisodeRecord(GOAL, USER, (0, last), True, 6, 2, 0.0)], world)
    with pytest.raises(CRSError, match=rf"\[targets\] = \[{world.n_items}\], no item .* \(ids 0 to {last}\)"):
        check_targets(run, [EpisodeRecord(GOAL, USER, (0, world.n_items), True, 6, 2, 0.0)], world)
