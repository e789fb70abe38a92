"""The a2a-sdk ``AgentExecutor`` that answers A2A messages with the served ``ResponsesAgent``.

One A2A message = one agent turn, run through the same invoke/stream wrappers (:mod:`..handlers`: timeout, failure
classification, AGENT root span with usage and session) and inside the same kind of root span as ``/invocations``
(``<Agent>.invoke`` for ``message/send``, ``<Agent>.stream`` for ``message/stream``), so an A2A request leaves the
same MLflow trace as the equivalent ``/invocations`` request. The agent's ``input`` is the conversation so far
(:class:`.memory.ConversationMemory`, by ``contextId``) plus the new question; its ``contextId`` becomes the trace's
session, so MLflow's Sessions view groups a conversation's traces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from a2a.server.agent_execution import AgentExecutor

from ..errors import classify
from ..handlers import AgentFailure
from ..routes import OFFLOAD_BYTES, OFFLOAD_ITEMS, _event_dict, _maybe_off_loop, _response_dict, root_span, trace_inputs
from .memory import ConversationMemory
from .report import TaskReporter, text_part

logger = logging.getLogger("kagent_mlflow.serve")
STREAM_METHODS = frozenset({"SendStreamingMessage", "message/stream"})
NO_TEXT = "the message has no text part; send the question as a text part"


class ResponsesAgentExecutor(AgentExecutor):
    """Runs one turn of the agent per A2A message; see the module docstring."""

    def __init__(self, invoke: Callable, stream: Callable, memory: ConversationMemory) -> None:
        self.invoke = invoke
        self.stream = stream
        self.memory = memory

    async def execute(self, context: Any, event_queue: Any) -> None:
        from a2a.helpers import new_task_from_user_message
        from a2a.server.tasks import TaskUpdater

        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        reporter = TaskReporter(updater)
        question = context.get_user_input()
        if not question.strip():
            await updater.reject(updater.new_agent_message([text_part(NO_TEXT)]))
            return
        conversation = task.context_id
        user_item = {"type": "message", "role": "user", "content": question}
        request = _agent_request([*self.memory.history(conversation), user_item], conversation)
        offload = len(request.input) > OFFLOAD_ITEMS or len(question) > OFFLOAD_BYTES
        streaming = context.call_context.state.get("method") in STREAM_METHODS
        await updater.start_work()
        try:
            if streaming:
                await self._stream(request, reporter, offload, task)
            else:
                await self._invoke(request, reporter, offload, task)
        except AgentFailure as exc:  # already logged where it was classified
            await reporter.fail(exc.error.message, exc.error.kind)
            return
        except Exception as exc:  # noqa: BLE001 - a bug here or in the agent: the caller still gets a failed task
            logger.error("A2A request failed: %s", exc, exc_info=exc)
            error = classify(exc)
            await reporter.fail(error.message, error.kind)
            return
        self.memory.remember(conversation, [user_item, *reporter.items])  # before the answer: a next turn sees it
        await reporter.complete()

    async def cancel(self, context: Any, event_queue: Any) -> None:
        from a2a.server.tasks import TaskUpdater

        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    async def _invoke(self, request: Any, reporter: TaskReporter, offload: bool, task: Any) -> None:
        from mlflow.tracing.constant import SpanAttributeKey

        async with root_span(self.invoke.__name__, offload) as span:
            _tag(task)
            await _maybe_off_loop(offload, span.set_inputs, trace_inputs(request))
            result = await self.invoke(request, offload=offload)
            span.set_attribute(SpanAttributeKey.MESSAGE_FORMAT, "openai")
            payload = await _maybe_off_loop(offload, _response_dict, result)
            span.set_outputs(payload)
        await reporter.answer(payload)

    async def _stream(self, request: Any, reporter: TaskReporter, offload: bool, task: Any) -> None:
        from mlflow.pyfunc import ResponsesAgent
        from mlflow.tracing.constant import SpanAttributeKey

        chunks: list[dict[str, Any]] = []
        async with root_span(self.stream.__name__, offload) as span:
            _tag(task)
            await _maybe_off_loop(offload, span.set_inputs, trace_inputs(request))
            async for event in self.stream(request, offload=offload):
                chunk = _event_dict(event)
                chunks.append(chunk)
                await reporter.event(chunk)
            span.set_attribute(SpanAttributeKey.MESSAGE_FORMAT, "openai")
            span.set_outputs(ResponsesAgent.responses_agent_output_reducer(chunks))


def _agent_request(items: list[dict[str, Any]], conversation: str) -> Any:
    from mlflow.types.agent import ChatContext
    from mlflow.types.responses import ResponsesAgentRequest

    return ResponsesAgentRequest(input=items, context=ChatContext(conversation_id=conversation))


def _tag(task: Any) -> None:
    """Trace tags naming the A2A task and conversation, so a caller can find the trace of its request."""
    import mlflow

    if mlflow.get_current_active_span() is not None:
        mlflow.update_current_trace(tags={"a2a.task_id": task.id, "a2a.context_id": task.context_id})
