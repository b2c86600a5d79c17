"""marshmallow-jsonapi schemas: attribute names are dasherized, ids are strings."""


def dasherize(text: str) -> str:
    return text.replace("_", "-")
