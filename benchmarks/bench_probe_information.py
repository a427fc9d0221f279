r"""Benchmark: does probing a persona tell the recommender more than asking one aspect?

At turn 2 of each test conversation (right after the user's opening) the same dialogue is continued
once with each question the SB3 wrapper offers the policy (the conversation replayed from its seed):
every question slot (one aspect) and every persona probe (a persona's signature aspects). After the
user's answer the ranker re-scores the candidates; the figure is the target's rank among them (1 =
first; for several targets, the best). Printed per kind: the mean log2 rank after the ranker's own
first pick (question slot 0 / the probe of the persona with the highest posterior) and after the
best slot of that kind (an oracle over the slots, i.e. what a policy that chose well could get),
plus how often any listed aspect was accepted. A noisy "yes" can drop the target from the
candidates: such answers count as "target lost" and the ranks are over the rest. Lower rank = the
answer moved the target up = more information for the slate.

Example (persona world with the main job's defaults and a pre-trained ranker):

    crs pretrain -o runs/pretrain/pw
    python benchmarks/bench_probe_information.py --ranker runs/pretrain/pw --conversations 300

On MCMIPL's LastFM* (multiple choice: a question slot is an attribute-type question), over the ranker
of the probing runs (any ranker name `crs eval --ranker` takes):

    python benchmarks/bench_probe_information.py -d mcmipl_lastfm_star --data-dir ../shared/data \
        --ranker runs/pretrain/mcmipl_lastfm_star+profile:10@10 --conversations 300
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _cli import positive_int, run_script  # this folder is on sys.path as a script

from envs import make_env
from envs.sb3_wrapper import SlateActionWrapper, WrapperConfig
from policies.pretrain.ranker import PersonaRanker
from policies.rankers import RankerSpec


def target_rank(env, ranker) -> float:
    """The best rank (1-based) of a target among the candidates by the ranker's scores (inf: none left)."""
    state = env.state
    candidates = state.candidate_items()
    targets = [t for t in env.user.targets if state.candidates[t]]
    if not targets:
        return float("inf")
    scores = np.asarray(ranker.item_scores(state.facts(), candidates), dtype=np.float64)
    order = candidates[np.lexsort((candidates, -scores))]
    return float(min(np.flatnonzero(np.isin(order, targets))) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--dataset", default="persona_world", help="a dataset `crs eval -d` takes")
    parser.add_argument("--data-dir", default=None, help="real data folder (default $CRS_DATA_DIR)")
    parser.add_argument(
        "--ranker",
        required=True,
        help="a persona ranker: an artifact (crs pretrain --out) or its name with suffixes",
    )
    parser.add_argument("--conversations", type=positive_int, default=300)
    parser.add_argument("--user", default="{}", help="user-model arguments as JSON, e.g. '{\"noise\": 0.1}'")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    env = make_env(args.dataset, data_dir=args.data_dir, split="test", user_kwargs=json.loads(args.user))
    ranker = RankerSpec.parse(args.ranker).build(env.catalog, args.data_dir)
    if not isinstance(ranker, PersonaRanker):
        parser.error(f"--ranker {args.ranker!r} has no personas to probe: give a persona ranker's artifact")
    wrapper = SlateActionWrapper(env, ranker, WrapperConfig())
    rng = np.random.default_rng(args.seed)
    indices = rng.permutation(env.goals.n_goals)[: args.conversations]
    results: dict[str, dict[str, list[float]]] = {
        kind: {"first": [], "best": [], "accepted": []} for kind in ("question", "probe")
    }
    before: list[float] = []
    for index in indices.tolist():
        wrapper.reset(seed=int(index), options={"goal_index": int(index)})
        before.append(np.log2(target_rank(env, ranker)))
        posterior = ranker.persona_posterior(env.state.facts())
        valid = wrapper.action_masks()[: wrapper.n_choices]  # a probe slot is valid when it lists aspects
        probes = [wrapper.n_questions + int(k) for k in np.argsort(-posterior) if k < wrapper.n_probes]
        slots = {
            "question": list(range(wrapper.question_ids.size)),
            "probe": [choice for choice in probes if valid[choice]],
        }
        for kind, choices in slots.items():
            ranks, accepted = [], []
            for choice in choices:  # the same conversation replayed (same seed) for each slot
                wrapper.reset(seed=int(index), options={"goal_index": int(index)})
                wrapper.step(np.array([choice, *range(wrapper.slate_size)]))
                ranks.append(np.log2(target_rank(env, ranker)))
                accepted.append(bool(env.state.history[-1].accepted))
            if ranks:
                results[kind]["first"].append(ranks[0])
                results[kind]["best"].append(min(ranks))
                results[kind]["accepted"].extend(accepted)
    print(
        f"{args.dataset} test, {len(indices)} conversations (seed {args.seed}), user {args.user}, "
        f"ranker {args.ranker}; mean log2 target rank before turn 2: {np.mean(before):.2f}"
    )
    print("| turn 2 | n | first pick: log2 rank | target lost | best slot: log2 rank | any value accepted |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        first, best = np.asarray(r["first"]), np.asarray(r["best"])
        kept = np.isfinite(first)
        print(
            f"| {kind} | {first.size} | {first[kept].mean():.2f} | {1 - kept.mean():.3f} | "
            f"{best[np.isfinite(best)].mean():.2f} | {np.mean(r['accepted']):.3f} |"
        )


if __name__ == "__main__":
    run_script(main)
