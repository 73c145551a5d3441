#!/usr/bin/env python3
"""Prints `CREATE OR REPLACE` statements for the named SQL functions of sql/*.sql.

An aid for writing upgrade scripts (docs/upgrades.md): the bodies come verbatim from
the current sources, so an upgrade replaces exactly what a fresh install creates.

    scripts/replace-functions.py aveloxis_ops.drain_scratch aveloxis_ops.resolve_users ...
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
sources = "\n".join(p.read_text() for p in sorted((root / "sql").glob("*.sql")))
# A definition runs from its CREATE to the `$$;` that closes its body, or the `END;` of
# a SQL-standard (BEGIN ATOMIC) body.
pattern = re.compile(r"^CREATE (FUNCTION|PROCEDURE) ([\w.]+)\(.*?(?:\$\$;|^END;)$", re.S | re.M)
found = {}
for m in pattern.finditer(sources):
    found.setdefault(m.group(2), []).append(m.group(0))
status = 0
for name in sys.argv[1:]:
    if name not in found:
        print(f"-- no definition of {name} in sql/", file=sys.stderr)
        status = 1
        continue
    for definition in found[name]:
        print(re.sub(r"^CREATE ", "CREATE OR REPLACE ", definition, count=1) + "\n")
sys.exit(status)
