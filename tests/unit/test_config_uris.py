"""URIs shown to users or written to logs lose their credentials, and nothing else."""

import pytest

from kagent_mlflow.config import without_credentials


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql+psycopg2://mlflow:s3cret@db:5432/mlflow", "postgresql+psycopg2://db:5432/mlflow"),
        ("https://user:token@mlflow.example.com/", "https://mlflow.example.com/"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        (
            "sqlite:////home/me/.local/share/kagent-mlflow/mlflow.db",
            "sqlite:////home/me/.local/share/kagent-mlflow/mlflow.db",
        ),
    ],
)
def test_without_credentials(uri: str, shown: str) -> None:
    assert without_credentials(uri) == shown
