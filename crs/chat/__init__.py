"""`crs chat`'s dialogue: a person plays the user (or watches a simulated one) and a policy asks,
probes and recommends, explaining every recommendation by what the item has of what the person
asked for and by the persona it serves (or, without a persona model, by the ranking's own reason),
and saying after every answer why the candidates changed (or did not).

The env's answers come from a `UserModel`. For a person that model is `HumanUser`: the chat reads
the person's reply before the env steps, tells it to the `HumanUser`, and the env gets it back when
it asks. The env therefore runs with its usual rules and bookkeeping; the person has no hidden
target (``targets`` is empty) and a conversation succeeds when the person accepts an item.

Modules, by job:

- `session`: one conversation (its state, stepping the env, `back`) and `run_chat`;
- `person`: the person as the env's user model (`HumanUser`, `PersonAnswer`, `human_env`);
- `question`: what the policy's action asks, in the person's terms;
- `replies`: reading a typed line and turning it into an answer, or a hint;
- `view`: drawing the dialogue with rich;
- `transcript`: the JSON-ready record and its file;
- `memory`: the person's persona memory kept between chats (``--memory FILE``);
- `errors`: how a chat stops early.

Explanations (`Explainer`, `Explanation`) live in `crs.explain`, shared with the report.
"""

from crs.chat.errors import ChatEndedError, ChatError
from crs.chat.memory import ChatMemory, MemoryChange, policy_with_memory
from crs.chat.person import HumanUser, PersonAnswer, human_env
from crs.chat.question import Question, candidates_after, read_question
from crs.chat.replies import Reader, terminal_reader
from crs.chat.session import ChatResult, ChatSession, choose_goal, run_chat
from crs.chat.transcript import check_transcript_path
from crs.explain import Explainer, Explanation

__all__ = [
    "ChatEndedError",
    "ChatError",
    "ChatMemory",
    "ChatResult",
    "ChatSession",
    "Explainer",
    "Explanation",
    "HumanUser",
    "MemoryChange",
    "PersonAnswer",
    "Question",
    "Reader",
    "candidates_after",
    "check_transcript_path",
    "choose_goal",
    "human_env",
    "policy_with_memory",
    "read_question",
    "run_chat",
    "terminal_reader",
]
