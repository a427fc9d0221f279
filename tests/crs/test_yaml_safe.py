"""`crs.yaml_safe`: a key written twice is an error; merges, anchors and odd keys behave as in PyYAML."""

from __future__ import annotations

import pytest
import yaml

from crs import yaml_safe
from crs.yaml_safe import safe_load_unique


def test_a_key_written_twice_is_named_with_both_lines() -> None:
    with pytest.raises(yaml.YAMLError, match=r"duplicate key 'seeds' \(first on line 1, again on line 3\)"):
        safe_load_unique("seeds: [1, 2]\nname: a\nseeds: [3]\n")
    with pytest.raises(yaml.YAMLError, match="duplicate key 'user'"):
        safe_load_unique("ablations:\n  single: {user: single, user: multi}\n")


def test_everything_else_reads_as_with_safe_load() -> None:
    texts = [
        "seeds: [1, 2]\neval: {episodes: 5}\n",
        # A merge key whose merged keys are overridden on purpose: not a duplicate.
        "base: &b {episodes: 5, user: single}\nablations:\n  a: *b\n  b:\n    <<: *b\n    user: multi\n",
        "",
        "- 1\n- 2\n",
    ]
    for text in texts:
        assert safe_load_unique(text) == yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError, match="unhashable"):  # PyYAML's own error, not a TypeError
        safe_load_unique("? [1, 2]\n: v\n")
    with pytest.raises(yaml.YAMLError):  # still a safe loader: no Python objects
        safe_load_unique("x: !!python/object/apply:os.system ['true']\n")


def test_the_size_of_an_alias_chain_is_counted_once_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    # each level lists the one below twice: level i expands to 2^(i+2) − 1 values, the document to
    # 2^42 + 2^41 − 3, yet the count visits each node once (a walk that followed every alias anew would
    # take as many steps as there are values: it would never end)
    levels = 40
    lines = ["a0: &a0 [x, x]", *(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, levels))]
    text = "\n".join([*lines, f"seed: *a{levels - 1}"]) + "\n"
    visits = 1 + 2 * (levels + 1) + 2 * levels  # the document, each of its keys and values, each list item
    counted = yaml_safe._expanded_size
    calls = 0

    def count(*args: object) -> int:
        nonlocal calls
        calls += 1
        if calls > 2 * visits:  # the walk follows aliases anew: stop it rather than wait for 2^42 steps
            raise AssertionError(f"counting {visits} nodes took over {2 * visits} steps")
        return counted(*args)

    monkeypatch.setattr(yaml_safe, "_expanded_size", count)
    with pytest.raises(yaml.YAMLError, match=f"expands to {2**42 + 2**41 - 3:,} values through its aliases"):
        safe_load_unique(text)
    assert calls <= visits


def test_a_document_that_aliases_blow_up_is_refused_before_it_is_built() -> None:
    # "billion laughs": 450 bytes that expand to 9^9 values; repr() of it filled gigabytes
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    with pytest.raises(yaml.YAMLError, match=r"expands to [0-9,]{11} values through its aliases"):
        safe_load_unique("\n".join([*lines, "seed: *a8"]) + "\n")
    small = "\n".join([*lines[:3], "seed: *a2"]) + "\n"  # 9^3: aliases within reason still read
    assert safe_load_unique(small) == yaml.safe_load(small)
    with pytest.raises(yaml.YAMLError, match="an alias refers to the node that holds it"):
        safe_load_unique("a: &a [1, *a]\n")  # was a RecursionError


def test_a_run_s_config_yaml_is_read_with_the_same_limits(tmp_path) -> None:
    from crs.app.run_folder import RUN_CONFIG, RunRecord
    from simulators.errors import CRSError

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (tmp_path / RUN_CONFIG).write_text("\n".join([*lines, "settings: {seed: *a8}"]) + "\n")
    with pytest.raises(CRSError, match=r"config\.yaml is damaged"):  # a shared run's file, read by crs report
        RunRecord.read(tmp_path)
