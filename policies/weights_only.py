"""Loading tensors through torch's weights-only unpickler, and saying in one line what it refused.

torch's own refusal is several lines long and suggests re-running with ``weights_only=False``, which is
exactly what a file that could run code must never get; its pickle-protocol warning for a file
``torch.save`` did not write would be printed above the refusal. Every tensor file the project reads
(a pre-training artifact, a model zip's entries) is loaded here or has its refusal worded here.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from collections.abc import Iterator
from typing import IO, Any

import torch

REFUSED = "Weights only load failed"
"""How torch's weights-only unpickler begins a refusal (a damaged stream raises the same type)."""
_GLOBAL = re.compile(r"(?:unsupported|Unsupported global:) GLOBAL (\S+)")
_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def refusal(error: BaseException) -> str | None:
    """What the weights-only unpickler refused, in words ("it references posix.system, which is not a
    plain tensor and loading it could run code; nothing was loaded"; where torch names no global, as for
    garbage or a plain pickle, the opcode it stopped at), when `error` is its refusal (an
    ``UnpicklingError``, also as the cause of another error); None for any other error."""
    while error is not None and not isinstance(error, pickle.UnpicklingError):
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    if error is None or REFUSED not in str(error):  # not the refusal: a damaged stream
        return None
    found = _GLOBAL.search(str(error))
    if found:
        return (
            f"it references {found.group(1)}, which is not a plain tensor and loading it could run code; "
            "nothing was loaded"
        )
    detail = _DETAIL.search(str(error))
    why = f"{detail.group(1).strip()}: " if detail else ""
    return (
        f"its content is not a plain tensor ({why}damaged, or an object whose loading could run code); "
        "nothing was loaded"
    )


@contextlib.contextmanager
def quiet_weights_only() -> Iterator[None]:
    """Inside the block, torch's warnings about a checkpoint's pickle protocol are not shown (the load
    either succeeds or raises a refusal that `refusal` words)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pickle protocol.*", category=UserWarning)
        yield


def load_tensors(file: str | IO[bytes]) -> Any:
    """``torch.load(file, map_location="cpu", weights_only=True)`` without torch's pickle-protocol
    warning.

    Raises:
        pickle.UnpicklingError: The file holds something the weights-only unpickler refuses
            (`refusal` words it); other errors for a damaged file.
    """
    with quiet_weights_only():
        return torch.load(file, map_location="cpu", weights_only=True)
