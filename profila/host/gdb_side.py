"""Runs inside gdb's embedded Python (gdb -nx -batch -x THIS). Not imported by profila.

gdb only hosts the target: it attaches to the forked, waiting child, passes every signal
through untouched, and holds the target at its final exit_group so the controller can read the
JIT objects while the memory is still there. It does nothing per sample.

Protocol on gdb's stdout (the target's own output never goes there: the target inherited the
user's stdin/stdout/stderr from profila, not gdb's):
    @@profila attached            attached and running; signals pass through
    @@profila exiting             the target is stopped at exit_group; waiting for one byte on
                                  the ack fd (EOF counts: a dead controller never blocks exit)
    @@profila error <message>     attaching failed
"""

import contextlib
import os

import gdb

PID = int(os.environ["PROFILA_TARGET_PID"])
ACK_FD = int(os.environ["PROFILA_ACK_FD"])
# gdb's defaults stop on SIGINT and swallow it, and stop on SIGPIPE and others; profila must
# change nothing about how the target sees signals. "all" is every signal but SIGTRAP (gdb's
# own) and SIGINT, which gets its own line.
PASS_SIGNALS = ("all", "SIGINT")
EXIT_GROUP = 231  # x86-64 syscall number


def say(line: str) -> None:
    os.write(1, f"@@profila {line}\n".encode())


def run(command: str) -> str:
    return str(gdb.execute(command, to_string=True))


def main() -> None:
    for setting in (
        "set pagination off",
        "set confirm off",
        "set width 0",
        "set auto-load off",  # no python-gdb.py or other scripts from the target's files
        "set auto-solib-add off",  # read no library symbols: we symbolise in the controller
        "set detach-on-fork on",
        "set follow-fork-mode parent",
    ):
        run(setting)
    try:
        run(f"attach {PID}")
    except gdb.error as exc:
        say("error " + " ".join(str(exc).split()))
        return
    run("catch syscall exit_group")
    for signals in PASS_SIGNALS:
        run(f"handle {signals} nostop noprint pass")
    say("attached")
    while True:
        try:
            run("continue")
        except gdb.error:
            return  # the target is gone (killed by a signal, or exited without exit_group)
        inferior = gdb.selected_inferior()
        if inferior is None or inferior.pid == 0:
            return
        if _stopped_in_exit_group():
            say("exiting")
            with contextlib.suppress(OSError):
                os.read(ACK_FD, 1)
            run("detach")
            return


def _stopped_in_exit_group() -> bool:
    """The only stop we ask for is the exit_group catchpoint; check the syscall number anyway."""
    try:
        rax = int(gdb.parse_and_eval("$orig_rax"))
    except gdb.error:
        return False
    return rax == EXIT_GROUP


main()
