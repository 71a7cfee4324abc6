"""Trust: which nodes may hold a route's sensitive parts. One rule, one check
(docs/architecture.md §5.5).

The sensitive parts of a route are ``embed``, ``head`` and the first
``privacy_depth`` decoder layers (``Segment.sensitive_items``): they see raw
tokens, or hidden states close enough to recover them. A ``privacy=high``
request may only use a route whose sensitive parts all sit on nodes its entry
trusts.

* ``trusts(node, entry)`` is the rule, read from the inventory: the node is
  ``TRUSTED`` and its ``trusted_by`` names the entry (or is empty: any entry).
  An entry trusts itself only when it is ``TRUSTED`` too: an untrusted entry
  cannot serve ``privacy=high`` at all.
* ``trusted_by_all(nodes, entries)`` is that rule as the list a plan's
  assignments carry (the nodes every entry of the plan trusts), and
  ``listed(ids)`` turns such a list back into a rule for the data plane.
* ``untrusted_sensitive(route, depth, rule)`` is the one check: the planner,
  the cost model, the broadcaster and the entry node all ask it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from edgesplit.core.types import NodeId, NodeState, Route, Trust

# (node, entry) -> may ``node`` hold sensitive parts of routes entered at ``entry``?
TrustRule = Callable[[NodeId, NodeId], bool]


def trusts(node: NodeState, entry: NodeId) -> bool:
    """Does ``entry`` trust ``node`` with sensitive parts (the inventory's rule)?"""
    if node.trust is not Trust.TRUSTED:
        return False
    return node.node_id == entry or not node.trusted_by or entry in node.trusted_by


def rule_of(nodes: Mapping[NodeId, NodeState] | Iterable[NodeState]) -> TrustRule:
    """``trusts`` over known node states; an unknown node is not trusted."""
    table = dict(nodes) if isinstance(nodes, Mapping) else {n.node_id: n for n in nodes}

    def rule(node: NodeId, entry: NodeId) -> bool:
        state = table.get(node)
        return state is not None and trusts(state, entry)

    return rule


def listed(trusted: Iterable[str]) -> TrustRule:
    """The rule a signed list stands for (``trusted_by_all``'s output): the
    listed nodes are trusted by every entry, nobody else is."""
    ids = frozenset(trusted)
    return lambda node, entry: node in ids


def trusted_by_all(nodes: Iterable[NodeState], entries: Iterable[NodeId]) -> tuple[NodeId, ...]:
    """Nodes that every one of ``entries`` trusts, in the given order: the list
    a plan's assignments carry to the entry nodes (``listed`` reads it back)."""
    wanted = tuple(entries)
    return tuple(n.node_id for n in nodes if all(trusts(n, e) for e in wanted))


def untrusted_sensitive(route: Route, privacy_depth: int, rule: TrustRule) -> tuple[NodeId, ...]:
    """Nodes of ``route`` holding sensitive parts its entry does not trust (once
    each, in route order); empty when a ``privacy=high`` request may use it."""
    bad: list[NodeId] = []
    for seg in route.segments:
        if seg.is_sensitive(privacy_depth) and seg.node not in bad \
                and not rule(seg.node, route.entry):
            bad.append(seg.node)
    return tuple(bad)
