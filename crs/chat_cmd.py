"""`crs chat`: talk to the recommender in the terminal (or watch a simulated user do it)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from crs.app.evaluation import policy_setting, ranker_input, resolve_policy, run_catalogue
from crs.app.settings import MAX_SEED
from crs.chat import ChatError, choose_goal, policy_with_memory, run_chat
from crs.chat.memory import PERSONA_RANKER_FIX
from crs.chat.signals import EXIT_STATUS
from crs.common import (
    DataDirOption,
    DatasetOption,
    PolicyOption,
    RankerOption,
    SettingOption,
    WorldSeedOption,
    check_world_seed,
    console,
    data_dir_input,
    err_console,
    friendly_errors,
    note_unread_data_dir,
)
from envs.registry import make_env
from simulators.datasets import PERSONA_WORLD, DatasetSpec, check_dataset_name

INTERRUPTED = EXIT_STATUS["interrupted"]  # the shell's exit status for Ctrl-C (128 + SIGINT)
DEFAULT_POLICY = "ask-4"
PRETRAIN_OUT = "runs/pretrain"
"""Where the suggested `crs pretrain` writes its artifact (one folder per dataset)."""


@friendly_errors
def chat_command(
    policy: PolicyOption = DEFAULT_POLICY,
    dataset: DatasetOption = None,
    data_dir: DataDirOption = None,
    ranker: RankerOption = None,
    setting: SettingOption = None,
    world_seed: WorldSeedOption = None,
    seed: int = typer.Option(
        0,
        "--seed",
        min=0,
        max=MAX_SEED,
        help="Seed of the conversation (which user; in watch mode also the hidden target).",
    ),
    simulate: bool = typer.Option(
        False, "--simulate", help="Watch a simulated user answer instead of answering yourself."
    ),
    transcript: Path = typer.Option(
        None,
        "--transcript",
        "-t",
        help="Write the dialogue as JSON to this file; an existing file is refused unless --overwrite.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the --transcript file if it exists."),
    user_id: int = typer.Option(
        None,
        "--user-id",
        help="Play (or watch) this user id; default: the --memory file's user, else one drawn by --seed.",
    ),
    memory: Path = typer.Option(
        None,
        "--memory",
        help="Remember this person between chats in this JSON file: the chat opens with what it "
        "believes about your personas and ends by saving how the conversation changed that belief. "
        "A new file starts a new person; delete it to forget them. Needs a persona ranker (--ranker "
        "<a crs pretrain artifact>, or a --policy run trained with one).",
    ),
) -> None:
    """Talk to the recommender: you play the user, it asks, probes and recommends with explanations.

    You open with one thing you like (a name, a close spelling, or a number from the suggestions);
    then answer y/n/skip to questions, numbers (or none) to multiple-choice questions, and a number
    (or n) to a slate of recommendations. At any prompt: help, back (undo your last answer), quit.
    Ctrl-C, end of input or a closed terminal ends the chat with a summary (and the transcript and
    memory are saved). Input may come from a pipe.

    With --memory FILE the recommender remembers you: it opens by saying which of your sides
    (personas) it believes in charge, and at the end (whatever the ending, once you have opened)
    it moves that belief by what you said and chose, saves FILE and shows before → after.

    Examples:

      crs chat

      crs chat --dataset lastfm_star --data-dir ../shared/data

      crs chat --simulate --seed 3 --transcript chat.json

      crs chat --ranker runs/pretrain/persona_world --memory me.json

      printf 'jazz\\ny\\nn\\n1\\n' | crs chat --policy ask-2
    """
    dataset, data_dir, world_seed = run_catalogue(policy, dataset, data_dir, world_seed)
    check_dataset_name(dataset)
    world_seed = check_world_seed(world_seed, dataset)
    note_unread_data_dir(data_dir, dataset)
    check_files_outside_inputs(transcript, policy, ranker, data_dir, dataset, memory)
    chat_memory = None
    commands = personal_commands(dataset, data_dir, policy, setting, world_seed)
    try:
        catalog = DatasetSpec(dataset, data_dir, world_seed).load()
        env = make_env(catalog=catalog, split="test", setting=policy_setting(policy, setting))
        if memory is None:
            chat_policy, policy_name, ranker_name = resolve_policy(policy, env, ranker, data_dir)
        else:
            drawn = int(env.goals.interactions.users[choose_goal(env, seed, user_id)])
            fix = PERSONA_RANKER_FIX + (f"; make one with: {commands[0]}" if commands else "")
            chat_policy, policy_name, ranker_name, chat_memory = policy_with_memory(
                policy,
                env,
                ranker,
                data_dir,
                memory,
                user_id=user_id,
                drawn_user=drawn,
                fix=fix,
            )
            user_id = chat_memory.user
    except KeyboardInterrupt:  # Ctrl-C while loading: no conversation yet, so no summary
        err_console.print("interrupted before the chat started")
        raise typer.Exit(INTERRUPTED) from None
    meta: dict[str, object] = {"dataset": dataset, "policy": policy_name, "ranker": ranker_name}
    if dataset == PERSONA_WORLD:
        meta["world_seed"] = world_seed
    result = run_chat(
        env,
        chat_policy,
        seed=seed,
        console=console,
        simulate=simulate,
        user_id=user_id,
        transcript=transcript,
        meta=meta,
        overwrite=overwrite,
        personal_commands=commands,
        memory=chat_memory,
    )
    if result.ended in EXIT_STATUS:  # Ctrl-C, SIGHUP or SIGTERM: 128 + the signal's number
        raise typer.Exit(EXIT_STATUS[result.ended])


def check_files_outside_inputs(
    transcript: Path | None,
    policy: str,
    ranker: str | None,
    data_dir: str | None,
    dataset: str,
    memory: Path | None,
) -> None:
    """Refuse a --transcript that is the --memory file, and either lying in a folder the chat reads (the
    data folder only where `dataset` reads one): the
    transcript could replace one of its files, and the next `--overwrite` of that run or artifact would
    delete either (a run's ``policy.json``, a person's memory).

    Raises:
        ChatError: Naming the file, the input and what to do.
    """
    if transcript is not None and memory is not None and memory.resolve() == transcript.resolve():
        raise ChatError(f"--memory and --transcript are both {memory}; give them different files")
    inputs = [
        ("--policy run", Path(policy) if Path(policy).is_dir() else None),
        ranker_input(ranker),
        ("data folder", data_dir_input(data_dir, dataset)),
    ]
    for option, path in (("--transcript", transcript), ("--memory", memory)):
        for what, folder in inputs:
            if path is None or folder is None or not folder.exists():
                continue
            if path.resolve().is_relative_to(folder.resolve()):
                raise ChatError(
                    f"{option} {path} lies in the {what} {folder}, which this chat reads; "
                    f"keep the {option[2:]} file outside it"
                )


def personal_commands(
    dataset: str, data_dir: str | None, policy: str, setting: str | None, world_seed: int = 0
) -> list[str]:
    """The commands that give personal recommendations: pre-train a persona ranker for `dataset` (the
    persona world of `world_seed`), then chat with it (the same options otherwise); none for a trained
    run, whose ranker is its own.

    Example: ``["crs pretrain -d lastfm_star --data-dir DATA -o runs/pretrain/lastfm_star",
    "crs chat -d lastfm_star --data-dir DATA --ranker runs/pretrain/lastfm_star"]``.
    """
    if Path(policy).is_dir():
        return []
    catalog = f" --data-dir {shlex.quote(data_dir)}" if data_dir else ""  # the options naming it
    folder = dataset
    if world_seed and dataset == PERSONA_WORLD:
        catalog += f" --world-seed {world_seed}"
        folder += f"-w{world_seed}"
    out = shlex.quote(str(Path(PRETRAIN_OUT) / folder))
    chat = f"crs chat -d {shlex.quote(dataset)}{catalog}"
    if policy != DEFAULT_POLICY:
        chat += f" --policy {shlex.quote(policy)}"
    if setting:
        chat += f" --setting {shlex.quote(setting)}"
    return [f"crs pretrain -d {shlex.quote(dataset)}{catalog} -o {out}", f"{chat} --ranker {out}"]
