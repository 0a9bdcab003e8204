"""Hostile "fixes" for the clamp task of tests/test_rewards.py: each is rewarded exactly when its attack works.

Every case is a whole clamp.py whose ``clamp`` is only correct if the attack at import time succeeded, so the
execution reward itself is the evidence: 0 inside the sandbox, > 0 with the sandbox switched off (the negative
control). The bounded sizes make the unsandboxed runs harmless: 52 short-lived processes, 1.5 s of CPU, 256 KiB of
output, 512 MiB of memory, files only under the test's tmp_path, a socket to the test's own listener.
"""

from __future__ import annotations

FOOTER = '''

def clamp(x, lo, hi):
    if not ATTACK_OK:
        return x
    return max(lo, min(x, hi))
'''


def fork_bomb(count: int) -> str:
    return f'''import os, time
ATTACK_OK = False
pids = []
try:
    for _ in range({count}):
        pid = os.fork()
        if pid == 0:
            time.sleep(0.5)
            os._exit(0)
        pids.append(pid)
    ATTACK_OK = True
except OSError:
    pass
for pid in pids:
    os.waitpid(pid, 0)
''' + FOOTER


def cpu_loop(cpu_seconds: float) -> str:
    """Spins for ``cpu_seconds`` of CPU time (not wall time: the 2-core test machine is shared)."""
    return f'''import time
ATTACK_OK = False
end = time.process_time() + {cpu_seconds}
while time.process_time() < end:
    pass
ATTACK_OK = True
''' + FOOTER


def output_flood(size: int) -> str:
    return f'''import sys
ATTACK_OK = False
chunk = "x" * 65536
for _ in range({size} // 65536):
    sys.stdout.write(chunk)
sys.stdout.flush()
ATTACK_OK = True
''' + FOOTER


def read_secrets(canary: str) -> str:
    """Looks in its environment and in every readable /proc/<pid>/environ; prints what it finds (a leak)."""
    return f'''import os, sys
ATTACK_OK = False
found = [value for value in os.environ.values() if {canary!r} in value]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{{pid}}/environ", "rb") as fh:
                if {canary!r}.encode() in fh.read():
                    found.append({canary!r})
        except OSError:
            pass
print("FOUND", found, file=sys.stderr)
ATTACK_OK = bool(found)
''' + FOOTER


def write_files(paths: list[str]) -> str:
    return f'''ATTACK_OK = False
written = 0
for path in {paths!r}:
    try:
        with open(path, "w") as fh:
            fh.write("pwned")
        written += 1
    except OSError:
        pass
ATTACK_OK = written == {len(paths)}
''' + FOOTER


def connect(port: int) -> str:
    return f'''import socket
ATTACK_OK = False
try:
    conn = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    conn.sendall(b"pwned")
    conn.close()
    ATTACK_OK = True
except OSError:
    pass
''' + FOOTER


def delete_file(path: str) -> str:
    return f'''import os
ATTACK_OK = False
try:
    os.remove({path!r})
    ATTACK_OK = True
except OSError:
    pass
''' + FOOTER


def allocate(size: int) -> str:
    return f'''ATTACK_OK = False
try:
    block = bytearray({size})
    ATTACK_OK = len(block) == {size}
    del block
except MemoryError:
    pass
''' + FOOTER


# Unbounded: only ever run inside the sandbox.
REAL_FORK_BOMB = '''import os
while True:
    try:
        os.fork()
    except OSError:
        pass
''' + FOOTER.replace("ATTACK_OK", "True")
REAL_INFINITE_LOOP = "while True:\n    pass\n" + FOOTER.replace("ATTACK_OK", "True")
GIGABYTE_OF_OUTPUT = ('import sys\nblock = "x" * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(block)\n'
                      + FOOTER.replace("ATTACK_OK", "True"))
