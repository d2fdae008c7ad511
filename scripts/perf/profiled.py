"""Run a module with cProfile on the CPU clock: SIGUSR1 starts profiling, SIGUSR2 writes it.

    python -m scripts.perf.profiled OUTPUT -m MODULE [ARGS...]

The CPU clock (`time.process_time`), not the wall clock: on two shared cores a process waits
for a core often, and a wall-clock profile charges that wait to whatever line it was on. The
profile is started and written on signals, so that start-up stays out of it and because
uvicorn ends a process by raising the signal that stopped it again. Used by scripts/perf/profile.py.
"""

import cProfile
import runpy
import signal
import sys
import time


def main() -> None:
    output, flag, module, *args = sys.argv[1:]
    if flag != "-m":
        sys.exit("usage: python -m scripts.perf.profiled OUTPUT -m MODULE [ARGS...]")
    profile = cProfile.Profile(time.process_time)

    def write(*_: object) -> None:
        profile.disable()
        profile.dump_stats(output)

    signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
    signal.signal(signal.SIGUSR2, write)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
