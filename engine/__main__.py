"""Entry point of ``python -m engine``."""

import sys

from engine._tools.cli import main


def _main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _main()
