"""The generic JSON `filter` of the list resources, narrowed to what each resource allows.

The library would otherwise let a client filter on any schema attribute with any column method,
compare two columns (`field`), or hand a value of the wrong shape or type to the database (a 500:
a number for a text column, an integer beyond the column's range, a time that overflows when
converted to UTC, a NUL byte). Two layers:

- `check_query_filters`, before any view (app/api/__init__.py): every `filter` and `filter[...]`
  parameter of every route has a bounded shape (depth, size, known operators, scalar values) and,
  on a resource, values that fit the attribute's column; answered 400 naming the parameter.
- `CheckedFilters`, on the data layers that use it: only `filter_rules` names and operators, and
  the SQL is built here, from values converted to the column's type (the library's own builder
  guesses a type for each list item, so `name in ["2024"]` compared text with an integer).
"""
import json
import operator
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from flask_rest_jsonapi_next.data_layers.filtering.alchemy import Node
from flask_rest_jsonapi_next.exceptions import InvalidFilters
from flask_rest_jsonapi_next.schema import get_model_field
from marshmallow_jsonapi.fields import BaseRelationship
from sqlalchemy import and_, not_, or_
from sqlalchemy.orm import ColumnProperty
from sqlalchemy.types import TypeDecorator

from app.api.helpers.errors import ApiError
from app.api.helpers.values import MAX_ID, has_bad_text, no_json_constant

MAX_FILTER_DEPTH = 12  # JSON levels: {"and": [{"or": [...]}]} is 4 deep
MAX_FILTER_NODES = 64
MAX_LIST_VALUES = 100
LIST_OPERATORS = frozenset({"in_", "notin_", "between", "in"})
TEXT_OPERATORS = frozenset({"like", "ilike", "startswith", "endswith", "contains"})
NULL_OPERATORS = frozenset({"is_", "isnot"})
OPERATORS = (frozenset({"eq", "ne", "lt", "le", "gt", "ge", "in_", "notin_", "between"})
             | TEXT_OPERATORS | NULL_OPERATORS)
SQL = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
    "ge": operator.ge, "in_": lambda c, v: c.in_(v), "notin_": lambda c, v: c.not_in(v),
    "between": lambda c, v: c.between(*v), "like": lambda c, v: c.like(v), "ilike": lambda c, v: c.ilike(v),
    "startswith": lambda c, v: c.startswith(v), "endswith": lambda c, v: c.endswith(v),
    "contains": lambda c, v: c.contains(v), "is_": lambda c, v: c.is_(None), "isnot": lambda c, v: c.is_not(None),
}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_INT = re.compile(r"[+-]?[0-9]{1,19}")


class BadFilter(ValueError):
    pass


# --- before any view: shape, then types ------------------------------------------------------------

def check_query_filters(args, resource=None):
    """Raise a 400 naming the parameter unless every filter of the query string is well formed and,
    when `resource` (a library resource class) serves the request, fits its attributes."""
    layer = getattr(resource, "_data_layer", None)
    model = getattr(layer, "model", None)
    columns = _Columns(resource.schema, model, library=not isinstance(layer, CheckedFilters)) if model else None
    if "filter" in args:
        try:
            nodes = parse_filter(args["filter"])
            if columns is not None:
                for leaf in _leaves(nodes):
                    columns.check_leaf(leaf)
        except BadFilter as error:
            raise ApiError(400, InvalidFilters.title, str(error), parameter="filter") from None
    for key, value in args.items():
        if not key.startswith("filter[") or columns is None:
            continue
        name = key[len("filter["):key.index("]")] if "]" in key else ""
        try:
            if not _NAME.fullmatch(name):
                raise BadFilter("Filter on an attribute of the resource itself: filter[<attribute>].")
            if columns.column(name) is not None:  # else: a filter of the resource's own (e.g. status, tag)
                values = value.split(",") if "," in value else value
                columns.check_leaf({"name": name, "op": "in" if isinstance(values, list) else "eq", "val": values},
                                   simple=True)
        except BadFilter as error:
            raise ApiError(400, InvalidFilters.title, str(error), parameter=key) from None


def parse_filter(text):
    """Return the filter nodes of a `filter` parameter; BadFilter unless its shape is one we take."""
    try:
        tree = json.loads(text, parse_constant=no_json_constant)
    except RecursionError:
        raise BadFilter(f"The filter is nested more than {MAX_FILTER_DEPTH} levels deep.") from None
    except ValueError:
        raise BadFilter("The filter is JSON: an object, or a list of objects.") from None
    nodes = tree if isinstance(tree, list) else [tree]
    stack, count = [(node, 2 if isinstance(tree, list) else 1) for node in nodes], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_FILTER_DEPTH or count > MAX_FILTER_NODES:
            raise BadFilter(f"A filter has at most {MAX_FILTER_NODES} nodes, {MAX_FILTER_DEPTH} levels deep.")
        if not isinstance(node, dict):
            raise BadFilter("Each filter is an object.")
        combinators = [name for name in ("and", "or", "not") if name in node]
        if combinators:
            if len(node) != 1:
                raise BadFilter("An and, or or not node holds nothing else.")
            child = node[combinators[0]]
            if combinators[0] == "not":
                stack.append((child, depth + 1))
            elif not isinstance(child, list) or not child:
                raise BadFilter(f"{combinators[0]} takes a non-empty list of filters.")
            else:
                stack.extend((item, depth + 2) for item in child)
            continue
        _check_leaf_shape(node)
    return nodes


def _check_leaf_shape(node):
    name, op = node.get("name"), node.get("op")
    if "field" in node:
        raise BadFilter("Filters compare an attribute with a value, never with another attribute.")
    if set(node) - {"name", "op", "val"} or "val" not in node:
        raise BadFilter('A filter is {"name": <attribute>, "op": <operator>, "val": <value>}.')
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadFilter("Filter on an attribute of the resource itself (no relationships).")
    if op not in OPERATORS:
        raise BadFilter(f"The operator is one of {', '.join(sorted(OPERATORS))}.")
    value = node["val"]
    if op in LIST_OPERATORS:
        if not isinstance(value, list) or not value or len(value) > MAX_LIST_VALUES or (
                op == "between" and len(value) != 2):
            raise BadFilter(f"{op} takes a list of values (between: two).")
        values = value
    elif op in NULL_OPERATORS:
        if value is not None:
            raise BadFilter(f"{op} takes null.")
        values = []
    else:
        values = [value]
    for item in values:
        if not (item is None or isinstance(item, (str, int))) or isinstance(item, float):
            raise BadFilter("Filter values are strings, whole numbers, true, false or null.")
        if isinstance(item, str) and has_bad_text(item):
            raise BadFilter("Filter values may not contain NUL characters or unpaired surrogates.")


def _leaves(nodes):
    stack = list(nodes)
    while stack:
        node = stack.pop()
        for name in ("and", "or"):
            if name in node:
                stack.extend(node[name])
                break
        else:
            if "not" in node:
                stack.append(node["not"])
            else:
                yield node


class _Columns:
    """The columns a resource's filters compare, and whether their values fit."""

    def __init__(self, schema, model, library):
        self.schema, self.model, self.library = schema, model, library

    def column(self, name):
        """Return the model column behind a schema attribute, or None (relationships, computed)."""
        field = self.schema._declared_fields.get(name.replace("-", "_"))
        if field is None or isinstance(field, BaseRelationship):
            return None
        attribute = getattr(self.model, get_model_field(self.schema, name.replace("-", "_")), None)
        prop = getattr(attribute, "property", None)
        return attribute if isinstance(prop, ColumnProperty) else None

    def check_leaf(self, node, simple=False):
        name, op, value = node["name"], node["op"], node["val"]
        column = self.column(name)
        if column is None:
            raise BadFilter(f"{name} is not an attribute one can filter on.")
        kind = column_kind(column)
        if kind is None or (op in TEXT_OPERATORS and kind != "text"):
            raise BadFilter(f"{name} cannot be filtered{' with ' + op if kind else ''}.")
        if op in NULL_OPERATORS:
            return
        for item in value if isinstance(value, list) else [value]:
            if self.library and isinstance(value, list) and isinstance(item, str):
                item = Node._coerce(item)  # what the library will compare: its guess of the item's type
                if kind == "text" and not isinstance(item, str):
                    raise BadFilter(f"In a list, {name} compares text: a value that reads as a number or a "
                                    "time cannot be told apart; use eq inside or.")
            if simple and kind == "bool":
                raise BadFilter(f"{name} is filtered with true or false in the JSON filter.")
            convert(kind, item, name)


def column_kind(column):
    """Return 'text', 'int', 'bool' or 'datetime' for a column filters may compare, else None."""
    type_ = column.type
    if isinstance(type_, TypeDecorator):  # e.g. UTCDateTime: its python_type is `object`
        type_ = type_.impl_instance
    try:
        python_type = type_.python_type
    except NotImplementedError:
        return None
    return {str: "text", bool: "bool", int: "int", datetime: "datetime"}.get(python_type)


def convert(kind, value, name):
    """Return `value` as the column kind takes it (times as aware UTC); BadFilter if it does not fit."""
    if value is None:
        return None
    if kind == "text" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and not isinstance(value, bool):
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            value = int(value)
        if isinstance(value, int):
            if -MAX_ID - 1 <= value <= MAX_ID:
                return value
            raise BadFilter(f"{value} is out of range for {name}.")
    if kind == "datetime":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise BadFilter(f"{value!r} is not an ISO 8601 time.") from None
        if isinstance(value, datetime):
            try:
                return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
            except OverflowError:
                raise BadFilter(f"{value.isoformat()} is out of range.") from None
    raise BadFilter(f"The value does not fit {name}.")


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
        if has_bad_text(item):
            raise InvalidFilters("Filter values may not contain NUL characters or unpaired surrogates.")
        if is_date:
            try:
                convert("datetime", item, "a time")
            except BadFilter as error:
                raise InvalidFilters(str(error)) from None


class CheckedFilters:
    """Data layer mixin: check `filter_rules`, then build the query from values of the columns' types."""

    filter_rules: FilterRules

    def filter_query(self, query, filter_info, model):
        self.filter_rules.check(filter_info)
        clauses = [self._clause(node, model) for node in filter_info or ()]
        return query.filter(*clauses) if clauses else query

    def _clause(self, node, model):
        for name, combine in (("and", and_), ("or", or_)):
            if name in node:
                if not node[name]:
                    raise InvalidFilters(f"{name} takes a non-empty list of filters.")
                return combine(*(self._clause(child, model) for child in node[name]))
        if "not" in node:
            return not_(self._clause(node["not"], model))
        name, op, value = node["name"], node["op"], node.get("val")
        column = getattr(model, get_model_field(self.resource.schema, name))
        kind = column_kind(column)
        try:
            if kind is None or (op in TEXT_OPERATORS and kind != "text"):
                raise BadFilter(f"{name} cannot be filtered with {op}.")
            if op in LIST_OPERATORS:
                value = [convert(kind, item, name) for item in value]
            elif op not in NULL_OPERATORS:
                value = convert(kind, value, name)
        except BadFilter as error:
            raise InvalidFilters(str(error)) from None
        return SQL[op](column, value)
