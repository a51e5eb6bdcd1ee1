"""``[core] hostname_callable`` of the process stack: the component's own name, so two Celery workers on one
machine show up as different hosts (task instances' ``hostname`` in the REST API and UI)."""

from __future__ import annotations

import os
import socket

HOSTNAME_VARIABLE = "CSV_IMPORT_STACK_HOSTNAME"


def worker_hostname() -> str:
    """``CSV_IMPORT_STACK_HOSTNAME`` if the stack set it for this process, else the machine's FQDN."""
    return os.environ.get(HOSTNAME_VARIABLE) or socket.getfqdn()
