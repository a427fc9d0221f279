"""The files of a run folder, each defined once with its writer and reader.

A `crs train` run directory ``runs/<name>/`` holds:

- ``config.yaml`` (`RUN_CONFIG`): the resolved settings, seed, package versions and system info;
- ``policy.json``: what `policies.rl.load_trained_policy` needs (`policies.rl.run_files`);
- ``checkpoint.zip`` + ``state.json``: the latest checkpoint for ``--resume`` (`policies.rl.run_files`);
- ``best_model.zip`` (best validation SR@15, then hDCG), ``model.zip`` (final);
- ``eval.csv`` / ``eval.jsonl`` (`CurveFile`): the validation curve; ``tb/``: TensorBoard logs;
- ``summary.json`` (`TRAIN_SUMMARY`): the final test comparison; ``ranker/``: a ranker pre-trained on
  the fly.

A `crs eval` folder holds ``summary.json`` and ``episodes.jsonl`` (`EVAL_SUMMARY`, `EPISODES_FILE`).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import yaml

from crs.app.settings import TrainSettings, make_settings
from simulators.errors import CRSError

RUN_CONFIG = "config.yaml"
SUMMARY_FILE = "summary.json"
EPISODES_FILE = "episodes.jsonl"
# Files of a run that hold training progress; a resume without a checkpoint starts again without them.
PROGRESS_FILES = ("eval.csv", "eval.jsonl", "state.json", "best_model.zip", "model.zip", "summary.json")


def read_run_settings(run_dir: Path) -> TrainSettings:
    """The settings a run recorded in its config.yaml.

    Raises:
        CRSError: config.yaml is missing, damaged or lacks its settings (the message names the command
            that starts the run again).
    """
    path = run_dir / RUN_CONFIG
    again = (
        f"start the run again with `crs train --name {run_dir.name} --runs-dir {run_dir.parent} --overwrite`"
    )
    if not path.is_file():
        raise CRSError(f"{run_dir} has no {RUN_CONFIG} (the run stopped before writing it); {again}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CRSError(f"{path} is damaged ({type(error).__name__}); {again}") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise CRSError(f"{path} holds no 'settings' mapping; {again}")
    return make_settings(data["settings"])


def write_yaml_atomic(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(temporary, path)


class CurveFile:
    """The validation curve: eval.csv and eval.jsonl, one row per evaluation point."""

    FIELDS = ("timesteps", "seconds", "SR@5", "SR@10", "SR@15", "AT", "hDCG", "best")

    def __init__(self, run_dir: Path) -> None:
        self.csv = run_dir / "eval.csv"
        self.jsonl = run_dir / "eval.jsonl"
        if not self.csv.exists():
            self._write([])

    def rows(self) -> list[dict[str, Any]]:
        """The rows of eval.csv (numbers parsed).

        Raises:
            CRSError: eval.csv is damaged.
        """
        try:
            with self.csv.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            return [{k: float(v) if k != "best" else v == "True" for k, v in row.items()} for row in rows]
        except (OSError, ValueError, TypeError) as error:
            raise CRSError(
                f"{self.csv} is damaged ({error}); delete it to resume without the earlier curve"
            ) from None

    def resume_at(
        self, checkpoint_steps: int, best_model_steps: int | None
    ) -> tuple[tuple[float, float], int]:
        """Drop the rows newer than the checkpoint and return (best score to beat, last evaluated step).

        The score to beat is the one measured for the model in best_model.zip (the row of its step),
        so a resumed run never replaces it with a worse one; (-1, -1) when there is none.
        """
        rows = self.rows()
        kept = [row for row in rows if row["timesteps"] <= checkpoint_steps]
        best_rows = [row for row in rows if row["timesteps"] == best_model_steps] or [
            row for row in kept if row["best"]
        ]
        best = max(((row["SR@15"], row["hDCG"]) for row in best_rows), default=(-1.0, -1.0))
        if len(kept) < len(rows):
            self._write(kept)
        return best, int(kept[-1]["timesteps"]) if kept else -1

    def _write(self, rows: list[dict[str, Any]]) -> None:
        for path, text in (
            (self.csv, ",".join(self.FIELDS) + "\n" + "".join(self._csv_line(row) for row in rows)),
            (self.jsonl, "".join(json.dumps(self._typed(row)) + "\n" for row in rows)),
        ):
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(text)
            os.replace(temporary, path)

    def _typed(self, row: dict[str, Any]) -> dict[str, Any]:
        return {k: int(row[k]) if k == "timesteps" else row[k] for k in self.FIELDS}

    def _csv_line(self, row: dict[str, Any]) -> str:
        return ",".join(str(v) for v in self._typed(row).values()) + "\n"

    def add(self, point: Any) -> None:
        row = {
            "timesteps": point.timesteps,
            "seconds": round(point.seconds, 2),
            **point.metrics,
            "best": point.best,
        }
        with self.csv.open("a", newline="") as handle:
            handle.write(self._csv_line(row))
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(self._typed(row)) + "\n")
