"""Can the moment to stop asking be predicted? One-step deviations from ask-N (#18, Yelp* binary).

For each validation conversation, ask-N plays once while the state's features are recorded at every
turn; then, for each turn t from ``--first-turn`` on, the conversation is replayed with the opposite
action at t (a slate where ask-N asks, a question where it recommends) and ask-N after it. The env is
deterministic given the conversation's seed, so ``gain = success(deviation) − success(ask-N)`` is exact.

1. Per turn: how often a deviation helps and how often it hurts.
2. A small MLP regresses the gain on the features (5-fold by conversation). Deviating wherever the
   prediction exceeds τ: the summed one-step gain per conversation, out of fold.
3. ``--test``: ask-N that deviates where the model (fit on all validation rows) predicts a gain
   above ``--tau``, on the test conversations, paired with ask-N.

Features of a state (shape (12,)): turn, log(1 + consistent candidates), log(1 + candidates), the
ranker's softmax mass on its top 10 / 30 / 50 candidates, that softmax's entropy, the best question
score, questions asked, slates shown, accepted and rejected aspects.

    python benchmarks/stop_deviations.py --ranker runs/pretrain/yelp_star-l1+split -n 1000 --test 600
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _cli import (  # this folder is on sys.path as a script
    HelpFormatter,
    add_conversation_options,
    evaluation_from_args,
    non_negative_int,
    positive_int,
    run_script,
)

from envs.env import ConversationEnv
from envs.metrics import bootstrap_ci, per_episode_metrics
from envs.ranker import PreferenceRanker
from envs.rollout import episode_seed, evaluate, run_episode
from policies.rules import AskThenRecommendPolicy, AskUntilPolicy
from simulators.errors import CRSError

N_FEATURES = 12


def features(policy: AskThenRecommendPolicy, env: ConversationEnv) -> list[float]:
    """The state's features (module docstring), in order."""
    state = env.state
    facts = state.facts()
    candidates = state.candidate_items()
    scores = policy._require_ranker().item_scores(facts, candidates)
    p = np.exp(scores - scores.max())
    p /= p.sum()
    ranked = np.sort(p)[::-1]
    aspects = policy.askable_aspects(env)
    best_question = (
        float(policy._require_ranker().aspect_scores(facts, aspects).max()) if aspects.size else 0.0
    )
    kinds = [r.kind for r in state.history]
    return [
        float(state.turn),
        float(np.log1p(AskUntilPolicy.n_consistent(env))),
        float(np.log1p(candidates.size)),
        float(ranked[:10].sum()),
        float(ranked[:30].sum()),
        float(ranked[:50].sum()),
        float(-(p * np.log(p + 1e-300)).sum()),
        best_question,
        float(sum(k in ("ask", "probe") for k in kinds)),
        float(kinds.count("recommend")),
        float(len(facts.accepted)),
        float(len(facts.rejected)),
    ]


class DeviatingPolicy(AskThenRecommendPolicy):
    """ask-N that takes the opposite action at turn `at_turn`, or wherever `rule(turn, features)` says so.

    Without `at_turn` it computes the state's features every turn and keeps them in `seen`; a replay
    that deviates at one given turn computes none.
    """

    def __init__(
        self,
        ranker: PreferenceRanker | None,
        n_asks: int,
        *,
        at_turn: int | None = None,
        rule: Callable[[int, list[float]], bool] | None = None,
    ) -> None:
        super().__init__(ranker, n_asks)
        self.at_turn = at_turn
        self.rule = rule
        self.seen: dict[int, list[float]] = {}

    def act(self, env: ConversationEnv) -> dict[str, Any]:
        action = super().act(env)
        turn = env.state.turn
        if self.at_turn is not None:
            if turn != self.at_turn:
                return action
        else:
            x = self.seen[turn] = features(self, env)
            if self.rule is None or not self.rule(turn, x):
                return action
        slate = self.slate(env)
        if action["kind"] != slate["kind"]:
            return slate
        aspect = self.best_aspect(env)
        return action if aspect is None else self.question(env, aspect)


def collect(
    env: ConversationEnv,
    ranker: PreferenceRanker | None,
    n_asks: int,
    indices: np.ndarray,
    seed: int,
    first: int,
) -> np.ndarray:
    """Rows (conversation, features..., gain) of every one-step deviation; float64, (rows, 2 + N_FEATURES)."""
    rows = []
    for index in (int(i) for i in indices):
        s = episode_seed(seed, index)
        base = DeviatingPolicy(ranker, n_asks)
        ok = run_episode(env, base, np.random.default_rng(s), seed=s, options={"goal_index": index}).success
        for turn in sorted(t for t in base.seen if t >= first):
            policy = DeviatingPolicy(ranker, n_asks, at_turn=turn)
            dev = run_episode(
                env, policy, np.random.default_rng(s), seed=s, options={"goal_index": index}
            ).success
            rows.append([index, *base.seen[turn], float(dev) - float(ok)])
    return np.array(rows)


class GainModel:
    """An MLP regressing the one-step gain on standardised features (seeded)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 300) -> None:
        self.mu, self.sd = x.mean(axis=0), x.std(axis=0) + 1e-9
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], 32),
            torch.nn.Tanh(),
            torch.nn.Linear(32, 32),
            torch.nn.Tanh(),
            torch.nn.Linear(32, 1),
        )
        opt = torch.optim.Adam(self.net.parameters(), lr=3e-3, weight_decay=1e-4)
        xt, yt = self._tensor(x), torch.tensor(y, dtype=torch.float32)[:, None]
        for _ in range(epochs):
            opt.zero_grad()
            loss = ((self.net(xt) - yt) ** 2).mean()
            loss.backward()
            opt.step()

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.tensor((x - self.mu) / self.sd, dtype=torch.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted gain of each row of `x` (rows, N_FEATURES); shape (rows,)."""
        with torch.no_grad():
            return self.net(self._tensor(np.atleast_2d(x)))[:, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_conversation_options(
        parser,
        ranker_help="a ranker spec, e.g. DIR+split",
        episodes=1000,
        episodes_help="validation conversations",
        seed_help="seed of the conversations and of the MLP",
        splits=None,
    )
    parser.add_argument("--asks", type=positive_int, default=12, help="N of the ask-N deviated from")
    parser.add_argument(
        "--first-turn", type=positive_int, default=6, help="the first turn at which a deviation is tried"
    )
    parser.add_argument(
        "--taus",
        type=float,
        nargs="+",
        default=[0.0, 0.02, 0.05, 0.1],
        help="thresholds τ on the predicted gain, out of fold",
    )
    parser.add_argument("--test", type=non_negative_int, default=0, help="test conversations (0: none)")
    parser.add_argument("--tau", type=float, default=0.02, help="the test policy's threshold")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a tiny model: a second thread only waits, far slower beside busy cores

    _, env, rule, valid = evaluation_from_args(args, f"ask-{args.asks}", split="valid")
    assert isinstance(rule, AskThenRecommendPolicy)
    ranker = rule.ranker
    rows = collect(env, ranker, args.asks, valid, args.seed, args.first_turn)
    if rows.size == 0:
        raise CRSError(
            f"no conversation reached turn {args.first_turn} (--first-turn) before ending; the turn limit is "
            f"{env.max_turns}: lower --first-turn"
        )
    conversation, x, gain = rows[:, 0], rows[:, 1:-1], rows[:, -1]
    print(
        f"{args.dataset} valid: {len(np.unique(conversation))} conversations, {len(rows)} one-step deviations"
    )
    for turn in np.unique(x[:, 0]).astype(int):
        at = x[:, 0] == turn
        print(
            f"turn {turn}: {at.sum()} states; a deviation helps in {np.mean(gain[at] > 0):.3f}, "
            f"hurts in {np.mean(gain[at] < 0):.3f}"
        )
    convs = np.unique(conversation)
    np.random.default_rng(args.seed).shuffle(convs)
    predicted = np.zeros(len(rows))
    for fold in np.array_split(convs, 5):
        held = np.isin(conversation, fold)
        predicted[held] = GainModel(x[~held], gain[~held], args.seed).predict(x[held])
    for tau in args.taus:
        chosen = predicted > tau
        print(
            f"out of fold, deviate where predicted gain > {tau:g}: {chosen.sum()} states, summed gain per "
            f"conversation {gain[chosen].sum() / len(convs):+.4f} (helps {np.sum(gain[chosen] > 0)}, "
            f"hurts {np.sum(gain[chosen] < 0)})"
        )
    if args.test:
        model = GainModel(x, gain, args.seed)
        _, test_env, _, indices = evaluation_from_args(
            args, f"ask-{args.asks}", split="test", episodes=args.test
        )
        first = per_episode_metrics(
            evaluate(test_env, AskThenRecommendPolicy(ranker, args.asks), indices, args.seed)
        )

        def deviate(turn: int, feats: list[float]) -> bool:
            return turn >= args.first_turn and float(model.predict(np.array(feats))[0]) > args.tau

        learned = per_episode_metrics(
            evaluate(test_env, DeviatingPolicy(ranker, args.asks, rule=deviate), indices, args.seed)
        )
        d = bootstrap_ci(learned["SR@15"] - first["SR@15"])
        line = ", ".join(f"{k} {v.mean():.3f}" for k, v in learned.items())
        print(
            f"test, {len(indices)} conversations: ask-{args.asks} SR@15 {first['SR@15'].mean():.3f}, AT "
            f"{first['AT'].mean():.2f}; learned deviations (τ {args.tau:g}): {line}; SR@15 − ask-{args.asks} "
            f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
        )


if __name__ == "__main__":
    run_script(main)
