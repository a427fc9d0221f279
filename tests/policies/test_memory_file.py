"""The persona memory file (`policies.memory_file`): its schema, round trip, refusals and atomic write,
and `PersonaMemory.restore`, which carries a file's prior into a new process."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from policies.memory import DEFAULT_RULE, PersonaMemory, PersonaMemoryError, SessionEvidence, UpdateRule
from policies.memory_file import (
    HISTORY_KEPT,
    MEMORY_SCHEMA,
    MEMORY_VERSION,
    Belief,
    MemoryContext,
    MemoryFileError,
    MemoryRecord,
    ranker_fingerprint,
    read_memory,
    write_memory,
)
from policies.pretrain.ranker import PersonaRanker
from tests.policies.test_memory import HOME, NO_HOME, tiny_ranker


def context_of(ranker: PersonaRanker, name: str = "tiny") -> MemoryContext:
    return MemoryContext("tiny_world", 2, 4, 2, ranker_fingerprint(ranker), 2, name)


def remembered(path: Path) -> tuple[PersonaRanker, MemoryContext, MemoryRecord]:
    """A file holding user 1's memory after two sessions (the accepted items 0, then 2)."""
    ranker = tiny_ranker((0.7, 0.3))
    context = context_of(ranker)
    memory = PersonaMemory(ranker, "update")
    record = MemoryRecord.new(context, 1, memory.prior(1))
    for item in (0, 2):
        record = record.after(memory.update(SessionEvidence(user=1, accepted_item=item)), "accepted")
    write_memory(path, record)
    return ranker, context, record


def test_round_trip_keeps_every_field_and_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    _, context, record = remembered(path)
    data = json.loads(path.read_text())
    assert data["schema"] == MEMORY_SCHEMA and data["version"] == MEMORY_VERSION == 1
    assert data["dataset"] == "tiny_world" and data["catalog"] == {"users": 2, "items": 4, "aspects": 2}
    assert data["ranker"] == {"fingerprint": context.ranker, "personas": 2, "name": "tiny"}
    assert data["user"] == 1 and data["conversations"] == 2
    assert [entry["conversation"] for entry in data["history"]] == [1, 2]
    assert data["history"][-1]["prior"] == data["prior"] == list(record.prior)
    back = read_memory(path, context)
    assert back == record
    assert back is not None and back.prior[0] > 0.5  # item 0 is persona 0's: the belief favours it


def test_a_missing_file_is_a_new_person(tmp_path: Path) -> None:
    assert read_memory(tmp_path / "nobody.json", context_of(tiny_ranker())) is None


def test_history_keeps_the_last_beliefs(tmp_path: Path) -> None:
    ranker = tiny_ranker()
    memory = PersonaMemory(ranker, "update")
    record = MemoryRecord.new(context_of(ranker), 0, memory.prior(0))
    for _ in range(HISTORY_KEPT + 3):
        record = record.after(memory.update(SessionEvidence(user=0, accepted_item=1)), "quit")
    assert record.conversations == HISTORY_KEPT + 3
    assert [b.conversation for b in record.history] == list(range(4, HISTORY_KEPT + 4))
    write_memory(tmp_path / "m.json", record)
    assert read_memory(tmp_path / "m.json", context_of(ranker)) == record


@pytest.mark.parametrize("rule", [DEFAULT_RULE, NO_HOME, HOME], ids=["default", "no home", "home"])
def test_restoring_a_file_continues_the_memory_exactly(tmp_path: Path, rule: UpdateRule) -> None:
    """Two sessions in one process, or one, a file, a new process and the second: the same prior (and,
    with a home state, the same chance of being home, which the file keeps)."""
    sessions = [SessionEvidence(user=1, accepted_item=0), SessionEvidence(user=1, accepted_item=1)]
    one = PersonaMemory(tiny_ranker((0.6, 0.4)), "update", rule)
    for evidence in sessions:
        one.update(evidence)
    first = PersonaMemory(tiny_ranker((0.6, 0.4)), "update", rule)
    context = context_of(first.ranker)  # type: ignore[arg-type]
    update = first.update(sessions[0])
    write_memory(tmp_path / "m.json", MemoryRecord.new(context, 1, update.before).after(update, "accepted"))
    assert ("home" in json.loads((tmp_path / "m.json").read_text())) == (rule.home_rate > 0)
    record = read_memory(tmp_path / "m.json", context)
    assert record is not None and record.home == update.home
    second = PersonaMemory(tiny_ranker((0.6, 0.4)), "update", rule)
    second.restore(1, record.prior, record.home)
    np.testing.assert_allclose(second.prior(1), first.prior(1), rtol=0, atol=1e-15)
    assert second.home(1) == pytest.approx(first.home(1), abs=1e-15)
    view_row = np.exp(second.ranker_for(1).log_prior[1])
    want = rule.view_of(np.asarray(record.prior), record.home or 0.0)
    np.testing.assert_allclose(view_row, want, atol=1e-15)
    second.update(sessions[1])
    np.testing.assert_allclose(second.prior(1), one.prior(1), atol=1e-14)
    np.testing.assert_allclose(second.prior(0), [0.6, 0.4])  # another user's prior is the ranker's


def test_restore_refuses_a_bad_prior_or_mode() -> None:
    memory = PersonaMemory(tiny_ranker(), "update")
    for bad in ([0.5], [0.5, math.nan], [-0.1, 1.1], [0.0, 0.0]):
        with pytest.raises(PersonaMemoryError, match="finite weights"):
            memory.restore(0, bad)
    with pytest.raises(PersonaMemoryError, match="restore needs 'update'"):
        PersonaMemory(tiny_ranker(), "frozen").restore(0, [0.5, 0.5])
    with pytest.raises(PersonaMemoryError, match="user 5 outside"):
        memory.restore(5, [0.5, 0.5])


def test_the_fingerprint_names_the_rankers_personas() -> None:
    assert ranker_fingerprint(tiny_ranker()) == ranker_fingerprint(tiny_ranker())
    assert ranker_fingerprint(tiny_ranker()) != ranker_fingerprint(tiny_ranker((0.6, 0.4)))
    other = tiny_ranker()
    other.personas = other.personas * 2
    assert ranker_fingerprint(other) != ranker_fingerprint(tiny_ranker())


def damaged(data: dict[str, Any], change: str) -> Any:
    """`data` (a file's JSON) damaged as `change` says."""
    data = json.loads(json.dumps(data))
    if change == "wrong schema":
        data["schema"] = "something-else"
    elif change == "wrong version":
        data["version"] = MEMORY_VERSION + 1
    elif change == "wrong dataset":
        data["dataset"] = "lastfm"
    elif change == "wrong catalogue":
        data["catalog"]["items"] = 5
    elif change == "wrong ranker":
        data["ranker"]["fingerprint"] = "0" * 16
    elif change == "wrong length":
        data["prior"] = [0.5, 0.25, 0.25]
    elif change == "non-finite":
        data["prior"] = [math.nan, 1.0]
    elif change == "negative":
        data["prior"] = [-0.5, 1.5]
    elif change == "not summing to 1":
        data["prior"] = [0.5, 0.6]
    elif change == "user out of range":
        data["user"] = 7
    elif change == "user one past the last":
        data["user"] = 2
    elif change == "user not an integer":
        data["user"] = True
    elif change == "bad history":
        data["history"][0]["prior"] = [1.0]
    elif change == "missing history":
        del data["history"]
    elif change == "huge weights":
        data["prior"] = [1e308, 1e308]
    elif change == "a weight of 400 digits":
        data["prior"] = [10**400, 0]
    elif change == "version 1.0":
        data["version"] = 1.0
    elif change == "no conversation":
        data["conversations"] = 0
    elif change == "more history than conversations":
        data["conversations"] = 1
    elif change == "home out of range":
        data["home"] = 1.5
    elif change == "home not a number":
        data["home"] = "most likely"
    elif change == "a misspelt key":
        data["priors"] = [0.0, 1.0]
    elif change == "an unknown catalogue key":
        data["catalog"]["genres"] = 3
    elif change == "an unknown ranker key":
        data["ranker"]["seed"] = 3
    elif change == "an unknown history key":
        data["history"][1]["accepted"] = 5
    elif change == "not an object":
        return [data]
    return data


PROBLEMS = {
    "wrong schema": "is not a persona memory",
    "wrong version": f"has format version {MEMORY_VERSION + 1}; this crs reads version {MEMORY_VERSION}",
    "wrong dataset": "belongs to dataset 'lastfm', not 'tiny_world'",
    "wrong catalogue": "belongs to another tiny_world catalogue",
    "wrong ranker": "was made with ranker tiny as it was then (fingerprint 0000000000000000",
    "wrong length": "prior has 3 weights, but the ranker has 2 personas per user",
    "non-finite": "holds a weight outside [0, 1] or a NaN",
    "negative": "holds a weight outside [0, 1] or a NaN",
    "huge weights": "holds a weight outside [0, 1] or a NaN",
    "a weight of 400 digits": "prior holds a number too large for a probability",
    "version 1.0": "has format version 1.0; this crs reads version 1",
    "no conversation": "remembers 0 conversation(s) with 2 history entries",
    "more history than conversations": "remembers 1 conversation(s) with 2 history entries",
    "not summing to 1": "sums to 1.1",
    "user out of range": "user 7 is outside [0, 2) of tiny_world",
    "user one past the last": "user 2 is outside [0, 2) of tiny_world",
    "user not an integer": "user must be an integer >= 0, not True",
    "bad history": "history[0].prior has 1 weights",
    "missing history": "history must be a list",
    "not an object": "must hold a JSON object, not list",
    "home out of range": "home must be a number in [0, 1], not 1.5",
    "home not a number": "home must be a number in [0, 1], not 'most likely'",
    "a misspelt key": "the file holds the unknown key 'priors' (its keys are schema, version,",
    "an unknown catalogue key": "catalog holds the unknown key 'genres' (its keys are users, items, aspects)",
    "an unknown ranker key": "ranker holds the unknown key 'seed' (its keys are fingerprint, personas, name)",
    "an unknown history key": "history[1] holds the unknown key 'accepted' (its keys are conversation,",
}


@pytest.mark.parametrize("change", sorted(PROBLEMS))
def test_a_bad_file_is_refused_naming_the_file_the_problem_and_the_fix(tmp_path: Path, change: str) -> None:
    path = tmp_path / "me.json"
    _, context, _ = remembered(path)
    path.write_text(json.dumps(damaged(json.loads(path.read_text()), change)))
    with pytest.raises(MemoryFileError) as raised:
        read_memory(path, context)
    message = str(raised.value)
    assert message.startswith(f"memory file {path}: ") and raised.value.path == path
    assert PROBLEMS[change] in message
    assert "delete it to forget" in message or "another --memory file" in message or "crs chat" in message


def test_a_wrong_ranker_says_which_ranker_made_it(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    remembered(path)
    other = context_of(tiny_ranker((0.5, 0.5)), "runs/pretrain/other")
    with pytest.raises(MemoryFileError, match=r"chat with the ranker it was made with \(--ranker tiny\)"):
        read_memory(path, other)


def test_a_ranker_pre_trained_again_in_its_folder_is_named_so(tmp_path: Path) -> None:
    """The file's ranker folder now holds other weights (`crs pretrain --overwrite`): the message says so,
    instead of "made with ranker tiny, not tiny ... chat with --ranker tiny" (a fix that fails again)."""
    path = tmp_path / "me.json"
    remembered(path)
    with pytest.raises(MemoryFileError) as raised:
        read_memory(path, context_of(tiny_ranker((0.5, 0.5)), "tiny"))
    message = str(raised.value)
    assert "was made with ranker tiny as it was then" in message
    assert "tiny has been pre-trained again since" in message
    assert "--ranker tiny" not in message and "pass another --memory file, or delete it to forget" in message


@pytest.mark.parametrize("text", ["", '{"schema": "persona-crs/persona-memory", "vers', "\x00\xff", "[[[["])
def test_corrupt_json_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "me.json"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(MemoryFileError, match=r"is corrupt .*; delete it to forget this person"):
        read_memory(path, context_of(tiny_ranker()))


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    """A hand edit that adds a second "user" (JSON alone would take the last one silently)."""
    path = tmp_path / "me.json"
    remembered(path)
    text = path.read_text()
    path.write_text(text.replace('"user": ', '"user": 1, "user": ', 1))
    with pytest.raises(MemoryFileError, match=r"is corrupt .*the key 'user' is given twice"):
        read_memory(path, context_of(tiny_ranker()))


def test_a_folder_is_not_a_memory_file(tmp_path: Path) -> None:
    with pytest.raises(MemoryFileError, match="is not a file"):
        read_memory(tmp_path, context_of(tiny_ranker()))


def test_a_record_cannot_hold_a_bad_prior() -> None:
    context = context_of(tiny_ranker())
    for bad in ((0.5,), (math.inf, 0.0), (0.2, 0.2)):
        with pytest.raises(ValueError):
            MemoryRecord(context, 0, bad)
        with pytest.raises(ValueError, match="history entry 1"):  # nor a bad prior in its history
            MemoryRecord(context, 0, (0.5, 0.5), 1, (Belief(1, bad, "quit"),))
    assert MemoryRecord(context, 0, (0.5, 0.5), 1, (Belief(1, (0.25, 0.75), "quit"),)).conversations == 1


def test_a_record_refuses_another_users_update() -> None:
    ranker = tiny_ranker()
    memory = PersonaMemory(ranker, "update")
    record = MemoryRecord.new(context_of(ranker), 1, memory.prior(1))
    with pytest.raises(ValueError, match="an update of user 0 cannot go into user 1's memory"):
        record.after(memory.update(SessionEvidence(user=0, accepted_item=0)), "accepted")
    own = record.after(memory.update(SessionEvidence(user=1, accepted_item=0)), "accepted")
    assert own.user == 1 and own.conversations == 1


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "me.json"
    _, context, record = remembered(path)
    before = path.read_bytes()
    count = record.conversations + 1
    newer = MemoryRecord(
        context, record.user, (0.5, 0.5), count, (*record.history, Belief(count, (0.5, 0.5), "accepted"))
    )

    def crash(source: Any, target: Any) -> None:
        assert Path(source).read_text().startswith("{")  # the new content was written beside it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(MemoryFileError, match=r"cannot be written .*No space left.*as it was before"):
        write_memory(path, newer)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.json"]  # no temporary left behind
    assert read_memory(path, context) == record
    write_memory(path, newer)
    assert read_memory(path, context) == newer


def test_deleting_the_file_forgets_the_person(tmp_path: Path) -> None:
    path = tmp_path / "me.json"
    _, context, _ = remembered(path)
    path.unlink()
    assert read_memory(path, context) is None
