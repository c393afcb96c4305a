"""A bot backed by any server that speaks the OpenAI Chat Completions API.

OpenAI, Azure OpenAI, vLLM, Ollama, LM Studio and many gateways do. The
registered actions are the model's tools; its text streams to the widget as it
arrives; its tool calls, assembled from the streamed fragments, are one step.
The model is told every outcome through the conversation, which stays the whole
state: nothing here outlives one step.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import openai

from signoff.config import DEFAULT_LLM_RETRIES, DEFAULT_LLM_TIMEOUT, LLMSettings
from signoff.core.actions import Registry
from signoff.core.bot import NO_ANSWER
from signoff.core.conversation import Conversation, Text, ToolCall
from signoff.core.tools import ToolCallAssembler, chat_messages, tool_definition

log = logging.getLogger("signoff.bots.llm")

DEFAULT_SYSTEM_PROMPT = (
    "You are the assistant in the chat widget of this website. Answer briefly and "
    "plainly. Use the tools to look things up and to act; never make up results. "
    "Tools that change something are shown to the user as a confirmation card and run "
    "only if they confirm, so call them directly instead of asking for confirmation in "
    "text; the tool result tells you whether the call ran, failed or was declined. "
    "If it was declined, do not propose the same call again."
)
# Local servers (Ollama, vLLM, LM Studio) need no key, but the client must send one.
NO_KEY = "none"

TOO_SLOW = "Sorry, the assistant took too long to answer. Please try again."
BUSY = "Sorry, the assistant is getting too many requests right now. Please try again shortly."
UNAVAILABLE = "Sorry, the assistant is unavailable right now. Please try again later."
CUT_OFF = "Sorry, my answer was cut off. Please try again."


class OpenAIBot:
    """Streams each step from ``POST {base_url}/chat/completions``.

    Timeouts, rate limits (``retry-after`` honoured) and server errors are retried
    by the ``openai`` client, up to ``max_retries`` times; what still fails becomes
    a short apology to the visitor and a log line for the operator.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        timeout: float = DEFAULT_LLM_TIMEOUT,
        max_retries: int = DEFAULT_LLM_RETRIES,
    ) -> None:
        self.registry = registry
        self.model = model
        self.system_prompt = system_prompt
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or NO_KEY,
            timeout=timeout,
            max_retries=max_retries,
        )

    @classmethod
    def from_settings(
        cls, registry: Registry, settings: LLMSettings, default_prompt: str = DEFAULT_SYSTEM_PROMPT
    ) -> OpenAIBot:
        """The bot ``[llm]`` / ``SIGNOFF_LLM_*`` describe; ``default_prompt`` unless they
        give a system prompt."""
        prompt = default_prompt if settings.system_prompt is None else settings.system_prompt
        return cls(
            registry,
            model=settings.model,
            base_url=settings.base_url,
            api_key=settings.api_key,
            system_prompt=prompt,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )

    async def respond(self, conversation: Conversation) -> AsyncIterator[Text | ToolCall]:
        """One model response: its text as it streams, then its tool calls, all complete."""
        tools = [tool_definition(action) for action in self.registry]
        assembler = ToolCallAssembler()
        said = False
        finished = False
        try:
            stream = await self.client.chat.completions.create(
                model=self.model,
                # Plain JSON, in the shape the API takes; the SDK's TypedDicts add nothing.
                messages=cast(Any, chat_messages(conversation, self.system_prompt)),
                # Chat APIs refuse an empty tool list: a registry without actions sends none.
                tools=cast(Any, tools or openai.NOT_GIVEN),
                stream=True,
            )
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices[:1]:
                        text = (choice.delta.content or "") + (choice.delta.refusal or "")
                        if text:
                            said = True
                            yield Text(text)
                        for fragment in choice.delta.tool_calls or []:
                            function = fragment.function
                            assembler.add(
                                fragment.index,
                                fragment.id,
                                function.name if function else None,
                                function.arguments if function else None,
                            )
                        finished = finished or choice.finish_reason is not None
        # httpx's own errors too: older SDKs (1.55, for one) let a stream that stalls or drops
        # midway raise them unwrapped.
        except (openai.APIError, httpx.TransportError) as exc:
            yield Text(("\n\n" if said else "") + self._failure(exc))
            return
        if not finished:
            # The stream ended without saying it was done: whatever calls it held may be
            # incomplete, so none of them are passed on.
            log.warning("model %s: the response stream ended early", self.model)
            yield Text(("\n\n" if said else "") + CUT_OFF)
            return
        calls = assembler.calls()
        if not said and not calls:
            yield Text(NO_ANSWER)
        for call in calls:
            yield call

    def _failure(self, exc: openai.APIError | httpx.TransportError) -> str:
        """What the visitor is told once the client has given up; the details go to the log."""
        if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
            log.warning("model %s: timed out", self.model)
            return TOO_SLOW
        if isinstance(exc, openai.RateLimitError):
            log.warning("model %s: rate limited (429)", self.model)
            return BUSY
        if isinstance(exc, openai.APIStatusError) and exc.status_code < 500:
            # A wrong key, model or URL, or a request the server will never accept:
            # retrying does not help, the operator must look.
            log.error("model %s: refused with HTTP %s: %s", self.model, exc.status_code, exc)
            return UNAVAILABLE
        log.warning("model %s: %s", self.model, exc)
        return UNAVAILABLE
