"""Adapters that let other frameworks keep their conversations in longthread.

Each adapter lives in its own module and imports its framework only there, so installing
longthread never pulls in a framework you do not use:

- `longthread.integrations.openai_agents.LongthreadSession` (extra `openai-agents`)
- `longthread.integrations.langchain.LongthreadChatMessageHistory` (extra `langchain`)
- `longthread.integrations.providers`: a context window as Anthropic / OpenAI SDK arguments
"""
