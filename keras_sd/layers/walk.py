"""Walking a layer's nested layers through public attributes only."""

from __future__ import annotations

from collections.abc import Iterator

import keras


def _nested_layers(value, found: list, seen_containers: set) -> None:
    if isinstance(value, keras.layers.Layer):
        found.append(value)
    elif isinstance(value, (list, tuple, dict)):
        if id(value) in seen_containers:
            return
        seen_containers.add(id(value))
        for item in value.values() if isinstance(value, dict) else value:
            _nested_layers(item, found, seen_containers)


def _children(layer: keras.layers.Layer) -> list:
    found = list(layer.layers) if isinstance(layer, keras.Model) else []
    # A custom layer keeps its sublayers as attributes (possibly in lists, tuples or dicts);
    # reading every instance attribute finds them without relying on how Keras tracks them.
    seen_containers: set = set()
    for value in vars(layer).values():
        _nested_layers(value, found, seen_containers)
    return found


def iter_layers(layer: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Yields ``layer`` and every layer nested in it at any depth, each exactly once.

    Nested layers are those of `keras.Model.layers` and every layer held in an attribute (or in
    a list, tuple or dict attribute) of a layer, depth first in attribute order. Unlike Keras'
    private ``Layer._flatten_layers`` it may also yield layers that are referenced but never
    called (it is meant for instrumenting the layers a call can reach, not for counting them).

    Args:
        layer: a layer or model.

    Yields:
        Layers, starting with ``layer`` itself.
    """
    seen = set()
    stack = [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(reversed(_children(current)))


__all__ = ["iter_layers"]
