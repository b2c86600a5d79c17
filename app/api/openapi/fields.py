"""marshmallow(-jsonapi) schema classes in JSON Schema: a field's value as the server reads it or
writes it, and the members of a schema class (attributes, relationships) by their names on the wire.

A field is described by its type and the validators JSON Schema can say (length, choices, range,
pattern). A rule that is Python code (a validator function, a `@validates` method, a computed
field's loader, a time compared with the present) marks the value `x-checked-by-server`: the
server answers 422 naming it.
"""
from marshmallow import fields, validate
from marshmallow_jsonapi.fields import BaseRelationship

NO_NUL = "^[^\\x00]*$"  # the server refuses NUL characters in any text it reads (400 or 422)
CHECKED = "x-checked-by-server"
# Most specific first: Email is a String, AwareDateTime a DateTime, Integer a Number.
_TYPES = (
    (fields.Email, {"type": "string", "format": "email"}),
    (fields.DateTime, {"type": "string", "format": "date-time"}),
    (fields.Boolean, {"type": "boolean"}),
    (fields.Integer, {"type": "integer"}),
    (fields.Number, {"type": "number"}),
    (fields.Dict, {"type": "object"}),
    (fields.String, {"type": "string"}),
)


def nullable(schema):
    """Return `schema` also taking null (a schema without a type already takes anything)."""
    if "type" not in schema:
        return schema
    schema = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def field_schema(field, *, loading, validated=False):
    """Return the JSON Schema of a field's value as the server reads it (`loading`) or writes it;
    `validated`: a schema method checks it further."""
    if isinstance(field, (fields.Method, fields.Function)):
        schema = {}  # computed by Python: any JSON
        checked = loading
    elif isinstance(field, fields.List):
        schema = {"type": "array", "items": field_schema(field.inner, loading=loading)}
        checked = CHECKED in schema["items"]
    else:
        schema = next((dict(s) for kind, s in _TYPES if isinstance(field, kind)), {})
        # A time sent is judged against the present and the resource's state (an expiry in the future
        # and within the allowed lifetime, a revocation only on a change), which JSON Schema cannot say.
        checked = loading and isinstance(field, fields.DateTime)
    if loading:
        if schema == {"type": "string"}:
            schema["pattern"] = NO_NUL
        for validator in field.validators:
            checked |= not _translate(validator, schema)
        checked |= validated
        if checked:
            schema[CHECKED] = True
        if field.metadata.get("description"):  # how the server reads it (schema.utc_datetime)
            schema["description"] = field.metadata["description"]
        return nullable(schema) if field.allow_none else schema
    return nullable(schema)


def _translate(validator, schema) -> bool:
    """Say `validator` in `schema`; return False when JSON Schema cannot say it."""
    array = schema.get("type") == "array"
    if isinstance(validator, validate.Email):
        return schema.get("format") == "email"
    if isinstance(validator, validate.Length):
        low, high = ("minItems", "maxItems") if array else ("minLength", "maxLength")
        minimum = validator.equal if validator.equal is not None else validator.min
        maximum = validator.equal if validator.equal is not None else validator.max
        schema.update({k: v for k, v in ((low, minimum), (high, maximum)) if v is not None})
        return True
    if isinstance(validator, validate.OneOf):
        schema["enum"] = list(validator.choices)
        return True
    if isinstance(validator, validate.Range):
        for bound, inclusive, name in ((validator.min, validator.min_inclusive, "minimum"),
                                       (validator.max, validator.max_inclusive, "maximum")):
            if bound is not None:
                schema[name if inclusive else f"exclusive{name.title()}"] = bound
        return True
    if isinstance(validator, validate.Regexp):
        schema["pattern"] = validator.regex.pattern
        return True
    return False


def validated_names(schema_cls):
    """Names of the fields a schema's `@validates` methods check further."""
    return frozenset(name for _, _, options in schema_cls._hooks.get("validates", ())
                     for name in options.get("field_names", ()))


def wire_name(schema_cls, name, field):
    return schema_cls.opts.inflect(field.data_key or name) if schema_cls.opts.inflect else field.data_key or name


def attributes_of(schema_cls):
    return {name: field for name, field in schema_cls._declared_fields.items()
            if name != "id" and not isinstance(field, BaseRelationship)}


def relationships_of(schema_cls):
    return {name: field for name, field in schema_cls._declared_fields.items() if isinstance(field, BaseRelationship)}
