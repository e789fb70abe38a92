"""Pattern 2: an MLflow ``ResponsesAgent`` on Llama Stack, with tools, chat history, usage, tracing, sub-agents.

Public entry points (everything else in this package is private)::

    from kagent_mlflow.agent import LlamaStackAgent, ModelConfig, Tool, tool

    @tool
    def get_pods(namespace: str) -> list[str]:
        '''List the pods of a namespace.

        Args:
            namespace: Kubernetes namespace.
        '''

    agent = LlamaStackAgent(instructions="You are a Kubernetes helper.", tools=[get_pods])
    agent.predict({"input": [{"role": "user", "content": "What runs in prod?"}]})       # blocking
    await agent.apredict({"input": [...]})                                              # async, for servers
    for event in agent.predict_stream({...}): ...                                       # streaming (blocking)
    async for event in agent.apredict_stream({...}): ...                                # streaming (async)

``predict``/``predict_stream`` are blocking (MLflow wraps them in an AGENT span); ``apredict``/``apredict_stream``
are the same for an event loop (the Agent Server): one loop core without I/O (:mod:`.loop`) and two short drivers
(:mod:`.drive`), so both give the same events and run a reply's tool calls with the same ``tool_concurrency``.
All four accept a ``ResponsesAgentRequest`` or the equivalent dict. Streams end with a ``response.completed`` event
whose ``response`` carries ``usage``.

Model settings come from the constructor or the environment (:class:`ModelConfig`): ``LLAMA_STACK_BASE_URL``
(server root or ``.../v1``; ``LLAMA_STACK_CLIENT_BASE_URL`` also honoured), ``LLAMA_STACK_MODEL`` (default: the first
LLM listed by ``/v1/models``), ``LLAMA_STACK_API_KEY``, ``LLAMA_STACK_TEMPERATURE``, ``LLAMA_STACK_TIMEOUT``.
Model failures raise :class:`ModelError` subclasses (unreachable, timeout, protocol) with one-line messages.

``default_agent()`` is the built-in agent the server runs when no other is named (no tools, settings from env).

Multi-agent: ``specialist.as_tool()`` turns an agent into a tool of a supervisor (``return_direct=True`` = routing);
:func:`supervisor` builds one. Sub-agent spans nest inside the caller's trace and their tokens count in its usage.
"""

from .agent import DEFAULT_MAX_STEPS, DEFAULT_TOOL_CONCURRENCY, LlamaStackAgent, default_agent, final_text
from .config import ModelConfig
from .errors import ModelError, ModelProtocolError, ModelTimeoutError, ModelUnreachableError, NoModelError
from .multi import supervisor
from .reply import Usage
from .threads import ToolThreads
from .tools import DEFAULT_TOOL_TIMEOUT, Tool, tool

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_TOOL_CONCURRENCY",
    "DEFAULT_TOOL_TIMEOUT",
    "LlamaStackAgent",
    "ModelConfig",
    "ModelError",
    "ModelProtocolError",
    "ModelTimeoutError",
    "ModelUnreachableError",
    "NoModelError",
    "Tool",
    "ToolThreads",
    "Usage",
    "default_agent",
    "final_text",
    "supervisor",
    "tool",
]
