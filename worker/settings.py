"""Settings live with the client (`longthread.settings`), which must not import `worker/`."""

from longthread.settings import Settings

__all__ = ["Settings"]
