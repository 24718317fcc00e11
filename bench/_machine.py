"""What the benchmarks print about the machine they measured on."""

import os
import platform


def cpu_name():
    """The CPU's model name (``/proc/cpuinfo``) and core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"
