"""What the person typed: reading a line, and turning it into an answer or saying what went wrong.

Each prompt of the chat (`OpeningPrompt`, `BinaryPrompt`, `ChoicePrompt`, `SlatePrompt`) has the text
shown before the cursor, a help text, and `parse`, which turns one typed line into a `Reply`: an
answer to take (`Take`), a hint to show before asking again (`Hint`), the help (`ShowHelp`) or a
numbered list of aspects (`ShowOptions`). Texts are rich markup; showing them is the view's job.
`read_line` handles what every prompt accepts: quit, back, end of input.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.markup import escape

from crs.chat.errors import ChatEndedError, UndoRequestedError
from crs.chat.person import PersonAnswer
from crs.chat.question import Question, candidates_after, pick_rule
from envs.env import ConversationEnv
from simulators.catalog import Catalog

SUGGESTIONS = 10
"""Aspects suggested at the opening (and close spellings listed at most)."""
QUIT_WORDS = frozenset({"quit", "q", "exit", ":q"})
BACK_WORDS = frozenset({"back", "b", "undo"})
HELP_WORDS = frozenset({"help", "h", "?"})
MORE_WORDS = frozenset({"more", "list", "all options"})
YES_WORDS = frozenset({"y", "yes", "yeah", "yep", "sure", "ok"})
NO_WORDS = frozenset({"n", "no", "nope", "nah"})
SKIP_WORDS = frozenset({"s", "skip", "pass", "-", "dunno", "whatever"})
# Not "0": the options are numbered from 1, so a 0 is more likely a slip than a "none".
NONE_WORDS = frozenset({"none", "n", "no", "-", "nothing"})
REJECT_WORDS = frozenset({"n", "no", "none", "r", "reject", "-", "nothing"})
NOT_TEXT = (
    "That line held bytes that are not text in this terminal's encoding "
    "(shown as \N{REPLACEMENT CHARACTER}); type it again."
)
"""The hint for a line that could not be decoded (`terminal_reader` reads such bytes as U+FFFD)."""
YOU = "[bold]you>[/] "
"""The start of every prompt."""

Reader = Callable[[str], str]
"""Reads one line after showing a prompt; raises EOFError at the end of input."""


# ------------------------------------------------------------------------------------ reading
def terminal_reader(console: Console) -> Reader:
    """Read lines from standard input: with line editing on a terminal; from a pipe, line by line,
    echoing each line so the printed dialogue reads as a conversation. Bytes that are not text in
    the input's encoding read as U+FFFD (a strict decoding, e.g. ``PYTHONIOENCODING=utf-8``, would
    end the chat with a traceback and lose its transcript)."""
    if isinstance(sys.stdin, io.TextIOWrapper):
        with contextlib.suppress(ValueError, io.UnsupportedOperation):  # closed, or already read from
            sys.stdin.reconfigure(errors="replace")

    def read(prompt: str) -> str:
        if sys.stdin.isatty():
            try:
                return console.input(prompt)
            except (EOFError, KeyboardInterrupt):
                console.print()  # end the prompt's line before the summary
                raise
        console.print(prompt, end="")
        line = sys.stdin.readline()
        if line == "":
            console.print()
            raise EOFError
        line = line.rstrip("\r\n")
        console.print(escape(line), style="dim", highlight=False, emoji=False)
        return line

    return read


def read_line(read: Reader, prompt: str) -> str:
    """One line from the person, stripped.

    Raises:
        ChatEndedError: The person typed a quit word, or the input ended.
        UndoRequestedError: The person typed a back word.
    """
    try:
        line = read(prompt)
    except EOFError:
        raise ChatEndedError("end of input") from None
    text = line.strip()
    word = text.casefold()
    if word in QUIT_WORDS:
        raise ChatEndedError("quit")
    if word in BACK_WORDS:
        raise UndoRequestedError
    return text


# ------------------------------------------------------------------------------------ replies
@dataclass(frozen=True)
class Take:
    """The line answers the prompt.

    Attributes:
        answer: The answer.
        note: Said (dimmed) before moving on, e.g. "(taking melancholic)"; empty for nothing.
    """

    answer: PersonAnswer
    note: str = ""


@dataclass(frozen=True)
class Hint:
    """The line cannot be taken; `text` (markup) says why, and the prompt is asked again."""

    text: str


@dataclass(frozen=True)
class ShowHelp:
    """The person asked for help: show the prompt's help text and ask again."""


@dataclass(frozen=True)
class ShowOptions:
    """List `aspects` numbered from 1 (after `heading`, when given; with each one's item count when
    `counts`) and ask again."""

    aspects: tuple[int, ...]
    counts: bool = False
    heading: str = ""


Reply = Take | Hint | ShowHelp | ShowOptions


# ------------------------------------------------------------------------------------ prompts
class BinaryPrompt:
    """A yes/no question about one aspect: y, n or skip."""

    prompt = f"{YOU}[dim](y/n/skip)[/] "
    undo_hint = ""

    def __init__(self, question: Question, aspect_name: str) -> None:
        self.question = question
        self.help = (
            f"Answer [bold]y[/] if you want {escape(aspect_name)}, [bold]n[/] if not, [bold]skip[/] "
            "if you don't mind (the recommender then counts it as a no, but keeps those items)."
        )

    def parse(self, text: str) -> Reply:
        word = text.casefold()
        if word in YES_WORDS:
            return Take(PersonAnswer(self.question.key, "yes", (self.question.options[0],)))
        if word in NO_WORDS:
            return Take(PersonAnswer(self.question.key, "no"))
        if word in SKIP_WORDS:
            return Take(PersonAnswer(self.question.key, "skip"))
        if word in HELP_WORDS:
            return ShowHelp()
        return Hint("Type y, n or skip (or help, back, quit).")


class ChoicePrompt:
    """A multiple-choice question: the numbers of every option that fits, or none.

    Args:
        question: The question.
        env: The env before the answer (a choice no candidate fits is refused).
        noun: What the catalogue's items are called, singular ("artist").
    """

    prompt = f"{YOU}[dim](numbers, or none)[/] "
    undo_hint = ""

    def __init__(self, question: Question, env: ConversationEnv, noun: str) -> None:
        self.question = question
        self.env = env
        self.noun = noun
        self.example = "1" if len(question.options) == 1 else f"1 {min(3, len(question.options))}"
        self.help = (
            f"Type the numbers of every option that fits (e.g. [bold]{self.example}[/]), each between 1 and "
            f"{len(question.options)}, [bold]all[/], or [bold]none[/]; [bold]more[/] lists every option "
            f"again. {pick_rule(env, noun).capitalize()}."
        )

    def parse(self, text: str) -> Reply:
        options = self.question.options
        word = text.casefold()
        if word in HELP_WORDS:
            return ShowHelp()
        if word in NONE_WORDS:
            return Take(PersonAnswer(self.question.key, "none"))
        if word in MORE_WORDS:
            return ShowOptions(options)
        if word == "all":
            text = " ".join(str(n) for n in range(1, len(options) + 1))
        parts = [p for p in re.split(r"[\s,;]+", text) if p]
        if not parts or not all(_is_number(p) for p in parts):
            return Hint(f"Type numbers between 1 and {len(options)} (e.g. {self.example}), or none.")
        numbers = sorted({int(p) for p in parts})
        bad = [n for n in numbers if not 1 <= n <= len(options)]
        if bad:
            return Hint(
                f"{', '.join(map(str, bad))}: not on the list; use numbers between 1 and {len(options)}."
            )
        chosen = tuple(options[n - 1] for n in numbers)
        if candidates_after(self.env, chosen, tuple(a for a in options if a not in chosen)) == 0:
            names = ", ".join(escape(self.env.catalog.aspect_names[int(a)]) for a in chosen)
            return Hint(f"No remaining {self.noun} has all of {names}; pick fewer.")
        return Take(PersonAnswer(self.question.key, "choose", tuple(sorted(chosen))))


class SlatePrompt:
    """A slate of recommendations: the number of the item to take, or n for none."""

    undo_hint = ""

    def __init__(self, question: Question) -> None:
        self.question = question
        self.items = question.parsed.items
        n = len(self.items)
        choices = "1 to take it" if n == 1 else f"1-{n} to take one"
        self.prompt = f"{YOU}[dim]({choices}, n for none)[/] "
        if n == 1:
            self.help = "Type [bold]1[/] to take it, or [bold]n[/] to reject it."
            self.hint = "Type 1 to take it, or n to reject it."
        else:
            self.help = f"Type the number (1-{n}) of the one you'd take, or [bold]n[/] to reject them all."
            self.hint = f"Type a number between 1 and {n}, or n to reject them all."

    def parse(self, text: str) -> Reply:
        word = text.casefold()
        if word in HELP_WORDS:
            return ShowHelp()
        if word in REJECT_WORDS:
            return Take(PersonAnswer(self.question.key, "reject"))
        number = word.lstrip("#")
        if _is_number(number) and 1 <= int(number) <= len(self.items):
            return Take(PersonAnswer(self.question.key, "accept", item=int(self.items[int(number) - 1])))
        return Hint(self.hint)


class OpeningPrompt:
    """The opening: one thing the person likes, by name, close spelling or suggestion number.

    Args:
        catalog: The catalogue (aspect names).
        ideas: The suggested aspects, as listed (numbers 1, 2, ... pick them).
        frequency: Items having each aspect, shape (n_aspects,) (orders close matches).
        nouns: What the catalogue's items are called, plural ("artists").
        openable: Which aspects may open, boolean, shape (n_aspects,); default: all. In the enumerated
            setting only those a category lists (the opening names the aspect's category): another
            one typed gets a hint, and close matches list only openable ones.
    """

    prompt = YOU
    undo_hint = "Nothing to undo yet: tell me one thing you like."
    help = (
        "Type the name of something you like (an aspect: a genre, mood, tag ...; close spellings are "
        "fine) or the number of a suggestion."
    )

    def __init__(
        self,
        catalog: Catalog,
        ideas: Sequence[int],
        frequency: np.ndarray,
        nouns: str,
        openable: np.ndarray | None = None,
    ) -> None:
        self.names = catalog.aspect_names
        self.normal = [_normal(name) for name in self.names]
        self.openable = (
            np.ones(len(self.names), dtype=np.bool_)
            if openable is None
            else np.asarray(openable, dtype=np.bool_)
        )
        # Of aspects sharing one name (LastFM* has three tags "80s"), a name or a list means the one
        # that can open and is most common: the person cannot tell the others apart.
        named: dict[str, int] = {}
        for aspect, name in enumerate(self.names):
            best = named.setdefault(name, aspect)
            if (self.openable[aspect], frequency[aspect]) > (self.openable[best], frequency[best]):
                named[name] = aspect
        self.distinct = np.zeros(len(self.names), dtype=np.bool_)
        self.distinct[list(named.values())] = True
        """Whether each aspect is the one its name means (see above)."""
        self.ideas = list(ideas)
        self.frequency = frequency
        self.nouns = nouns
        self.suggestions = list(ideas)
        """What numbers pick now: the ideas, or the close matches last listed."""

    def parse(self, text: str) -> Reply:
        """The reply to `text`; listing close matches makes them the numbered `suggestions`."""
        if text.casefold() in HELP_WORDS:
            return ShowHelp()
        if not text:
            return Hint(f"Type a name (e.g. {escape(self.names[self.ideas[0]])}) or a number from the list.")
        if _is_number(text):
            number = int(text)
            if 1 <= number <= len(self.suggestions):
                return self._take(self.suggestions[number - 1])
            return Hint(f"{number} is not on the list; pick 1-{len(self.suggestions)} or type a name.")
        if re.fullmatch(r"[+-]\d{1,6}", text) and text.casefold() not in {n.casefold() for n in self.names}:
            # a signed number is a number off the list, not the name its digits spell ("-1" read as "1")
            return Hint(f"{text} is not on the list; pick 1-{len(self.suggestions)} or type a name.")
        key = _normal(text)
        if not key:
            return Hint("Type a name made of letters or digits, or a number from the list.")
        named = [a for a, name in enumerate(self.normal) if name == key and self.distinct[a]]
        same = [a for a in named if self.openable[a]]
        # of names that read alike ("trip-hop", "trip hop"), the most common one typed as shown is taken
        # (it would lead the list); another is listed with them, most common first
        if same:
            common = max(same, key=lambda a: self.frequency[a])
            if len(same) == 1 or self.names[common].casefold() == text.casefold():
                return self._take(common)
        matches = self._matches(key, same)
        # what the text names or spells closely but cannot open (enumerated setting: in no category)
        closed = [a for a in named if not self.openable[a]]
        if not closed and not matches:
            closed = [a for a in self._spelled(key) if not self.openable[a]]
        if len(matches) == 1 and not same and not closed:
            return self._take(matches[0], note=f"(taking {escape(self.names[matches[0]])})")
        if not matches and not closed:
            return Hint(
                f"I know nothing called {escape(repr(text))}; try another word or a number from the list."
            )
        no_category = (
            f"{escape(repr(self.names[closed[0]]))} is in no category, and this chat (the enumerated "
            "setting) opens with an aspect of a category"
            if closed
            else ""
        )
        if not matches:
            return Hint(f"{no_category}; type another or a number from the list.")
        self.suggestions = matches
        heading = f"Did you mean one of these? (type its number; {self.nouns} in brackets)"
        if closed:
            heading = f"{no_category}. {heading}"
        return ShowOptions(tuple(matches), counts=True, heading=heading)

    def _matches(self, key: str, same: list[int]) -> list[int]:
        """Openable aspects `key` may mean: same normal name (most common first), close spellings, then
        (for three letters or more) names containing it (most common first); at most `SUGGESTIONS`."""
        same = sorted(same, key=lambda a: -self.frequency[a])
        spelled = [a for a in self._spelled(key) if self.openable[a]]
        matches = list(dict.fromkeys(same + spelled))
        if len(key) >= 3:
            contains = [
                a
                for a, name in enumerate(self.normal)
                if key in name and a not in matches and self.openable[a] and self.distinct[a]
            ]
            contains.sort(key=lambda a: -self.frequency[a])
            matches += contains
        return matches[:SUGGESTIONS]

    def _spelled(self, key: str) -> list[int]:
        """Aspects (one per name) whose normal name is a close spelling of `key`, closest first
        (openable or not)."""
        close = difflib.get_close_matches(key, self.normal, n=8, cutoff=0.75)
        return [a for c in close for a, name in enumerate(self.normal) if name == c and self.distinct[a]]

    def _take(self, aspect: int, note: str = "") -> Take:
        return Take(PersonAnswer(question=None, said="open", aspects=(aspect,)), note)


Prompt = BinaryPrompt | ChoicePrompt | SlatePrompt | OpeningPrompt


def prompt_for(question: Question, env: ConversationEnv, noun: str) -> Prompt:
    """The prompt that reads the person's answer to `question` (`noun`: an item, singular)."""
    if question.is_recommend:
        return SlatePrompt(question)
    if question.is_binary:
        return BinaryPrompt(question, env.catalog.aspect_names[int(question.options[0])])
    return ChoicePrompt(question, env, noun)


def _is_number(text: str) -> bool:
    """Whether `text` is a whole number `int` reads and an option could have: decimal digits (any script,
    not superscripts like '²'), at most 6 of them."""
    return text.isdecimal() and len(text) <= 6


def _normal(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.casefold())
