"""Who an erasure request names: the person's profiles and identifiers, resolved through the identity graph.

Pure: the caller reads the assignments (``identity-assignments``) and merges (``identity-merges``) topics.

* An identifier resolves to the profile it is assigned to, or to its implicit profile when no link placed it.
* A profile absorbed by a merge leads to its survivor; the person is the survivor with every profile merged into
  it (at any depth), so rows still under an absorbed id go too.
* The person's identifiers are those assigned to any of those profiles, plus the identifier asked for. A
  *shared* identifier (a device several customers use) belongs to others as well: it is reported, not erased,
  and cannot name a person on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.domain.identity import implicit_profile_id


class AmbiguousIdentifierError(ValueError):
    """The identifier is shared by several customers: it does not name one person."""


@dataclass(frozen=True)
class Person:
    """The survivor profile, every profile id that is or was the person, their identifiers, the shared ones."""

    survivor: str
    profiles: tuple[str, ...]
    nodes: tuple[str, ...]
    shared: tuple[str, ...]


def find_person(
    node: str | None, profile: str | None, assignments: Mapping[str, str], shared: set[str],
    merges: Iterable[tuple[str, str]], history: Mapping[str, Sequence[tuple[Any, str | None]]] | None = None,
) -> Person:  # fmt: skip
    """The person named by ``node`` (an identifier, ``kind:value``) or ``profile`` (a profile id); ``history``:
    each identifier's assignments over time (to report the shared identifiers that were once the person's)."""
    if node is not None and node in shared:
        raise AmbiguousIdentifierError(f"{node.split(':', 1)[0]} is shared by several customers; name the person by "
                                       "another identifier or by profile id")  # fmt: skip
    start = profile if profile is not None else assignments.get(node or "") or implicit_profile_id(node or "")
    absorbed_into: dict[str, str] = {}
    for old, new in merges:
        absorbed_into.setdefault(old, new)
    survivor, seen = start, {start}
    while survivor in absorbed_into and absorbed_into[survivor] not in seen:
        survivor = absorbed_into[survivor]
        seen.add(survivor)
    absorbed: dict[str, list[str]] = {}
    for old, new in absorbed_into.items():
        absorbed.setdefault(new, []).append(old)
    profiles, todo = {survivor}, [survivor]
    while todo:
        for old in absorbed.get(todo.pop(), ()):
            if old not in profiles:
                profiles.add(old)
                todo.append(old)
    nodes = {n for n, p in assignments.items() if p in profiles}
    if node is not None:
        nodes.add(node)
    mine_shared = sorted(n for n in shared if any(pid in profiles for _, pid in (history or {}).get(n, ())))
    return Person(survivor, tuple(sorted(profiles)), tuple(sorted(nodes)), tuple(mine_shared))
