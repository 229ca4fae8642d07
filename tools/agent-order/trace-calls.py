#!/usr/bin/env python3
"""Runs a program under ptrace and records which of its functions it calls, in the
order of their first call: every function of the executable gets a breakpoint (int3 on
its first byte) before it runs; a hit records the function, puts the byte back and
resumes, so each function traps once.

    trace-calls.py --out CALLS -- /path/to/skiff agent ...

Writes CALLS: one line per function called, first call first, each the mangled names
of the symbols at that address (aliases) separated by spaces. The program's threads are
traced (the tokio workers); processes it starts are not (they exec another program at
once, through posix_spawn, and never run the breakpoints). SIGINT and SIGTERM sent to
this script are passed on to the program, so it can stand in for the program in a
benchmark. Linux x86-64, root (or ptrace rights over the child). Used by
gen-agent-order.sh; see README.md beside it.
"""

import argparse
import ctypes
import os
import signal
import subprocess
import sys

PTRACE_TRACEME, PTRACE_PEEKUSER, PTRACE_POKEUSER, PTRACE_CONT = 0, 3, 6, 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_TRACECLONE = 0x8
PTRACE_EVENT_CLONE = 3
RIP = 16 * 8  # offsetof(struct user_regs_struct, rip)
WALL = 0x40000000  # __WALL: wait for threads too

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def ptrace(request, pid, addr=0, data=0):
    ctypes.set_errno(0)
    result = libc.ptrace(request, pid, addr, data)
    errno = ctypes.get_errno()
    if result == -1 and errno != 0:
        raise OSError(errno, f"ptrace({request}, {pid}): {os.strerror(errno)}")
    return result


def text_section(binary):
    """(address, size) of the executable's .text."""
    out = subprocess.run(["readelf", "-SW", binary], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 5 and fields[1] == ".text":
            return int(fields[3], 16), int(fields[5], 16)
    raise RuntimeError(f"no .text in {binary}")


def functions(binary):
    """{address: [names]} of the executable's defined functions in .text, from its symbol table."""
    start, size = text_section(binary)
    out = subprocess.run(["nm", "-S", "--defined-only", binary], check=True, capture_output=True, text=True).stdout
    by_address = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) != 4 or fields[2] not in ("t", "T", "w", "W") or int(fields[1], 16) == 0:
            continue
        address = int(fields[0], 16)
        if start <= address < start + size:
            by_address.setdefault(address, []).append(fields[3])
    return by_address


def load_base(pid, binary):
    """Where the executable's file offset 0 (its vaddr 0: a PIE) is mapped in pid."""
    real = os.path.realpath(binary)
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and os.path.realpath(fields[5]) == real and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    raise RuntimeError(f"{binary} is not mapped in {pid}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    binary = args.command[0]
    by_address = functions(binary)

    child = os.fork()
    if child == 0:
        ptrace(PTRACE_TRACEME, 0)
        os.execv(binary, args.command)  # stops with SIGTRAP once the image is mapped
    _, status = os.waitpid(child, 0)
    assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP, status
    ptrace(PTRACE_SETOPTIONS, child, 0, PTRACE_O_TRACECLONE)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, _frame: os.kill(child, s))

    # One write of the whole code range, every function's first byte an int3.
    base = load_base(child, binary)
    low, high = min(by_address), max(by_address) + 1
    mem = os.open(f"/proc/{child}/mem", os.O_RDWR)
    code = bytearray(os.pread(mem, high - low, base + low))
    original = {}
    for address in by_address:
        original[address] = code[address - low]
        code[address - low] = 0xCC
    os.pwrite(mem, bytes(code), base + low)
    del code

    calls = []
    known = {child}
    ptrace(PTRACE_CONT, child, 0, 0)
    while True:
        try:
            pid, status = os.waitpid(-1, WALL)
        except ChildProcessError:
            break
        if not os.WIFSTOPPED(status):
            known.discard(pid)
            continue
        sig, event = os.WSTOPSIG(status), status >> 16
        forward = 0
        if sig == signal.SIGTRAP and event == PTRACE_EVENT_CLONE:
            pass
        elif sig == signal.SIGSTOP and pid not in known:
            known.add(pid)  # a new thread's first stop
        elif sig == signal.SIGTRAP and event == 0:
            address = ptrace(PTRACE_PEEKUSER, pid, RIP) - 1 - base
            if address in original:
                byte = original.pop(address)
                os.pwrite(mem, bytes([byte]), base + address)
                calls.append(address)
                ptrace(PTRACE_POKEUSER, pid, RIP, base + address)
            elif address in by_address:
                ptrace(PTRACE_POKEUSER, pid, RIP, base + address)  # another thread put it back first
            else:
                forward = sig
        else:
            forward = sig
        try:
            ptrace(PTRACE_CONT, pid, 0, forward)
        except ProcessLookupError:
            pass
    with open(args.out, "w") as out:
        for address in calls:
            out.write(" ".join(by_address[address]) + "\n")
    print(f"trace-calls: {len(calls)} of {len(by_address)} functions called", file=sys.stderr)


if __name__ == "__main__":
    main()
