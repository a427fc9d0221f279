"""What the chat shows and saves, the progress lines a log gets and the helpers every command shares,
checked where a plausible slip would change what a person reads or what a file holds: the persona and
counts the chat prints, the transcript's records, the person's answers, the progress lines, the
settings files and the error lines."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from rich.console import Console

from crs.chat import ChatError, ChatMemory, HumanUser, PersonAnswer, human_env, run_chat
from crs.chat.memory import MemoryChange
from crs.chat.question import read_question
from crs.chat.signals import EndSignals, SignalEndError
from crs.chat.transcript import check_transcript_path, write_transcript
from crs.chat.view import ChatView, _listed
from crs.common import data_dir_input, format_metric, friendly_errors, metrics_table, read_settings_file
from crs.explain import Explainer, Explanation
from crs.progress import QUIET_SECONDS
from envs.actions import ask, probe, recommend
from envs.env import ConversationEnv, Rewards
from envs.metrics import MetricSummary
from envs.registry import make_env
from policies.memory import MemoryUpdate, SessionEvidence
from policies.memory_file import MemoryRecord
from policies.rankers import build_ranker
from policies.rules import make_rule_policy
from simulators.catalog import Catalog
from simulators.errors import CRSError
from simulators.persona_world import make_persona_world
from simulators.users import Goal
from tests.crs.test_chat import ProbingPolicy, flat, random_persona_ranker, world_with_categories
from tests.crs.test_chat_memory import label
from tests.crs.test_chat_mutants import talk
from tests.crs.test_progress import logged, progress_lines


# ------------------------------------------------------------------------------- progress in a log
def test_a_resumed_task_says_nothing_until_it_passes_its_next_tenth() -> None:
    """A task resumed at 65% writes no line at 68% and one at 70% (guards against counting a resumed
    task's tenths from zero, which logs its first small move as if it passed six tenths)."""
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=100, completed=65)
        clock.now = 100.0
        progress.update(task, completed=68)
        assert progress_lines(out.getvalue()) == []
        clock.now = 200.0
        progress.update(task, completed=70)
    assert [line.split(",")[0] for line in progress_lines(out.getvalue())] == ["work: 70/100 (70%)"]


def test_a_note_before_the_first_move_does_not_start_the_pace() -> None:
    """Time left is measured from the first move, not from an update that only sets a note (guards
    against an update without progress starting the clock: 700 s for 100 would say 0:11:40 left)."""
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=200)
        progress.update(task, note="policy a")  # at 0 s: nothing done yet
        clock.now = 600.0
        progress.advance(task, 50)  # the first move, at 600 s
        clock.now = 700.0
        progress.advance(task, 50)
    lines = progress_lines(out.getvalue())
    # 50 more in the 100 s since the first move: 100 to go take 200 s
    assert lines[1] == "work: 100/200 (50%), 0:11:40 elapsed, 0:03:20 left, policy a"


def test_a_line_is_written_from_the_tenth_second_on() -> None:
    """A tenth passed at exactly QUIET_SECONDS is written (guards against a quiet start that also
    swallows its last second)."""
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=10)
        for _ in range(10):
            clock.now += QUIET_SECONDS / 10
            progress.advance(task)
    assert [line.split(",")[0] for line in progress_lines(out.getvalue())] == ["work: 10/10 (100%)"]


def test_work_that_overshoots_its_total_is_written_once_at_the_end() -> None:
    """A task that ends past its total (a last chunk larger than what was left) writes its 100% line
    once and no repeated bar (guards against counting eleven tenths, which writes a "110%" line and
    never marks the task done)."""
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=100)
        clock.now = 100.0
        progress.update(task, completed=100)
        clock.now = 110.0
        progress.update(task, completed=110)
    lines = [line for line in out.getvalue().splitlines() if line]
    assert lines == ["work: 100/100 (100%), 0:01:40 elapsed"]


def test_the_bars_are_printed_at_the_end_unless_every_task_wrote_its_last_line() -> None:
    """When work stops with a task short of 100% (an interrupted run), rich's final bars are printed:
    they are the one record of where each task stopped (guards against leaving them out when only
    some task, or none, wrote its 100% line)."""
    for totals in [(100,), (100, 50)]:
        progress, out, clock = logged(terminal=False)
        with progress:
            tasks = [progress.add_task(f"work{n}", total=total) for n, total in enumerate(totals)]
            clock.now = 100.0
            progress.update(tasks[0], completed=50)  # half done, logged: 50%
            if len(tasks) > 1:
                progress.update(tasks[1], completed=50)  # the other one done, logged: 100%
        assert "━" in out.getvalue(), totals


def test_an_hour_of_work_reads_as_hours_minutes_and_seconds() -> None:
    """Elapsed time past an hour is h:mm:ss (guards against minutes that count past 59)."""
    progress, out, clock = logged(terminal=False)
    with progress:
        task = progress.add_task("work", total=10)
        clock.now = 3_700.0
        progress.update(task, completed=10)
    assert progress_lines(out.getvalue()) == ["work: 10/10 (100%), 1:01:40 elapsed"]


# ------------------------------------------------------------------------------- shared helpers
def test_a_system_error_is_one_red_line_naming_the_file_and_exit_code_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A full disk or a denied permission in a command ends it with "error: <reason>: <file>" and exit
    code 2, no traceback (guards against catching only the project's own errors, and against a
    message that leaves out which file)."""

    @friendly_errors
    def command() -> None:
        raise PermissionError(13, "Permission denied", "/runs/x/model.zip")

    with pytest.raises(typer.Exit) as caught:
        command()
    assert caught.value.exit_code == 2
    assert capsys.readouterr().err.strip() == "error: Permission denied: /runs/x/model.zip"


def test_a_metric_reads_mean_then_its_interval_low_to_high() -> None:
    """'0.682 [0.645, 0.719]' (guards against the interval's ends swapped), and each cell of the
    table holds the mean above both ends (guards against a cell repeating one end)."""
    summary = MetricSummary(mean=0.6824, low=0.6451, high=0.7189)
    assert format_metric(summary) == "0.682 [0.645, 0.719]"
    metrics = {name: MetricSummary(0.5, 0.25, 0.75) for name in ("SR@5", "SR@10", "SR@15", "hDCG")}
    metrics["AT"] = MetricSummary(7.5, 6.125, 8.875)
    out = io.StringIO()
    Console(file=out, width=200).print(metrics_table("t", {"[bold]p[/bold]": metrics}))
    text = out.getvalue()
    assert "[bold]p[/bold]" in text  # a policy's name from a file is shown as written, never markup
    assert "0.750]" in text and "8.88]" in text and "[6.12," in text


def test_a_settings_file_may_be_yml_and_an_empty_one_is_no_settings(tmp_path: Path) -> None:
    """A .yml file is read like a .yaml one, and an empty file holds no settings (guards against a
    suffix check that knows only .yaml)."""
    path = tmp_path / "c.yml"
    path.write_text("steps: 3\n")
    assert read_settings_file(path, "config file") == {"steps": 3}
    path.write_text("")
    assert read_settings_file(path, "config file") == {}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.yaml", b"- 1\n- 2\n", "must hold a mapping of settings, got list"),
        ("c.yaml", b"steps: \xff\xfe\n", "is not valid YAML"),
        ("c.toml", b"steps = \xff\n", "is not valid TOML"),
        ("folder.yaml", None, "is a folder; pass a .yaml"),
    ],
)
def test_a_bad_settings_file_is_a_one_line_error(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    """A list instead of a mapping, bytes that are not UTF-8, or a folder named like a config are
    `CRSError`s naming the file (guards against a missing type check, an uncaught decoding error and
    reading a folder)."""
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(CRSError, match=message):
        read_settings_file(path, "config file")


def test_the_data_folder_option_wins_over_the_environment_and_home_is_expanded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--data-dir`` wins over ``$CRS_DATA_DIR``, which is the default; "~" is the home folder (guards
    against the environment overriding the option, and against a literal "~" folder)."""
    monkeypatch.setenv("CRS_DATA_DIR", "/from/env")
    monkeypatch.setenv("HOME", "/home/someone")
    assert data_dir_input("/from/option") == Path("/from/option")
    assert data_dir_input(None) == Path("/from/env")
    assert data_dir_input("~/data") == Path("/home/someone/data")
    monkeypatch.delenv("CRS_DATA_DIR")
    assert data_dir_input(None) is None


# ------------------------------------------------------------------------------- what the chat shows
@pytest.fixture(scope="module")
def world() -> Catalog:
    return make_persona_world()


def shown(view: ChatView) -> str:
    """What `view` printed so far, flattened."""
    return flat(view.console.file.getvalue())  # type: ignore[attr-defined]


def view_of(world: Catalog, ranker: Any = None) -> ChatView:
    """A view of the test split's first conversation on a wide console (no row wraps)."""
    env = make_env(catalog=world, split="test")
    env.reset(seed=0, options={"goal_index": 0})
    return ChatView(Console(file=io.StringIO(), width=300), env, Explainer(world, None, ranker))


def test_counts_agree_in_number_and_name_the_catalogue_s_items(world: Catalog) -> None:
    """ "0 items", "1 item has", "2 items have"; Yelp*'s are businesses (guards against a singular for
    zero, a verb that disagrees with its count, and the wrong noun for a dataset)."""
    view = view_of(world)
    assert view.count(0) == "0 items"
    assert view.count(1, "has", "have") == "1 item has"
    assert view.count(2, "has", "have") == "2 items have"
    view.catalog = dataclasses.replace(world, name="yelp_star")
    assert view.count(2) == "2 businesses"


def test_the_intro_names_five_liked_items_and_counts_the_others(world: Catalog) -> None:
    """A user with more than five items in their history reads the first five and "and N more" for
    the rest (guards against an off-by-one in the rest)."""
    ranker = random_persona_ranker(world, 3)
    view = view_of(world, ranker)
    history = view.explainer.history(3)
    assert history.size > 5
    view.intro(3, "ask-2")
    names = ", ".join(world.item_names[int(i)] for i in history[:5])
    assert f"knows their history: {names} and {history.size - 5} more." in shown(view)


def belief_panel(world: Catalog, tmp_path: Path, before: list[float], after: list[float], times: int) -> str:
    """The memory panel after `times` conversations whose last moved the belief `before` -> `after`
    (the filter 90% sure the usual mix holds)."""
    ranker = random_persona_ranker(world, len(before))
    memory = ChatMemory.open(tmp_path / "me.json", ranker, world, "random", user_id=None, drawn_user=3)
    update = MemoryUpdate(3, np.array(before), np.zeros(len(before)), np.array(after), np.array(after), 0.9)
    record = MemoryRecord.new(memory.context, 3, np.array(before))
    for _ in range(times):
        record = record.after(update, "quit")
    view = view_of(world, ranker)
    view.belief_change(MemoryChange(memory.path, update, record, SessionEvidence(user=3), "quit"))
    return shown(view)


def test_the_memory_panel_counts_the_personas_it_leaves_out(world: Catalog, tmp_path: Path) -> None:
    """Three personas are listed; a fourth is "+1 more", and three leave nothing out (guards against an
    off-by-one in the count of hidden ones)."""
    four = belief_panel(world, tmp_path, [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], 2)
    assert len(re.findall(r"\d+% → \d+%", four)) == 3 and "+1 more" in four
    three = belief_panel(world, tmp_path, [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], 2)
    assert len(re.findall(r"\d+% → \d+%", three)) == 3 and "more" not in three


def test_only_a_first_conversation_says_it_cannot_move_how_sure_the_memory_is(
    world: Catalog, tmp_path: Path
) -> None:
    """After the first conversation the panel says it was taken as the usual self; after the second
    it does not (guards against the note on the wrong conversation)."""
    note = "A first conversation is taken as your usual self"
    first = belief_panel(world, tmp_path, [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], 1)
    assert "I am 90% sure your usual mix of sides still holds." in first and note in first
    second = belief_panel(world, tmp_path, [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], 2)
    assert "I am 90% sure" in second and note not in second


def test_a_yes_no_question_says_how_many_candidates_have_the_aspect(world: Catalog) -> None:
    """ "(N of the M items left have it)": N is what a yes leaves and M what there was (guards against
    saying every candidate has it)."""
    result, text = talk(world, ["jazz", "y", "quit"])
    opening, yes = result.transcript["turns"][:2]
    (name,) = yes["action"]["aspect_names"]
    assert yes["candidates_left"] < opening["candidates_left"]
    share = f"Do you want {name}? ({yes['candidates_left']} of the {opening['candidates_left']} items left"
    assert share in text


class AskThenProbe:
    """Asks about `aspect` (turn 1), then probes persona 1 with the first two reachable aspects."""

    def __init__(self, ranker: Any, aspect: int) -> None:
        self.ranker = ranker
        self.aspect = aspect

    def reset(self, rng: np.random.Generator) -> None:
        pass

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        if env.state.turn == 1:
            return ask([self.aspect])
        return probe(1, env.state.reachable_aspects()[:2])


def test_a_probe_names_the_side_it_asks_about(world: Catalog) -> None:
    """A probe of persona 1 says "(about your <label of persona 1> side: these mark it most among the
    items left)", the label the transcript records (guards against labelling another persona); the
    words say how the options relate to the side (they read as unrelated to it, a walkthrough's
    finding), and a "no" to one of the label's aspects is said, as the explanations say it."""
    ranker = random_persona_ranker(world, 3)
    result, text = talk(world, ["jazz", "quit"], ProbingPolicy(ranker))
    user = result.transcript["user"]
    labels = [label(ranker, world, user, k) for k in range(3)]
    assert labels[1] != labels[0]
    assert f"(about your {labels[1]} side: these mark it most among the items left)" in text
    assert result.transcript["outcome"]["pending"]["action"]["persona_label"] == labels[1]
    # a probe of one aspect reads as a yes/no question: it still names the side (it read as an ask)
    result, text = talk(world, ["jazz", "quit"], ProbingPolicy(ranker, width=1))
    (aspect,) = result.transcript["outcome"]["pending"]["action"]["aspect_names"]
    assert f"Do you want {aspect}? (" in text
    assert f"(about your {labels[1]} side: this marks it most among the items left)" in text
    # the first of the label's aspects turned down, then the probe: the side keeps its name, with the "no"
    first = labels[1].split(" & ")[0]
    policy = AskThenProbe(ranker, world.aspect_names.index(first))
    result, text = talk(world, ["jazz", "n", "quit"], policy)
    assert result.transcript["turns"][1]["answer"]["rejected"] == [world.aspect_names.index(first)]
    assert f"(about your {labels[1]} side (without {first}, as you answered): these mark it" in text


@pytest.mark.parametrize("n", [7, 13])
def test_a_listing_in_columns_shows_every_option(world: Catalog, n: int) -> None:
    """Seven options (two columns) or thirteen (three) are all listed, numbered 1 to n (guards against
    rounding the rows down, which drops the last ones)."""
    view = view_of(world)
    view.numbered(list(range(n)))
    listed = dict(re.findall(r"\b(\d+) ([a-z]+)", shown(view)))
    assert listed == {str(k + 1): world.aspect_names[k] for k in range(n)}


def test_each_slate_row_shows_its_own_item_s_explanation(world: Catalog) -> None:
    """The row of each recommended item holds that item's explanation (guards against pairing items and
    explanations out of order)."""
    view = view_of(world)
    items = [int(i) for i in np.flatnonzero(view.env.state.candidates)[:3]]
    why = [Explanation(i, None, "", -1, "popularity", popularity=10 + n) for n, i in enumerate(items)]
    view.console.print(view._slate_table(items, why))
    rows = [line for line in view.console.file.getvalue().splitlines() if " users have " in line]  # type: ignore[attr-defined]
    assert len(rows) == 3
    for n, (item, row) in enumerate(zip(items, rows, strict=True)):
        assert world.item_names[item] in row and f"{10 + n} users have it" in row


def test_a_slate_s_tags_leave_out_an_aspect_the_person_said_no_to(world: Catalog) -> None:
    """The tags under a recommended item leave out an aspect the person rejected, as they leave out the
    accepted ones: the dialogue settled both (guards against leaving out only the accepted ones)."""
    env = human_env(make_env(catalog=world, split="test"))
    user = env.user
    assert isinstance(user, HumanUser)
    user.tell(PersonAnswer(None, "open", (0,)))  # jazz
    env.reset(seed=0, options={"goal_index": 0})
    frequency = np.diff(world.aspect_items.indptr)
    item = next(int(i) for i in np.flatnonzero(env.state.candidates) if world.aspects_of(int(i)).size >= 3)
    others = [int(a) for a in world.aspects_of(item) if a != 0]
    rejected = max(others, key=lambda a: (frequency[a], -a))
    question = read_question(env, ask([rejected]))
    user.tell(PersonAnswer(question.key, "no"))
    env.step(ask([rejected]))
    view = ChatView(Console(file=io.StringIO(), width=300), env, Explainer(world, None, None))
    view.console.print(view._slate_table([item], [Explanation(item, None, "", -1, "fallback")]))
    tags = [t for t in others if t != rejected]
    tags.sort(key=lambda a: (-frequency[a], a))
    line = ", ".join(world.aspect_names[a] for a in tags[:3]) + (
        f" +{len(tags) - 3}" if len(tags) > 3 else ""
    )
    assert line in view.console.file.getvalue()  # type: ignore[attr-defined]
    assert world.aspect_names[rejected] + "," not in view.console.file.getvalue()  # type: ignore[attr-defined]


def test_watch_mode_shows_the_simulated_answer_as_given(world: Catalog) -> None:
    """The simulated user takes "#2" when it took the slate's second item, says "Yes." when it accepted
    the asked aspect and "No." when not (guards against an off-by-one rank and swapped answers)."""
    view = view_of(world)
    slate = [int(i) for i in np.flatnonzero(view.env.state.candidates)[:3]]
    view.simulated_reply(
        read_question(view.env, recommend(slate)), {"success": True, "accepted_item": slate[1], "rank": 2}
    )
    aspect = int(view.env.state.reachable_aspects()[0])
    binary = read_question(view.env, ask([aspect]))
    view.simulated_reply(binary, {"answer": [aspect], "rejected": []})
    view.simulated_reply(binary, {"answer": [], "rejected": [aspect]})
    text = shown(view)
    assert f"User: I'll take #2, {world.item_names[slate[1]]}! User: Yes. User: No." in text


def summary_of(world: Catalog, mode: str, turns: int, outcome: dict[str, Any]) -> str:
    """The closing panel of a transcript with `turns` records (the opening included)."""
    view = view_of(world)
    full = {"ended": "quit", "pending": None, "metrics": None, **outcome}
    view.summary({"meta": {"mode": mode}, "turns": [{}] * turns, "outcome": full})
    return shown(view)


def test_the_summary_counts_turns_and_names_who_took_what(world: Catalog) -> None:
    """An accepted item reads "You took X (rank 2) after 3 recommender turns." for a person and "The
    user took" in watch mode, with the target, the active persona and SR@15; a quit with a slate
    pending counts it ("after 3 recommender turns, the last (a slate) unanswered"), a quit without
    one counts the turns answered (guards against the subject swapped, the opening counted as a
    recommender turn, the pending turn left out or misnamed, SR@15 read from another key and a
    persona left out)."""
    metrics = {"SR@5": 0.0, "SR@10": 1.0, "SR@15": 1.0, "AT": 4.0, "hDCG": 0.5}
    taken = {"ended": "accepted", "accepted_item_name": "Paper Harbor", "rank": 2, "agent_actions": 3}
    text = summary_of(world, "human", 4, {**taken, "metrics": metrics})
    assert "You took Paper Harbor (rank 2) after 3 recommender turns." in text
    assert "SR@15 1 turns (AT) 4 hDCG 0.500" in text
    # a user who left at turn 7 shows AT 15: UNICORN's count of a failure, said so
    failed = {"SR@5": 0.0, "SR@10": 0.0, "SR@15": 0.0, "AT": 15.0, "hDCG": 0.0}
    text = summary_of(world, "simulate", 8, {"ended": "quit", "metrics": failed})
    assert "SR@15 0 turns (AT) 15 (a failure counts the whole turn limit) hDCG 0.000" in text
    watched = {**taken, "targets": [0], "target_names": ["Paper Harbor"], "active_persona": "night owl"}
    text = summary_of(world, "simulate", 4, watched)
    assert "The user took Paper Harbor" in text and "Active persona (the world's truth): night owl." in text
    pending = summary_of(world, "human", 3, {"pending": {"kind": "recommend"}})
    assert "Conversation ended (quit) after 3 recommender turns, the last (a slate) unanswered." in pending
    asked = summary_of(world, "human", 3, {"pending": {"kind": "ask"}})
    assert "the last (a question) unanswered" in asked
    assert "Conversation ended (quit) after 2 recommender turns." in summary_of(world, "human", 3, {})


def test_lists_of_names_read_as_english() -> None:
    """'a', 'a and b', 'a, b or c', and past three 'any of these 4' / 'all of these 4' (guards against
    an off-by-one in the limit and a dropped name)."""
    assert _listed(["a"], "or") == "a"
    assert _listed(["a", "b"], "and") == "a and b"
    assert _listed(["a", "b", "c"], "or") == "a, b or c"
    assert _listed(["a", "b", "c", "d"], "or") == "any of these 4"
    assert _listed(["a", "b", "c", "d"], "and") == "all of these 4"


# ------------------------------------------------------------------------------- ending by a signal
def test_a_signal_ends_the_dialogue_once_and_the_handlers_are_put_back() -> None:
    """Inside `EndSignals` a first SIGTERM raises `SignalEndError` ("terminated"), the next ones are
    ignored and listed; leaving puts the handlers there were back (guards against not marking the end
    on the first signal, not installing the handlers, and leaving them installed)."""
    before = signal.getsignal(signal.SIGTERM)
    with EndSignals() as signals:
        assert signal.getsignal(signal.SIGTERM) != before  # the chat's handler
        with pytest.raises(SignalEndError) as caught:
            signal.raise_signal(signal.SIGTERM)
        assert caught.value.reason == "terminated"
        try:  # ignored: the dialogue has ended
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
        except SignalEndError:  # a KeyboardInterrupt: caught, or pytest would stop the whole run
            pytest.fail("a signal after the first one ended the dialogue again")
        assert signals.ignored == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_after_the_dialogue_ended_another_way_a_signal_is_ignored() -> None:
    """Once `end` is called (the person quit; the transcript is being written) a Ctrl-C is ignored
    (guards against an `end` that does not mark the end)."""
    with EndSignals() as signals:
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # the chat's handler
        signals.end()
        try:
            signal.raise_signal(signal.SIGINT)
        except SignalEndError:
            pytest.fail("a Ctrl-C after the end ended the dialogue")
        assert signals.ignored == [signal.SIGINT]


def test_a_signal_ignored_before_the_chat_stays_ignored() -> None:
    """Under ``nohup`` SIGHUP is ignored: the chat leaves it so, during and after (guards against taking
    it over, which would end a nohup'd chat when its terminal closes)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with EndSignals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)  # nothing happens
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


# ------------------------------------------------------------------------------- the transcript
def test_each_turn_s_reward_is_recorded_as_the_reward_table_gives_it(world: Catalog) -> None:
    """A yes earns UNICORN's +0.01 and a no -0.1, recorded to the last digit, and the total is their
    sum; a question has no explanation (guards against rounding the rewards away, and an empty
    explanation list for a question)."""
    result, _ = talk(world, ["jazz", "y", "n", "quit"])
    turns, table = result.transcript["turns"], Rewards()
    assert [t["answer"]["said"] for t in turns[1:]] == ["yes", "no"]
    assert [t["reward"] for t in turns[1:]] == [table.ask_accepted, table.ask_rejected]
    assert [t["explanation"] for t in turns[1:]] == [None, None]  # questions are no slates
    assert result.transcript["outcome"]["total_reward"] == pytest.approx(
        table.ask_accepted + table.ask_rejected
    )


def test_a_rejected_slate_records_no_item_and_no_rank(world: Catalog) -> None:
    """Saying no to a slate records no accepted item, no name and no rank, in the turn and in the
    outcome, and no success (guards against recording the env's -1 / 0 placeholders as an item and a
    rank)."""
    policy = make_rule_policy("always-recommend", build_ranker("popularity", world))
    result, _ = talk(world, ["jazz", "n", "quit"], policy)
    answer = result.transcript["turns"][1]["answer"]
    assert answer == {"said": "reject", "accepted_item": None, "accepted_item_name": None, "rank": None}
    outcome = result.transcript["outcome"]
    assert (outcome["success"], outcome["accepted_item"], outcome["rank"]) == (False, None, None)
    assert outcome["accepted_item_name"] is None


def test_a_question_left_unanswered_is_recorded_as_pending_without_metrics(world: Catalog) -> None:
    """Quitting at the first question records it as pending, with the candidates it was asked over and
    no explanation (it is no slate), and no metrics: the conversation did not finish (guards against an
    empty explanation list, a count off by one, and metrics of an unfinished conversation)."""
    result, _ = talk(world, ["jazz", "quit"])
    transcript = result.transcript
    pending = transcript["outcome"]["pending"]
    assert pending["turn"] == 2 and pending["kind"] == "ask"
    assert pending["candidates_left"] == transcript["turns"][0]["candidates_left"]
    assert pending["explanation"] is None
    assert transcript["outcome"]["metrics"] is None


def test_a_probe_of_the_first_persona_records_it(world: Catalog) -> None:
    """A probe of persona 0 records persona 0 and its label (guards against a truth test that drops
    persona 0)."""
    ranker = random_persona_ranker(world, 3)
    result, _ = talk(world, ["jazz", "1", "quit"], ProbingPolicy(ranker, persona=0))
    action = result.transcript["turns"][1]["action"]
    assert action["kind"] == "probe"
    assert action["persona"] == 0
    assert action["persona_label"] == label(ranker, world, result.transcript["user"], 0)


def test_a_person_s_chat_reveals_no_target(world: Catalog) -> None:
    """A person who takes an item has no hidden target: the outcome has no targets and the summary no
    "Hidden target" line (guards against revealing targets outside watch mode)."""
    policy = make_rule_policy("always-recommend", build_ranker("popularity", world))
    result, text = talk(world, ["jazz", "1"], policy)
    outcome = result.transcript["outcome"]
    assert outcome["ended"] == "accepted" and outcome["metrics"] is not None
    assert "targets" not in outcome and "target_names" not in outcome
    assert "Hidden target" not in text


def test_a_transcript_is_written_into_new_folders_and_a_file_in_the_way_is_one_error(tmp_path: Path) -> None:
    """The transcript's missing folders are created; a file where a folder should be is a `ChatError`
    saying the transcript could not be written (guards against creating one level only, and a raw
    `OSError`)."""
    path = tmp_path / "a" / "b" / "chat.json"
    write_transcript(path, {"turns": []})
    assert json.loads(path.read_text()) == {"turns": []}
    (tmp_path / "file").write_text("x")
    with pytest.raises(ChatError, match="could not write the transcript"):
        write_transcript(tmp_path / "file" / "chat.json", {"turns": []})


def test_an_existing_transcript_is_refused_unless_overwrite(tmp_path: Path) -> None:
    """An existing transcript file is refused before the chat and kept; with ``overwrite`` it is
    allowed; a path in folders yet to be made is fine (guards against always overwriting, and against
    looking for a folder only one level up)."""
    path = tmp_path / "chat.json"
    path.write_text("kept")
    with pytest.raises(CRSError, match="already exists"):
        check_transcript_path(path)
    check_transcript_path(path, overwrite=True)
    assert path.read_text() == "kept"
    check_transcript_path(tmp_path / "new" / "deeper" / "chat.json")  # folders to create are fine


# ------------------------------------------------------------------------------- the person's answers
def test_a_reply_is_used_once(world: Catalog) -> None:
    """A told reply answers one question; a second question before the next reply is an error (guards
    against answering it with the stale reply)."""
    human = HumanUser(world)
    human.reset(Goal(user=3, targets=()), np.random.default_rng(0))
    human.tell(PersonAnswer(question=None, said="choose", aspects=(2,)))
    assert human.answer([1, 2]) == frozenset({2})
    with pytest.raises(ChatError, match="before a reply was told"):
        human.answer([1, 2])


def test_an_opening_names_one_aspect_and_a_slate_reply_an_item_of_the_slate(world: Catalog) -> None:
    """An opening of two aspects, or a reply taking an item not in the slate, is refused (guards
    against reading the first of two openings and accepting an item never shown)."""
    human = HumanUser(world)
    human.reset(Goal(user=3, targets=()), np.random.default_rng(0))
    human.tell(PersonAnswer(question=None, said="open", aspects=(0, 1)))
    with pytest.raises(ChatError, match="exactly one aspect"):
        human.opening_aspect()
    human.tell(PersonAnswer(question=None, said="accept", item=7))
    with pytest.raises(ChatError, match="not in the slate"):
        human.react([10, 20, 40])


def test_watch_mode_reveals_the_simulated_user_s_active_persona(world: Catalog) -> None:
    """The outcome of a watched chat names the persona the simulated user played (guards against naming
    another persona, e.g. the first)."""
    env = make_env(catalog=world, split="test")
    policy = make_rule_policy("ask-2", build_ranker("popularity", world))
    truth = world.truth
    assert truth is not None
    for seed in (0, 1):
        result = run_chat(env, policy, seed=seed, console=Console(file=io.StringIO()), simulate=True)
        active = int(env.user.active_persona_id)  # type: ignore[attr-defined]
        assert active != 0
        assert result.transcript["outcome"]["active_persona"] == truth.persona_names[active]


def test_no_candidate_count_follows_the_turn_that_ended_the_conversation(world: Catalog) -> None:
    """Rejecting all 14 slates: each of the first 13 is followed by what is left, the last (which
    reaches the turn limit) by the summary alone (guards against a count printed after the end)."""
    policy = make_rule_policy("always-recommend", build_ranker("popularity", world))
    result, text = talk(world, ["jazz"] + ["n"] * 20, policy)
    assert result.ended == "turn limit" and len(result.transcript["turns"]) == 15
    assert text.count("(the 10 shown are ruled out)") == 13


class FirstCategoryAskingPolicy:
    """Asks about category 0 (the enumerated setting), then recommends."""

    def __init__(self, ranker: Any) -> None:
        self.rule = make_rule_policy("always-recommend", ranker)

    def reset(self, rng: np.random.Generator) -> None:
        self.rule.reset(rng)

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        return ask([0]) if env.state.turn == 1 else self.rule.act(env)


def test_a_none_to_the_first_category_records_the_category_and_all_its_aspects_rejected(
    world: Catalog,
) -> None:
    """An enumerated question about category 0 records category 0 and its name; "none" records every
    aspect of the category as rejected, as the env rejects them, in the taxonomy's order (guards
    against a truth test that drops category 0, and against recording only the options shown)."""
    catalog = world_with_categories(world, "swahili")
    assert catalog.taxonomy is not None
    policy = FirstCategoryAskingPolicy(build_ranker("popularity", catalog))
    result, _ = talk(catalog, ["folk", "none", "quit"], policy, setting="enumerated")
    turn = result.transcript["turns"][1]
    assert (turn["action"]["category"], turn["action"]["category_name"]) == (0, "a")
    children = [a for a in range(catalog.n_aspects) if catalog.taxonomy.parent_of[a] == 0]
    assert turn["answer"]["accepted"] == [] and turn["answer"]["rejected"] == children


class FirstItemRecommendingPolicy:
    """Recommends item 0 first, then the next candidates."""

    def reset(self, rng: np.random.Generator) -> None:
        pass

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        others = [int(i) for i in env.state.candidate_items() if i != 0]
        return recommend([0, *others[:2]])


def test_taking_item_0_names_it_in_the_outcome(world: Catalog) -> None:
    """A person who takes item 0 gets its name in the outcome as in the turn (guards against a truth
    test that takes item 0 for none)."""
    opening = world.aspect_names[int(world.aspects_of(0)[0])]
    result, text = talk(world, [opening, "1"], FirstItemRecommendingPolicy())
    outcome = result.transcript["outcome"]
    assert (outcome["accepted_item"], outcome["accepted_item_name"]) == (0, world.item_names[0])
    assert result.transcript["turns"][1]["answer"]["accepted_item_name"] == world.item_names[0]
    assert f"You took {world.item_names[0]} (rank 1)" in text


def test_the_remembered_side_is_the_most_likely_one_with_its_share(world: Catalog, tmp_path: Path) -> None:
    """Before the chat the memory names its most likely persona with that persona's share, "Last time
    your <label of persona 1> side was in charge (70%)." (guards against naming or quoting another
    persona); after a first conversation, which cannot move the belief, not "Last time"."""
    ranker = random_persona_ranker(world, 3)
    memory = ChatMemory.open(tmp_path / "me.json", ranker, world, "random", user_id=None, drawn_user=3)
    prior = np.array([0.2, 0.7, 0.1])
    update = MemoryUpdate(3, prior, np.zeros(3), prior, prior)
    memory.record = MemoryRecord.new(memory.context, 3, prior).after(update, "quit")
    memory.memory.restore(3, prior)
    np.testing.assert_allclose(memory.prior(), prior)
    name = label(ranker, world, 3, 1)
    view = view_of(world, ranker)
    view.remembered(memory)
    first = f"I remember 1 conversation, which I take as your usual self: your {name} side leads (70%)."
    assert first in shown(view) and "Last time" not in shown(view)
    memory.record = memory.record.after(update, "quit")
    view = view_of(world, ranker)
    view.remembered(memory)
    assert f"Last time your {name} side was in charge (70%)." in shown(view)
    assert "remembered from 2 conversations in" in shown(view)


def test_a_person_s_env_keeps_the_persona_slots_and_the_rewards(world: Catalog) -> None:
    """The person plays under the simulated env's persona slots and reward table (guards against
    falling back to the defaults: 4 slots, UNICORN's rewards)."""
    rewards = Rewards(ask_accepted=0.5, ask_rejected=-0.2)
    env = make_env(catalog=world, split="test", n_personas=2, rewards=rewards)
    human = human_env(env)
    assert (human.n_personas, human.rewards) == (2, rewards)


def test_the_memory_panel_names_the_side_now_in_charge_and_the_one_before(
    world: Catalog, tmp_path: Path
) -> None:
    """When the most likely persona changed, the panel names the new one as in charge and the old one
    as the one it was, with labels that differ (guards against naming the old one twice)."""
    ranker = random_persona_ranker(world, 3)
    names = [label(ranker, world, 3, k) for k in range(3)]
    assert names[0] != names[1]
    text = belief_panel(world, tmp_path, [0.5, 0.3, 0.2], [0.2, 0.7, 0.1], 2)
    assert f"Your {names[1]} side is in charge now (it was your {names[0]} side)." in text


def test_every_real_dataset_names_its_items() -> None:
    """MCMIPL's LastFM* called its artists "items" while LastFM*'s were "artists"."""
    from types import SimpleNamespace

    from crs.chat.view import ITEM_NOUNS, ChatView
    from simulators.datasets import REAL_DATASETS

    assert set(ITEM_NOUNS) == set(REAL_DATASETS)
    named = (("mcmipl_lastfm_star", "artists"), ("mcmipl_movie", "movie"), ("persona_world", "items"))
    for name, expected in named:
        view = SimpleNamespace(catalog=SimpleNamespace(name=name))
        assert ChatView.noun(view, singular=expected == "movie") == expected  # type: ignore[arg-type]
