"""Checked fields of the JSON files postergen reads back (dataset.json, config.json).

These files can be edited by hand or come from another version; a field of the wrong type must be a
one-line UserError naming the file and the field (`ds/dataset.json: field size must be [height, width]
in pixels, not the number 32`), never a TypeError deep in a reader. Each reader states the fields it
uses with `need`; fields it does not use are left alone, so older and newer files still load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from postergen.errors import UserError

Check = tuple[str, Callable[[Any], bool]]  # what a value must be, in words, and the test


def integer(minimum: int = 0) -> Check:
    return f"an integer >= {minimum}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


TEXT: Check = ("a string", lambda v: isinstance(v, str))
OBJECT: Check = ("an object", lambda v: isinstance(v, dict))
LIST: Check = ("a list", lambda v: isinstance(v, list))
TEXTS: Check = ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
SIZE: Check = ("[height, width] in pixels", lambda v: isinstance(v, list) and len(v) == 2 and all(integer(1)[1](x) for x in v))
INDICES: Check = ("a list of integers >= 0 in ascending order, no repeats",
                  lambda v: isinstance(v, list) and all(integer(0)[1](x) for x in v) and all(a < b for a, b in zip(v, v[1:])))


def optional(check: Check) -> Check:
    """The check, or null."""
    want, ok = check
    return f"{want} or null", lambda v: v is None or ok(v)


def described(value: Any) -> str:
    """A value as an error names it: its JSON type, and the value itself when it is short."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return f"the string {json.dumps(value)[:40]}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"[:40]
    if isinstance(value, list):
        return "an empty list" if not value else f"a list of {len(value)}"
    return "an object" if isinstance(value, dict) else type(value).__name__


def check(file: Path | str, name: str, value: Any, what: Check) -> Any:
    """VALUE if it passes WHAT; else a one-line UserError naming FILE and the field NAME."""
    want, ok = what
    if not ok(value):
        raise UserError(f"{file}: field {name} must be {want}, not {described(value)}")
    return value


def need(file: Path | str, doc: dict, name: str, what: Check, required: bool = True) -> Any:
    """The field NAME of DOC (its last dotted part is the key; the whole name is shown), checked;
    a missing optional field is None."""
    key = name.rpartition(".")[2]
    if key not in doc:
        if required:
            raise UserError(f"{file}: field {name} is missing (it must be {what[0]})")
        return None
    return check(file, name, doc[key], what)
