"""Seed-compatible entry point.

python kagent_mlflow_logger.py "What is Kubernetes?"
from kagent_mlflow_logger import KagentMLflowLogger
"""

from kagent_mlflow.cli import seed_main
from kagent_mlflow.logger import KagentMLflowLogger

__all__ = ["KagentMLflowLogger"]

if __name__ == "__main__":
    seed_main()
