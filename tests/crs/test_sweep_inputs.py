"""`crs sweep` on bad input: each refused before any task starts (exit code 2, no traceback), naming the bad
value and the fix, with nothing written: a sweep folder of another config, an --out that is not a sweep
folder or is a file, a Ray cluster that cannot be reached, a ranker no task could use, an empty config."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crs.app.sweep import SWEEP_FILE, load_sweep_config, sweep_task_dirs
from crs.parallel import WorkerPool, _check_reachable
from simulators.errors import CRSError
from tests.crs.tiny_runs import pretrain_tiny

runner = CliRunner()
CONFIG = "seeds: [1, 2]\neval: {episodes: 5}\n"  # ask-4, two tasks of 5 conversations
SERIAL = ("--backend", "serial")


def sweep(
    tmp_path: Path, config_text: str, *options: str, out: Path | None = None, name: str = "sweep.yaml"
) -> tuple[int, str, Path]:
    """`crs sweep` on `config_text` (written as `name`) into `out` (default tmp_path/out): exit code, output
    on one line, and the --out folder."""
    from crs.cli import app

    config = tmp_path / name
    config.write_text(config_text)
    out = out if out is not None else tmp_path / "out"
    result = runner.invoke(app, ["sweep", str(config), "--out", str(out), *options], env={"COLUMNS": "250"})
    return result.exit_code, " ".join(result.output.split()), out


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ the --out folder
def test_a_sweep_folder_of_another_config_is_refused_and_left_as_it_was(tmp_path) -> None:
    code, output, out = sweep(tmp_path, CONFIG, *SERIAL)
    assert code == 0, output
    before = files_of(out)
    other = "seeds: [1, 2]\npolicies: [max-entropy]\neval: {episodes: 5}\n"
    code, output, _ = sweep(tmp_path, other, *SERIAL)
    assert code == 2, output
    assert (
        f"--out {out} holds 2 finished task(s) of another config: persona_world-ask-4-default-s1, "
        "persona_world-ask-4-default-s2; use another --out, or a config that includes them, e.g. the one "
        "that made them (its sweep.json)" in output
    )
    assert "already finished" not in output and files_of(out) == before  # sweep.json, results.json kept
    # the config grown to include them runs there: the finished tasks are skipped
    grown = "seeds: [1, 2]\npolicies: [ask-4, max-entropy]\neval: {episodes: 5}\n"
    code, output, _ = sweep(tmp_path, grown, *SERIAL)
    assert code == 0 and "2 run now, 2 skipped as finished" in output, output


def test_the_same_config_runs_into_its_folder_with_fewer_or_more_seeds(tmp_path) -> None:
    code, output, out = sweep(tmp_path, CONFIG, *SERIAL)
    assert code == 0, output
    code, output, _ = sweep(tmp_path, CONFIG, *SERIAL, "--seeds", "2")
    assert code == 0 and "1 tasks, 1 already finished" in output, output
    code, output, _ = sweep(tmp_path, CONFIG, *SERIAL, "--seeds", "1-3")
    assert code == 0 and "3 tasks, 2 already finished" in output, output
    code, output, _ = sweep(tmp_path, CONFIG, *SERIAL)  # seed 3 is this config's too
    assert code == 0 and "2 tasks, 2 already finished" in output, output
    assert [path.name[-2:] for path in sweep_task_dirs(out)] == ["s1", "s2", "s3"]


@pytest.mark.parametrize(
    "files",
    [{"summary.json": "{}", "episodes.jsonl": ""}, {"notes.txt": "mine"}],
    ids=["eval-output", "unrelated"],
)
def test_a_folder_that_is_not_a_sweep_folder_is_refused_untouched(tmp_path, files) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    code, output, _ = sweep(tmp_path, CONFIG, *SERIAL)
    assert code == 2, output
    assert (
        f"--out {out} is not a sweep folder (no {SWEEP_FILE}) and not empty: it holds "
        f"{', '.join(sorted(files))}; give a new or empty folder" in output
    )
    assert files_of(out) == {name: text.encode() for name, text in files.items()}


def test_an_empty_folder_becomes_a_sweep_folder(tmp_path) -> None:
    (tmp_path / "out").mkdir()
    code, output, out = sweep(tmp_path, CONFIG, *SERIAL)
    assert code == 0 and "2 tasks, 0 already finished" in output, output
    assert len(sweep_task_dirs(out)) == 2


@pytest.mark.parametrize("below", [False, True], ids=["file", "below-a-file"])
def test_an_out_that_is_a_file_is_refused_untouched(tmp_path, below) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    out = file / "sweep" if below else file
    code, output, _ = sweep(tmp_path, CONFIG, *SERIAL, out=out)
    assert code == 2, output
    assert f"--out {out}: {file} is a file, not a folder; give a new folder" in output
    assert "Traceback" not in output and file.read_text() == "mine"


# ------------------------------------------------------------------ a Ray cluster
@pytest.mark.parametrize(
    "error",
    [ConnectionError("Failed to connect to Ray cluster at 1.2.3.4:1"), ValueError("Invalid address format")],
    ids=["unreachable", "not-an-address"],
)
def test_a_ray_cluster_that_cannot_be_reached_is_named_and_nothing_is_written(
    tmp_path, monkeypatch, error
) -> None:
    ray = pytest.importorskip("ray")
    code, output, out = sweep(tmp_path, CONFIG, *SERIAL)
    assert code == 0, output
    before = files_of(out)

    def refuse(*args: object, **kwargs: object) -> None:
        raise error  # what ray.init raises after its connection timeout (20 s and more)

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr("crs.parallel._check_reachable", lambda address: None)  # ray.init's own refusal
    expected = (
        f"--address 1.2.3.4:1: cannot connect to a Ray cluster there ({type(error).__name__}: {error}); "
        "start one (`ray start --head`) and give its address"
    )
    fresh = tmp_path / "fresh"
    code, output, _ = sweep(tmp_path, CONFIG, "--address", "1.2.3.4:1", out=fresh)
    assert code == 2 and expected in output, output
    assert not fresh.exists()
    # More seeds into the earlier sweep: its sweep.json is not rewritten for tasks that never start.
    code, output, _ = sweep(tmp_path, CONFIG, "--address", "1.2.3.4:1", "--seeds", "1-3")
    assert code == 2 and expected in output, output
    assert files_of(out) == before
    with pytest.raises(CRSError, match="cannot connect to a Ray cluster"), WorkerPool(address="1.2.3.4:1"):
        pass  # `crs eval --address` opens the same pool


def test_a_host_port_where_nothing_listens_is_refused_at_once(tmp_path) -> None:
    """Ray retries such an address for minutes; the pool asks the port first."""
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    with (
        pytest.raises(CRSError, match=f"nothing answers at 127.0.0.1:{port}"),
        WorkerPool(address=f"127.0.0.1:{port}"),
    ):
        pass
    assert time.perf_counter() - started < 30  # (Ray's own retries take minutes)
    with socket.socket() as server:  # something listens: the check lets Ray try
        server.bind(("127.0.0.1", 0))
        server.listen()
        _check_reachable(f"127.0.0.1:{server.getsockname()[1]}")


# ------------------------------------------------------------------ the config
@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "eval: {episodes: 5, ranker: uniform+bogus}\n",
            "eval.ranker: ranker 'uniform+bogus' is neither one of transe, popularity, uniform (a "
            "persona one with its suffixes, e.g. uniform+profile) nor an existing `crs pretrain` artifact",
        ),
        (
            "eval: {episodes: 5}\nablations: {default: {}, hot: {ranker: popularity@2}}\n",
            "ablations.hot.ranker: ranker 'popularity' has no learned preferences to temper",
        ),
        (
            "eval: {episodes: 5, ranker: transe}\n",
            "eval.ranker: ranker 'transe': TransE embeddings are published for lastfm only, not "
            "persona_world",
        ),
        ("eval: {episodes: 5, ranker: pretrain}\n", "eval.ranker: ranker 'pretrain' cannot be used by kind"),
        ("kind: train\ntrain: {ranker: run}\n", "train.ranker: ranker 'run' cannot be used by kind 'train'"),
        (
            "kind: train\ntrain: {ranker: 'uniform+profile:0'}\n",
            "train: bad training settings: ranker: profile weight 0.0 must be",
        ),
    ],
)
def test_a_ranker_no_task_could_use_is_refused_when_the_config_is_read(tmp_path, config, message) -> None:
    code, output, out = sweep(tmp_path, config, *SERIAL)
    assert code == 2, output
    assert message in output
    assert not out.exists() and "already finished" not in output  # no task started


def test_rankers_a_task_can_use_are_taken(tmp_path) -> None:
    artifact = pretrain_tiny(tmp_path / "ranker")
    rankers = ["popularity", "uniform+profile+split@4", str(artifact), f"{artifact}+profile"]
    for ranker in rankers:
        config = tmp_path / "sweep.yaml"
        config.write_text(f"eval: {{episodes: 5, ranker: '{ranker}'}}\n")
        assert load_sweep_config(config).eval.ranker == ranker
    # A training sweep may name the artifact `crs pretrain` writes before it runs (the benchmark configs).
    config.write_text("kind: train\ntrain: {ranker: runs/pretrain/not-yet+profile}\n")
    assert load_sweep_config(config).train["ranker"] == "runs/pretrain/not-yet+profile"


@pytest.mark.parametrize("kind", ["eval", "sessions"])
def test_a_ranker_a_task_cannot_use_is_refused_by_its_key_before_any_task_runs(tmp_path, kind) -> None:
    """An artifact pre-trained on another dataset than a task's, and a ranker for a trained run (which
    ranks with its own) are refused when the config is read, naming the config's key, not a CLI flag."""
    artifact = pretrain_tiny(tmp_path / "art")  # of the persona world
    block = f"{kind}: {{ranker: '{artifact}'}}\n" + ("kind: sessions\n" if kind == "sessions" else "")
    code, output, out = sweep(tmp_path, "datasets: [persona_world, lastfm]\n" + block, *SERIAL)
    assert code == 2 and not out.exists(), output
    assert (
        f"{kind}.ranker: artifact {artifact} was pre-trained on persona_world, not lastfm; give one "
        "pre-trained on lastfm (`crs pretrain -d lastfm --data-dir DATA --out DIR`), or list only "
        "persona_world under datasets"
    ) in " ".join(output.split())

    run = tmp_path / "run"  # a folder is a trained run's policy to a sweep's config
    run.mkdir()
    code, output, out = sweep(tmp_path, f"policies: [ask-4, '{run}']\n{block}", *SERIAL)
    assert code == 2 and not out.exists(), output
    assert (
        f"{kind}.ranker: the trained run {run} ranks with its own ranker, which its network was "
        "trained on; sweep trained runs without a ranker and rules with one in two sweep folders"
    ) in " ".join(output.split())


@pytest.mark.parametrize(
    ("name", "text"), [("sweep.yaml", ""), ("sweep.yaml", "# to do\n"), ("sweep.toml", "")]
)
def test_an_empty_config_is_refused(tmp_path, name, text) -> None:
    code, output, out = sweep(tmp_path, text, *SERIAL, name=name)
    assert code == 2, output
    assert (
        f"sweep config {tmp_path / name} is empty; a config says what to run, e.g. `policies: [ask-4]`"
        in output
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "policies: [ask-4, lookahead-2]\neval: {episodes: 3}\n",
            "policies: lookahead-2 plans yes/no questions: it needs the binary setting, not "
            "'multiple_choice' (on persona_world); set eval.setting: binary where the dataset has it",
        ),
        (
            "eval: {episodes: 3}\nablations: {a: {}, e: {setting: enumerated}}\n",
            "ablations.e.setting: enumerated asks a taxonomy's categories, and persona_world has none",
        ),
        (
            "kind: train\ntrain: {steps: 64, baselines: [probe-2-ask-5], setting: binary}\n",
            "train: bad training settings: baselines: probe-2-ask-5 probes personas, which only the "
            "multiple-choice setting offers",
        ),
    ],
)
def test_a_setting_a_task_cannot_play_is_refused_by_its_key_before_any_task_runs(
    tmp_path, config, message
) -> None:
    """Each of these started its tasks, which failed one by one (exit 1, "rerun to retry them")."""
    code, output, out = sweep(tmp_path, config, *SERIAL)
    assert code == 2 and not out.exists(), output
    assert message in " ".join(output.split())


def test_a_rerun_over_a_ranker_pre_trained_again_since_its_finished_tasks_is_refused(tmp_path) -> None:
    """The finished tasks of seed 1 ran over one ranker; the artifact was pre-trained again in place; a
    rerun with seed 2 ran seed 2 over the new one and the report pooled both seeds in one row. It is now
    refused before any task runs, naming the tasks and the fix."""
    artifact = pretrain_tiny(tmp_path / "rk")
    config = f"seeds: [1]\neval: {{episodes: 5, ranker: '{artifact}'}}\n"
    code, output, out = sweep(tmp_path, config, *SERIAL)
    assert code == 0, output
    assert sweep(tmp_path, config.replace("[1]", "[1, 2]"), *SERIAL)[0] == 0  # the same ranker: goes on
    before = files_of(out / "runs")
    pretrain_tiny(artifact, "--seed", "2", "--overwrite")
    code, output, _ = sweep(tmp_path, config.replace("[1]", "[1, 2, 3]"), *SERIAL)
    assert code != 0 and files_of(out / "runs") == before, output
    assert (
        f"2 finished task(s) of {out} (persona_world-ask-4-default-s1, persona_world-ask-4-default-s2) ran "
        "over a ranker that holds other weights now"
    ) in output, output
    assert "use another --out, or delete those task folders to run them again" in output


def test_a_report_never_pools_the_seeds_of_a_sweep_row_that_ran_over_two_rankers(tmp_path) -> None:
    """A sweep folder made before the rerun check (seed 2 ran after the ranker was pre-trained again): its
    two seeds are two rows, not one row of 2 seeds over two rankers."""
    from crs.report import build_report

    artifact = pretrain_tiny(tmp_path / "rk")
    config = f"eval: {{episodes: 5, ranker: '{artifact}'}}\n"
    assert sweep(tmp_path, "seeds: [1]\n" + config, *SERIAL)[0] == 0
    pretrain_tiny(artifact, "--seed", "2", "--overwrite")
    code, output, other = sweep(tmp_path, "seeds: [2]\n" + config, *SERIAL, out=tmp_path / "other")
    assert code == 0, output
    task = "persona_world-ask-4-default-s2"
    (other / "runs" / task).rename(tmp_path / "out" / "runs" / task)
    report = build_report([tmp_path / "out"], tmp_path / "report", examples=0, persona=False, figures=False)
    rows = [
        (row.label, [run.summary.seed for run in row.runs]) for table in report.tables for row in table.rows
    ]
    assert sorted(rows) == [("ask-4", [1]), ("ask-4", [2])]


def test_a_sweep_interrupted_before_any_task_finished_does_not_point_to_kept_tasks(
    tmp_path, monkeypatch
) -> None:
    """It said "finished tasks are kept in out/runs" where nothing had finished and out/ did not exist."""
    import crs.sweep_cmd

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(crs.sweep_cmd, "run_sweep", interrupted)
    code, output, out = sweep(tmp_path, CONFIG, *SERIAL)
    assert code == 130 and not out.exists(), output
    assert "interrupted: no task had finished, so none is kept; rerun the same command" in output
    assert "kept in" not in output
