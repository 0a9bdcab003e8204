"""Run untrusted model- or task-code: a fresh temp dir, no network, no secrets, nothing written outside, limits.

    from pipeline_lib.sandbox import Limits, run_files, isolation_report
    result = run_files({"m.py": "...", "test_m.py": "..."}, ["python", "-m", "unittest", "-q", "test_m"])
    result.returncode, result.stdout, result.timed_out, result.isolation

Every execution of completion or task code in the pipeline (rewards, mutation checks, trajectories, evaluation)
goes through ``run_files``. How one run is isolated (Linux; ``pipeline_lib/sandbox_init.py`` is PID 1 inside):

- **Namespaces** via util-linux ``unshare``: a new network namespace (no interface is up, not even loopback, so
  nothing, the parent's 127.0.0.1 included, is reachable), a new mount namespace and a new PID namespace (its own
  ``/proc``; the caller's processes and their ``/proc/<pid>/environ`` are invisible; when the run ends the kernel
  kills everything left in it, including processes that left the process group with ``setsid``).
- **Filesystem**: every mount is read-only + nosuid inside the namespace except the run folder, which is a tmpfs of
  ``disk_bytes`` holding a copy of the task files (so a run cannot fill the disk: RLIMIT_FSIZE is per file). The
  caller's home, the Hugging Face token/cache folders, /home, /tmp, /var/tmp, /dev/shm and /run (sockets such as
  D-Bus, which a read-only mount does not stop) are covered by empty tmpfs mounts, with only the toolchain folders
  inside them (e.g. ``/root/.pyenv/versions/3.11.7``, ``/root/.rustup/toolchains/stable-...``) bound back,
  read-only. So "nothing written outside the temp dir" is enforced by the kernel (EROFS), not by permissions.
- **Privileges**: as root, the command runs under its own uid/gid (``UID_BASE + slot``, one per concurrent run,
  owning only the run folder), no supplementary groups, ``no_new_privs``. That makes RLIMIT_NPROC bind (it does not
  bind uid 0) and count only this run's processes. As a normal user, a user namespace maps uid 0 to the caller and
  every capability is dropped before ``execve``; RLIMIT_NPROC then counts the caller's other processes too, so the
  limit is set to (their count + ``max_processes``), which ``isolation_report()`` says.
- **Limits**: RLIMIT_CPU (SIGXCPU, then SIGKILL one second later), RLIMIT_AS per process, RLIMIT_FSIZE,
  RLIMIT_NPROC, no core files; the wall clock is enforced here by SIGKILL to the whole process group (PID 1 of the
  namespace included, which takes the rest with it). A stream that passes ``max_output_bytes`` is cut there and the
  run is killed at once (``output_truncated``), so 1 GB of output costs milliseconds, not a gigabyte of memory.
- **Environment**: an allow-list built from constants (PATH of the toolchains, HOME/TMPDIR inside the run folder,
  C.UTF-8, CARGO_HOME/RUSTC, PYTHONDONTWRITEBYTECODE...): nothing is copied from the caller's environment, so no
  HF_TOKEN or any other secret reaches the command. The launcher itself starts with the same allow-list.

``test_command[0] == "python"`` runs the interpreter running the pipeline (``realpath(sys.executable)``: the base
interpreter of a virtualenv, stdlib only); ``"cargo"`` runs the active toolchain's own cargo binary
(``rustc --print sysroot``/bin/cargo, not the rustup proxy) with RUSTC set and an empty CARGO_HOME in the run
folder, so ``cargo test --offline`` works with the rustup folders hidden.

Where namespaces cannot be made (no ``unshare``, user namespaces disabled for a normal user, root without
CAP_SYS_ADMIN) ``run_files`` raises ``SandboxUnavailable`` with the reason instead of running unconfined.
Known limits (README "Sandbox"): memory is limited per process, not per run (a run may hold up to
``max_processes`` x ``memory_bytes`` of address space); world-readable files outside the hidden folders can be
read; CPU time per process, not per run (the wall clock bounds the run).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import pwd
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GiB, MiB, KiB = 1 << 30, 1 << 20, 1 << 10
# Sandbox uids: 1,500,000 + slot. Far above any login uid (65534 = nobody) and below 2^31; nothing owns them.
UID_BASE, UID_SLOTS = 1_500_000, 4096
INODES_PER_RUN = 32768  # files + folders in the run folder; a cargo build of a small crate makes ~200
# Covered by empty tmpfs inside a run besides the caller's home and HF folders: other users' homes, shared scratch
# space and the sockets under /run (D-Bus, the session bus, docker.sock) that a read-only mount would not stop.
ALWAYS_HIDDEN = ("/home", "/tmp", "/var/tmp", "/dev/shm", "/run")
LAUNCHER = Path(__file__).with_name("sandbox_init.py")
# A killed process group takes ~ms to close its pipes; a leftover writer outside the PID namespace (unsandboxed
# runs only) is given this long before the pipes are abandoned.
DRAIN_AFTER_KILL_S = 2.0


class SandboxUnavailable(RuntimeError):
    """This machine cannot isolate a run (the message says why); nothing was executed."""


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 30
    wall_seconds: float = 60.0
    memory_bytes: int = 2 * GiB  # RLIMIT_AS per process; rustc + cargo test of a small crate fits in 2 GiB
    file_size_bytes: int = 64 * MiB
    max_processes: int = 128
    max_output_bytes: int = 256 * KiB  # captured per stream; past it the run is killed and the rest dropped
    disk_bytes: int = 512 * MiB  # size of the run folder (a tmpfs): all a run can write; cargo's target/ ~ 10 MiB

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "wall_seconds", "memory_bytes", "file_size_bytes", "max_processes",
                     "max_output_bytes", "disk_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class RunResult:
    returncode: int | None  # -N: killed by signal N (SIGKILL on timeout/overflow, SIGXCPU on the CPU limit)
    stdout: str
    stderr: str
    timed_out: bool
    output_truncated: bool
    seconds: float
    isolation: dict[str, Any] = field(default_factory=dict)


def run_files(files: Mapping[str, str], argv: Sequence[str], limits: Limits = Limits(), *,
              isolation: bool = True) -> RunResult:
    """Write ``files`` into a fresh temp dir, run ``argv`` there under the sandbox, delete the dir.

    ``isolation=False`` runs the same command as a plain child process (the caller's environment, uid, network and
    filesystem, no rlimits, output past the cap dropped but not stopped; only the wall clock kills) -- it exists for
    the tests' negative controls and must never see model output in the pipeline.
    """
    if not argv:
        raise ValueError("argv is empty")
    root = Path(tempfile.mkdtemp(prefix="pipeline-sandbox-"))
    try:
        work = root / "work"
        _write_files(work, files)
        for sub in ("home", "tmp", "cargo-home"):
            (root / sub).mkdir()
        if not isolation:
            return _run_unsandboxed(work, argv, limits)
        plan = _plan()
        with _uid_lease() if plan.mode == "root" else _no_lease() as uid:
            return _run_sandboxed(plan, root, work, argv, limits, uid)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def isolation_report() -> dict[str, Any]:
    """What this machine achieves, measured by a probe run inside the sandbox (cached per process).

    Never raises: where the sandbox is unavailable the report says ``{"available": False, "reason": ...}``.
    """
    try:
        return dict(_probe())
    except SandboxUnavailable as exc:
        return {"available": False, "reason": str(exc)}


# --------------------------------------------------------------------------------------------------------------
# Plan: how this machine sandboxes (decided once per process)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    mode: str  # "root": own uid per run; "userns": user namespace, caller's uid, capabilities dropped
    unshare: tuple[str, ...]
    python: str
    hide: tuple[str, ...]
    expose: tuple[str, ...]
    rust_sysroot: str | None


@functools.lru_cache(maxsize=1)
def _plan() -> _Plan:
    unshare = shutil.which("unshare") or next((p for p in ("/usr/bin/unshare", "/bin/unshare") if os.path.exists(p)),
                                              None)
    if unshare is None:
        raise SandboxUnavailable("util-linux 'unshare' not found: no network/mount/PID namespaces, refusing to run")
    common = ["--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"]
    mode = "root" if os.geteuid() == 0 else "userns"
    cmd = [unshare, *common] if mode == "root" else [unshare, "--user", "--map-root-user", *common]
    probe = subprocess.run([*cmd, "true"], capture_output=True, text=True, timeout=30, env=_launcher_env())
    if probe.returncode != 0:
        why = probe.stderr.strip() or f"exit {probe.returncode}"
        hint = ("root without CAP_SYS_ADMIN (an unprivileged container?)" if mode == "root" else
                "user namespaces disabled: kernel.unprivileged_userns_clone or apparmor_restrict_unprivileged_userns")
        raise SandboxUnavailable(f"cannot create namespaces with {' '.join(cmd)}: {why} ({hint}); refusing to run "
                                 "untrusted code without network isolation")
    python = os.path.realpath(sys.executable)
    sysroot = _rust_sysroot()
    hide = _hidden_dirs()
    prefixes = [os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)]
    if sysroot:
        prefixes.append(sysroot)
    expose = tuple(sorted({p for p in prefixes if any(_under(p, h) for h in hide)}))
    return _Plan(mode, tuple(cmd), python, hide, expose, sysroot)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _hidden_dirs() -> tuple[str, ...]:
    """The caller's home, the Hugging Face folders (a token file is written 0644) and ALWAYS_HIDDEN, outermost only."""
    env = os.environ
    candidates = [env.get("HOME"), pwd.getpwuid(os.getuid()).pw_dir, env.get("HF_HOME"),
                  os.path.dirname(env["HF_TOKEN_PATH"]) if env.get("HF_TOKEN_PATH") else None,
                  os.path.join(env["XDG_CACHE_HOME"], "huggingface") if env.get("XDG_CACHE_HOME") else None]
    candidates += ALWAYS_HIDDEN
    real = {os.path.realpath(c) for c in candidates if c and os.path.isdir(c)} - {"/"}
    outer: list[str] = []
    for path in sorted(real, key=len):
        if not any(_under(path, o) for o in outer):
            outer.append(path)
    return tuple(outer)


def _rust_sysroot() -> str | None:
    rustc = shutil.which("rustc")
    if rustc is None:
        return None
    try:
        out = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    sysroot = out.stdout.strip()
    return os.path.realpath(sysroot) if out.returncode == 0 and os.path.isfile(f"{sysroot}/bin/cargo") else None


def _launcher_env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _command_env(plan: _Plan | None, root: Path) -> dict[str, str]:
    """The whole environment of the sandboxed command: constants and run-folder paths, nothing inherited."""
    path = ["/usr/local/bin", "/usr/bin", "/bin"]
    if plan is not None:
        path.insert(0, os.path.dirname(plan.python))
    env = {"HOME": str(root / "home"), "TMPDIR": str(root / "tmp"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "TERM": "dumb", "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
           "PYTHONUNBUFFERED": "1", "CARGO_HOME": str(root / "cargo-home"), "CARGO_TERM_COLOR": "never",
           "CARGO_INCREMENTAL": "0"}
    if plan is not None and plan.rust_sysroot:
        path.insert(0, f"{plan.rust_sysroot}/bin")
        env["RUSTC"] = f"{plan.rust_sysroot}/bin/rustc"
    env["PATH"] = ":".join(path)
    return env


def _resolve_argv(plan: _Plan, argv: Sequence[str]) -> tuple[list[str], str | None]:
    """argv with argv[0] made absolute, and the toolchain folder to bind back if it lies in a hidden folder.

    Other commands (go, node, ...) are looked up on the sandbox PATH, then on the caller's; a toolchain found in a
    hidden folder (e.g. ``~/.nvm/versions/node/vX/bin/node``) gets its prefix (the parent of ``bin``) bound back.
    """
    argv = list(argv)
    if argv[0] in ("python", "python3"):
        return [plan.python, *argv[1:]], None
    if argv[0] == "cargo" and plan.rust_sysroot:
        return [f"{plan.rust_sysroot}/bin/cargo", *argv[1:]], None
    if not os.path.isabs(argv[0]):
        found = shutil.which(argv[0], path=_command_env(plan, Path("/nonexistent"))["PATH"]) or shutil.which(argv[0])
        argv[0] = found or argv[0]
    real = os.path.realpath(argv[0])
    prefix = os.path.dirname(os.path.dirname(real))
    if os.path.isabs(argv[0]) and any(_under(real, h) for h in plan.hide) and prefix not in plan.hide:
        return argv, prefix
    return argv, None


# --------------------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------------------


def _write_files(work: Path, files: Mapping[str, str]) -> None:
    work.mkdir()
    for rel, content in files.items():
        path = (work / rel).resolve()
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not _under(str(path), str(work.resolve())):
            raise ValueError(f"file path {rel!r} is not a relative path inside the task folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


@contextmanager
def _uid_lease() -> Iterator[int]:
    """A uid no other concurrent run holds (flock on a root-only lock file per slot)."""
    lock_dir = Path(tempfile.gettempdir()) / "pipeline-sandbox-uids"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    start = os.getpid() % UID_SLOTS
    for i in range(UID_SLOTS):
        slot = (start + i) % UID_SLOTS
        fd = os.open(lock_dir / f"{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield UID_BASE + slot
        finally:
            os.close(fd)
        return
    raise SandboxUnavailable(f"all {UID_SLOTS} sandbox uids are in use")


@contextmanager
def _no_lease() -> Iterator[None]:
    yield None


def _rlimits(limits: Limits, mode: str) -> dict[str, tuple[int, int]]:
    nproc = limits.max_processes
    if mode == "userns":  # RLIMIT_NPROC counts every process of the caller's real uid
        nproc += _process_count(os.getuid())
    return {"cpu": (limits.cpu_seconds, limits.cpu_seconds + 1), "as": (limits.memory_bytes, limits.memory_bytes),
            "fsize": (limits.file_size_bytes, limits.file_size_bytes), "nproc": (nproc, nproc), "core": (0, 0),
            "nofile": (1024, 1024)}


def _process_count(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except FileNotFoundError:
                continue
    return count


def _run_sandboxed(plan: _Plan, root: Path, work: Path, argv: Sequence[str], limits: Limits,
                   uid: int | None) -> RunResult:
    status_r, status_w = os.pipe()
    command, toolchain = _resolve_argv(plan, argv)
    env = _command_env(plan, root)
    if not command[0].startswith(tuple(f"{d}/" for d in env["PATH"].split(":"))):
        env["PATH"] = f"{os.path.dirname(command[0])}:{env['PATH']}"  # its sibling tools (npx, gofmt, ...)
    cfg = {"argv": command, "cwd": str(work), "env": env, "root": str(root), "hide": list(plan.hide),
           "expose": list(plan.expose) + ([toolchain] if toolchain else []), "uid": uid, "gid": uid,
           "rlimits": _rlimits(limits, plan.mode), "status_fd": status_w, "disk_bytes": limits.disk_bytes,
           "inodes": INODES_PER_RUN, "wall_seconds": limits.wall_seconds}
    cmd = [*plan.unshare, plan.python, "-I", "-S", "-B", str(LAUNCHER), json.dumps(cfg)]
    try:
        result = _supervise(cmd, cwd=root, env=_launcher_env(), limits=limits, pass_fds=(status_w,))
    finally:
        os.close(status_w)
    with os.fdopen(status_r, "rb") as fh:
        status_text = fh.read().decode(errors="replace")
    status = json.loads(status_text) if status_text.strip() else {}
    if "error" in status:
        raise SandboxUnavailable(f"{status['error']} (mode {plan.mode})")
    if "returncode" in status:
        result.returncode = status["returncode"]
    elif result.returncode == 0:  # the launcher died before reporting; never report success for it
        result.returncode = None
    result.isolation = _run_isolation(plan, uid, limits)
    return result


def _run_unsandboxed(work: Path, argv: Sequence[str], limits: Limits) -> RunResult:
    argv = list(argv)
    if argv[0] == "python":
        argv[0] = sys.executable
    result = _supervise(argv, cwd=work, env=dict(os.environ), limits=limits, pass_fds=(), kill_on_overflow=False)
    result.isolation = {"enabled": False}
    return result


def _supervise(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], limits: Limits, pass_fds: tuple[int, ...],
               kill_on_overflow: bool = True) -> RunResult:
    """Run ``cmd`` in its own process group; SIGKILL the group on wall timeout (and on output overflow)."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, pass_fds=pass_fds)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    sizes = dict.fromkeys(chunks, 0)
    timed_out = truncated = killed = False
    deadline = started + limits.wall_seconds
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            if not killed and now >= deadline:
                timed_out = killed = _kill_group(proc)
                deadline = now + DRAIN_AFTER_KILL_S
            elif killed and now >= deadline:
                break
            for key, _ in sel.select(timeout=max(0.0, deadline - now)):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                room = limits.max_output_bytes - sizes[key.fd]
                if room > 0:
                    chunks[key.fd].append(data[:room])
                sizes[key.fd] += len(data)
                if sizes[key.fd] > limits.max_output_bytes:
                    truncated = True
                if truncated and kill_on_overflow and not killed:
                    killed = _kill_group(proc)
                    deadline = time.monotonic() + DRAIN_AFTER_KILL_S
    if killed:
        _kill_group(proc)
    try:
        returncode = proc.wait(timeout=DRAIN_AFTER_KILL_S if killed else max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = _kill_group(proc)
        returncode = proc.wait()
    stdout, stderr = (b"".join(chunks[fd]).decode(errors="replace") for fd in (out_fd, err_fd))
    proc.stdout.close()
    proc.stderr.close()
    return RunResult(returncode=returncode, stdout=stdout, stderr=stderr, timed_out=timed_out,
                     output_truncated=truncated, seconds=round(time.monotonic() - started, 3))


def _kill_group(proc: subprocess.Popen) -> bool:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _run_isolation(plan: _Plan, uid: int | None, limits: Limits) -> dict[str, Any]:
    return {"enabled": True, "mode": plan.mode, "uid": uid if uid is not None else f"{os.getuid()} (user namespace)",
            "namespaces": ["net", "mount", "pid"] + (["user"] if plan.mode == "userns" else []),
            "hidden": list(plan.hide), "limits": asdict(limits)}


# --------------------------------------------------------------------------------------------------------------
# isolation_report: measured, not claimed
# --------------------------------------------------------------------------------------------------------------

_PROBE = r"""
import json, os, socket, sys
port, outside, home = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {"uid": os.getuid(), "env_keys": sorted(os.environ)}
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close(); out["network"] = "reachable"
except OSError as exc:
    out["network"] = f"blocked ({exc.strerror or exc})"
def attempt(path):
    try:
        with open(path, "w") as fh: fh.write("x")
        return "WRITTEN"
    except OSError as exc:
        return f"blocked ({exc.strerror})"
out["write_outside"] = attempt(os.path.join(outside, "probe"))
out["write_tmp"] = attempt("/tmp/pipeline-sandbox-probe-%d" % os.getpid())
out["write_run_dir"] = attempt("probe-inside")
out["home_visible"] = sorted(os.listdir(home))[:5] if os.path.isdir(home) else []
try:
    out["pid1_environ"] = "readable"
    open("/proc/1/environ").read()
except OSError as exc:
    out["pid1_environ"] = f"blocked ({exc.strerror})"
out["processes_visible"] = sum(name.isdigit() for name in os.listdir("/proc"))
print(json.dumps(out))
"""


@functools.lru_cache(maxsize=1)
def _probe() -> dict[str, Any]:
    plan = _plan()
    with tempfile.TemporaryDirectory(prefix="pipeline-sandbox-probe-") as outside, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        os.chmod(outside, 0o777)  # world-writable: only the read-only mount can stop the write
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        home = pwd.getpwuid(os.getuid()).pw_dir
        result = run_files({"probe.py": _PROBE}, ["python", "probe.py", str(server.getsockname()[1]), outside, home],
                           Limits(wall_seconds=20))
        leaked = os.listdir(outside)
    if result.returncode != 0:
        raise SandboxUnavailable(f"sandbox probe failed (exit {result.returncode}): {result.stderr[-2000:]}")
    seen = json.loads(result.stdout)
    limits = Limits()
    return {
        "available": True,
        "mode": plan.mode,
        "privileges": (f"own uid per run (probe ran as uid {seen['uid']}), no groups, no_new_privs"
                       if plan.mode == "root" else
                       "user namespace: caller's uid, every capability dropped, no_new_privs"),
        "network": f"network namespace, 127.0.0.1 listener in the caller: {seen['network']}",
        "filesystem": (f"read-only outside the run folder: world-writable dir {seen['write_outside']}, /tmp "
                       f"{seen['write_tmp']}; run folder writable: {seen['write_run_dir'] == 'WRITTEN'}; leaked "
                       f"files: {len(leaked)}"),
        "hidden": list(plan.hide),
        "home_visible_entries": seen["home_visible"],
        "exposed_read_only": list(plan.expose),
        "environment": f"allow-list only: {', '.join(seen['env_keys'])}",
        "pid_namespace": (f"{seen['processes_visible']} processes visible inside; /proc/1/environ (the launcher's) "
                          f"{seen['pid1_environ']}"),
        "nproc": ("RLIMIT_NPROC on the run's own uid" if plan.mode == "root" else
                  "RLIMIT_NPROC on the caller's uid: caller's process count + max_processes"),
        "limits": asdict(limits),
        "memory": "RLIMIT_AS per process (not per run)",
        "python": plan.python,
        "cargo": f"{plan.rust_sysroot}/bin/cargo" if plan.rust_sysroot else None,
    }
