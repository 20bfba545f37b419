"""A container's parent, as containerd-shim is one: ``python -S shim.py FOLDER ARGV...`` (container.py starts it
in a session of its own, so that it and the container outlive the node agent).

It records itself in FOLDER/shim.pid and the container's main process in FOLDER/pid (pids.py's format), waits
for that process and writes FOLDER/exit: its exit code (128 + the signal's number when a signal ended it, as a
runtime reports it) and the time it ended. An agent that adopts the container after a restart is not its parent:
that file is how it learns the end."""

import datetime
import json
import os
import signal
import sys

from pids import record, write  # shim.py's own folder is first on sys.path

STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_container(argv: list[str]) -> None:
    for sig in STOPS:
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()  # a group of its own: stopping the container's processes leaves the shim to write the end
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"shim: cannot run {argv[0]}: {exc}", file=sys.stderr, flush=True)
    os._exit(127)


def main() -> None:
    folder, argv = sys.argv[1], sys.argv[2:]
    for sig in STOPS:
        signal.signal(sig, signal.SIG_IGN)  # the container is the agent's to stop, not its shim
    record(f"{folder}/shim.pid", os.getpid())
    pid = os.fork()
    if pid == 0:
        run_container(argv)
    record(f"{folder}/pid", pid)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finished = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write(f"{folder}/exit", json.dumps({"exitCode": 128 - code if code < 0 else code, "finishedAt": finished}))


if __name__ == "__main__":
    main()
