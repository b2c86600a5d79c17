"""The query parameters of the resources' GETs, from their schemas and data layers: `include` (the
relationships), sparse fieldsets (every type a document may hold), and for a list `sort` and the
simple filters (members backed by a column the database compares), pages and the JSON `filter`.
"""
from flask_rest_jsonapi_next.schema import get_model_field

from app.api.helpers import requests
from app.api.helpers.filters import CheckedFilters, column_kind
from app.api.openapi.fields import CHECKED, NO_NUL, attributes_of, relationships_of, wire_name

# What a simple filter compares, by the column's kind (true and false: in `filter` only).
SIMPLE_FILTERS = {"text": {"type": "string", "pattern": NO_NUL}, "int": {"type": "string", "pattern": "^-?[0-9]+$"},
                  "datetime": {"type": "string", "format": "date-time"}}


def read_parameters(resource, config, *, many):
    """The query parameters of a GET: include and sparse fieldsets; for a list, sort, pages and filters."""
    schema_cls = resource.schema
    relationships = relationships_of(schema_cls)
    parameters = []
    if relationships:
        names = [wire_name(schema_cls, n, f) for n, f in relationships.items()]
        parameters.append(query("include", _names_pattern(names, len(names), empty=True),
                                "Relationships whose resources to add under `included` (empty: none)."))
    by_type = {type(f.schema).opts.type_: type(f.schema) for f in relationships.values()}
    for cls in {**by_type, schema_cls.opts.type_: schema_cls}.values():
        names = [wire_name(cls, n, f) for n, f in cls._declared_fields.items() if n != "id" and not f.load_only]
        parameters.append(query(f"fields[{cls.opts.type_}]", _names_pattern(names, len(names)),
                                f"Only these members of `{cls.opts.type_}` resources."))
    if not many:
        return parameters
    kinds = _column_kinds(schema_cls, resource._data_layer.model)
    sortable = [wire_name(schema_cls, n, f) for n, f in attributes_of(schema_cls).items() if n in kinds]
    parameters += [
        query("sort", _names_pattern(sortable, requests.MAX_SORT_FIELDS, sign="-?", empty=True),
              "Attributes to sort by, `-` for descending (empty: by id)."),
        query("page[size]", {"type": "integer", "minimum": 1, "maximum": config["MAX_PAGE_SIZE"]}),
        query("page[number]", {"type": "integer", "minimum": 1, "maximum": requests.MAX_PAGE_NUMBER}),
        query("filter", {"type": "string", "pattern": NO_NUL, CHECKED: True},
              "A JSON list of filters: {\"name\": <attribute>, \"op\": <operator>, \"val\": <value>}, "
              "combined with and, or, not."),
    ]
    layer = resource._data_layer
    own_rules = isinstance(layer, CheckedFilters)
    names = layer.filter_rules.names if own_rules else set(attributes_of(schema_cls)) & set(kinds)
    for name in sorted(names):
        kind = kinds.get(name, "text")
        if kind in SIMPLE_FILTERS:
            parameters.append(query(f"filter[{schema_cls.opts.inflect(name)}]",
                                    {**SIMPLE_FILTERS[kind], CHECKED: True},
                                    "Only resources whose member equals this value."))
    return parameters


def _column_kinds(schema_cls, model):
    """The kind ('text', 'int', 'bool', 'datetime') of each member of a schema backed by a column the
    database can compare (helpers/filters.column_kind): what may be sorted and filtered on."""
    kinds = {}
    for name, field in schema_cls._declared_fields.items():
        column = getattr(model, get_model_field(schema_cls, name), None)
        if not field.load_only and getattr(getattr(column, "property", None), "columns", None):
            kinds[name] = column_kind(column)
    return {name: kind for name, kind in kinds.items() if kind is not None}


def _names_pattern(names, at_most, sign="", empty=False):
    """A comma-separated list of at most `at_most` of `names` (or nothing at all, if `empty`)."""
    one = f"{sign}({'|'.join(sorted(names))})"
    names_list = f"{one}(,{one}){{0,{at_most - 1}}}" if at_most > 1 else one
    return {"type": "string", "pattern": f"^({names_list})?$" if empty else f"^{names_list}$"}


def query(name, schema, description=None):
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter
