"""`python -m services.api [--host H] [--port P] [--log-level L]`: the gateway, from BRIDGEX_* settings."""

from __future__ import annotations

import argparse
import sys

from .core.config import get_settings
from .server import UnsafeConfiguration, serve


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.api", description=__doc__)
    parser.add_argument("--host", help="bind address (default BRIDGEX_API_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default BRIDGEX_API_PORT, 8000)")
    parser.add_argument("--log-level", help="uvicorn log level (default BRIDGEX_LOG_LEVEL)")
    args = parser.parse_args(argv)
    try:
        serve(get_settings(), args.host, args.port, args.log_level)
    except UnsafeConfiguration as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
