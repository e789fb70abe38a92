"""``python -m kagent_mlflow.serve --host H --port P``: run the Agent Server with uvicorn.

Prints ``READY http://H:P`` once it listens (port 0 = a free port chosen by the OS), which tests and scripts wait for.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import KagentMlflowError
from .config import ServeConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kagent_mlflow.serve",
        description="Serve the kagent-mlflow agent with MLflow Agent Server (/invocations, /responses, /health).",
    )
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1; env KAGENT_MLFLOW_SERVE_HOST)")
    parser.add_argument("--port", type=int, help="port (default 8000, 0 = any free port; env KAGENT_MLFLOW_SERVE_PORT)")
    parser.add_argument("--agent", help="module:attribute of a ResponsesAgent or factory (env KAGENT_MLFLOW_AGENT)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for traces (env MLFLOW_TRACKING_URI)")
    parser.add_argument("--experiment", help="MLflow experiment for traces (env MLFLOW_EXPERIMENT_NAME)")
    parser.add_argument("--no-tracing", action="store_true", help="do not record MLflow traces")
    parser.add_argument(
        "--blocking", action="store_true", help="register the sync predict directly (benchmark baseline only)"
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        help="seconds from SIGTERM to exit: finish requests, export traces, spill the rest to disk "
        "(default 20; env KAGENT_MLFLOW_SHUTDOWN_GRACE)",
    )
    parser.add_argument("--log-level", help="uvicorn log level (default info)")
    parser.add_argument(
        "--max-body-bytes", type=int, help="largest body, else 413 (default 1 MiB; env KAGENT_MLFLOW_MAX_BODY_BYTES)"
    )
    parser.add_argument(
        "--max-json-depth", type=int, help="deepest nesting, else 400 (default 64; env KAGENT_MLFLOW_MAX_JSON_DEPTH)"
    )
    parser.add_argument(
        "--max-input-items",
        type=int,
        help="most input items, else 413 (default 10000; env KAGENT_MLFLOW_MAX_INPUT_ITEMS)",
    )
    add_a2a_arguments(parser)
    return parser


def add_a2a_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-a2a", action="store_true", help="do not serve the A2A face (env KAGENT_MLFLOW_A2A=false)")
    parser.add_argument("--a2a-path", help="where the A2A agent is served (default /a2a/; env KAGENT_MLFLOW_A2A_PATH)")
    parser.add_argument(
        "--a2a-url",
        help="public URL of the A2A endpoint, named in its card (default: as requested; KAGENT_MLFLOW_A2A_URL)",
    )
    parser.add_argument(
        "--a2a-protocols",
        help="A2A versions the card offers, preferred first (default 1.0,0.3; env KAGENT_MLFLOW_A2A_PROTOCOLS)",
    )
    parser.add_argument(
        "--a2a-max-contexts",
        type=int,
        help="A2A conversations remembered, least recently used forgotten first (default 1000; "
        "env KAGENT_MLFLOW_A2A_MAX_CONTEXTS)",
    )
    parser.add_argument(
        "--a2a-max-turns",
        type=int,
        help="turns remembered per A2A conversation (default 20; env KAGENT_MLFLOW_A2A_MAX_TURNS)",
    )


def config_from_args(argv: list[str] | None = None) -> ServeConfig:
    args = build_parser().parse_args(argv)
    return ServeConfig.from_env(
        host=args.host,
        port=args.port,
        agent=args.agent,
        tracking_uri=args.tracking_uri,
        experiment_name=args.experiment,
        tracing=False if args.no_tracing else None,
        blocking=True if args.blocking else None,
        log_level=args.log_level,
        max_body_bytes=args.max_body_bytes,
        max_json_depth=args.max_json_depth,
        max_input_items=args.max_input_items,
        shutdown_grace=args.shutdown_grace,
        a2a=False if args.no_a2a else None,
        a2a_path=args.a2a_path,
        a2a_url=args.a2a_url,
        a2a_protocols=args.a2a_protocols,
        a2a_max_contexts=args.a2a_max_contexts,
        a2a_max_turns=args.a2a_max_turns,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_args(argv)
        from .runner import run

        run(config)
    except KagentMlflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
