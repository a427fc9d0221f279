"""How the chat looks in the terminal: panels, turn headers, questions, slates with their explanations,
hints and the closing summary, drawn with rich."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from crs.chat.memory import ChatMemory, MemoryChange
from crs.chat.question import Question, candidates_after, pick_rule, rejection_effect
from crs.chat.replies import ShowOptions
from crs.chat.transcript import accepted_item
from crs.explain import Explainer, Explanation, side_segments
from envs.actions import ActionKind
from envs.env import ConversationEnv
from envs.ranker import DialogueFacts

OPTIONS_SHOWN = 30
"""Options of a multiple-choice question listed at first (the rest on `more`)."""
TAGS_SHOWN = 3
"""Aspects of an item shown in a recommendation table."""
PERSONAS_SHOWN = 3
"""Personas listed in the memory's belief change at the end of a chat (the most likely after it)."""
RECOMMENDER = "[bold cyan]Recommender:[/]"
USER = "[bold]User:[/]"


# an answer taken back with `back`, in a person's words (the transcript's "said" values)
UNDONE_WORDS = {
    "yes": 'your "yes"',
    "no": 'your "no"',
    "skip": 'your "skip"',
    "none": 'your "none"',
    "choose": "your choice",
    "reject": 'your "none of these" to the slate',
}
ITEM_NOUNS: dict[str, tuple[str, str]] = {
    "lastfm": ("artist", "artists"),
    "lastfm_star": ("artist", "artists"),
    "mcmipl_lastfm_star": ("artist", "artists"),
    "yelp_star": ("business", "businesses"),
    "mcmipl_yelp_star": ("business", "businesses"),
    "mcmipl_movie": ("movie", "movies"),
}
"""What each dataset's items are called (singular, plural); "item(s)" elsewhere."""


class ChatView:
    """Draws one conversation on a console.

    Args:
        console: Where to draw.
        env: The conversation's env (its catalogue, rules and current state are shown).
        explainer: Persona labels, user histories and aspect frequencies.
    """

    def __init__(self, console: Console, env: ConversationEnv, explainer: Explainer) -> None:
        self.console = console
        self.env = env
        self.catalog = env.catalog
        self.explainer = explainer

    # ------------------------------------------------------------------------------- words
    def noun(self, singular: bool = False) -> str:
        """What the catalogue's items are called: "artists" (LastFM's, MCMIPL's LastFM* too),
        "businesses" (Yelp*'s), "movies" (MCMIPL's MovieLens) or "items"."""
        one, many = ITEM_NOUNS.get(self.catalog.name, ("item", "items"))
        return one if singular else many

    def count(self, n: int, one: str = "", many: str = "") -> str:
        """'1 item has' / '5 items have' (the verb only when given)."""
        verb = (one if n == 1 else many) if one or many else ""
        return f"{n} {self.noun(singular=n == 1)}" + (f" {verb}" if verb else "")

    def aspect(self, aspect: int) -> str:
        return self.catalog.aspect_names[int(aspect)]

    # ------------------------------------------------------------------------------- openings
    def intro(self, user: int, policy: str, personal_commands: Sequence[str] | None = None) -> None:
        """The panel a person reads first: who they play, what the recommender knows, the commands,
        and, when items are ranked by popularity, that they are not personal and how to get
        personal ones.

        Args:
            user: The user the person plays.
            policy: The policy's name.
            personal_commands: Commands that give personal recommendations (pre-train a ranker, chat
                with it); shown when the ranking is by popularity.
        """
        history = self.explainer.history(user)
        liked = ", ".join(escape(self.catalog.item_names[int(i)]) for i in history[:5])
        more = f" and {history.size - 5} more" if history.size > 5 else ""
        by_popularity = self.explainer.by_popularity
        knows = "has their history (for ideas to start with)" if by_popularity else "knows their history"
        lines = [
            f"You play user [bold]{user}[/] of [bold]{escape(self.catalog.name)}[/]; the recommender "
            f"([bold]{escape(policy)}[/]) {knows}" + (f": {liked}{more}." if liked else "."),
            f"After your opening (turn 1) it may take {self.env.max_turns - 1} turns, up to turn "
            f"{self.env.max_turns}. Commands at any prompt: "
            "[bold]help[/], [bold]back[/] (undo your last answer), [bold]quit[/].",
        ]
        if by_popularity:
            lines.append(
                f"[yellow]Recommendations are popularity-based, not personal:[/] your answers narrow the "
                f"{self.noun()}, and the most popular of those left come first, the same for everyone."
            )
            if personal_commands:
                lines.append("For personal ones, pre-train a ranker and chat with it:")
                lines += [f"  [bold]{escape(command)}[/]" for command in personal_commands]
        self.console.print(Panel("\n".join(lines), title="crs chat", expand=False))

    def ask_opening(self, ideas: Sequence[int]) -> None:
        self.console.print(
            f"{RECOMMENDER} Tell me one thing you like. Some ideas ({self.noun()} in brackets):"
        )
        self.numbered(ideas, counts=True)

    def opened(self, aspect: int) -> None:
        """How many candidates the person's opening leaves."""
        self.console.print(
            f"[dim]{self.count(self.env.state.n_candidates, 'has', 'have')} {escape(self.aspect(aspect))}.[/]"
        )

    def watch_intro(self, user: int, policy: str) -> None:
        """The panel of watch mode."""
        self.console.print(
            Panel(
                f"Watching user {user} of {escape(self.catalog.name)} (simulated) talk to "
                f"{escape(policy)}. Its target is hidden until the end.",
                title="crs chat --simulate",
                expand=False,
            )
        )

    def watch_opening(self, opening: int) -> None:
        """The simulated user's opening and the candidates it leaves."""
        self.console.print(f"{USER} I'd like something with [bold]{escape(self.aspect(opening))}[/].")
        self.console.print(f"[dim]{self.count(self.env.state.n_candidates, 'has', 'have')} it.[/]")

    # ------------------------------------------------------------------------------- memory
    def persona(self, user: int, k: int) -> str:
        """The label of `user`'s persona slot `k`, as the chat's explanations name it ("calm & steady")."""
        empty = np.zeros(0, dtype=np.int64)
        return self.explainer.persona_label(DialogueFacts(user, empty, empty, empty), k)

    def remembered(self, memory: ChatMemory, watched: bool = False) -> None:
        """What the recommender believes about the person before the chat: "Last time your calm & steady
        side was in charge (62%).", or that it remembers nothing yet (a new memory file)."""
        path = escape(str(memory.path))
        if memory.record is None or memory.conversations == 0:
            who = f"user {memory.user}" if watched else "you"
            self.console.print(
                f"{RECOMMENDER} I don't remember {who} yet; I start from "
                f"{'their' if watched else 'your'} history. [dim](new memory: {path})[/]"
            )
            return
        prior = memory.prior()
        k = int(np.argmax(prior))
        whose = f"user {memory.user}'s" if watched else "your"
        side = f"{whose} [italic]{escape(self.persona(memory.user, k))}[/] side"
        if memory.conversations == 1:  # a first conversation cannot move the belief (`policies.memory`)
            self.console.print(
                f"{RECOMMENDER} I remember 1 conversation, which I take as {whose} usual self: {side} leads "
                f"({prior[k]:.0%}). [dim](remembered in {path}; delete it to forget)[/]"
            )
            return
        self.console.print(
            f"{RECOMMENDER} Last time {side} was in charge ({prior[k]:.0%}). [dim](remembered from "
            f"{memory.conversations} conversations in {path}; delete it to forget)[/]"
        )

    def belief_change(self, change: MemoryChange, watched: bool = False) -> None:
        """How the chat changed the memory's belief: the most likely personas before → after, and
        whether the one in charge changed."""
        user, before, after = change.record.user, change.before, change.after
        order = np.argsort(-after, kind="stable")
        table = Table.grid(padding=(0, 2))
        table.add_column()
        table.add_column(justify="right")
        table.add_column()
        for k in order[:PERSONAS_SHOWN]:
            shown = f"{before[k]:.0%}", f"{after[k]:.0%}"
            # an arrow only where the shown percentages differ ("40% → 40% ▲" would read as a contradiction)
            moved = "[green]▲[/]" if after[k] > before[k] else "[red]▼[/]"
            arrow = "[dim]=[/]" if shown[0] == shown[1] else moved
            table.add_row(f"[italic]{escape(self.persona(user, int(k)))}[/]", " → ".join(shown), arrow)
        hidden = len(order) - PERSONAS_SHOWN
        if hidden > 0:
            table.add_row(f"[dim]+{hidden} more[/]", "", "")
        was, now = int(np.argmax(before)), int(order[0])
        whose = f"User {user}'s" if watched else "Your"
        label = f"[italic]{escape(self.persona(user, now))}[/]"
        lead = (
            f"{whose} {label} side is still in charge."
            if was == now
            else f"{whose} {label} side is in charge now "
            f"(it was {'their' if watched else 'your'} [italic]{escape(self.persona(user, was))}[/] side)."
        )
        home = change.update.home
        conversations = change.record.conversations
        if home is not None:  # the filter's home state: the pre-trained mixture of sides still holds
            mix = "their" if watched else "your"
            lead += f" I am {home:.0%} sure {mix} usual mix of sides still holds."
            if conversations == 1:  # the first is had at home for sure: what was said cannot move it
                said = "they said" if watched else "you said"
                lead += (
                    f" A first conversation is taken as {mix} usual self, so what {said} does not move "
                    "the belief yet: the sides above shift only by the chance of a change by the next "
                    f"conversation. From the next conversation on, what {said} counts."
                )
        times = "1 conversation" if conversations == 1 else f"{conversations} conversations"
        saved = f"[dim]Saved to {escape(str(change.path))} ({times} remembered; delete it to forget).[/]"
        self.console.print(
            Panel(
                Group("What I believe now, before → after this conversation:", table, lead, saved),
                title="memory",
                expand=False,
            )
        )

    def nothing_remembered(self, memory: ChatMemory) -> None:
        """The chat ended before the person said anything: the memory is left as it was."""
        state = "is unchanged" if memory.path.exists() else "was not written"
        self.console.print(f"[dim]Nothing to remember: {escape(str(memory.path))} {state}.[/]")

    # ------------------------------------------------------------------------------- a turn
    def question(self, question: Question, explanations: list[Explanation]) -> None:
        """The turn's header and what the recommender asks (or recommends, with explanations)."""
        state = self.env.state
        self.console.rule(f"turn {state.turn + 1} of {self.env.max_turns}", style="dim")
        if question.is_recommend:
            one = len(question.parsed.items) == 1
            self.console.print(f"{RECOMMENDER} How about {'this one' if one else 'one of these'}?")
            self.console.print(self._slate_table(question.parsed.items, explanations))
        elif question.is_binary:
            aspect = question.options[0]
            having = candidates_after(self.env, [aspect])
            share = (
                f"{having} of the {self.count(state.n_candidates)} left {'has' if having == 1 else 'have'} it"
            )
            self.console.print(
                f"{RECOMMENDER} Do you want [bold]{escape(self.aspect(aspect))}[/]? [dim]({share})[/]"
                + self._probed_side(question)
            )
        else:
            self._choices(question)

    def _probed_side(self, question: Question) -> str:
        """What a probe of a labelled persona asks about (also one that came down to a single aspect,
        shown as a yes/no question), else "": " (about your X & Y side: these mark it most among the
        items left)". The label names the side by the person's history, the options by the items left,
        so the words say how they relate (they read as unrelated), and an answer that turned down a
        label's aspect is said, as in the explanations (`side_segments`)."""
        parsed = question.parsed
        if parsed.kind is not ActionKind.PROBE or parsed.persona is None or not self.explainer.has_personas:
            return ""
        facts = self.env.state.facts()
        declined = [self.aspect(a) for a in self.explainer.declined(facts, parsed.persona)]
        label = self.explainer.persona_label(facts, parsed.persona)
        side = escape("".join(text for text, _ in side_segments(label, declined)))
        these = "this marks" if len(question.options) == 1 else "these mark"
        return f" [dim](about {side}: {these} it most among the {self.noun()} left)[/]"

    def _choices(self, question: Question) -> None:
        if question.category is not None:
            taxonomy = self.catalog.taxonomy
            assert taxonomy is not None
            topic = escape(taxonomy.parent_names[question.category])
            self.console.print(f"{RECOMMENDER} About [bold]{topic}[/]: which of these fits you today?")
        else:
            self.console.print(f"{RECOMMENDER} Which of these fits you today?{self._probed_side(question)}")
        self.numbered(question.options, OPTIONS_SHOWN)
        notes = []
        if len(question.options) > OPTIONS_SHOWN:
            notes.append(
                f"{len(question.options) - OPTIONS_SHOWN} rarer ones not shown: "
                "type [bold]more[/] to list all"
            )
        if question.hidden:
            notes.append(f"{question.hidden} left out that no remaining {self.noun(singular=True)} has")
        if notes:
            self.console.print(f"[dim]({'; '.join(notes)})[/]")
        # what several picks mean: the persona world's rule keeps items having all, MCMIPL's having any
        self.console.print(
            f"[dim](pick every one that fits: {pick_rule(self.env, self.noun(singular=True))})[/]"
        )

    def numbered(self, aspects: Sequence[int], limit: int | None = None, counts: bool = False) -> None:
        """Print `aspects` numbered from 1, in columns; only the first `limit` when given; with
        `counts`, each with the number of items having it."""
        shown = aspects if limit is None else aspects[:limit]
        cells = [
            f"[bold]{n:>3}[/] {escape(self.aspect(a))}"
            + (f" [dim]({int(self.explainer.aspect_frequency[a])})[/]" if counts else "")
            for n, a in enumerate(shown, start=1)
        ]
        if len(cells) <= 6:
            for cell in cells:
                self.console.print(cell)
            return
        table = Table.grid(padding=(0, 3))
        columns = 3 if len(cells) > 12 else 2
        for _ in range(columns):
            table.add_column()
        rows = -(-len(cells) // columns)
        for r in range(rows):
            table.add_row(*(cells[c * rows + r] if c * rows + r < len(cells) else "" for c in range(columns)))
        self.console.print(table)

    def _tags(self, item: int, said: set[int], refused: set[int]) -> str:
        """The item's aspects the person said no to (a "no" rules nothing out, so a slate item can have
        them: hiding them made it look clean), then a few it has that the dialogue has not settled
        (every candidate has the accepted ones), best known first, e.g. "rock (you said no); soul,
        trumpet, calm +3" (plain text)."""
        own = self.catalog.aspects_of(item)
        refusals = ", ".join(self.aspect(int(a)) for a in own if int(a) in refused)
        open_ = own[~np.isin(own, np.fromiter(said, dtype=np.int64, count=len(said)))]
        order = open_[np.argsort(-self.explainer.aspect_frequency[open_], kind="stable")]
        chosen = [self.aspect(int(a)) for a in order[:TAGS_SHOWN]]
        extra = order.size - len(chosen)
        others = ", ".join(chosen) + (f" +{extra}" if extra > 0 else "")
        return "; ".join(part for part in (refusals and f"{refusals} (you said no)", others) if part)

    def _slate_table(self, items: Sequence[int], explanations: list[Explanation]) -> Table:
        """The slate as a table: number, name (and a few other tags), explanation. Cells are built
        as `Text` (no markup parsing: it halves the time rich needs for the table)."""
        facts = self.env.state.facts()
        refused = set(facts.rejected.tolist())
        said = set(facts.accepted.tolist()) | refused
        table = Table(show_edge=False, pad_edge=False, expand=False)
        table.add_column("#", justify="right", style="bold", no_wrap=True)
        table.add_column(Text.assemble(self.noun(singular=True), (" (other tags)", "dim")))
        table.add_column("why")
        for n, (item, why) in enumerate(zip(items, explanations, strict=True), start=1):
            tags = self._tags(item, said, refused)
            name = Text(self.catalog.item_names[item], style="bold")
            if tags:
                name.append("\n" + tags, style="dim")
            table.add_row(str(n), name, Text.assemble(*why.segments(self.catalog)))
        return table

    def simulated_reply(self, question: Question, info: dict[str, Any]) -> None:
        """What the simulated user answered (watch mode)."""
        if question.is_recommend:
            item = accepted_item(info)
            if item is None:
                self.console.print(f"{USER} None of these.")
            else:
                name = escape(self.catalog.item_names[item])
                self.console.print(f"{USER} I'll take #{info['rank']}, [bold green]{name}[/]!")
            return
        accepted = [self.aspect(a) for a in info["answer"]]
        if question.is_binary:
            self.console.print(f"{USER} {'Yes.' if accepted else 'No.'}")
        else:
            said = ", ".join(escape(a) for a in accepted) if accepted else "none of these"
            self.console.print(f"{USER} {said}.")

    def left(self, question: Question, info: dict[str, Any] | None, before: int, said: str) -> None:
        """How many candidates are left and why (unless the conversation is over), e.g. "23 items
        left (of 340: only those with blues)" or "340 items left (a 'no' rules nothing out; those
        with nineties are ranked lower)".

        Args:
            question: What the recommender asked.
            info: The env's info of the step.
            before: Candidates before the answer.
            said: The answer in a person's words ("yes", "no", "skip", "none", "choose", "reject").
        """
        after = self.env.state.n_candidates
        # an answer that leaves none ends the conversation: still say which answer did
        if info is None or (self.env.done and after) or (question.is_recommend and info["success"]):
            return
        why = (
            self._slate_left(question, before, after)
            if question.is_recommend
            else self._answer_left(question, info, before, after, said)
        )
        self.console.print(f"[dim]{self.count(after)} left ({why}).[/]")

    def _slate_left(self, question: Question, before: int, after: int) -> str:
        gone = before - after
        if gone:
            shown = len(question.parsed.items)
            return (
                ("the one shown is ruled out" if shown == 1 else f"the {shown} shown are ruled out")
                if gone == shown
                else f"{gone} of those shown are ruled out"
            )
        # MCMIPL's rule (the only one that keeps a rejected slate): they stay, and may be shown again
        kept = f"with {self.env.slate_size} or fewer left, MCMIPL's rule keeps the ones shown"
        if set(self.env.state.candidate_items().tolist()) <= set(question.parsed.items):
            return f"{kept}; nothing else is left, so they can only be shown again"
        return kept

    def _answer_left(
        self, question: Question, info: dict[str, Any], before: int, after: int, said: str
    ) -> str:
        accepted = [self.aspect(a) for a in info["answer"]]
        rejected = [int(a) for a in info["rejected"]]
        names = _listed([self.aspect(a) for a in rejected], "or")
        rule = self.env.candidate_rule
        if rule == "mcmipl":  # accepted values keep their items, rejected ones drop theirs
            if after == before:
                state = self.env.state
                kept = state.candidates & ~state.items_with_any(tuple(rejected))
                if info["answer"]:
                    kept &= state.items_with_any(tuple(int(a) for a in info["answer"]))
                if kept.any():
                    return "nothing ruled out"
                return "nothing ruled out: no item left fits the answer, so this rule keeps them all"
            kept = f"only those with {_listed(accepted, 'or')}" if accepted else ""
            dropped = (
                (f", without {names}" if accepted else f"those with {names} are ruled out")
                if rejected
                else ""
            )
            return f"of {before}: {kept}{dropped}"
        parts = []
        if accepted:
            joined = _listed(accepted, "and" if rule == "all" else "or")
            parts.append(f"of {before}: only those with {joined}" if after < before else f"all have {joined}")
        elif question.is_binary:
            word = "a 'skip' counts as a 'no', which" if said == "skip" else "a 'no'"
            parts.append(f"{word} rules nothing out")
        else:
            parts.append("'none' rules nothing out")
        if rejected:
            effect = rejection_effect(self.env, self.explainer.ranker, rejected)
            if effect == "lower":
                parts.append(f"those with {names} are ranked lower")
            elif effect == "ignored" and accepted:
                parts.append(f"the ranking ignores the 'no' to {names}")
            elif effect == "ignored":
                parts[-1] += ", and the ranking ignores it"
            elif effect == "higher":
                parts.append(f"those with {names} are ranked higher")
        return "; ".join(parts)

    # ------------------------------------------------------------------------------- replies
    def hint(self, text: str) -> None:
        """Say why a line was not taken (`text`: markup, whose typed words are escaped; no emoji codes,
        so a typed ':smile:' reads as typed)."""
        self.console.print(f"[yellow]{text}[/]", highlight=False, emoji=False)

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/]")

    def help(self, what: str) -> None:
        self.console.print(
            Panel(
                f"{what}\n[bold]back[/]: undo your last answer   [bold]quit[/]: end the conversation   "
                "[bold]help[/]: this text\nCtrl-D (end of input) or Ctrl-C also end it, with a summary.",
                title="help",
                expand=False,
            )
        )

    def options(self, listing: ShowOptions) -> None:
        if listing.heading:
            self.console.print(listing.heading)
        self.numbered(listing.aspects, counts=listing.counts)

    def replay_diverged(self) -> None:
        self.console.print("[yellow]The recommender now asks something else; answer from here.[/]")

    def undone(self, said: str) -> None:
        """After `back`: which answer was taken back, in a person's words ("your choice", not "choose")."""
        words = UNDONE_WORDS.get(said, f"your {said}")
        self.console.print(f"[yellow]Undone {words}. Back at turn {self.env.state.turn + 1}.[/]")

    def undone_opening(self) -> None:
        self.console.print("[yellow]Undone your opening. Start again:[/]")

    # ------------------------------------------------------------------------------- the end
    def summary(self, transcript: dict[str, Any]) -> None:
        """The closing panel: how it ended, the hidden target (watch mode), the metrics."""
        outcome = transcript["outcome"]
        ended = outcome["ended"]
        subject = "You" if transcript["meta"]["mode"] == "human" else "The user"
        if ended == "accepted":
            line = (
                f"{subject} took [bold green]{escape(outcome['accepted_item_name'])}[/] "
                f"(rank {outcome['rank']}) after {_turns(outcome['agent_actions'])}."
            )
        elif ended == "turn limit":
            line = f"No item was taken within {self.env.max_turns} turns."
        elif ended == "no candidates":
            line = f"No {self.noun(singular=True)} is left that fits everything that was said."
        elif ended == "user left":
            line = "The user ran out of patience and left."
        else:
            turns = max(len(transcript["turns"]) - 1, 0)
            pending = outcome.get("pending")
            if pending is None:
                line = f"Conversation ended ({ended}) after {_turns(turns)}."
            else:  # a question or slate was shown: it counts, unanswered
                what = "a slate" if pending["kind"] == "recommend" else "a question"
                line = (
                    f"Conversation ended ({ended}) after {_turns(turns + 1)}, the last ({what}) unanswered."
                )
        lines = [line]
        if "targets" in outcome:
            # once each: many of MCMIPL's LastFM* target groups list one item twice
            targets = dict(zip(outcome["targets"], outcome["target_names"], strict=True))
            names = ", ".join(escape(n) for n in targets.values())
            lines.append(f"Hidden target: [bold]{names}[/] (item {', '.join(map(str, targets))}).")
            if "active_persona" in outcome:
                # the world's own name, not one of the ranker's personas the memory and probes name
                lines.append(
                    f"Active persona (the world's truth): [bold]{escape(outcome['active_persona'])}[/]."
                )
        slips = [
            (turn["turn"], aspect, aspect in turn["answer"]["accepted"])
            for turn in transcript["turns"]
            for aspect in turn.get("answer", {}).get("slips", ())
        ]
        if slips:  # a noisy simulated user: say which answers misled the recommender
            noise = getattr(self.env.user, "noise", 0.0)
            rate = f" (each aspect's answer flips with probability {noise:g})" if noise else ""
            said = ", ".join(
                f"{'yes' if yes else 'no'} to [bold]{escape(self.aspect(a))}[/] (turn {t})"
                for t, a, yes in slips
            )
            times = "once" if len(slips) == 1 else f"{len(slips)} times"
            lines.append(f"The simulated user answered against its target {times}{rate}: {said}.")
        metrics = outcome["metrics"]
        if metrics is not None:
            # UNICORN's AT counts a failed conversation as the whole turn limit, however early it ended
            failed = " (a failure counts the whole turn limit)" if metrics["SR@15"] == 0 else ""
            lines.append(
                f"SR@15 {metrics['SR@15']:.0f}   turns (AT) {metrics['AT']:.0f}{failed}   "
                f"hDCG {metrics['hDCG']:.3f}"
            )
        self.console.print(Panel("\n".join(lines), title="summary", expand=False))


def _turns(n: int) -> str:
    """'1 recommender turn', '3 recommender turns'."""
    return f"{n} recommender turn{'' if n == 1 else 's'}"


def _listed(names: list[str], conjunction: str, most: int = 3) -> str:
    """'a', 'a and b', 'a, b or c', 'any of these 12' (names escaped for markup)."""
    names = [escape(n) for n in names]
    if len(names) > most:
        return f"any of these {len(names)}" if conjunction == "or" else f"all of these {len(names)}"
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
