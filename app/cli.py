"""The `infinitygan` console script: the model library's subcommands plus the service's (serve, seed).

It lives in `app` so the model library never imports the server (layers: app -> tiles -> infinitygan).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from infinitygan import cli as model_cli

SERVICE_SUBCOMMANDS: list = []


def main(argv: Sequence[str] | None = None) -> int:
    return model_cli.main(argv, extra_subcommands=SERVICE_SUBCOMMANDS)


if __name__ == "__main__":
    sys.exit(main())
