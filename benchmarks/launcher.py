"""A small process that starts the contenders, so that a contender's peak RSS is its own.

Linux carries a process's RSS high-water mark across ``exec``: a child reports at least the
RSS of the process that forked it. The bench holds data in memory; this launcher holds ~10 MiB
(the interpreter, ``os``, ``json``, ``time``: nothing else is imported), so a contender forked
from here reports its own peak. ``python -c pass`` reports ~10 MiB through it.

Protocol: one JSON request per line on stdin ``{"argv", "env", "cwd", "stdout", "stderr"}``;
for each, one line ``{"pid"}`` when the child started, then ``{"wall_s", "maxrss_kib",
"cpu_s", "exit"}`` when it was reaped (wall time from fork to reap). End of input: exit.

    python benchmarks/launcher.py   # run as a file (``-m`` would import the benchmarks package)
"""

import json
import os
import sys
import time


def spawn(req: dict) -> int:
    """Fork and exec ``req["argv"]`` with its stdout/stderr in files, stdin from /dev/null."""
    fds = [
        os.open(os.devnull, os.O_RDONLY),
        os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    pid = os.fork()
    if pid == 0:  # the child: nothing but dup2, chdir and exec
        try:
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            os.chdir(req["cwd"])
            os.execvpe(req["argv"][0], req["argv"], req["env"])
        finally:
            os._exit(127)
    for fd in fds:
        os.close(fd)
    return pid


def serve(requests, replies) -> None:
    for line in requests:
        req = json.loads(line)
        t0 = time.perf_counter()
        pid = spawn(req)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        done = {
            "wall_s": wall,
            "maxrss_kib": usage.ru_maxrss,  # KiB on Linux
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "exit": os.waitstatus_to_exitcode(status),
        }
        replies.write(json.dumps(done) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
