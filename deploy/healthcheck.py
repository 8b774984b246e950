#!/usr/bin/env python3
"""Container HEALTHCHECK: exit 0 when GET http://127.0.0.1:PORT/healthz answers 200.

Slim images carry no curl; the standard library is enough.
"""

import sys
import urllib.request


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    path = sys.argv[2] if len(sys.argv) > 2 else "/healthz"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # any failure means unhealthy
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
