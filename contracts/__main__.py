"""``python -m contracts``: regenerate the JSON Schemas."""

from .schema import write_all

for path in write_all():
    print(path)
