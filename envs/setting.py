"""The question settings of the field, defined once: what a question is, and whose figures compare.

- ``binary``: every question names one aspect, answered yes or no (EAR / SCPR / UNICORN / DAHCR on
  LastFM, LastFM* and Yelp*; UNICORN's ``YELP_STAR`` asks the 590 fine aspects this way).
- ``enumerated``: the agent asks a first-layer category and the user names the target's fine aspects
  under it (UNICORN's and EAR's ``YELP`` setting: Yelp*'s 29 categories). The user opens with a
  random category of the target, answered the same way.
- ``multiple_choice``: a question lists several aspects and the user picks those that fit; persona
  probes are offered (MCMIPL's multi-interest setting on real data, and the persona world).
"""

from __future__ import annotations

from typing import Literal

from simulators.errors import CRSError

Setting = Literal["binary", "enumerated", "multiple_choice"]
SETTINGS: tuple[Setting, ...] = ("binary", "enumerated", "multiple_choice")

# One line per setting: what a question is (`crs.report.formatting.setting_note` adds which published
# figures a table compares with, which depends on its dataset too).
SETTING_NOTES: dict[str, str] = {
    "binary": "binary setting: every question names one aspect",
    "enumerated": (
        "enumerated setting: a question asks a category and the user names the fitting aspects under it"
    ),
    "multiple_choice": "multiple-choice setting: questions and persona probes list several aspects",
}

# The setting of run folders written before it was recorded: Yelp* was enumerated by default then.
LEGACY_SETTINGS: dict[str, Setting] = {"yelp_star": "enumerated"}


def check_setting(value: str) -> Setting:
    """Return `value` as a `Setting`, or raise CRSError naming the valid settings."""
    if value not in SETTINGS:
        raise CRSError(f"unknown setting {value!r}; valid settings: {', '.join(SETTINGS)}")
    return value


def offers_probes(setting: Setting) -> bool:
    """Whether `setting` offers persona probes: only "multiple_choice" does (a probe lists several
    aspects; the binary and enumerated settings ask one aspect or one category per question)."""
    return setting == "multiple_choice"


def default_setting(*, single_target: bool) -> Setting:
    """The setting of an env unless one is named: "binary" for a single-target user (UNICORN's setting
    for LastFM, LastFM* and Yelp*), else "multiple_choice" (MCMIPL's multi-interest user, and the
    persona world's persona user)."""
    return "binary" if single_target else "multiple_choice"
