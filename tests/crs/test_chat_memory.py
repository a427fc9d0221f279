"""`crs chat --memory FILE`: the chat says what it remembers, runs from that belief, updates and saves it
atomically at the end (whatever the ending), refuses a ranker without personas or a bad file, and
forgets the person when the file is deleted."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.chat import ChatError, ChatMemory, run_chat
from crs.chat.memory import MemoryChange
from crs.chat.view import ChatView
from crs.cli import app
from crs.explain import Explainer
from envs.ranker import DialogueFacts
from envs.registry import make_env
from policies.memory import DEFAULT_RULE, MemoryUpdate, SessionEvidence
from policies.memory_file import MemoryFileError, MemoryRecord, read_memory
from policies.pretrain.artifact import load_ranker
from policies.pretrain.ranker import PersonaRanker
from policies.rules import make_rule_policy
from simulators.catalog import Catalog
from simulators.persona_world import make_persona_world
from tests.crs.test_chat import flat, lines_reader, quiet, random_persona_ranker
from tests.crs.tiny_runs import pretrain_tiny, untrained_run

runner = CliRunner()
SCRIPT = ["jazz", "y", "n", "1"]  # open with jazz, yes, no, take the first of the slate


@pytest.fixture(scope="module")
def world() -> Catalog:
    return make_persona_world()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny `crs pretrain` artifact of the persona world (3 personas per user), written by the CLI."""
    return pretrain_tiny(tmp_path_factory.mktemp("pretrain") / "art")


def chat(tmp_path: Path, lines: list[str], *args: str) -> tuple[Any, dict[str, Any] | None]:
    """Run `crs chat` with `lines` on standard input; the result and the transcript (if written)."""
    path = tmp_path / f"chat-{len(list(tmp_path.glob('chat-*.json')))}.json"
    result = runner.invoke(
        app, ["chat", "--transcript", str(path), *args], input="".join(f"{x}\n" for x in lines)
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result, json.loads(path.read_text()) if path.exists() else None


def label(ranker: PersonaRanker, world: Catalog, user: int, k: int) -> str:
    """Persona `k`'s label as the chat's explainer words it."""
    empty = np.zeros(0, dtype=np.int64)
    return Explainer(world, None, ranker).persona_label(DialogueFacts(user, empty, empty, empty), k)


def softmax(row: np.ndarray) -> np.ndarray:
    z = np.exp(row - row.max())
    out: np.ndarray = z / z.sum()
    return out


# ------------------------------------------------------------------------------- the CLI, twice
def test_two_chats_remember_the_person(tmp_path: Path, artifact: Path, world: Catalog) -> None:
    memory = tmp_path / "me.json"
    args = ["--ranker", str(artifact), "--memory", str(memory), "--policy", "ask-2"]
    first, transcript = chat(tmp_path, SCRIPT, *args)
    assert first.exit_code == 0, first.output
    assert transcript is not None and transcript["outcome"]["ended"] == "accepted"
    out = flat(first.output)
    assert "Recommender: I don't remember you yet; I start from your history." in out
    assert out.index("I don't remember you yet") < out.index("Tell me one thing you like")
    ranker = load_ranker(artifact, world)
    user = transcript["user"]
    shared = softmax(ranker.log_prior[user])
    # the file: this user, one conversation, the prior the transcript says it moved to
    saved = json.loads(memory.read_text())
    assert saved["user"] == user and saved["conversations"] == 1
    assert saved["history"][0]["ended"] == "accepted"
    np.testing.assert_allclose(transcript["memory"]["before"], shared)
    np.testing.assert_allclose(saved["prior"], transcript["memory"]["after"])
    assert not np.allclose(saved["prior"], shared)  # the chance of having left home moved the belief
    assert "What I believe now, before → after this conversation:" in out
    after = np.array(saved["prior"])
    top = int(np.argmax(after))
    assert f"{label(ranker, world, user, top)} {shared[top]:.0%} → {after[top]:.0%}" in out
    # the panel wraps a long path anywhere, inside its borders: compared without spaces and borders
    saved_line = f"Saved to {memory} (1 conversation remembered; delete it to forget)"
    assert re.sub(r"[\s│]", "", saved_line) in re.sub(r"[\s│]", "", out)
    # the first conversation is had at home: it leaves the usual mix by the home rate only
    assert saved["home"] == transcript["memory"]["home"] == pytest.approx(1 - DEFAULT_RULE.home_rate)
    assert f"I am {saved['home']:.0%} sure your usual mix of sides still holds." in out
    # the change does not depend on what was said, and the chat says so instead of claiming it does
    assert "so what you said does not move the belief yet" in out and "moves the sides" not in out

    # the second chat opens with the remembered belief and runs from it
    second, transcript2 = chat(tmp_path, SCRIPT, *args)
    assert second.exit_code == 0, second.output
    assert transcript2 is not None and transcript2["user"] == user  # the file's user, not a new draw
    out2 = flat(second.output)
    name = label(ranker, world, user, top)
    # not "Last time your ... side was in charge": the belief is not yet of what the first one said
    first = f"Recommender: I remember 1 conversation, which I take as your usual self: your {name} side leads"
    assert f"{first} ({after[top]:.0%})." in out2 and "Last time" not in out2
    np.testing.assert_allclose(transcript2["memory"]["before"], after)
    saved2 = json.loads(memory.read_text())
    assert saved2["conversations"] == 2 and [h["conversation"] for h in saved2["history"]] == [1, 2]
    np.testing.assert_allclose(saved2["prior"], transcript2["memory"]["after"])
    assert not np.allclose(saved2["prior"], after)

    # deleting the file forgets the person: the next chat starts from the ranker's prior again
    memory.unlink()
    third, transcript3 = chat(tmp_path, SCRIPT, *args, "--user-id", str(user))
    assert third.exit_code == 0, third.output
    assert "I don't remember you yet" in flat(third.output)
    assert transcript3 is not None
    np.testing.assert_allclose(transcript3["memory"]["before"], shared)
    np.testing.assert_allclose(transcript3["memory"]["after"], transcript["memory"]["after"])


def test_a_popularity_ranker_is_refused(tmp_path: Path) -> None:
    memory = tmp_path / "me.json"
    result, transcript = chat(tmp_path, SCRIPT, "--memory", str(memory))
    assert result.exit_code == 2 and transcript is None
    out = flat(result.output)
    assert "--memory keeps what the recommender believes about your personas, but ranker 'popularity'" in out
    assert "models no personas" in out and "--ranker <a `crs pretrain` artifact>" in out
    assert "crs pretrain -d persona_world -o runs/pretrain/persona_world" in out
    assert not memory.exists()


@pytest.mark.parametrize("damage", ["corrupt json", "wrong version", "wrong ranker", "wrong length"])
def test_a_bad_file_stops_the_chat_before_it_starts_and_is_kept(
    tmp_path: Path, artifact: Path, damage: str
) -> None:
    memory = tmp_path / "me.json"
    args = ["--ranker", str(artifact), "--memory", str(memory), "--policy", "ask-2"]
    assert chat(tmp_path, ["jazz", "quit"], *args)[0].exit_code == 0
    data = json.loads(memory.read_text())
    if damage == "corrupt json":
        text = memory.read_text()[:40]
    else:
        if damage == "wrong version":
            data["version"] = 99
        elif damage == "wrong ranker":
            data["ranker"]["fingerprint"] = "f" * 16
        else:
            data["prior"] = [*data["prior"], 0.0]
        text = json.dumps(data)
    memory.write_text(text)
    result, transcript = chat(tmp_path, SCRIPT, *args)
    assert result.exit_code == 2 and transcript is None
    out = flat(result.output).replace(" ", "")
    assert f"error:memoryfile{memory}:".replace(" ", "") in out
    expected = {
        "corrupt json": "iscorrupt(JSONDecodeError",
        "wrong version": "hasformatversion99;thiscrsreadsversion1",
        "wrong ranker": "wasmadewithranker",
        "wrong length": "priorhas4weights,buttherankerhas3personasperuser",
    }[damage]
    assert expected in out and "deleteittoforgetthisperson" in out
    assert memory.read_text() == text  # refused, not overwritten


def test_an_undone_opening_is_neither_remembered_nor_recorded(tmp_path: Path, artifact: Path) -> None:
    memory = tmp_path / "me.json"
    result, transcript = chat(
        tmp_path, ["jazz", "back", "quit"], "--ranker", str(artifact), "--memory", str(memory)
    )
    assert result.exit_code == 0, result.output
    assert "Nothing to remember" in " ".join(result.output.split()) and not memory.exists()
    assert transcript is not None and transcript["turns"] == []


def test_user_id_must_be_the_files_user_and_files_must_differ(tmp_path: Path, artifact: Path) -> None:
    memory = tmp_path / "me.json"
    args = ["--ranker", str(artifact), "--memory", str(memory)]
    assert chat(tmp_path, ["jazz", "quit"], *args, "--user-id", "5")[0].exit_code == 0
    assert json.loads(memory.read_text())["user"] == 5
    result, _ = chat(tmp_path, SCRIPT, *args, "--user-id", "6")
    assert result.exit_code == 2
    assert f"memory file {memory} remembers user 5, not --user-id 6" in flat(result.output)
    same = runner.invoke(app, ["chat", *args, "--transcript", str(memory), "--overwrite"], input="quit\n")
    assert same.exit_code == 2 and "give them different files" in flat(same.output)
    assert json.loads(memory.read_text())["user"] == 5


def test_a_transcript_never_replaces_a_file_the_chat_reads(tmp_path: Path, artifact: Path) -> None:
    data = tmp_path / "data"
    (data / "lastfm").mkdir(parents=True)
    for target, args in [
        (artifact / "config.json", ["--ranker", str(artifact)]),
        (data / "lastfm" / "chat.json", ["--data-dir", str(data)]),
    ]:
        before = target.read_bytes() if target.exists() else None
        result = runner.invoke(
            app, ["chat", *args, "--transcript", str(target), "--overwrite"], input="quit\n"
        )
        assert result.exit_code == 2 and "which this chat reads" in flat(result.output), result.output
        assert (target.read_bytes() if target.exists() else None) == before


def test_the_help_names_the_option() -> None:
    result = runner.invoke(app, ["chat", "--help"])
    assert result.exit_code == 0
    assert "--memory" in result.output and "delete it to forget" in flat(result.output)


# ------------------------------------------------------------------------ in process: the endings
def open_memory(path: Path, ranker: PersonaRanker, world: Catalog, user: int = 3) -> ChatMemory:
    return ChatMemory.open(path, ranker, world, "random", user_id=None, drawn_user=user)


def hold(path: Path, ranker: PersonaRanker, world: Catalog, read: Any) -> tuple[Any, str]:
    """One chat of ask-2 over the memory's view; the result and the printed text."""
    memory = open_memory(path, ranker, world)
    console = quiet()
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", memory.ranker())
    result = run_chat(env, policy, seed=0, console=console, read=read, user_id=memory.user, memory=memory)
    return result, flat(console.file.getvalue())  # type: ignore[attr-defined]


def talk(memory: ChatMemory, world: Catalog, lines: list[str]) -> Any:
    """One chat of ask-2 over `memory` (opened earlier); the result."""
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", memory.ranker())
    return run_chat(
        env, policy, seed=0, console=quiet(), read=lines_reader(lines), user_id=memory.user, memory=memory
    )


def test_two_chats_at_once_on_one_file_are_both_remembered(tmp_path: Path, world: Catalog) -> None:
    """Both open the file before either saves: the second save moves the belief the first one left."""
    ranker = random_persona_ranker(world, 3)
    path, alone = tmp_path / "me.json", tmp_path / "alone.json"
    hold(path, ranker, world, lines_reader(SCRIPT))  # a first chat, so that the belief can move
    hold(alone, ranker, world, lines_reader(SCRIPT))
    first, second = open_memory(path, ranker, world), open_memory(path, ranker, world)
    talk(first, world, ["jazz", "n"])
    result = talk(second, world, ["rock", "y"])
    record = read_memory(path, first.context)
    assert record is not None and record.conversations == 3
    # the same two conversations one after the other
    talk(open_memory(alone, ranker, world), world, ["jazz", "n"])
    talk(open_memory(alone, ranker, world), world, ["rock", "y"])
    np.testing.assert_allclose(record.prior, json.loads(alone.read_text())["prior"], atol=1e-12)
    np.testing.assert_allclose(result.memory.after, record.prior)  # what the chat showed is what it saved
    assert result.transcript["memory"]["conversations"] == 3


def test_a_file_another_chat_gave_another_user_is_kept(tmp_path: Path, world: Catalog) -> None:
    ranker = random_persona_ranker(world, 3)
    path = tmp_path / "me.json"
    mine, theirs = open_memory(path, ranker, world, user=3), open_memory(path, ranker, world, user=5)
    talk(theirs, world, SCRIPT)
    before = path.read_bytes()
    with pytest.raises(MemoryFileError, match="saved user 5 into it during this chat with user 3"):
        talk(mine, world, SCRIPT)
    assert path.read_bytes() == before


def test_another_users_conversation_does_not_move_the_memory(tmp_path: Path, world: Catalog) -> None:
    ranker = random_persona_ranker(world, 3)
    path = tmp_path / "me.json"
    memory = open_memory(path, ranker, world, user=3)
    env = make_env(catalog=world, split="test")
    goal = int(np.flatnonzero(env.goals.interactions.users == 5)[0])
    env.reset(seed=0, options={"goal_index": goal})
    before = memory.prior()
    said = f"the chat was with user 5, but {re.escape(str(path))} remembers user 3"
    with pytest.raises(ChatError, match=said):
        memory.update(env.state, "quit")
    np.testing.assert_array_equal(memory.prior(), before)
    assert not path.exists()


def test_a_person_forgotten_during_the_chat_starts_again(tmp_path: Path, world: Catalog) -> None:
    ranker = random_persona_ranker(world, 3)
    path = tmp_path / "me.json"
    hold(path, ranker, world, lines_reader(SCRIPT))
    memory = open_memory(path, ranker, world)
    path.unlink()  # deleted while the chat goes on
    result = talk(memory, world, SCRIPT)
    record = read_memory(path, memory.context)
    assert record is not None and record.conversations == 1
    np.testing.assert_allclose(result.memory.before, softmax(ranker.log_prior[3]))


def test_the_chat_runs_with_the_remembered_prior(tmp_path: Path, world: Catalog) -> None:
    ranker = random_persona_ranker(world, 3)
    path = tmp_path / "me.json"
    hold(path, ranker, world, lines_reader(SCRIPT))
    record = json.loads(path.read_text())
    memory = open_memory(path, ranker, world)
    view = memory.ranker()
    assert isinstance(view, PersonaRanker)
    # the session's view of the remembered belief (`UpdateRule.view_of`)
    want = DEFAULT_RULE.view_of(np.asarray(record["prior"]), record["home"])
    np.testing.assert_allclose(softmax(view.log_prior[3]), want, atol=1e-12)
    np.testing.assert_array_equal(view.log_prior[4], ranker.log_prior[4])  # other users as pre-trained
    np.testing.assert_array_equal(ranker.log_prior, 0.0)  # the shared ranker is never written
    # the opening names the most likely persona as the explanations do
    _, text = hold(path, ranker, world, lines_reader(["quit"]))
    name = label(ranker, world, 3, int(np.argmax(record["prior"])))
    said = f"I remember 1 conversation, which I take as your usual self: your {name} side leads"
    assert f"{said} ({max(record['prior']):.0%})." in text


def test_quitting_at_the_opening_remembers_nothing(tmp_path: Path, world: Catalog) -> None:
    path = tmp_path / "me.json"
    result, text = hold(path, random_persona_ranker(world, 3), world, lines_reader(["quit"]))
    assert result.ended == "quit" and result.memory is None and "memory" not in result.transcript
    assert not path.exists()
    assert f"Nothing to remember: {path} was not written." in text


@pytest.mark.parametrize("ending", ["quit", "end of input", "interrupted"])
def test_every_ending_after_the_opening_updates_and_saves(
    tmp_path: Path, world: Catalog, ending: str
) -> None:
    """Two conversations, each ending so. (The first one is had at home, in the pre-trained mixture,
    which here is uniform: it cannot move the belief; the second one's answers do.)"""

    def reader() -> Any:
        lines = iter(["jazz", "n"])

        def read(prompt: str) -> str:
            line = next(lines, None)
            if line is not None:
                return line
            if ending == "quit":
                return "quit"
            raise EOFError if ending == "end of input" else KeyboardInterrupt

        return read

    path = tmp_path / "me.json"
    ranker = random_persona_ranker(world, 3)
    for conversation in (1, 2):
        result, text = hold(path, ranker, world, reader())
        assert result.ended == ending and result.memory is not None
        record = read_memory(path, result.memory.record.context)
        assert record is not None and record.conversations == conversation
        assert record.history[-1].ended == ending
        np.testing.assert_allclose(record.prior, result.memory.after)
        assert "What I believe now" in text and text.index("summary") < text.index("What I believe now")
    assert not np.allclose(result.memory.after, result.memory.before)  # jazz and a "no" moved it


def test_a_failed_save_keeps_the_old_file_intact(
    tmp_path: Path, world: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranker = random_persona_ranker(world, 3)
    path = tmp_path / "me.json"
    hold(path, ranker, world, lines_reader(SCRIPT))
    before = path.read_bytes()
    real = os.replace

    def crash(source: Any, target: Any) -> None:
        if Path(target) == path:
            raise OSError(13, "Permission denied")
        real(source, target)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(MemoryFileError, match=f"memory file {path}: cannot be written"):
        hold(path, ranker, world, lines_reader(SCRIPT))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.json"]


def test_an_arrow_only_where_the_shown_belief_moved(tmp_path: Path, world: Catalog) -> None:
    ranker = random_persona_ranker(world, 3)
    memory = open_memory(tmp_path / "me.json", ranker, world)
    before, after = np.array([0.4, 0.35, 0.25]), np.array([0.403, 0.2, 0.397])
    update = MemoryUpdate(3, before, np.zeros(3), after, after)
    evidence = SessionEvidence(user=3)
    record = MemoryRecord.new(memory.context, 3, before).after(update, "quit")
    console = quiet()
    env = make_env(catalog=world, split="test")
    ChatView(console, env, Explainer(world, None, ranker)).belief_change(
        MemoryChange(memory.path, update, record, evidence, "quit")
    )
    text = console.file.getvalue()  # type: ignore[attr-defined]
    rows = re.findall(r"(\d+%) → (\d+%)\s+(\S)", text)  # ordered by the belief after
    assert rows == [("40%", "40%", "="), ("25%", "40%", "▲"), ("35%", "20%", "▼")]


def test_a_ranker_with_one_persona_is_refused(tmp_path: Path, world: Catalog) -> None:
    with pytest.raises(ChatError, match="models one persona per user"):
        open_memory(tmp_path / "me.json", random_persona_ranker(world, 1), world)
    with pytest.raises(MemoryFileError, match=r"its folder .* does not exist"):
        open_memory(tmp_path / "no" / "me.json", random_persona_ranker(world, 3), world)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="writes to /proc (Linux)")
def test_a_memory_file_that_cannot_be_written_is_refused_before_the_conversation(
    tmp_path: Path, artifact: Path
) -> None:
    """A --memory in a folder that takes no new file (here /proc, read-only for root too) is refused
    before the first turn, as --transcript is: the conversation ran whole and its update was lost."""
    result, _ = chat(tmp_path, ["1", "y", "quit"], "--ranker", str(artifact), "--memory", "/proc/me.json")
    assert result.exit_code == 2, result.output
    assert "memory file /proc/me.json: cannot be written (/proc:" in flat(result.output)
    assert "turn 2 of" not in result.output


def test_watch_mode_remembers_the_simulated_user(tmp_path: Path, artifact: Path) -> None:
    memory = tmp_path / "sim.json"
    args = ["--ranker", str(artifact), "--memory", str(memory), "--simulate", "--seed", "3"]
    first, transcript = chat(tmp_path, [], *args)
    assert first.exit_code == 0 and transcript is not None
    user = transcript["user"]
    assert f"I don't remember user {user} yet; I start from their history." in flat(first.output)
    second, _ = chat(tmp_path, [], *args)
    assert f"I remember 1 conversation, which I take as user {user}'s usual self: " in flat(second.output)
    assert json.loads(memory.read_text())["conversations"] == 2


# ------------------------------------------------------------------------------- a trained run
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, artifact: Path, world: Catalog) -> Path:
    """A loadable run folder (an untrained model) whose ranker/ is the tiny artifact."""
    return untrained_run(tmp_path_factory.mktemp("runs") / "tiny-run", artifact, world)


@pytest.mark.slow  # builds a run's model (torch)
def test_a_trained_run_chats_in_the_setting_it_learned_in(
    tmp_path: Path, artifact: Path, world: Catalog
) -> None:
    """`crs chat --policy RUN` of a run trained in a setting other than its dataset's default chats in
    the run's setting, whose questions its model was built for (guards against the chat's env taking
    only `--setting`, which would put a binary run in the persona world's multiple-choice default)."""
    run = untrained_run(tmp_path / "binary-run", artifact, world, setting="binary")
    result, transcript = chat(tmp_path, [], "--policy", str(run), "--simulate", "--seed", "3")
    assert result.exit_code == 0 and transcript is not None, result.output
    assert transcript["meta"]["setting"] == "binary"
    asked = [turn["action"]["aspects"] for turn in transcript["turns"] if turn["kind"] == "ask"]
    assert all(len(aspects) == 1 for aspects in asked)  # yes/no questions, one aspect each
    assert not any(turn["kind"] == "probe" for turn in transcript["turns"])


@pytest.mark.slow  # builds a run's model (torch)
def test_a_trained_run_plays_from_the_memory(
    tmp_path: Path, trained_run: Path, artifact: Path, world: Catalog
) -> None:
    from crs.chat import policy_with_memory
    from policies.rl import RLPolicy

    memory = tmp_path / "run.json"
    args = ["--policy", str(trained_run), "--memory", str(memory), "--simulate", "--seed", "3"]
    first, transcript = chat(tmp_path, [], *args)
    assert first.exit_code == 0, first.output
    assert transcript is not None and transcript["meta"]["policy"] == "tiny-run"
    stored = json.loads(memory.read_text())
    after = np.array(stored["prior"])
    # the run's ranker is the artifact: the file is the same ranker's, and a rule over it may read it
    second, _ = chat(tmp_path, ["quit"], "--ranker", str(artifact), "--memory", str(memory))
    said = flat(second.output)
    assert "which I take as your usual self: your " in said and f"({after.max():.0%})" in said
    env = make_env(catalog=world, split="test")
    policy, name, _, kept = policy_with_memory(
        str(trained_run), env, None, None, memory, user_id=None, drawn_user=0
    )
    assert isinstance(policy, RLPolicy) and name == "tiny-run" and kept.user == transcript["user"]
    view = policy.ranker
    assert isinstance(view, PersonaRanker)
    held = DEFAULT_RULE.view_of(after, stored["home"])  # the row the session's view holds
    np.testing.assert_allclose(softmax(view.log_prior[kept.user]), held, atol=1e-12)
    encoder = policy.encoder.log_prior.weight.detach().numpy()
    trained_row = encoder[kept.user].copy()
    goal = int(np.flatnonzero(env.goals.interactions.users == kept.user)[0])
    env.reset(seed=0, options={"goal_index": goal})
    seen = []
    original = policy.policy.get_distribution

    def spy(*args: Any, **kwargs: Any) -> Any:  # the encoder's row of the user while the policy acts
        seen.append(policy.encoder.log_prior.weight.detach().numpy()[kept.user].copy())
        return original(*args, **kwargs)

    policy.policy.get_distribution = spy  # type: ignore[method-assign]
    policy.act(env)
    np.testing.assert_allclose(softmax(seen[0]), held, atol=1e-6)  # it acted from the memory's belief
    np.testing.assert_array_equal(encoder[kept.user], trained_row)  # and the trained row is put back


def test_the_side_in_charge_is_said_to_change_only_when_it_did(tmp_path: Path, world: Catalog) -> None:
    """The memory panel says which side is in charge after the chat and, when the most likely persona
    changed, which one was before (guards against comparing the belief after with itself)."""
    ranker = random_persona_ranker(world, 3)
    memory = open_memory(tmp_path / "me.json", ranker, world)
    before = np.array([0.5, 0.3, 0.2])
    env = make_env(catalog=world, split="test")
    for after, lead in [
        (np.array([0.2, 0.3, 0.5]), "Your {2} side is in charge now (it was your {0} side)."),
        (np.array([0.45, 0.35, 0.2]), "Your {0} side is still in charge."),
    ]:
        update = MemoryUpdate(3, before, np.zeros(3), after, after)
        record = MemoryRecord.new(memory.context, 3, before).after(update, "quit")
        console = quiet()
        change = MemoryChange(memory.path, update, record, SessionEvidence(user=3), "quit")
        ChatView(console, env, Explainer(world, None, ranker)).belief_change(change)
        names = [label(ranker, world, 3, k) for k in range(3)]
        assert lead.format(*names) in flat(console.file.getvalue())  # type: ignore[attr-defined]


def test_a_new_file_plays_the_user_id_asked_for(tmp_path: Path, world: Catalog) -> None:
    """A new memory file plays ``--user-id`` when given, the drawn user only otherwise; a file's own user
    wins over the draw (guards against the drawn user taking the place of the one asked for)."""
    ranker = random_persona_ranker(world, 3)
    path = tmp_path / "me.json"
    asked = ChatMemory.open(path, ranker, world, "random", user_id=7, drawn_user=3)
    assert asked.user == 7 and asked.record is None
    assert ChatMemory.open(path, ranker, world, "random", user_id=None, drawn_user=3).user == 3
    hold(path, ranker, world, lines_reader(SCRIPT))  # remembers user 3
    assert ChatMemory.open(path, ranker, world, "random", user_id=None, drawn_user=9).user == 3
