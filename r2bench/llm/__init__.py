"""OpenAI-compatible LLM access: async client with concurrency, retries, a SQLite
response cache and usage accounting (``client``, ``cache``, ``usage``, ``config``),
reasoning/answer separation (``reasoning``), answer parsers (``parse``) and the
local llama.cpp server (``local_server``).

Typical use (the sync facade; ``await client.arun(requests)`` in async code)::

    from r2bench.llm import ClientConfig, LLMClient
    client = LLMClient(ClientConfig(base_url="http://127.0.0.1:8080/v1", model="smollm2"), seed=0)
    results = client.run_batch([client.request([{"role": "user", "content": "Hi"}])])
    results[0].answer, results[0].reasoning, client.usage()

Importing this package does not import ``openai`` (it is imported when a batch runs).
"""

from r2bench.llm.client import LLMClient
from r2bench.llm.config import ClientConfig
from r2bench.llm.usage import CallResult

__all__ = ["CallResult", "ClientConfig", "LLMClient"]
