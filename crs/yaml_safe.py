"""YAML reading that refuses a key written twice in one mapping.

PyYAML's `yaml.safe_load` silently keeps the last of two equal keys, so a config holding
``seeds: [1, 2]`` and, further down, ``seeds: [3]`` runs only seed 3. `safe_load_unique` is
`yaml.safe_load` with that case turned into an error naming the key and both lines. Keys merged in
with ``<<: *anchor`` may still be overridden: only keys written in the mapping itself must be unique.
A document that aliases expand beyond `MAX_VALUES` values is refused before it is built.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_VALUES = 1_000_000
"""A document that expands to more values through its aliases is refused (a "billion laughs" file
of a few hundred bytes would otherwise fill the memory of whatever walks it)."""


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
    loader = UniqueKeyLoader(text)  # a SafeLoader subclass: safe
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set())
        if size > MAX_VALUES:
            raise yaml.YAMLError(
                f"the document expands to {size:,} values through its aliases (*name of an &name), over "
                f"{MAX_VALUES:,}: a config never needs that many (a file built to exhaust memory); write "
                "the values out or use fewer aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` holds once every alias is expanded (each shared node counted per use;
    `sizes` caches a node's count, so the walk visits each node once; `open_nodes` are the nodes
    being counted, which hold `node`).

    Raises:
        yaml.YAMLError: An alias refers to a node that holds it (a structure that contains itself).
    """
    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in open_nodes:
        raise yaml.YAMLError(
            f"line {node.start_mark.line + 1}: an alias refers to the node that holds it (a structure "
            "that contains itself); a config never needs one: write the values out"
        )
    open_nodes.add(id(node))
    size = 1
    if isinstance(node, MappingNode):
        size += sum(
            _expanded_size(key, sizes, open_nodes) + _expanded_size(value, sizes, open_nodes)
            for key, value in node.value
        )
    elif isinstance(node, SequenceNode):
        size += sum(_expanded_size(item, sizes, open_nodes) for item in node.value)
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    return size
