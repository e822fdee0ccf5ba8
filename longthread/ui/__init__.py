"""The audit web page (`longthread ui`, and `longthread dev` starts it too): a tenant's
sessions, each ledger as a timeline, the messages a compaction covered beside the summary that
replaced them, the window served at any turn with its digest checked, and undo.

`start()` runs it inside the caller's event loop and returns a handle to stop; `serve()` is the
CLI's blocking form.
"""

from longthread.ui._server import DEFAULT_PORT, RunningUi, check_exposure, serve, start

__all__ = ["DEFAULT_PORT", "RunningUi", "check_exposure", "serve", "start"]
