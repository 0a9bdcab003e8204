"""PID 1 of one sandbox run: private mounts, then the command as an unprivileged process. Stdlib only.

Started by ``pipeline_lib.sandbox`` as ``unshare [--user --map-root-user] --net --mount --pid --fork --kill-child
--mount-proc python -I -S -B sandbox_init.py CONFIG_JSON``, so it is already in fresh network, mount and PID
namespaces (util-linux made every mount private). It

1. hides the caller's home, secret folders, /tmp, /var/tmp, /dev/shm and /run under empty tmpfs mounts,
   bind-mounting back the toolchain folders that live inside them (``/root/.pyenv/versions/X``,
   ``/root/.rustup/toolchains/Y``);
2. mounts a size-limited tmpfs as the run folder and copies the task files into it (owned by the run's uid);
3. makes every mount read-only and nosuid, except the run folder (read-write, nosuid, nodev);
4. forks the command: rlimits, then (root) ``setgroups([])`` + ``setgid``/``setuid`` to the run's own uid, or
   (user namespace, uid 0 inside maps to the caller) an empty capability bounding set and ``capset(0)``;
   ``PR_SET_NO_NEW_PRIVS``; ``execve`` with the allow-listed environment;
5. reaps every orphan until the command exits, writes ``{"returncode": ...}`` to the status fd and exits, which
   makes the kernel SIGKILL whatever the command left behind in the PID namespace.

Nothing here is imported by the pipeline; ``tests/test_sandbox.py`` runs it through ``pipeline_lib.sandbox``.
"""

import ctypes
import json
import os
import resource
import shutil
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 0x1, 0x2, 0x4, 0x20, 0x1000, 0x4000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
AT_RECURSIVE = 0x8000
SYS_MOUNT_SETATTR = 442  # same number on every Linux architecture (added to the unified table in 5.12)
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
RLIMIT_NAMES = {"cpu": "RLIMIT_CPU", "as": "RLIMIT_AS", "fsize": "RLIMIT_FSIZE", "nproc": "RLIMIT_NPROC",
                "core": "RLIMIT_CORE", "nofile": "RLIMIT_NOFILE"}

libc = ctypes.CDLL(None, use_errno=True)


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if x is None else x.encode() for x in (source, target, fstype, data)]
    _check(libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def mount_setattr(path: str, attr_set: int, attr_clr: int, recursive: bool) -> None:
    attr = MountAttr(attr_set, attr_clr, 0, 0)
    result = libc.syscall(SYS_MOUNT_SETATTR, -100, path.encode(), AT_RECURSIVE if recursive else 0,
                          ctypes.byref(attr), ctypes.sizeof(attr))
    _check(result, f"mount_setattr {path}")


def _mount_points() -> list[tuple[str, set[str]]]:
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            out.append((point, set(fields[5].split(","))))
    return out


def make_read_only_everywhere() -> None:
    """Every mount ro+nosuid: one recursive mount_setattr (5.12+), else a remount per mount point.

    Not nodev: /dev/null must stay openable; device permissions keep the unprivileged uid off the rest of /dev.
    """
    try:
        mount_setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, recursive=True)
        return
    except OSError as exc:
        if exc.errno not in (38, 22):  # ENOSYS (old kernel), EINVAL (no AT_RECURSIVE)
            raise
    locked = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": 0x8, "noatime": 0x400, "nodiratime": 0x800,
              "relatime": 0x200000}
    for point, options in _mount_points():
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        for name, bit in locked.items():
            if name in options:
                flags |= bit
        try:
            mount(None, point, None, flags)
        except OSError as exc:
            if exc.errno != 2:  # ENOENT: hidden under a tmpfs mounted above it
                raise


def _hidden(path: str, hide: list[str]) -> bool:
    return any(path == h or path.startswith(h.rstrip("/") + "/") for h in hide)


def setup_mounts(cfg: dict) -> None:
    root, hide, uid = cfg["root"], cfg["hide"], cfg["uid"]
    # Handles taken before anything is covered: bind sources reachable through /proc/self/fd afterwards.
    keep = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in cfg["expose"]}
    source = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # the files the parent wrote, copied into the tmpfs
    for folder in hide:
        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, fd in keep.items():
        if _hidden(path, hide):
            os.makedirs(path, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    os.makedirs(root, exist_ok=True)  # re-created when it lies in a hidden folder (e.g. /tmp)
    # The run folder is a size-limited tmpfs: bounds what a run can write in total (RLIMIT_FSIZE is per file).
    owner = f",uid={uid},gid={cfg['gid']}" if uid is not None else ""
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={cfg['disk_bytes']},nr_inodes={cfg['inodes']},mode=0700{owner}")
    shutil.copytree(f"/proc/self/fd/{source}", root, symlinks=True, dirs_exist_ok=True)
    if uid is not None:
        for folder, dirs, names in os.walk(root):
            for name in [folder] + [os.path.join(folder, n) for n in dirs + names]:
                os.chown(name, uid, cfg["gid"], follow_symlinks=False)
    make_read_only_everywhere()
    try:
        mount_setattr(root, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY, recursive=False)
    except OSError as exc:
        if exc.errno not in (38, 22):
            raise
        mount(None, root, None, MS_REMOUNT | MS_NOSUID | MS_NODEV)
    for fd in [*keep.values(), source]:
        os.close(fd)


def drop_capabilities() -> None:
    """User-namespace mode: uid 0 inside keeps no capability across execve (bounding set empty, capset 0)."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: past the last
            break
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")


def run_command(cfg: dict) -> None:
    """Runs in the forked child; never returns."""
    try:
        for name, value in cfg["rlimits"].items():
            resource.setrlimit(getattr(resource, RLIMIT_NAMES[name]), tuple(value))
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
            os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
        else:
            drop_capabilities()
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        os.umask(0o022)
        os.chdir(cfg["cwd"])
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as exc:  # noqa: BLE001 - report any failure to start as exit 127, like a shell
        os.write(2, f"sandbox: cannot start {cfg['argv'][0]}: {exc}\n".encode())
        os._exit(127)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    status_fd = cfg["status_fd"]
    os.set_inheritable(status_fd, False)
    try:
        setup_mounts(cfg)
    except OSError as exc:
        os.write(status_fd, json.dumps({"error": f"mount setup failed: {exc}"}).encode())
        os._exit(111)
    pid = os.fork()
    if pid == 0:
        run_command(cfg)
    # The caller kills us at its wall clock; if the caller itself died, this alarm still ends the namespace.
    signal.signal(signal.SIGALRM, lambda *_: os._exit(124))
    signal.alarm(int(cfg["wall_seconds"]) + 5)
    while True:
        try:
            waited, status = os.wait()
        except ChildProcessError:
            status = 0x7F00  # impossible: our child vanished; report exit 127
            break
        if waited == pid:
            break
    returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    os.write(status_fd, json.dumps({"returncode": returncode}).encode())
    os._exit(0)


if __name__ == "__main__":
    main()
