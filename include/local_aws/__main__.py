"""``python -m include.local_aws [--host 127.0.0.1] [--port N]``: serve until SIGINT or SIGTERM.

Prints the endpoint URL (one line on stdout) once it serves. Run it from the project's virtual environment:
Batch job processes inherit its PATH, where ``csv-importer`` is installed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from include.local_aws.server import LocalAws

log = logging.getLogger("include.local_aws")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m include.local_aws", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=5000, help="port, 0 for a free one (default: %(default)s)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level on stderr (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=arguments.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("Received %s: shutting down", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with LocalAws(host=arguments.host, port=arguments.port) as aws:
        print(aws.url, flush=True)
        while not stop_requested.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
