"""YAML reading that refuses a key written twice in one mapping.

PyYAML's `yaml.safe_load` silently keeps the last of two equal keys, so a config holding
``seeds: [1, 2]`` and, further down, ``seeds: [3]`` runs only seed 3. `safe_load_unique` is
`yaml.safe_load` with that case turned into an error naming the key and both lines. Keys merged in
with ``<<: *anchor`` may still be overridden: only keys written in the mapping itself must be unique.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

MERGE_TAG = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` whose mappings refuse duplicate keys (a `ConstructorError`, a `yaml.YAMLError`)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping after checking that no key is written twice in it.

        Raises:
            ConstructorError: When a key occurs twice; the message names it and both lines.
        """
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # '<<' merges: their keys may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                continue
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first on line {first_line[key]}, again on line {line}); "
                    "keep only one",
                    key_node.start_mark,
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def safe_load_unique(text: str) -> Any:
    """`yaml.safe_load(text)`, but a key written twice in one mapping is an error.

    Raises:
        yaml.YAMLError: Unparsable text, or a duplicate key (a `ConstructorError` naming it).

    Example:
        >>> safe_load_unique("seeds: [1, 2]\\nname: a\\n")
        {'seeds': [1, 2], 'name': 'a'}
    """
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: safe
