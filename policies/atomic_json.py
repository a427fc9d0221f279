"""Writing a JSON file atomically (a temporary file, then a rename), for every layer that writes one.

It lives directly in `policies` (not in `policies.rl`) so that `crs.common` can re-export it without
importing torch and Stable-Baselines3.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to `path` through a temporary file and an atomic rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
