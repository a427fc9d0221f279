"""`crs eval`: run a policy on seeded test conversations and report UNICORN's metrics."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from crs.app.evaluation import EvalSpec, run_catalogue, run_evaluation
from crs.app.run_folder import ORDER_LABELS, EvalSummary
from crs.app.sessions import check_session_options, run_session_evaluation
from crs.app.settings import MAX_SEED
from crs.common import (
    DataDirOption,
    DatasetOption,
    PolicyOption,
    RankerOption,
    SettingOption,
    WorldSeedOption,
    check_world_seed,
    console,
    format_metric,
    friendly_errors,
    metrics_table,
    note_unread_data_dir,
    say_when_interrupted,
)
from crs.parallel import BACKENDS
from envs.registry import USER_KINDS
from policies.memory import DEFAULT_RULE, MEMORY_MODES, MEMORY_UPDATES
from simulators.datasets import PERSONA_WORLD
from simulators.errors import CRSError
from simulators.returning import REGIME_WORDS, REGIMES

NOTHING_RECORDED = (
    "no conversation was recorded (an evaluation writes its records only once it ends) and the output "
    "folder holds what it held before; run the command again"
)


@friendly_errors
def eval_command(
    policy: PolicyOption = "ask-4",
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    ranker: RankerOption = None,
    setting: SettingOption = None,
    split: str = typer.Option("test", "--split", help="Split the conversations come from."),
    episodes: int = typer.Option(600, "--episodes", "-n", min=1, help="Number of conversations."),
    seed: int = typer.Option(
        1, "--seed", min=0, max=MAX_SEED, help="Seed of the conversation order and the users."
    ),
    order: str = typer.Option(
        "seeded",
        "--order",
        help="Which conversations: seeded (a seeded sample of the split, every dataset); unicorn "
        "(UNICORN's own evaluation order on lastfm, lastfm_star, yelp_star: the first --episodes of "
        "its shuffle of the test pairs with --seed; UNICORN ran 4,000 on LastFM/LastFM*, 2,500 on "
        "Yelp*, seed 1); or mcmipl (MCMIPL's order of its release's test groups; 4,000 on LastFM*).",
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Output folder (default: one in out/eval/ named after the dataset, policy and seed, and the "
        "setting, ranker, split and order where not the defaults); "
        "refused if it holds files, "
        "unless --overwrite.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the earlier evaluation the output folder holds (refused if it holds other files too).",
    ),
    user: str = typer.Option(
        "auto",
        "--user",
        help=f"Simulated user: {', '.join(USER_KINDS)}. single: UNICORN's, one target item; multi: MCMIPL's "
        "multi-interest user, several target items sharing an aspect; persona: the persona world's users; "
        "auto: persona on the persona world, on real data multi in the multiple-choice setting (and on "
        "MCMIPL's datasets), else single. summary.json names the one played.",
    ),
    world_seed: WorldSeedOption = None,
    workers: int = typer.Option(
        None,
        "--workers",
        "-w",
        help="Worker processes (Ray when installed, else a local process pool). Default 1; with "
        "--address, the cluster's CPUs. Each worker first spends a few seconds starting (imports, the "
        "catalogue), so workers pay only for an evaluation that takes well over 10 s in one process "
        "(BENCHMARKS.md: 1.9x the rate with 2 free cores, once started).",
    ),
    backend: str = typer.Option("auto", "--backend", help=f"Worker backend: {', '.join(BACKENDS)}."),
    address: str = typer.Option(None, "--address", help="Address of an existing Ray cluster to run on."),
    sessions: int = typer.Option(
        None,
        "--sessions",
        help="Returning users: each of --episodes users comes back for this many sessions (>= 2), one "
        "conversation each, with --regime and --memory. On the persona world the users' personas are "
        "simulated; on lastfm, lastfm_star and yelp_star (binary) the sessions are each user's held-out "
        "items grouped by the ranker's personas (regimes stable, switch; fewer users when fewer have "
        "S held-out items). A rule policy needs --ranker "
        "with a `crs pretrain` artifact; a trained run (--policy runs/NAME) brings its own persona ranker "
        "and reads the memory's prior through its usual features, no retraining. Per-session SR@15, AT, "
        'hDCG, persona tracking and how often chat\'s "last time" sentence would be right go to '
        "summary.json.",
    ),
    regime: str = typer.Option(
        None,
        "--regime",
        help="With --sessions: how the users' persona mixtures move: "
        + "; ".join(f"{name}: {REGIME_WORDS[name]}" for name in REGIMES)
        + " (real data: stable and switch only).",
    ),
    memory: str = typer.Option(
        None,
        "--memory",
        help=f"With --sessions: the persona memory: {', '.join(MEMORY_MODES)} (frozen: the pre-trained "
        "prior; update: moved after each session by its feedback; oracle: concentrated on the true "
        "active persona, an upper bound).",
    ),
    memory_update: str = typer.Option(
        None,
        "--memory-update",
        help=f"With --memory update: what a session's feedback moves: {', '.join(MEMORY_UPDATES)} (prior: "
        "the user's persona prior; aspects: per-persona aspect weights only, the prior stays the "
        "ranker's; both: the two together). Default: the default rule's, "
        f"{DEFAULT_RULE.variant}.",
    ),
) -> None:
    """Evaluate a policy: SR@5/10/15, AT and hDCG with 95% confidence intervals.

    As UNICORN counts them: SR@t, success within t recommender turns; AT, the recommender's turns (the
    user's opening not counted), a failure counting the whole turn limit; hDCG, a success ranked by its
    turn and the target's rank in the slate. Writes one JSON line per conversation (episodes.jsonl) and
    summary.json into --out.

    An --out folder holding files is refused unless --overwrite, and a folder another crs command is
    writing is always refused.

    Examples:

      crs eval --policy ask-4

      crs eval --policy ask-7 --dataset lastfm \\
        --data-dir ../shared/data --ranker transe --episodes 600

      # a trained run: on its own dataset, data folder and setting
      crs eval --policy runs/my-run

      # UNICORN's YELP:
      crs eval -p ask-7 -d yelp_star --data-dir ../shared/data \\
        --setting enumerated

      crs eval --policy max-entropy --episodes 2400 --workers 2

      crs eval --policy ask-7 -d yelp_star --data-dir DATA \\
        --ranker popularity --order unicorn -n 2500

      crs eval --policy ask-4 -d mcmipl_lastfm_star --data-dir DATA \\
        --order mcmipl -n 4000

      crs eval -p ask-4 --ranker runs/pw-ranker --sessions 8 \\
        --regime switch --memory update -n 1000

      # the prior and per-persona aspect weights together:
      crs eval -p ask-4 --ranker runs/pw-ranker --sessions 8 \\
        --regime switch --memory update --memory-update both -n 1000

      # a trained run:
      crs eval -p runs/my-run --sessions 8 --regime switch \\
        --memory update -n 300

      # held-out items of real users:
      crs eval -p ask-7 -d lastfm_star --data-dir DATA \\
        --sessions 6 --ranker runs/lastfm-ranker --regime switch \\
        --memory update -n 1000
    """
    dataset, data_dir, world_seed = run_catalogue(policy, dataset, data_dir, world_seed)
    world_seed = check_world_seed(world_seed, dataset)
    note_unread_data_dir(data_dir, dataset)
    if sessions is not None or regime is not None or memory is not None or memory_update is not None:
        check_session_options(
            sessions=sessions,
            regime=regime,
            memory=memory,
            memory_update=memory_update,
            given={
                "--order": order != "seeded",
                # the persona world's returning users are persona users; real data's are single-target
                "--user": user not in ("auto", "persona") or (user == "persona" and dataset != PERSONA_WORLD),
                "--workers": workers not in (None, 1),
                "--address": address is not None,
            },
        )
        assert sessions is not None and regime is not None and memory is not None  # checked above
        with say_when_interrupted(NOTHING_RECORDED):
            summary, _, folder = run_session_evaluation(
                policy=policy,
                ranker=ranker,
                regime=regime,
                sessions=sessions,
                sequences=episodes,
                memory=memory,
                seed=seed,
                memory_update=memory_update,
                world_seed=world_seed,
                dataset=dataset,
                data_dir=data_dir,
                split=split,
                out=out,
                overwrite=overwrite,
                setting=setting,
            )
        console.print(sessions_table(summary))
        for line in after_change_lines(summary, folder):
            console.print(line, highlight=False)
        print_notes(summary.notes)
        console.print(
            f"{summary.conversations_per_second:.1f} conversations/s; "
            f"records in [bold]{escape(str(folder))}[/] "
            f"(episodes.jsonl, summary.json)"
        )
        return
    if user == "persona" and dataset != PERSONA_WORLD:  # it needs the world's true personas
        raise CRSError(
            f"--user persona simulates the persona world's users from their true personas, which {dataset} "
            "does not have: use --user single, multi or auto"
        )
    spec = EvalSpec.of(
        policy=policy,
        dataset=dataset,
        data_dir=data_dir,
        ranker=ranker,
        setting=setting,
        split=split,
        episodes=episodes,
        seed=seed,
        order=order,
        user=user,
        world_seed=world_seed,
    )
    with say_when_interrupted(NOTHING_RECORDED):
        result = run_evaluation(
            spec,
            out=out,
            workers=workers if workers is not None or address is not None else 1,
            backend=backend,
            address=address,
            overwrite=overwrite,
        )
    summary = result.summary
    order = f" ({ORDER_LABELS[summary.order]})" if summary.order in ORDER_LABELS else ""
    title = summary.label.describe(f", seed {seed}{order}")
    console.print(metrics_table(f"{title}, user {summary.user}", {summary.policy: result.metrics}))
    print_notes(summary.notes)
    console.print(
        f"{summary.conversations_per_second:.1f} conversations/s; "
        f"records in [bold]{escape(str(result.out))}[/] "
        f"(episodes.jsonl, summary.json)"
    )


def print_notes(notes: tuple[str, ...]) -> None:
    """An evaluation's notes (its catalogue's, its policy's, its users'), one line each."""
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}")


def after_change_lines(summary: EvalSummary, folder: Path) -> list[str]:
    """The figures from the change on (the regime's point: does the memory follow the change?), and
    where the comparison with another memory is made: "From the change on (291 sessions): SR@15 0.687
    [0.639, 0.736] ..."."""
    block = summary.sessions
    assert block is not None
    if not block.after_change_episodes:  # a regime without a change: the table is the whole story
        return []
    sr = block.after_change["SR@15"]
    line = (
        f"From the change on ({block.after_change_episodes:,} sessions): SR@15 {format_metric(sr)}, "
        f"AT {block.after_change['AT'].mean:.2f}, hDCG {block.after_change['hDCG'].mean:.3f}"
    )
    tracking = block.tracking_after_change
    if tracking is not None:
        interval = f"[{tracking.low:.1%}, {tracking.high:.1%}]"
        counted = (
            f" ({block.tracked_after_change_sessions:,} sessions)"
            if block.tracked_after_change_sessions
            else ""
        )
        line += f"; tracking after the change session{counted} {tracking.mean:.1%} {interval}"
    compare = (
        f"against another --memory on the same users (same --seed and -n), paired per user: crs report "
        f"{folder} OTHER_FOLDER"
    )
    return [line + ".", f"[dim]{escape(compare)}[/]"]


def sessions_table(summary: EvalSummary) -> Table:
    """Per-session SR@15, AT, hDCG and persona tracking of a `crs eval --sessions` summary."""
    block = summary.sessions
    assert block is not None  # written by run_session_evaluation
    table = Table(
        title=f"{summary.dataset} / {summary.split}: {summary.policy}, {block.sequences} returning users x "
        f"{block.sessions} sessions, regime {block.regime}, seed {summary.seed}, {summary.setting} setting, "
        f"ranker {summary.ranker_label}",
        caption="tracking: the memory's most likely persona before the session is the session's active "
        "one (dominant: the mixture's largest); active = dominant: how often the active persona is the "
        "mixture's largest; last time: it is the previous session's active one, as `crs chat --memory` "
        "says when it opens",
    )
    columns = (
        "session",
        "SR@15 [95% CI]",
        "AT",
        "hDCG",
        "tracking",
        "dominant",
        "active = dominant",
        "last time",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in block.rows:
        sr = row.metrics["SR@15"]
        tracking = "-" if row.tracking is None else f"{row.tracking.mean:.3f}"
        dominant = "-" if row.dominant_tracking is None else f"{row.dominant_tracking.mean:.3f}"
        last_time = "-" if row.last_time is None else f"{row.last_time.mean:.3f}"
        table.add_row(
            str(row.session),
            f"{sr.mean:.3f} [{sr.low:.3f}, {sr.high:.3f}]",
            f"{row.metrics['AT'].mean:.2f}",
            f"{row.metrics['hDCG'].mean:.3f}",
            tracking,
            dominant,
            f"{row.active_is_dominant:.3f}",
            last_time,
        )
    return table
