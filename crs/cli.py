"""The `crs` command line: one typer app, one sub-command module per job."""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import typer.core

from crs import __version__
from crs.chat_cmd import chat_command
from crs.common import CRSGroup, TypelessFlags
from crs.data_cmd import data_app
from crs.eval_cmd import eval_command
from crs.pretrain_cmd import pretrain_command
from crs.report_cmd import report_command
from crs.sweep_cmd import sweep_command
from crs.train_cmd import train_command
from simulators.datasets import REAL_DATASETS

app = typer.Typer(
    name="crs",
    cls=CRSGroup,
    help=(
        "persona-crs: a conversational recommender trained with RL.\n\n"
        "Every command runs on the embedded persona world by default; pass --data-dir and a dataset "
        f"name ({', '.join(REAL_DATASETS)}) for the real benchmarks."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)


def reflowed(doc: str) -> str:
    """A command's docstring as its --help text: each prose paragraph on one line, so the terminal wraps it
    at its own width (rich keeps a docstring's line breaks); indented lines (examples, configs) as they are.
    """
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(p.split("\n")) for p in paragraphs)


class OnceOptionsCommand(TypelessFlags, typer.core.TyperCommand):
    """A command that refuses an option given more than once, unless it collects values: Click keeps
    the last one in silence (``crs eval -p ask-4 -p ask-7`` evaluated ask-7 alone)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Refuse a repeated option, then parse as Click does."""
        repeated = repeated_options(self.params, args)
        if repeated:
            param, given = repeated[0]
            times = "twice" if len(given) == 2 else f"{len(given)} times"
            raise typer.BadParameter(
                f"given {times} ({', '.join(given)}), and only the last would count: give it once",
                ctx=ctx,
                param=param,
            )
        if not any(isinstance(param, typer.core.TyperArgument) for param in self.params):
            _refuse_a_value_after_a_flag(self.params, ctx, args)
        _refuse_an_empty_path(self.params, ctx, args)
        return super().parse_args(ctx, args)


def _options(params: list[Any], keep: Callable[[Any], bool]) -> dict[str, Any]:
    """Each way of typing an option of `params` that `keep` accepts ("-o", "--out", "--no-x") -> it."""
    return {
        opt: param
        for param in params
        if isinstance(param, typer.core.TyperOption) and keep(param)
        for opt in (*param.opts, *param.secondary_opts)
    }


def _takes_a_path(param: Any) -> bool:
    """Whether a typer option reads a path (typer's own type descriptor, else Click's `Path` type)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation is Path or Path in typing.get_args(descriptor.annotation)
    return type(getattr(param, "type", None)).__name__ == "Path"


def _refuse_an_empty_path(params: list[Any], ctx: Any, args: list[str]) -> None:
    """An empty path (``-o ""``, e.g. an unset ``-o "$OUT"``) reads as the current folder: refuse it by
    the option's name instead."""
    options = _options(params, _takes_a_path)
    for index, token in enumerate(args):
        if token == "--":
            return
        option, equals, inline = token.partition("=")
        empty = inline == "" if equals else index + 1 < len(args) and args[index + 1] == ""
        if option in options and empty:
            raise typer.BadParameter(
                "an empty path would mean the current folder: name one (. for the current folder)",
                ctx=ctx,
                param=options[option],
            )


def _refuse_a_value_after_a_flag(params: list[Any], ctx: Any, args: list[str]) -> None:
    """In a command that takes no arguments, a value right after a flag was meant for it (``crs train
    --workers 2``): refuse it by the flag's name, where Click said "Got unexpected extra argument(s) (2)".
    """
    options = _options(params, lambda param: True)
    index = 0
    while index < len(args) - 1:
        token, following = args[index], args[index + 1]
        param = options.get(token)
        if token == "--":
            return
        if param is not None and param.is_flag and not following.startswith("-"):
            raise typer.BadParameter(
                f"{token} is a switch and takes no value: leave out {following!r} (see --help)",
                ctx=ctx,
                param=param,
            )
        index += 2 if param is not None and not param.is_flag else 1  # skip an option's value


def repeated_options(params: list[Any], args: list[str]) -> list[tuple[Any, list[str]]]:
    """The single-value options of `params` that `args` gives more than once, each with its tokens as
    typed (``--name value``, ``--name=value``, ``-nvalue`` or a flag), in the order of `params`."""
    owner = _options(params, lambda param: not param.multiple and not param.count)
    given: dict[str, list[str]] = {}
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--":  # the rest are arguments
            break
        if token.startswith("--") and "=" in token:
            opt, inline = token.split("=", 1)[0], True
        elif not token.startswith("--") and token[:2] in owner and len(token) > 2:
            opt, inline = token[:2], True  # -n30
        else:
            opt, inline = token, False
        param = owner.get(opt)
        if param is None:
            continue
        if inline or param.is_flag or index >= len(args):
            given.setdefault(param.name, []).append(token)
        else:
            given.setdefault(param.name, []).append(f"{token} {args[index]}")
            index += 1  # its value, whatever it looks like
    return [(param, given[param.name]) for param in params if len(given.get(param.name, [])) > 1]


app.add_typer(data_app, name="data")
app.command("eval")(eval_command)
app.command("sweep")(sweep_command)
app.command("chat")(chat_command)
app.command("report")(report_command)
app.command("train")(train_command)
app.command("pretrain")(pretrain_command)
for _command in (*app.registered_commands, *data_app.registered_commands):
    if _command.cls in (None, typer.core.TyperCommand):
        _command.cls = OnceOptionsCommand
    if _command.help is None and _command.callback is not None and _command.callback.__doc__:
        _command.help = reflowed(_command.callback.__doc__)


def _version(value: bool | None) -> None:
    if value:
        typer.echo(f"persona-crs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool | None = typer.Option(
        None, "--version", callback=_version, is_eager=True, metavar="", help="Show the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", metavar="", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
