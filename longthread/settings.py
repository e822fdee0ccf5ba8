"""Settings from `LONGTHREAD_*` environment variables (and an optional .env), loaded once.

Every field is listed in `.env.example`. Keys are SecretStr so they never print.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memory.models import MAX_ACTOR, Actor
from memory.prompts import SUMMARY_OUTPUT_TOKENS

__all__ = ["OTHER_VARIABLES", "Settings", "UnknownName", "acting_for", "database_url_problem",
           "known_variables", "resolve_settings", "unknown_names"]

_PREFIX = "LONGTHREAD_"

# LONGTHREAD_* names read outside `Settings`, which the CLI must not refuse as misspelled
# settings (`unknown_names` below). Keep in step with the code that reads
# them (grep LONGTHREAD_ across the repository, tests/ and bench/ included).
OTHER_VARIABLES = frozenset({
    # Read by the commands that use them (.env.example lists these too).
    "LONGTHREAD_UI_TOKEN",             # `longthread ui --token`
    "LONGTHREAD_ADMIN_DATABASE_URL",   # `db setup` and `db erase` (--admin-url)
    "LONGTHREAD_APP_PASSWORD",         # `db setup` (--app-password)
    "LONGTHREAD_PG_SHARED_BUFFERS_MB", # worker/stack.py: the embedded Postgres
    "LONGTHREAD_MODEL_CACHE",          # activities/providers/onnx_int8.py
    "LONGTHREAD_LOCOMO",               # `demo --locomo` and bench/common.py
    # Knobs of the tests and benchmarks, which run the CLI as a subprocess in their
    # environment: refusing them would fail those runs.
    "LONGTHREAD_QUALITY_CACHE",        # bench/quality_store.py
    "LONGTHREAD_REPLAY_EXAMPLES",      # tests/reliability/test_replay_exact.py
    "LONGTHREAD_REPLAY_STEPS",         # tests/reliability/test_replay_exact.py
    "LONGTHREAD_REPLAY_SUMMARY",       # tests/reliability/test_replay_exact.py
    "LONGTHREAD_FUZZ_CASES",           # tests/reliability/test_update_fuzz.py
    "LONGTHREAD_OUTAGE_SECONDS",       # tests/reliability/test_outage.py
    "LONGTHREAD_UI_SCREENSHOT",        # tests/e2e/test_ui.py
})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LONGTHREAD_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        env_ignore_empty=True,
        # A ValidationError's text would quote the value: a database URL holds its password.
        # The CLI's one-line errors name the variable and echo only what is not secret.
        hide_input_in_errors=True,
    )

    # Where things run. With no database_url, `longthread dev` embeds Postgres in data_dir.
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    audit_ui_port: int = Field(default=8321, ge=0, le=65535)  # `dev` serves the audit page; 0: off
    task_queue: str = "longthread"
    database_url: str | None = None
    data_dir: Path = Path(".longthread")

    # Embeddings, offline on the CPU: "local" is all-MiniLM-L6-v2 (fast); "mpnet" is
    # all-mpnet-base-v2 (better recall, about a third of the ingestion rate; the `mpnet`
    # extra). Unset, embedding_dim is the model's own (384, 768; 384 for openai).
    embedder: Literal["local", "mpnet", "openai"] = "local"
    embedding_dim: int | None = Field(default=None, ge=1, le=16_000)
    openai_embedding_model: str = "text-embedding-3-small"

    # Summaries: "extractive" works offline and is the default.
    summarizer: Literal["extractive", "anthropic", "openai"] = "extractive"
    summary_model: str | None = None
    summarizer_max_failures: int = Field(default=3, ge=1, le=100)
    # The most output tokens an abstractive summary is asked for, whatever the plan's budget:
    # a large context window plans summaries of tens of thousands of tokens, which providers
    # refuse (output limits of 4k to 64k) or which outlast the 60 s request timeout, and each
    # such compaction fell back to extractive. At most the summary model's output limit.
    summary_max_output_tokens: int = Field(default=SUMMARY_OUTPUT_TOKENS, ge=32, le=200_000)

    # The chat model behind generate(); none by default.
    chat_provider: Literal["none", "anthropic", "openai"] = "none"
    chat_model: str | None = None

    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None  # any OpenAI-compatible server: Ollama, vLLM, llama.cpp

    # The compaction policy.
    context_window: int = Field(default=8_000, ge=256, le=2_000_000)
    preserve_recent: int = Field(default=6, ge=0, le=10_000)
    idle_timeout_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    # Connections each worker and each client process may hold to the archive (the CLI holds
    # at most 4). Size max_connections for workers × this + clients × this + headroom.
    database_pool_size: int = Field(default=8, ge=1, le=1000)
    # How long a client keeps retrying an update while Temporal is unreachable, no worker
    # polls, the server's wait for an append runs out, or the session's run is closing.
    client_retry_seconds: float = Field(default=300, ge=0)
    # How long a stopping worker (SIGTERM, Ctrl-C) lets the activities it runs finish before
    # it cancels them. Within Kubernetes' default 30 s grace, so a deploy is a stop, not a crash.
    shutdown_grace_seconds: float = Field(default=25, ge=0, le=3600)

    # Who this process acts for, recorded on every manual compaction, undo, pop and clear it
    # asks for (`CompactionRecord.actor`): a name, not a login; unset, the CLI records its
    # user (`cli:alice`), the audit page and the MCP server theirs, and the client none.
    actor: Actor = None

    # Where a worker serves Prometheus metrics (`host:port`; GET /metrics): Temporal's worker
    # metrics and longthread's own (activities/metrics.py). Unset: none are served.
    metrics_address: str | None = None

    # Optional AES-GCM payload encryption of workflow history (32-byte key, base64).
    payload_key: SecretStr | None = None

    @field_validator("database_url")
    @classmethod
    def _parsable(cls, value: str | None) -> str | None:
        problem = database_url_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("metrics_address")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        host, _, port = (value or "").rpartition(":")
        if value is not None and not (host and port.isdigit() and int(port) <= 65535):
            raise ValueError("must be host:port, such as 0.0.0.0:9464")
        return value

    @property
    def dimensions(self) -> int:
        """The archive's embedding size: the setting, else the embedder's own."""
        if self.embedding_dim is not None:
            return self.embedding_dim
        return 768 if self.embedder == "mpnet" else 384

    @property
    def embedding_model(self) -> str:
        """The model whose vectors the archive holds (recorded by the first worker; others
        are refused). Both local MiniLM builds, ONNX and torch, make the same vectors."""
        if self.embedder == "openai":
            return f"openai:{self.openai_embedding_model}"
        return "all-mpnet-base-v2" if self.embedder == "mpnet" else "all-MiniLM-L6-v2"


def database_url_problem(url: str) -> str | None:
    """Why libpq would not read `url` as meant, in words that never quote it (it holds a
    password); None when it would. A password holding '%' or '@' unencoded failed deep in
    psycopg, whose error and the pool's log quoted the password (session 25's review)."""
    import re

    from psycopg.conninfo import conninfo_to_dict  # psycopg: loaded when a URL is given

    hint = "percent-encode '%', '@', ':' and '/' in the user and password ('%' as %25, '@' " \
           "as %40)"
    leaked = f"has an '@' or '/' in its user or password that is not percent-encoded; {hint}"
    # In a URI an unencoded '@' or '/' in the password shows as a second '@' in its authority,
    # or an '@' in its path (the database name; libpq knows no '#' fragment); a query
    # parameter may hold one (a socket directory: ?host=/srv/job@2), and so may a keyword
    # string's host.
    uri = re.match(r"postgres(?:ql)?://([^/?]*)([^?]*)", url)
    if uri and (uri[1].count("@") > 1 or "@" in uri[2]):
        return leaked
    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return f"is not a PostgreSQL URL or keyword string libpq can read; {hint}"
    # A '?' in the password ends the authority early: the rest reads as a host such as 'x@db'.
    if any("@" in host and not host.startswith("/")
           for host in str(parts.get("host") or "").split(",")):
        return leaked
    return None


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _same_address(one: str, other: str) -> bool:
    """host:port pairs naming the same server: `localhost` and 127.0.0.1 are one host (`dev`
    writes 127.0.0.1; a user may well write localhost)."""
    (host, _, port), (host2, _, port2) = one.rpartition(":"), other.rpartition(":")
    same_host = host.lower() == host2.lower() or {host.lower(), host2.lower()} <= _LOOPBACK
    return port == port2 and same_host


def acting_for(settings: Settings, surface: str) -> str:
    """The actor a surface (`cli`, `ui`, `mcp`) records on what it asks for: the `actor`
    setting, else `surface:user`, the user this process runs as."""
    import getpass
    import os

    if settings.actor:
        return settings.actor
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry: a container's bare uid
        user = f"uid {os.getuid()}"
    return f"{surface}:{user}"[:MAX_ACTOR]


def resolve_settings(settings: Settings | None = None) -> Settings:
    """Env and .env first; else what a running `longthread dev` wrote into its data dir
    (`stack.json`: the Temporal address and the database URL), unless a Temporal address set
    in the environment names another stack. Read from the environment
    (`settings` None), a LONGTHREAD_* name close to a setting is refused, as the CLI refuses
    it: a misspelled address would else run against the default."""
    import json

    if settings is None:
        _refuse_unknown_names()
    settings = settings or Settings()
    stack = settings.data_dir / "stack.json"
    if not settings.database_url and stack.exists():
        info = json.loads(stack.read_text())
        # A Temporal address set on purpose names another stack: this one's database (and
        # address) would pair it with the wrong archive. It was overwritten, and a command
        # meant for another stack ran against the local one.
        if "temporal_address" not in settings.model_fields_set \
                or _same_address(settings.temporal_address, info["temporal"]):
            settings = settings.model_copy(update={"database_url": info["database_url"],
                                                   "temporal_address": info["temporal"]})
    return settings


def data_dir_problem(settings: Settings) -> str | None:
    """Why the data dir cannot say where the stack is, when it is all that would: named
    (LONGTHREAD_DATA_DIR, `--data-dir`), with no database URL or Temporal address beside it,
    and no running `longthread dev` wrote its `stack.json` there. Connecting then would use
    the defaults, whatever stack listens on 127.0.0.1:7233 (ut27: an import went into
    another stack's session). None when nothing is wrong."""
    named = settings.model_fields_set
    if ("data_dir" not in named or settings.database_url or "temporal_address" in named
            or (settings.data_dir / "stack.json").exists()):
        return None
    problem = ("does not exist" if not settings.data_dir.exists() else
               "holds no running `longthread dev` (no stack.json)")
    return (f"LONGTHREAD_DATA_DIR {settings.data_dir} {problem}: start `longthread dev "
            f"--data-dir {settings.data_dir}`, name the data dir of a running one, or set "
            "LONGTHREAD_DATABASE_URL and LONGTHREAD_TEMPORAL_ADDRESS")


class UnknownName(NamedTuple):
    """A LONGTHREAD_* name no code reads; `in_dotenv` says where it was set."""

    name: str
    in_dotenv: bool
    meant: str | None  # the known name it most likely misspells

    def problem(self) -> str:
        where = "in .env; " if self.in_dotenv else ""
        hint = (f"did you mean {self.meant}?" if self.meant
                else "see .env.example for every setting")
        return f"not a longthread setting ({where}{hint})"

    def line(self) -> str:
        return f"{self.name}: {self.problem()}"


def known_variables() -> set[str]:
    """Every LONGTHREAD_* name longthread reads: the settings, and those read elsewhere."""
    return {f"LONGTHREAD_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES


def unknown_names(environ: Mapping[str, str], dotenv: Path) -> list[UnknownName]:
    """A LONGTHREAD_* name no code reads, in the environment or in `dotenv`, is a misspelling
    whose value was silently dropped for the default (LONGTHREAD_TEMPORL_ADDRESS ran against
    127.0.0.1:7233), or a setting of another version: each, with the name it most likely
    meant. Sorted by name."""
    import difflib  # loaded when used: `import longthread` stays light

    from dotenv import dotenv_values

    known = known_variables()
    found = {name: False for name in environ if name.startswith(_PREFIX)}
    if dotenv.is_file():  # named so, even when the CLI has copied it into the environment
        found |= {name: True for name in dotenv_values(dotenv) if name.startswith(_PREFIX)}
    # Matched without the prefix all share, which would make LONGTHREAD_FOO "close" to any.
    tails = {name.removeprefix(_PREFIX): name for name in known}
    unknown = []
    for name, in_dotenv in sorted(found.items()):
        if name not in known:
            close = difflib.get_close_matches(name.removeprefix(_PREFIX), sorted(tails), n=1,
                                              cutoff=0.75)
            unknown.append(UnknownName(name, in_dotenv, tails[close[0]] if close else None))
    return unknown


def _refuse_unknown_names() -> None:
    """A name close to a setting is a typo: refused. Any other is logged, not refused: an
    environment shared with a newer longthread (a ConfigMap) may hold settings this version
    does not know, and an application must not stop connecting for that."""
    import logging
    import os

    from memory.errors import InvalidInputError

    unknown = unknown_names(os.environ, Path(".env"))
    for other in (u for u in unknown if u.meant is None):
        logging.getLogger("longthread").warning("%s", other.line())
    typos = [u for u in unknown if u.meant is not None]
    if typos:
        raise InvalidInputError(typos[0].name, "; ".join(
            [typos[0].problem(), *(u.line() for u in typos[1:])]))
