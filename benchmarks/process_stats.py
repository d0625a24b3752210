"""CPU time and peak memory of a process, read from Linux /proc (the benchmarks need the JVM's,
which neither `resource` nor `/usr/bin/time` of the Python driver can see)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds the process has used so far (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")
