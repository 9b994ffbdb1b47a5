#!/usr/bin/env python3
"""json_members.py -- the members of the JSON object on stdin, one line
"name:type" each in the order sent (type: str, int, bool, null, object, or
list[T] for a list whose items all have type T, list[] when empty).
Prints "not a JSON object: REASON" and exits 1 otherwise.  The suites
compare a 429 body's shape with what the docs promise."""
import json
import sys


def kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        kinds = sorted({kind(i) for i in v})
        return "list[%s]" % "|".join(kinds)
    return type(v).__name__


def main():
    try:
        pairs = json.loads(sys.stdin.read(), object_pairs_hook=list)
    except ValueError as e:
        print("not a JSON object: %s" % e)
        return 1
    if not isinstance(pairs, list) or not all(
            isinstance(p, tuple) for p in pairs):
        print("not a JSON object: %s" % type(pairs).__name__)
        return 1
    for name, value in pairs:
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            value = dict(value)
        print("%s:%s" % (name, kind(value)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
