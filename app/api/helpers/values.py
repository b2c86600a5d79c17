"""What a value from a request may be, shared by the body and the query checks (requests, filters)."""
import re

MAX_ID = 2**31 - 1  # ids are INTEGER columns (32 bits on PostgreSQL): no row has a larger one
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def has_bad_text(text: str) -> bool:
    """True for text no database takes: a NUL character, or a lone surrogate (not encodable)."""
    return _BAD_TEXT.search(text) is not None


def no_json_constant(name):
    """json's parse_constant: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")
