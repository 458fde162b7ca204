"""``python -m tests.servers [--latency S] [--ignore-n]``: serve a FaultServer until killed; prints its URL."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.servers.openai_fault import FaultServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    parser.add_argument("--ignore-n", action="store_true", help="answer one choice whatever n is")
    args = parser.parse_args()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with FaultServer(latency=args.latency, ignore_n=args.ignore_n) as srv:
        print(srv.url, flush=True)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
