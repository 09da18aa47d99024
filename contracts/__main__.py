"""``python -m contracts``: regenerate the JSON Schemas (``--check``: fail on drift)."""

import sys

from .schema import SCHEMA_DIR, SCHEMAS, render, write_all

if "--check" in sys.argv[1:]:
    stale = [
        n for n in sorted(SCHEMAS) if (SCHEMA_DIR / n).read_text(encoding="utf-8") != render(n)
    ]
    for name in stale:
        print(f"contracts/schemas/{name} is stale: run `python -m contracts`", file=sys.stderr)
    sys.exit(1 if stale else 0)
for path in write_all():
    print(path)
