"""What every command shares: the console, error reporting, dataset and ranker options."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crs.app.settings import MAX_SEED, check_world_seed  # noqa: F401 (for the commands)
from crs.yaml_safe import safe_load_unique
from envs.metrics import MetricSummary
from envs.setting import check_setting
from policies.atomic import write_json_atomic  # noqa: F401 (re-exported for the commands)
from simulators.datasets import DATA_DIR_ENV, PERSONA_WORLD, REAL_DATASETS
from simulators.errors import CRSError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DATASET_HELP = f"Dataset: persona_world (default, embedded), {', '.join(REAL_DATASETS)}."
DATA_DIR_HELP = (
    "Folder holding the SCPR/UNICORN data (lastfm/, lastfm_star/, yelp_star/) and MCMIPL's (mcmipl/); "
    "default $CRS_DATA_DIR."
)

SETTING_HELP = (
    "Question setting: binary (one aspect per question; UNICORN's LastFM, LastFM*, Yelp*), enumerated "
    "(a category per question; UNICORN's YELP, Yelp* only) or multiple_choice (several aspects and "
    "persona probes; MCMIPL). Default: multiple_choice on the persona world, binary on real data "
    "(a trained run: its own)."
)


def _known_setting(value: str | None) -> str | None:
    """`--setting` checked when it is parsed, in one wording for every command (`envs.setting`)."""
    try:
        return None if value is None else check_setting(value)
    except CRSError as error:
        raise typer.BadParameter(str(error)) from None


SettingOption = Annotated[str | None, typer.Option("--setting", help=SETTING_HELP, callback=_known_setting)]
WorldSeedOption = Annotated[
    int | None,
    typer.Option("--world-seed", min=0, max=MAX_SEED, help="Seed of the persona world (persona_world only)."),
]


# options `crs eval` and `crs chat` share (a policy acting in one dataset's conversations)
PolicyOption = Annotated[
    str,
    typer.Option(
        "--policy",
        "-p",
        help=(
            "random, always-recommend, ask-N, ask-until-K, max-entropy, abs-greedy, lookahead-D, "
            "lookahead-DxQ or lookahead-DxQtT (binary setting; T: the belief's temperature), "
            "probe-K-ask-N (multiple-choice setting, persona ranker), or a trained run dir."
        ),
    ),
]
# `crs eval` and `crs chat`: a trained run brings its dataset (`crs.app.evaluation.run_catalogue`)
DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help=f"Dataset: persona_world (embedded), {', '.join(REAL_DATASETS)}. Default: a trained run's own "
        "(--policy runs/NAME; its data folder and world seed too), else persona_world.",
    ),
]
DataDirOption = Annotated[str | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]
RankerOption = Annotated[
    str | None,
    typer.Option(
        "--ranker",
        help="transe (lastfm), popularity, uniform (no preferences: the dialogue alone), or a `crs "
        "pretrain` artifact dir (persona x aspect explanations); uniform or an artifact followed by "
        "+profile adds each user's tag profile (how much an item's aspects look like their history; "
        "+profile:W weighs it W, default 0.1); then +pop adds an item popularity prior (+pop:W, "
        "default 0.01); then +open the binary opening's likelihood, favouring items with fewer aspects "
        "(+open:W, default 0.005); "
        "then +split asks the question that halves the consistent candidates (e.g. "
        "uniform+pop+split; +split:T weighs them by softmax(scores / T) first); a final @T "
        "divides an artifact's learned preferences by T (e.g. DIR+split@4). Default: transe on lastfm, "
        "popularity elsewhere.",
    ),
]


def friendly_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Turn the project's typed errors, and the system's (a full disk, a denied permission), into a
    one-line red message and exit code 2 (no traceback)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (CRSError, OSError) as error:
            message = str(error)
            if isinstance(error, OSError) and error.strerror:
                message = error.strerror + (f": {error.filename}" if error.filename else "")
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def format_metric(summary: MetricSummary, digits: int = 3) -> str:
    """'0.682 [0.645, 0.719]'."""
    return f"{summary.mean:.{digits}f} [{summary.low:.{digits}f}, {summary.high:.{digits}f}]"


METRIC_ORDER = ("SR@5", "SR@10", "SR@15", "AT", "hDCG")

EXIT_INTERRUPTED = 130
"""Exit status of a command interrupted by Ctrl-C (SIGINT): 128 + 2, as a shell reports it."""
EXIT_TERMINATED = 128 + int(signal.SIGTERM)
"""Exit status of a command ended by SIGTERM (`kill`, `timeout`, a job scheduler): 143 on Linux."""


class TerminatedError(KeyboardInterrupt):
    """SIGTERM inside `say_when_interrupted`: a `KeyboardInterrupt`, so that it unwinds as Ctrl-C does
    (locks released, partial output removed)."""


_sigterm_seen = threading.Event()
"""Set by SIGTERM inside `terminate_as_interrupt`: Ray's waits turn any `KeyboardInterrupt` a signal
handler raises into a plain one, so `stopped` cannot tell SIGTERM by the exception alone."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    _sigterm_seen.set()
    raise TerminatedError


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that `error` was raised while handling, if any: a writer whose own
    cleanup fails as an interrupt unwinds it (torch's zip writer stopped mid-record finds its file
    shorter than it expected) raises its own error in the interrupt's place."""
    seen: set[int] = set()
    cause: BaseException | None = error
    # an exit raised on purpose (`raise typer.Exit(143) from None` after saying so) is no such error
    while cause is not None and not cause.__suppress_context__ and id(cause) not in seen:
        seen.add(id(cause))
        cause = cause.__context__
        if isinstance(cause, KeyboardInterrupt):
            return cause
    return None


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises `TerminatedError` (a `KeyboardInterrupt`), so that it unwinds as
    Ctrl-C does; only in the main thread, and not where it was ignored (``nohup``-like launchers).

    An error raised while an interrupt unwinds (`interrupt_behind`) leaves the block as that interrupt,
    so a command stopped mid-write still says what it keeps and exits as stopped, not with a traceback.
    """
    previous = None
    _sigterm_seen.clear()
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        if previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    except Exception as error:
        stop = None if isinstance(error, typer.Exit) else interrupt_behind(error)
        if stop is None:
            raise
        logger.debug("stopping raised %s: %s", type(error).__name__, error)
        raise stop from None
    finally:
        if previous is not None and previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, previous)


def stopped(stop: KeyboardInterrupt) -> tuple[str, int]:
    """How a command stopped by `stop` says so ("interrupted" or "terminated") and its exit status."""
    if isinstance(stop, TerminatedError) or _sigterm_seen.is_set():
        return "terminated", EXIT_TERMINATED
    return "interrupted", EXIT_INTERRUPTED


@contextlib.contextmanager
def say_when_interrupted(left: str) -> Iterator[None]:
    """Turn Ctrl-C, or SIGTERM (`terminate_as_interrupt`), inside the block into the line "interrupted:
    `left`" (or "terminated: `left`"; `left` says what the command leaves) and the shell's exit status
    of that signal."""
    with terminate_as_interrupt():
        try:
            yield
        except KeyboardInterrupt as stop:
            word, status = stopped(stop)
            console.print(f"[yellow]{word}[/]: {left}")
            raise typer.Exit(status) from None


def nothing_written(what: str, out: Path, mark: str) -> str:
    """What a command that moves its output in whole leaves when stopped (for `say_when_interrupted`):
    nothing, and the earlier output in `out` (the folder holds `mark`) as it was, when there is one."""
    left = f"no {what} was written (one is moved in only once whole)"
    return f"{left}; the earlier one in {out} is kept" if (out / mark).is_file() else left


def metrics_table(title: str, rows: Mapping[str, Mapping[str, MetricSummary]]) -> Table:
    """A rich table: one row per policy, SR@5/10/15, AT and hDCG, each mean above its 95% CI (so the
    table stays readable in an 80-column terminal)."""
    table = Table(  # titles and labels carry names read from files: escaped, never markup
        title=escape(title), title_justify="left", caption="mean above its [95% CI]", caption_justify="left"
    )
    table.add_column("policy", style="bold", overflow="fold")
    for name in METRIC_ORDER:
        table.add_column(name, justify="right", no_wrap=True)
    for policy, metrics in rows.items():
        cells = []
        for name in METRIC_ORDER:
            digits = 2 if name == "AT" else 3
            m = metrics[name]
            cells.append(f"{m.mean:.{digits}f}\n[{m.low:.{digits}f},\n{m.high:.{digits}f}]")
        table.add_row(escape(policy), *cells)
    return table


def read_settings_file(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file holding a mapping.

    Args:
        path: The file.
        what: What the file is, for messages ("config file", "sweep config").

    Raises:
        CRSError: Missing file, unknown suffix, unparsable text, or not a mapping.
    """
    if path.is_dir():
        raise CRSError(f"{what} {path} is a folder; pass a .yaml, .yml or .toml file")
    if not path.is_file():
        raise CRSError(f"{what} {path} not found; pass a .yaml, .yml or .toml file")
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = safe_load_unique(text) or {}
        else:
            raise CRSError(f"{what} {path}: unknown suffix {path.suffix!r}; use .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise CRSError(f"{what} {path} is not valid {path.suffix[1:].upper()}: {error}") from None
    if not isinstance(data, dict):
        raise CRSError(f"{what} {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def note_unread_data_dir(data_dir: str | None, dataset: str) -> None:
    """Say that ``--data-dir`` goes unread on the persona world (embedded): a real dataset left out of
    the command line is the likely slip."""
    if data_dir is not None and dataset == PERSONA_WORLD:
        console.print(
            f"[yellow]note:[/] --data-dir is not read: {PERSONA_WORLD} is embedded (name a real dataset "
            "with -d to read the folder)",
            highlight=False,
        )


def data_dir_input(data_dir: str | None, dataset: str | None = None) -> Path | None:
    """The real-data folder a command reads (`data_dir`, else ``$CRS_DATA_DIR``), or None. The persona
    world (`dataset`; None: any) reads none: ``$CRS_DATA_DIR``, set for every command, is not its input,
    while a folder named as its ``--data-dir`` is still kept from its outputs."""
    chosen = data_dir or ("" if dataset == PERSONA_WORLD else os.environ.get(DATA_DIR_ENV, ""))
    return Path(chosen).expanduser() if chosen else None


class TypelessFlags:
    """For typer's commands and groups: --help shows no type for a flag, which takes no value (typer
    showed ``<bool>``, and ``crs chat --simulate false`` then failed on the "false")."""

    def get_params(self, ctx: Any) -> list[Any]:
        """Click's parameters (--help and typer's completion flags included), flags shown untyped."""
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class CRSGroup(TypelessFlags, typer.core.TyperGroup):
    """The `crs` command groups (`TypelessFlags`)."""
