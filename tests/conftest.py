"""Shared pytest set-up. Fixtures for real servers live in tests/support/ and are loaded as plugins."""

pytest_plugins: list[str] = [
    "tests.support.model_server",
    "tests.support.llama_stack",
    "tests.support.mlflow_server",
    "tests.support.agent_server",
    "tests.support.kagent_runtime",
    "tests.support.a2a_agents",
    "tests.support.storage",
]
