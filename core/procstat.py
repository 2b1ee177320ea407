"""A process's entry in Linux's ``/proc/PID/stat``, read in one place (its command name, in
parentheses, may itself hold spaces and parentheses, so the fields start after the last
``)``)."""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name: index 0 is the state (field 3
    of proc(5)), so field N is at index N - 3. OSError where there is no such entry.

    >>> import os
    >>> stat_fields(os.getpid())[0] in ("R", "S", "D")
    True
    """
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
