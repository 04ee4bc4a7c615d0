"""Identity graph: identifiers ("nodes") joined into profiles by trusted link events, with merge guards.

A node is ``"<kind>:<value>"``, kind one of :data:`KINDS`. Profiles are sets of nodes with a deterministic
id (the *surviving-id rule*):

* a profile holding a customer_id is ``"c:<customer_id>"`` (a customer's implicit id is that too);
* otherwise it keeps the id of the oldest profile merged into it. A node's implicit profile
  (:func:`implicit_profile_id`) is created when the node first appears in an applied link; its age is the
  ``created`` key the caller passes (the link's position in event time; the application count by
  default), so replaying a duplicate link changes nothing. Several nodes new in the same link are ordered
  by kind rank (:data:`KINDS` order) and then by node text. Two existing profiles never share a creation
  key (a link creates at most one), so the rank/text tie-break only picks the founder among a link's new
  nodes. ``aliases`` lists, per surviving profile, every profile id merged into it (transitively).

Guarantees of :func:`apply_link`: deterministic for a given state and link (ordered dicts and sorted
lists only, nothing depends on set order; no clock, no ``hash()``); two customer ids never share a
profile; a node seen with more customers than the policy allows becomes *shared* for good and leaves its
profile; every merge carries its rule and event id. Not guaranteed: undoing a merge (no split; shared
nodes are only detached), nor profile ids independent of link order (the final *partition* is, when no
guard fires).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.identity_rules import CUSTOMER_KIND, KIND_RANK, PREFIXES
from pipeline.domain.identity_rules import DEFAULT_POLICY as DEFAULT_POLICY
from pipeline.domain.identity_rules import KINDS as KINDS
from pipeline.domain.identity_rules import IdentityPolicy as IdentityPolicy
from pipeline.domain.identity_rules import Link as Link  # re-exported: apply_link's argument type
from pipeline.domain.identity_rules import nodes_of as nodes_of
from pipeline.domain.pii import is_placeholder

_CUSTOMER_PREFIX = CUSTOMER_KIND + ":"
STATE_FORMAT = "omnistream.identity.state/1"


def shared_profile_id(node: str) -> str:
    """The profile of events whose every identifier is shared (a kiosk or family tablet on its own): ``x:`` + 16
    hex. Never merged with anyone: such events belong to the device, not to a person."""
    return "x:" + hashlib.sha256(node.encode("utf-8")).hexdigest()[:16]


def implicit_profile_id(node: str) -> str:
    """The profile id of a node no link has placed: ``c:<id>`` for a customer_id, else ``p:`` + 16 hex.

    A pure function of the node text (SHA-256, not ``hash()``), so every process agrees without state.
    """
    if node.startswith(_CUSTOMER_PREFIX):
        return "c:" + node[len(_CUSTOMER_PREFIX) :]
    return "p:" + hashlib.sha256(node.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Merge:
    """Profile ``old_id`` folded into ``new_id``; ``reason`` is ``profile_joined`` or ``identifier_joined``."""

    old_id: str
    new_id: str
    rule: str
    event_id: str
    event_time: int
    reason: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A node of a link that was not linked, and why (for metrics and evidence)."""

    node: str
    reason: str


@dataclass(slots=True)
class LinkOutcome:
    """What one applied link did. ``changes`` maps node -> new profile id, or None when a node is detached."""

    seq: int
    merges: list[Merge] = field(default_factory=list)
    changes: dict[str, str | None] = field(default_factory=dict)
    newly_shared: list[str] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    survivor: str | None = None
    aliases: dict[str, list[str]] = field(default_factory=dict)  # per absorbed id: profiles merged into it before


@dataclass(slots=True)
class Profile:
    """A profile's nodes (an insertion-ordered dict used as a set), customer id and creation order."""

    members: dict[str, None]
    customer_id: str | None
    created: tuple[Any, ...]
    founder: str

    def key(self) -> tuple[tuple[Any, ...], int, str]:
        """Age order: creation key, then the founder's kind rank and text (smaller is older)."""
        return self.created, KIND_RANK[self.founder[: self.founder.index(":")]], self.founder

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; members keep their order."""
        return {"members": list(self.members), "customer_id": self.customer_id,
                "created": list(self.created), "founder": self.founder}  # fmt: skip


@dataclass
class IdentityState:
    """The whole graph as plain data; :meth:`to_dict` / :meth:`from_dict` give a JSON-able round trip.

    ``assignments`` (node -> profile id) is exactly the union of the profiles' members, so it is not
    serialised but rebuilt. ``customers_seen`` holds, per non-customer node seen with two or more
    customers, the distinct customer ids (at most limit + 1); a node absent from it was seen with at most
    its own profile's customer. ``shared`` only grows. ``seq`` counts applied links.
    Member order is kept through the round trip so a restored state replays exactly like the original.
    """

    assignments: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    customers_seen: dict[str, list[str]] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)
    seq: int = 0
    aliases: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot (lists, dicts, str, int, None); keys sorted so equal states dump equal."""
        return {
            "format": STATE_FORMAT,
            "seq": self.seq,
            "profiles": {pid: p.to_dict() for pid, p in sorted(self.profiles.items())},
            "customers_seen": {node: list(seen) for node, seen in sorted(self.customers_seen.items())},
            "shared": sorted(self.shared),
            "aliases": {pid: list(a) for pid, a in sorted(self.aliases.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdentityState:
        """Rebuild a state from :meth:`to_dict` output. Raises ValueError for another format."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"not an identity state: format {data.get('format')!r}")
        state = cls(seq=int(data["seq"]), shared=set(data["shared"]))
        for pid, p in data["profiles"].items():
            members = dict.fromkeys(p["members"])
            state.profiles[pid] = Profile(members, p["customer_id"], tuple(p["created"]), p["founder"])
            state.assignments.update(dict.fromkeys(p["members"], pid))
        state.customers_seen = {node: list(seen) for node, seen in data["customers_seen"].items()}
        state.aliases = {pid: list(a) for pid, a in data.get("aliases", {}).items()}
        return state


def apply_link(
    state: IdentityState, link: Link, policy: IdentityPolicy = DEFAULT_POLICY, created: tuple[Any, ...] | None = None
) -> LinkOutcome:
    """Apply one link to ``state`` **in place** and report what changed (see the module guarantees).

    Steps: drop malformed, empty and already-shared nodes; record which customers each node co-occurs
    with (the event's customer_id and the customer of the node's current profile) and detach nodes over
    their limit; refuse nodes held by another customer's profile (the whole link if it has no customer_id
    of its own and touches two customers); union the rest into the survivor. Cost: O(link size + size of
    the profiles absorbed). ``state.seq`` counts calls; a profile created by this link gets ``created`` as
    its age (default: ``(state.seq,)``, so replaying the same log always assigns the same ages).
    """
    state.seq += 1
    out = LinkOutcome(seq=state.seq)
    born = created if created is not None else (state.seq,)
    nodes, customer = _usable_nodes(state, link, out)
    if not nodes:
        return out
    _track_customers(state, nodes, customer, policy, out)
    profiles, assignments = state.profiles, state.assignments
    held: dict[str, list[str]] = {}  # profile id -> the link's nodes in it (insertion-ordered)
    new: list[str] = []
    for node in nodes:
        pid = assignments.get(node)
        if pid is None:
            new.append(node)
        else:
            held.setdefault(pid, []).append(node)
    target = customer
    if target is None:
        owners = list(dict.fromkeys(c for pid in held if (c := profiles[pid].customer_id) is not None))
        if len(owners) > 1:
            # Which of the two customers the unanchored identifiers belong to is unknowable: link nothing.
            out.refusals.extend(Refusal(node, "customer_conflict") for node in nodes)
            return out
        target = owners[0] if owners else None
    for pid in [pid for pid in held if profiles[pid].customer_id not in (None, target)]:
        out.refusals.extend(Refusal(node, "customer_conflict") for node in held.pop(pid))
    if not held and not new:
        return out
    if target is not None:
        sid = "c:" + target
        if sid not in profiles:
            profiles[sid] = Profile({}, target, born, _CUSTOMER_PREFIX + target)
    elif held:
        sid = next(iter(held)) if len(held) == 1 else min(held, key=lambda pid: profiles[pid].key())
    else:
        sid = implicit_profile_id(new[0])  # nodes are sorted, so new[0] is the founder by the tie-break
        profiles[sid] = Profile({}, None, born, new[0])
    out.survivor = sid
    survivor, changes = profiles[sid], out.changes
    absorbed = [pid for pid in held if pid != sid]
    if len(absorbed) > 1:
        absorbed.sort(key=lambda pid: profiles[pid].key())
    for pid in absorbed:
        for member in profiles.pop(pid).members:
            survivor.members[member] = None
            assignments[member] = changes[member] = sid
        out.merges.append(Merge(pid, sid, link.rule, link.event_id, link.event_time, "profile_joined"))
    for node in new:
        survivor.members[node] = None
        assignments[node] = changes[node] = sid
        # Events of this node before the link were resolved to its implicit id: fold that profile too.
        if (implicit := implicit_profile_id(node)) != sid:
            out.merges.append(Merge(implicit, sid, link.rule, link.event_id, link.event_time, "identifier_joined"))
    for m in out.merges:
        out.aliases[m.old_id] = state.aliases.pop(m.old_id, [])
        state.aliases.setdefault(sid, []).extend([m.old_id, *out.aliases[m.old_id]])
    return out


def _usable_nodes(state: IdentityState, link: Link, out: LinkOutcome) -> tuple[list[str], str | None]:
    """Valid, distinct, non-shared nodes sorted by (kind rank, text), and the link's customer id."""
    keyed: list[tuple[int, str]] = []
    customer: str | None = None
    for node in link.nodes:
        kind, _, value = node.partition(":")
        rank = KIND_RANK.get(kind)
        if rank is None:
            out.refusals.append(Refusal(node, "unknown_kind"))
        elif not value.strip() or is_placeholder(value):
            out.refusals.append(Refusal(node, "empty_value"))  # ingest drops these; never trust that alone
        elif node in state.shared:
            out.refusals.append(Refusal(node, "shared_identifier"))
        elif rank == 0 and customer is not None and value != customer:
            # One event naming two customers is malformed: trusting either half could merge two people.
            out.refusals.extend(Refusal(n, "multiple_customer_ids") for n in link.nodes)
            return [], None
        else:
            if rank == 0:
                customer = value
            keyed.append((rank, node))
    keyed = sorted(set(keyed)) if len(keyed) > 1 else keyed  # the set only dedupes; sorting fixes the order
    return [node for _, node in keyed], customer


def _track_customers(
    state: IdentityState, nodes: list[str], customer: str | None, policy: IdentityPolicy, out: LinkOutcome
) -> None:
    """Count the customers each node is seen with; detach (and drop from ``nodes``) those over the limit.

    A node is seen with the link's customer and with the customer of the profile it is in. While that is
    at most one customer it is the node's own profile customer (now or after this link), so nothing is
    stored; a list is only kept once a second customer shows up (evidence for the shared marking).
    """
    detached: list[str] = []
    for node in nodes:
        if node.startswith(_CUSTOMER_PREFIX):
            continue  # unique by definition: never shared
        pid = state.assignments.get(node)
        owner = state.profiles[pid].customer_id if pid is not None else None
        seen = state.customers_seen.get(node)
        if seen is None:
            if owner is None or customer is None or customer == owner:
                continue
            seen = state.customers_seen[node] = [owner, customer]
        elif customer is not None and customer not in seen:
            seen.append(customer)
        limit = policy.limit(node[: node.index(":")])
        if len(seen) > limit:
            del seen[limit + 1 :]  # bounded: limit + 1 customers are evidence enough
            detached.append(node)
            state.shared.add(node)
            out.newly_shared.append(node)
            if pid is not None:
                members = state.profiles[pid].members
                del members[node], state.assignments[node]
                out.changes[node] = None  # workers must stop resolving through it
                if not members:
                    del state.profiles[pid]
    if detached:
        nodes[:] = [node for node in nodes if node not in detached]


def resolve(
    assignments_lookup: Callable[[str], str | None], shared: Container[str], event: Mapping[str, Any]
) -> tuple[str, str]:
    """(profile id, node used) for an event: its most authoritative non-shared node that has an assignment.

    A customer_id short-cuts to ``c:<id>`` without a lookup (its assignment can only be that). With no
    assigned node, the implicit id of the most authoritative non-shared node; if every node is shared, the
    implicit id of the most authoritative one. Guarantees nothing about freshness: the answer is only as
    current as ``assignments_lookup``. With every identifier shared: :func:`shared_profile_id` of the most
    authoritative one. Raises ValueError for an event without any identifier.
    """
    fallback: str | None = None
    first_shared: str | None = None  # only used when every identifier on the event is shared
    for kind, prefix in PREFIXES:
        value = event.get(kind)
        if not value:
            continue
        node = prefix + value
        if kind == CUSTOMER_KIND:
            return "c:" + value, node
        if node in shared:
            first_shared = first_shared or node
            continue
        pid = assignments_lookup(node)
        if pid is not None:
            return pid, node
        fallback = fallback or node
    if fallback is not None:
        return implicit_profile_id(fallback), fallback
    if first_shared is None:
        raise ValueError(f"event {event.get('event_id')!r} carries no identifier")
    return shared_profile_id(first_shared), first_shared


#: A node's assignments over event time: (position the change takes effect at, profile id or None for shared),
#: sorted by position. Changes made by a link at P apply to items after P (the link event itself included).
History = Sequence[tuple[Any, str | None]]


def assigned_at(history: History | None, pos: Any) -> tuple[bool, str | None]:
    """(known, profile) of a node just before ``pos``: (False, None) when no change precedes it, (True, None)
    when it was shared by then, (True, profile id) when assigned."""
    if not history:
        return False, None
    found: tuple[bool, str | None] = (False, None)
    for at, profile in history:
        if at >= pos:
            break
        found = (True, profile)
    return found


def resolve_at(history_of: Callable[[str], History | None], event: Mapping[str, Any], pos: Any) -> tuple[str, str]:
    """:func:`resolve` as of ``pos`` from each node's assignment history (see :data:`History`)."""
    fallback: str | None = None
    first_shared: str | None = None
    for kind, prefix in PREFIXES:
        value = event.get(kind)
        if not value:
            continue
        node = prefix + value
        if kind == CUSTOMER_KIND:
            return "c:" + value, node
        known, pid = assigned_at(history_of(node), pos)
        if known and pid is None:
            first_shared = first_shared or node
            continue
        if pid is not None:
            return pid, node
        fallback = fallback or node
    if fallback is not None:
        return implicit_profile_id(fallback), fallback
    if first_shared is None:
        raise ValueError(f"event {event.get('event_id')!r} carries no identifier")
    return shared_profile_id(first_shared), first_shared
