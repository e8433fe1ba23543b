"""python -m ingestion [--naive]: consume KAFKA_TOPIC_TRANSACTIONS into LAKE_RAW_URI and LAKE_CURATED_URI.

Exit codes: 0 after SIGTERM/SIGINT (current batches written and committed), 2 on invalid configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys

from common.env import ConfigError
from common.metrics import start_metrics_server

from .config import IngestConfig
from .consumer import Ingestor
from .naive import run_naive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingestion", description=__doc__.splitlines()[0])
    parser.add_argument("--naive", action="store_true", help="one record per write+commit (benchmark baseline)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = IngestConfig.from_env()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    start_metrics_server(config.metrics_port)
    if args.naive:
        run_naive(config)
        return 0
    ingestor = Ingestor(config)
    ingestor.install_signal_handlers()
    ingestor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
