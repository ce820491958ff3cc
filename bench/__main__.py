"""Run every benchmark: `python -m bench`."""

from __future__ import annotations

import sys

from bench import resolution


def main() -> int:
    return resolution.main()


if __name__ == "__main__":
    sys.exit(main())
