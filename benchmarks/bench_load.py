"""Load time of the SCPR/UNICORN catalogues (LastFM, LastFM*, Yelp*) and of MCMIPL's (its LastFM* and
MovieLens releases, read through the restricted unpickler, and Yelp* in its setting).

Each loader runs once cold (the first load in this process: interpreter-level caches empty; the OS
file cache is whatever it is) and then `--repeats` more times; the table shows the cold time and the
best of the repeats. Loaders are called directly, bypassing the registry's in-process cache and
MCMIPL's release cache.

Usage:
    .venv/bin/python benchmarks/bench_load.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
from _cli import positive_int, run_script  # this folder is on sys.path as a script

from simulators import mcmipl
from simulators.catalog import Catalog
from simulators.mcmipl import load_mcmipl_lastfm_star, load_mcmipl_movie, load_mcmipl_yelp_star
from simulators.scpr import load_lastfm, load_lastfm_star, load_yelp_star

LOADERS: dict[str, tuple[Callable[[Path], Catalog], float | None]] = {
    # name: (loader, target seconds from issue 2, if any)
    "lastfm": (load_lastfm, None),
    "lastfm_star": (load_lastfm_star, 1.0),
    "yelp_star": (load_yelp_star, 5.0),
    "mcmipl_lastfm_star": (load_mcmipl_lastfm_star, None),
    "mcmipl_movie": (load_mcmipl_movie, None),
    "mcmipl_yelp_star": (load_mcmipl_yelp_star, None),
}


def _time(loader: Callable[[Path], Catalog], data_dir: Path) -> tuple[float, Catalog]:
    mcmipl.clear_cache()
    start = time.perf_counter()
    catalog = loader(data_dir)
    return time.perf_counter() - start, catalog


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_dir = os.environ.get(
        "CRS_DATA_DIR", str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    )
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir))
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="warm runs after the cold one (best is reported)"
    )
    args = parser.parse_args()

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}"
    )
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print()
    columns = ("users", "items", "aspects", "cold s", "best s")
    header = f"{'dataset':<18} " + " ".join(
        f"{c:>{w}}" for c, w in zip(columns, (7, 7, 7, 8, 8), strict=True)
    )
    header += f" {'target s':>9}"
    print(header)
    print("-" * len(header))
    for name, (loader, target) in LOADERS.items():
        cold, catalog = _time(loader, args.data_dir)
        best = min(_time(loader, args.data_dir)[0] for _ in range(args.repeats))
        verdict = "" if target is None else (f"< {target:g} ok" if best < target else f"< {target:g} MISSED")
        print(
            f"{name:<18} {catalog.n_users:>7,} {catalog.n_items:>7,} {catalog.n_aspects:>7,} "
            f"{cold:>8.3f} {best:>8.3f} {verdict:>9}"
        )


if __name__ == "__main__":
    run_script(main)
