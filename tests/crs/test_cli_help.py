"""Every command's --help: its description fills the terminal's width, paragraph by paragraph, instead of
keeping the docstring's line breaks (which left ragged half-lines on an 80-column terminal)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from crs.app.settings import MAX_SEED
from crs.cli import app, reflowed

COMMANDS = (["eval"], ["sweep"], ["chat"], ["report"], ["train"], ["pretrain"], ["data", "info"])
WIDTH = 80


def description_lines(output: str) -> list[str]:
    """The lines of a --help output between its usage line and its first panel, edges stripped."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
    end = next(i for i, line in enumerate(lines) if line.lstrip().startswith("╭"))
    return [line[1:].rstrip() for line in lines[start:end]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_each_prose_line_is_as_full_as_the_next_word_allows(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(WIDTH), "TERMINAL_WIDTH": ""})
    assert result.exit_code == 0, result.output
    lines = description_lines(result.output)
    assert len(lines) > 3, result.output
    for line, following in itertools.pairwise(lines):
        if not line or not following or line.startswith(" ") or following.startswith(" "):
            continue  # a paragraph's end, or an example kept as written
        # a greedy wrap breaks a line only where the next word would not fit on it
        assert len(line) + 1 + len(following.split()[0]) > WIDTH - 2, f"{line!r} then {following!r}"


def test_reflowed_joins_prose_lines_and_keeps_indented_ones() -> None:
    doc = """Summary line.

    A paragraph
    over two lines.

    Examples:

      crs eval --policy ask-4
      crs eval --policy ask-7
    """
    assert reflowed(doc) == (
        "Summary line.\n\nA paragraph over two lines.\n\n"
        "Examples:\n\n  crs eval --policy ask-4\n  crs eval --policy ask-7"
    )


def options_panel(output: str) -> list[str]:
    """The lines of a --help output's options panel, the panel's edges stripped."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "─ Options ─" in line) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith("╰"))
    return [line.strip().strip("│").strip() for line in lines[start:end]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_option_name_is_whole_on_an_80_column_terminal(command: list[str]) -> None:
    """A table that is too wide for the terminal cuts its widest cells short ("--no-persona-atten…"):
    a long word in some option's help, or one more column, was enough to hide `crs train`'s option names."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(WIDTH), "TERMINAL_WIDTH": ""})
    assert result.exit_code == 0, result.output
    panel = options_panel(result.output)
    assert not [line for line in panel if "…" in line], result.output
    names = {line.lstrip("* ").split()[0] for line in panel if line.lstrip("* ").startswith("--")}
    click_command = typer.main.get_command(app)
    for word in command:
        click_command = click_command.commands[word]  # type: ignore[attr-defined]
    expected = {max(param.opts, key=len) for param in click_command.params if param.opts[0].startswith("-")}
    assert expected - {"--help"} <= names, result.output


@pytest.mark.parametrize("width", [WIDTH, 70])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_example_keeps_its_line_on_an_80_or_70_column_terminal(command: list[str], width: int) -> None:
    """An example wrapped by the terminal mid-command (at 70 columns, 7 did) no longer pastes as one."""
    click_command = typer.main.get_command(app)
    for word in command:
        click_command = click_command.commands[word]  # type: ignore[attr-defined]
    help_text = (click_command.help or "").replace("\\[", "[")  # rich's escape of a literal [
    examples = [line.strip() for line in help_text.splitlines() if line.startswith(" ")]
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(width), "TERMINAL_WIDTH": ""})
    shown = {line.strip() for line in result.output.splitlines()}
    assert [example for example in examples if example not in shown] == []


def _all_commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every leaf command of the CLI with its name as typed ("eval", "data info")."""
    if hasattr(command, "commands"):  # a group (typer's, which need not be the installed click's)
        return [
            found
            for name, sub in sorted(command.commands.items())
            for found in _all_commands(sub, (*path, name))
        ]
    return [(" ".join(path), command)]


def test_every_seed_option_takes_one_range_and_refuses_a_seed_past_it() -> None:
    """One seed limit everywhere (`MAX_SEED`, what numpy's legacy seeding that SB3 calls takes), shown in
    each --help: guards against a command that accepts a world or seed another command then refuses
    (a world one can chat in but not evaluate)."""
    seeds = [
        (name, param)
        for name, command in _all_commands(typer.main.get_command(app))
        for param in command.params
        if param.name is not None and param.name.endswith("seed")
    ]
    assert {name for name, _ in seeds} >= {
        "chat",
        "data info",
        "data validate",
        "eval",
        "pretrain",
        "report",
        "train",
    }
    for name, param in seeds:
        bounds = (getattr(param, "min", None), getattr(param, "max", None))
        assert bounds == (0, MAX_SEED), (name, param.name)
    result = CliRunner().invoke(app, ["data", "info", "--seed", str(MAX_SEED + 1)])
    assert result.exit_code == 2 and "--seed" in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["eval", "-p", "ask-4", "-p", "ask-7", "-n", "5"],
            "'--policy' / '-p': given twice (-p ask-4, -p ask-7)",
        ),
        (
            ["eval", "-n5", "--policy", "ask-4", "--episodes=6"],
            "'--episodes' / '-n': given twice (-n5, --episodes=6)",
        ),
        (["report", "x", "--persona", "--no-persona"], "'--persona': given twice (--persona, --no-persona)"),
        (
            ["data", "info", "lastfm", "--data-dir", "a", "--data-dir", "b", "--data-dir", "c"],
            "given 3 times",
        ),
    ],
)
def test_an_option_given_twice_is_refused_instead_of_keeping_the_last(args: list[str], said: str) -> None:
    """Click kept the last value in silence: `crs eval -p ask-4 -p ask-7` evaluated ask-7 alone."""
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.replace("│", " ").split()), result.output
    assert "only the last would count: give it once" in " ".join(result.output.replace("│", " ").split())


def test_values_that_look_like_options_and_arguments_after_a_double_dash_are_not_counted() -> None:
    from crs.cli import repeated_options

    eval_params = typer.main.get_command(app).commands["eval"].params  # type: ignore[attr-defined]
    assert repeated_options(eval_params, ["-p", "ask-4", "--out", "-p", "--", "-p", "x"]) == []
    assert repeated_options(eval_params, ["-p", "-n", "-n", "5"]) == []  # -p's value is "-n"
    ((param, given),) = repeated_options(eval_params, ["-p", "-n", "-n", "5", "-p=x"])
    assert (param.name, given) == ("policy", ["-p -n", "-p=x"])


@pytest.mark.parametrize("command", [[], ["data"], *COMMANDS], ids=lambda c: " ".join(c) or "crs")
def test_a_flag_shows_no_type_since_it_takes_no_value(command: list[str]) -> None:
    """typer showed "<bool>" beside every flag (--simulate, --overwrite, --help), and a user who then
    typed `crs chat --simulate false` got "unexpected extra argument (false)"."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100", "TERMINAL_WIDTH": ""})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output and "<bool>" not in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["train", "--workers", "2"], "--workers is a switch and takes no value: leave out '2'"),
        (
            ["eval", "-p", "ask-4", "--overwrite", "yes"],
            "--overwrite is a switch and takes no value: leave out",
        ),
        (["chat", "--simulate", "false"], "--simulate is a switch and takes no value: leave out 'false'"),
    ],
)
def test_a_value_after_a_switch_is_refused_by_the_switchs_name(args: list[str], said: str) -> None:
    """Click said "Got unexpected extra argument(s) (2)", naming no option."""
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 2 and said in result.output, result.output


def test_an_options_value_that_looks_like_a_switch_is_its_value() -> None:
    """`--name --workers 2`: "--workers" is the name given (Click reads it so), and "2" an extra argument,
    which Click refuses itself; the switch is not blamed for it."""
    result = CliRunner().invoke(app, ["train", "--name", "--workers", "2"], env={"COLUMNS": "250"})
    assert result.exit_code == 2 and "unexpected extra argument" in result.output, result.output
    assert "takes no value" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "-n", "2", "-o", ""],
        ["eval", "-n", "2", "--out="],
        ["train", "--runs-dir", "", "--steps", "64"],
        ["chat", "--simulate", "--transcript", ""],
        ["pretrain", "--out", ""],
        ["report", "x", "--out", ""],
    ],
    ids=lambda args: " ".join(args),
)
def test_an_empty_path_is_refused_by_its_option_not_read_as_the_current_folder(
    tmp_path, monkeypatch, args
) -> None:
    """`-o "$OUT"` with OUT unset wrote into (or refused) the current folder, naming "." as the output."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert "an empty path would mean the current folder: name one" in result.output
    assert not list(tmp_path.iterdir())
