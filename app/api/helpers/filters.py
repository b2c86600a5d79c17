"""The generic JSON `filter` of the list resources, narrowed to what each resource allows.

The library would otherwise let a client filter on any schema attribute with any column method,
compare two columns (`field`), or hand a value of the wrong shape to the database (a 500).
"""
from dataclasses import dataclass
from datetime import datetime

from flask_rest_jsonapi_next.exceptions import InvalidFilters


@dataclass(frozen=True)
class FilterRules:
    names: frozenset
    operators: frozenset
    dates: frozenset = frozenset()

    def check(self, nodes):
        """Raise InvalidFilters (400) unless every node of every filter tree is allowed."""
        for node in nodes or ():
            self._check(node)

    def _check(self, node):
        if not isinstance(node, dict):
            raise InvalidFilters("Each filter must be an object.")
        for combinator in ("and", "or"):
            if combinator in node:
                for child in node[combinator] if isinstance(node[combinator], list) else [None]:
                    self._check(child)
                return
        if "not" in node:
            return self._check(node["not"])
        name, op = node.get("name"), node.get("op")
        if name not in self.names or op not in self.operators or "field" in node:
            raise InvalidFilters(f"Filter on one of {sorted(self.names)} with an operator in {sorted(self.operators)}.")
        _check_value(op, node.get("val"), is_date=name in self.dates)


def _check_value(op, value, is_date):
    if op in ("in_", "notin_"):
        values = value if isinstance(value, list) and value else None
    elif op == "between":
        values = value if isinstance(value, list) and len(value) == 2 else None
    elif op in ("is_", "isnot"):
        values = [] if value is None else None
    else:
        values = [value]
    if values is None:
        raise InvalidFilters(f"The value does not fit the operator {op}.")
    for item in values:
        if not isinstance(item, str):
            raise InvalidFilters("Filter values are strings (ISO 8601 for dates).")
        if is_date:
            try:
                datetime.fromisoformat(item.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidFilters(f"{item!r} is not an ISO 8601 time.") from None


class CheckedFilters:
    """Data layer mixin: check `filter_rules` before the library builds the query."""

    filter_rules: FilterRules

    def filter_query(self, query, filter_info, model):
        self.filter_rules.check(filter_info)
        return super().filter_query(query, filter_info, model)
