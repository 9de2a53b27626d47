"""What a query may ask for: a depth, a size (tokens), a number of aliases (strawberry's
`QueryDepthLimiter`, `MaxTokensLimiter`, `MaxAliasesLimiter`), and an estimated cost, checked
before anything runs. A refused query gets one GraphQL error saying which limit it passed and
no data; nothing is read.

The cost is an upper bound of the objects an answer can hold: every field costs 1, a list
multiplies what it holds by its size (`first`, or the largest `first` when it comes in a
variable; `LIST_SIZES` for the plain lists), and a connection adds `CONNECTION_COST` for the
statement it runs.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)

from api.graphql.pagination import DEFAULT_FIRST, MAX_FIRST

MAX_DEPTH = 10
MAX_TOKENS = 2_000
MAX_ALIASES = 30
MAX_COST = 100_000
CONNECTION_COST = 20
# Connections (they take `first`) and plain lists, with what they hold at most by default.
CONNECTIONS = {
    "projects": DEFAULT_FIRST,
    "deployments": DEFAULT_FIRST,
    "releases": DEFAULT_FIRST,
    "audit": DEFAULT_FIRST,
}
LIST_SIZES = {
    "environments": 10,
    "candidates": 10,
    "commits": 20,
    "pullRequests": 20,
    "approvals": 10,
}

TOO_COSTLY = (
    "Query refused: its estimated cost {cost} is over the limit of {limit} (ask for fewer "
    "items with a smaller 'first', or nest fewer lists)"
)


def _size(field: FieldNode) -> tuple[int, int]:
    """(what one use of the field costs itself, how many items its selection is paid for)."""
    name = field.name.value
    if name in CONNECTIONS:
        first = next((a.value for a in field.arguments or () if a.name.value == "first"), None)
        if first is None:
            return CONNECTION_COST, CONNECTIONS[name]
        if isinstance(first, IntValueNode):
            return CONNECTION_COST, max(1, min(int(first.value), MAX_FIRST))
        return CONNECTION_COST, MAX_FIRST  # a variable: the most it may be
    return 1, LIST_SIZES.get(name, 1)


def selection_cost(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> int:
    if selections is None:
        return 0
    cost = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            own, items = _size(selection)
            cost += own + items * selection_cost(selection.selection_set, fragments, seen)
        elif isinstance(selection, InlineFragmentNode):
            cost += selection_cost(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:  # cycles: NoFragmentCycles says so
                cost += selection_cost(fragment.selection_set, fragments, seen | {name})
    return cost


class CostLimit(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {
            definition.name.value: definition
            for definition in self.context.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        cost = selection_cost(node.selection_set, fragments)
        if cost > MAX_COST:
            self.report_error(GraphQLError(TOO_COSTLY.format(cost=cost, limit=MAX_COST), node))
