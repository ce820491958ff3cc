"""Run every benchmark: `python -m bench`."""

from __future__ import annotations

import sys

from bench import edge, gateway, governance, log_cost, propagation, resolution, streams, tracing, workers


def main() -> int:
    """Each benchmark returns non-zero when it missed a target; all of them run."""
    results = [resolution.main(), gateway.main(), streams.main(), propagation.main(), tracing.main(), log_cost.main(),
               edge.main(), governance.main(), workers.main()]
    return max(results)


if __name__ == "__main__":
    sys.exit(main())
