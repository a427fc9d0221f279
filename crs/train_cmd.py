"""`crs train`: the typer shell of `crs.app.training` (train the graph RL policy, compare it with
the rule baselines); the run directory it writes is described there."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.markup import escape

from crs.app.run_folder import RUN_CONFIG, RunPhase, RunRecord, run_options
from crs.app.settings import (
    DEFAULT_STEPS,
    MAX_SEED,
    MIN_DEFAULT_ENVS,
    make_settings,
    recorded_settings,
)
from crs.app.training import (
    DEFAULT_RUNS_DIR,
    ResumeOptionError,
    default_run_name,
    run_training,
    with_data_dir_recorded,
)
from crs.common import (
    DATA_DIR_HELP,
    DATASET_HELP,
    SettingOption,
    WorldSeedOption,
    check_world_seed,
    console,
    friendly_errors,
    read_settings_file,
    stopped,
    terminate_as_interrupt,
)
from simulators.datasets import PERSONA_WORLD
from simulators.errors import CRSError

# what `--resume` applies to a run; it keeps every other setting the run recorded
RESUME_OPTIONS = (
    "resume",
    "name",
    "runs_dir",
    "steps",
    "learning_rate",
    "ent_coef",
    "in_process",
    "workers",
    "data_dir",  # where the run's data lies now: the same data, which a resume checks
)


@friendly_errors
def train_command(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, "--dataset", "-d", help=DATASET_HELP),
    data_dir: str | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    setting: SettingOption = None,
    ranker: str | None = typer.Option(
        None,
        "--ranker",
        help='Fixed ranker: "popularity", "uniform" (no preferences), "transe" (LastFM), "pretrain" '
        "(pre-train one into the run), or a `crs pretrain` artifact path; after uniform, pretrain or an "
        "artifact, +profile (or +profile:W, weight W) adds the users' tag profiles, +pop (or +pop:W) an "
        "item popularity prior, +open (or +open:W) the opening's likelihood, then +split asks splitting "
        "questions (e.g. uniform+pop+split; +split:T weighs the candidates by softmax(scores / T)), "
        "a final @T tempers the learned preferences (DIR+split@4). "
        "Default: pretrain on the persona world, else the dataset's default.",
    ),
    steps: int | None = typer.Option(
        None,
        "--steps",
        min=1,
        help=f"Training steps budget (default {DEFAULT_STEPS:,}); PPO trains whole rollouts, so it rounds "
        "up to a multiple of envs x ppo.n_steps (the model card states the steps trained).",
    ),
    envs: int | None = typer.Option(
        None,
        "--envs",
        min=1,
        help="Simulated-user envs (default: one per core, at least "
        f"{MIN_DEFAULT_ENVS}: {max(os.cpu_count() or 1, MIN_DEFAULT_ENVS)} here), each in its own "
        "SubprocVecEnv worker process on machines with more than 2 cores. PPO collects "
        "max(512 // envs, 32) steps per env between updates unless ppo.n_steps is set.",
    ),
    in_process: bool = typer.Option(
        False,
        "--in-process",
        help="Run the envs in this process (DummyVecEnv). Default: in this process on 2 cores, where it is "
        "faster; in worker processes on more.",
    ),
    workers: bool = typer.Option(
        False,
        "--workers",
        help="Run the envs in SubprocVecEnv worker processes, one per simulated user: --envs sets how "
        "many (see --in-process).",
    ),
    seed: int | None = typer.Option(
        None, "--seed", min=0, max=MAX_SEED, help="Seed of the model, the envs and the evaluation order."
    ),
    world_seed: WorldSeedOption = None,
    no_persona_attention: bool = typer.Option(
        False,
        "--no-persona-attention",
        help="Ablation: persona-blind (the policy, and a ranker the run pre-trains: one persona per user).",
    ),
    no_aspect_attention: bool = typer.Option(
        False,
        "--no-aspect-attention",
        help="Ablation: aspect-blind (the policy, and a ranker the run pre-trains: uniform aspect weights).",
    ),
    policy_only_ablation: bool = typer.Option(
        False,
        "--policy-only-ablation",
        help="Ablate only the policy's encoder; the ranker is pre-trained whole (`ablate_ranker: false`).",
    ),
    no_ranker_features: bool = typer.Option(
        False,
        "--no-ranker-features",
        help="Ablation: hide the ranker's scores and persona posterior from the policy (the ranker "
        "still proposes the candidates; only the encoder's own attentions can rank them).",
    ),
    plan_depth: int | None = typer.Option(
        None,
        "--plan-depth",
        min=1,
        help="Show the policy a depth-D search of the yes/no answers (each question slot's value, "
        "as lookahead-D weighs it; binary setting only; about lookahead-DxQ's time per turn).",
    ),
    plan_temperature: float | None = typer.Option(
        None,
        "--plan-temperature",
        help="The search's belief temperature with --plan-depth (default 1; lower trusts the ranker's "
        "order more; the next option fits it).",
    ),
    fit_plan_temperature: bool = typer.Option(
        False,
        "--fit-plan-temperature",
        help="With --plan-depth: fit the belief temperature to the training conversations' targets "
        "before training (the one under which their openings' targets are likeliest) and record it.",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="YAML/TOML settings file (CLI options win); a run's config.yaml replays that run's settings.",
    ),
    print_config: bool = typer.Option(
        False,
        "--print-config",
        help="Print the resolved settings as a config file and exit (trains nothing).",
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="Run name (default: the dataset, the ablation if any and the seed, e.g. persona_world-s0).",
    ),
    runs_dir: Path = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Parent of the run directory."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue run --name from its last checkpoint with its recorded settings (--steps extends the "
        "budget; only --steps, --learning-rate, --ent-coef, --in-process, --workers and --data-dir, for "
        "the same data moved, may change; options that repeat what the run recorded pass); a run "
        "stopped before its first checkpoint starts again from step 0 with its recorded settings.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete the existing run of that name and train it again from scratch."
    ),
    learning_rate: float | None = typer.Option(
        None,
        "--learning-rate",
        help="PPO learning rate, > 0 (default 1e-3; persona world 2e-4); with --resume: from now on.",
    ),
    ent_coef: float | None = typer.Option(
        None,
        "--ent-coef",
        min=0.0,
        help="PPO entropy bonus (default 0.01; persona world 0.001); with --resume: from now on.",
    ),
) -> None:
    """Train the graph RL policy (ask / probe / recommend) with MaskablePPO; compare with rule baselines.

    On the persona world, training follows its recipe unless the config or options say otherwise
    (`crs.app.settings.WORLD_RECIPE`, shown by --print-config): copy ask-7, then PPO learns when to
    stop asking (one question slot, gamma 1, target_kl 0.02); `imitation: null` trains from scratch.

    Examples:

        crs train  # the persona world, a few minutes on 2 cores

        # then, to train it further and fine-tune:
        crs train --name pw-long
        crs train --steps 200000 --name pw-long --resume
        crs train --steps 260000 --name pw-long --resume \\
          --learning-rate 3e-4 --ent-coef 0.003

        crs train --dataset lastfm --data-dir ../shared/data \\
          --ranker transe

        # UNICORN's YELP:
        crs train --dataset yelp_star --data-dir ../shared/data \\
          --setting enumerated

        crs train --no-persona-attention --no-aspect-attention --seed 1

        # the policy's encoder only:
        crs train --no-persona-attention --policy-only-ablation

        # 16 simulated users in 16 worker processes:
        crs train --envs 16 --workers

        # any setting, e.g. rewards: {quit_at_limit: -1.0}:
        crs train --config train.yaml

        # every setting with its value, as a config file:
        crs train --print-config > train.yaml

        # replay a run's settings:
        crs train --config runs/pw/config.yaml --name pw-again
    """
    if in_process and workers:
        raise CRSError("--in-process and --workers ask for opposite things: pass one of them")
    if resume:
        if overwrite:
            raise CRSError("--resume continues a run and --overwrite deletes it: pass one of them")
        refuse_options_resume_ignores(ctx, runs_dir / name if name else None)
        try:
            with terminate_as_interrupt():
                run_training(
                    None,
                    name=name,
                    runs_dir=runs_dir,
                    resume=True,
                    steps=steps,
                    ppo=with_options({}, ctx.params).get("ppo", {}),
                    data_dir=data_dir,
                )
        except KeyboardInterrupt as stop:
            raise _interrupted(runs_dir / name if name else None, stop) from None
        return
    data = read_settings_file(config, "config file") if config else {}
    if isinstance(data.get("settings"), dict):  # a run's config.yaml (`RunRecord`): replay its settings
        ignored = [key for key in data if key not in RunRecord.KEYS]
        if ignored:
            raise CRSError(
                f"config file {config} is a run's {RUN_CONFIG} (it has a settings: block), whose other "
                f"top-level keys are {', '.join(RunRecord.KEYS[1:])}; {', '.join(map(str, ignored))} would "
                "not be read: move them into settings:, or pass them as options"
            )
        if not print_config:  # --print-config's output is a config file
            note_resumed_changes(data.get("phases"), config)
        data = recorded_settings(data["settings"])
    data = with_options(data, ctx.params)
    check_world_seed(world_seed, data.get("dataset", PERSONA_WORLD))  # named as the option
    settings = make_settings(data)
    if policy_only_ablation and settings.persona_attention and settings.aspect_attention:
        raise CRSError(
            "--policy-only-ablation keeps the ranker whole while the policy is ablated, and nothing is "
            "ablated: add --no-persona-attention or --no-aspect-attention (or their config keys)"
        )
    if print_config:  # as the run records them
        typer.echo(yaml.safe_dump(with_data_dir_recorded(settings).model_dump(), sort_keys=False), nl=False)
        return
    try:
        with terminate_as_interrupt():
            run_training(settings, name=name, runs_dir=runs_dir, overwrite=overwrite)
    except KeyboardInterrupt as stop:
        raise _interrupted(runs_dir / (name or default_run_name(settings)), stop) from None


def with_options(data: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """A settings mapping with what `crs train`'s options set over `data`.

    Args:
        data: Settings (a config file's, or a run's recorded ones).
        options: `crs train`'s parameters by name (``ctx.params``); one that is None or False (not
            given) sets nothing, and a name not in it counts as not given.

    Raises:
        CRSError: Both --plan-temperature and --fit-plan-temperature.
    """
    given = {key: value for key, value in options.items() if value is not None and value is not False}
    data = {**data, **{key: given[key] for key in _SETTING_OPTIONS if key in given}}
    ppo: dict[str, Any] = {key: given[key] for key in ("learning_rate", "ent_coef") if key in given}
    if "in_process" in given or "workers" in given:
        ppo["subprocess"] = "workers" in given
    if ppo:
        data["ppo"] = {**data.get("ppo", {}), **ppo}
    for flag, key in _OFF_SWITCHES.items():
        if flag in given:
            data[key] = False
    wrapper: dict[str, Any] = {key: given[key] for key in ("plan_depth", "plan_temperature") if key in given}
    if "no_ranker_features" in given:
        wrapper["ranker_features"] = False
    if wrapper:
        data["wrapper"] = {**data.get("wrapper", {}), **wrapper}
    if "fit_plan_temperature" in given:
        if "plan_temperature" in given:
            raise CRSError(
                f"--plan-temperature {given['plan_temperature']:g} sets the belief temperature and "
                "--fit-plan-temperature fits one: pass one of them"
            )
        data["fit_plan_temperature"] = True
    return data


# options that set the settings key of their own name, and switches that turn a setting off
_SETTING_OPTIONS = ("dataset", "data_dir", "setting", "ranker", "steps", "envs", "seed", "world_seed")
_OFF_SWITCHES = {
    "no_persona_attention": "persona_attention",
    "no_aspect_attention": "aspect_attention",
    "policy_only_ablation": "ablate_ranker",
}


def _interrupted(run_dir: Path | None, stop: KeyboardInterrupt) -> typer.Exit:
    """Say what a run stopped by Ctrl-C or SIGTERM keeps and how to continue it; the exit of that signal."""
    word, status = stopped(stop)
    if run_dir is not None and (run_dir / RUN_CONFIG).is_file():
        console.print(
            f"[yellow]{word}[/]: {escape(str(run_dir))} keeps what it checkpointed; continue it with "
            f"`crs train {escape(run_options(run_dir.name, run_dir.parent))} --resume` (a run stopped "
            "before its first checkpoint starts again from step 0)"
        )
    else:
        console.print(f"[yellow]{word}[/] before the run was recorded: nothing to continue")
    return typer.Exit(status)


def note_resumed_changes(phases: Any, config: Path | None) -> None:
    """Say that a replayed run's config.yaml holds its last session's settings when a resume changed
    some (`crs.app.run_folder.RunPhase`): the replay trains straight through with them, another policy.
    Phases that cannot be read are left to `crs.app.run_folder.RunRecord.read` to name."""
    try:
        changed = [RunPhase.from_dict(phase) for phase in phases or ()]
    except (TypeError, ValueError, KeyError, IndexError, AttributeError):
        return
    resumed = [phase.describe() for phase in changed if phase.changed]
    if resumed:
        console.print(
            f"[yellow]note:[/] {config} is of a run resumed with changed settings ({'; '.join(resumed)}); "
            "this replay trains straight through with its last session's settings, so it does not "
            "reproduce that run"
        )


def refuse_options_resume_ignores(ctx: typer.Context, run_dir: Path | None) -> None:
    """Refuse the options the user gave that `--resume` cannot apply (it keeps the run's settings); a
    setting's option that says what the run recorded (the first command again, with --resume) changes
    nothing and passes.

    Args:
        ctx: `crs train`'s context.
        run_dir: The run to resume (None without --name: then nothing is recorded to agree with).

    Raises:
        ResumeOptionError: Names each option that would change the run, what the run recorded where it
            is a setting, and the options --resume accepts.
    """
    recorded = _recorded_settings(run_dir) if run_dir else None
    given = []
    for param in ctx.command.params:
        if param.name is None or param.name in RESUME_OPTIONS:
            continue
        source = ctx.get_parameter_source(param.name)  # typer's own click: compare the enum by name
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        value = ctx.params[param.name]
        option = max(param.opts, key=len)  # its long form
        option += "" if isinstance(value, bool) else f" {value}"
        changed = _changed_settings(recorded, param.name, value)
        if changed == {}:
            continue  # it says what the run recorded
        was = "; ".join(f"the run recorded {key}: {before}" for key, before in (changed or {}).items())
        given.append(f"{option} ({was})" if was else option)
    if given:
        params = {param.name: param for param in ctx.command.params}
        accepted = ", ".join(max(params[key].opts, key=len) for key in RESUME_OPTIONS if key != "resume")
        raise ResumeOptionError(
            f"--resume cannot apply {', '.join(given)}: a resumed run keeps the settings its config.yaml "
            f"recorded. --resume accepts only {accepted}, and options that repeat what the run recorded; "
            "to train with other settings, start a new run (another --name, or --overwrite without --resume)"
        )


def _recorded_settings(run_dir: Path) -> dict[str, Any] | None:
    """The settings in `run_dir`'s config.yaml as `make_settings` gives them back (what an option is
    compared with); None where there are none to read (the resume itself then says what is wrong)."""
    if not (run_dir / RUN_CONFIG).is_file():
        return None
    try:
        return make_settings(RunRecord.read(run_dir).settings.model_dump()).model_dump()
    except CRSError:
        return None


def _changed_settings(recorded: dict[str, Any] | None, name: str, value: Any) -> dict[str, Any] | None:
    """The settings that option `name` with `value` would change in a run that recorded `recorded`
    (`_recorded_settings`), by key with the recorded value ({}: it repeats what the run recorded); None
    where that cannot be told (no record, an option that sets no setting, or a bad value)."""
    if recorded is None or not with_options({}, {name: value}):
        return None
    try:
        after = make_settings(with_options(recorded, {name: value})).model_dump()
    except CRSError:
        return None
    return {key: was for key, was in recorded.items() if after[key] != was}
