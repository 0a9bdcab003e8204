"""pipeline_lib.sandbox: what a sandboxed run can and cannot do, each checked against an unsandboxed control.

The hostile completions (fork bomb, output flood, secrets, sockets, writes/deletes outside) are scored end to end in
tests/test_rewards.py; here are the sandbox's own properties and the unbounded attacks that only a sandboxed run may
execute.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline_lib import sandbox
from pipeline_lib.sandbox import UID_BASE, Limits, RunResult, SandboxUnavailable, isolation_report, run_files

REPO = Path(__file__).resolve().parents[1]

FAST = Limits(cpu_seconds=2, wall_seconds=4.0, max_processes=32, max_output_bytes=64 * 1024)


def _python(code: str, limits: Limits = FAST, *, isolation: bool = True, files: dict | None = None) -> RunResult:
    return run_files({"main.py": code, **(files or {})}, ["python", "main.py"], limits, isolation=isolation)


def _processes_of(result: RunResult) -> list[int]:
    """PIDs still running under the run's uid (other runs on this machine have other uids)."""
    uid = result.isolation["uid"]
    if not isinstance(uid, int):  # user-namespace mode: no uid of its own to look for
        return []
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    out.append(int(entry.name))
            except FileNotFoundError:
                continue
    return out


def test_isolation_report_measures_every_layer():
    report = isolation_report()
    assert report["available"], report
    assert "blocked" in report["network"]
    assert "world-writable dir blocked" in report["filesystem"] and "/tmp blocked" in report["filesystem"]
    assert "run folder writable: True" in report["filesystem"]
    assert "leaked files: 0" in report["filesystem"]
    assert "HF_TOKEN" not in report["environment"]
    if os.geteuid() == 0:
        assert report["mode"] == "root" and "own uid" in report["privileges"]


def test_files_cwd_and_cleanup():
    result = _python("import os, sys; print(os.getcwd()); print(open('data/x.txt').read()); print(sys.version)",
                     files={"data/x.txt": "hello"})
    assert result.returncode == 0, result.stderr
    cwd, text = result.stdout.splitlines()[:2]
    assert text == "hello" and cwd.endswith("/work")
    assert not os.path.exists(cwd), "the run folder must be deleted afterwards"
    assert result.isolation["enabled"] is True


def test_file_paths_must_stay_inside():
    with pytest.raises(ValueError, match="inside the task folder"):
        run_files({"../evil.py": "x"}, ["python", "evil.py"], FAST)


def test_environment_is_an_allow_list(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_canary_env_1234")
    monkeypatch.setenv("SOME_API_KEY", "sk-canary")
    code = "import os; print(sorted(os.environ)); print(os.environ.get('HF_TOKEN'))"
    inside = _python(code)
    assert inside.returncode == 0, inside.stderr
    assert "hf_canary" not in inside.stdout and "SOME_API_KEY" not in inside.stdout
    outside = _python(code, isolation=False)  # negative control: a plain child inherits the secret
    assert "hf_canary_env_1234" in outside.stdout


def test_runs_as_unprivileged_uid():
    result = _python("import os; print(os.getuid(), os.getgid(), os.getgroups())")
    uid, gid, groups = result.stdout.split(maxsplit=2)
    if os.geteuid() == 0:
        assert int(uid) >= UID_BASE and int(gid) >= UID_BASE and groups.strip() == "[]"
    unsandboxed = _python("import os; print(os.getuid())", isolation=False)
    assert int(unsandboxed.stdout) == os.getuid()


def test_home_is_hidden():
    home = pwd.getpwuid(os.getuid()).pw_dir
    code = f"import os; print(sorted(os.listdir({home!r})))"
    inside = _python(code)
    outside = _python(code, isolation=False)
    assert inside.returncode == 0, inside.stderr
    visible, real = eval(inside.stdout), eval(outside.stdout)  # noqa: S307 - our own repr of a list of names
    assert set(visible) < set(real) or not real
    assert all(name in (".pyenv", ".rustup", ".cargo") for name in visible), visible


def test_infinite_cpu_loop_hits_the_cpu_limit():
    result = _python("while True:\n    pass\n", Limits(cpu_seconds=1, wall_seconds=60.0))
    # SIGXCPU at the soft limit (SIGKILL at the hard one), long before the wall clock on even a loaded machine
    assert result.returncode in (-24, -9) and not result.timed_out, result


def test_sleeping_forever_hits_the_wall_clock():
    started = time.monotonic()
    result = _python("import time\nwhile True:\n    time.sleep(1)\n", Limits(wall_seconds=1.5))
    assert result.timed_out and result.returncode == -9
    assert time.monotonic() - started < 5


def test_background_process_does_not_survive_the_run():
    """A daemon that left the process group (setsid + double fork) dies with the PID namespace."""
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        print(os.getpid(), flush=True)\n"
            "        os.close(1), os.close(2)\n"
            "        time.sleep(30)\n"
            "    os._exit(0)\n"
            "time.sleep(0.3)\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    time.sleep(0.2)
    assert _processes_of(result) == []
    # negative control: unsandboxed, the daemon outlives the run (killed here by its pid)
    control = _python(code, isolation=False)
    daemon = int(control.stdout.split()[0])
    try:
        assert os.path.exists(f"/proc/{daemon}")
    finally:
        os.kill(daemon, 9)


def test_real_fork_bomb_is_contained():
    code = ("import os\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        pass\n")
    started = time.monotonic()
    result = _python(code, Limits(cpu_seconds=2, wall_seconds=2.0, max_processes=32))
    assert result.timed_out or result.returncode != 0
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    assert _processes_of(result) == []
    assert _python("print('still working')").stdout == "still working\n"


def test_gigabyte_of_output_is_cut_at_the_cap():
    code = "import sys\nblock = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(block)\n"
    started = time.monotonic()
    result = _python(code, Limits(wall_seconds=30.0, max_output_bytes=64 * 1024))
    assert result.output_truncated and len(result.stdout) == 64 * 1024
    assert result.returncode == -9
    assert time.monotonic() - started < 10


def test_file_size_limit():
    code = "open('big', 'wb').write(b'x' * (8 << 20))"
    result = _python(code, Limits(file_size_bytes=1 << 20))
    assert result.returncode != 0  # SIGXFSZ
    assert _python(code, Limits(file_size_bytes=16 << 20)).returncode == 0


def test_memory_limit():
    code = "b = bytearray(600 << 20)\nprint('allocated')"
    result = _python(code, Limits(memory_bytes=256 << 20))
    assert "MemoryError" in result.stderr and "allocated" not in result.stdout
    assert _python(code, Limits(memory_bytes=2 << 30)).stdout == "allocated\n"


@pytest.mark.slow
def test_cargo_test_offline_inside():
    files = {"Cargo.toml": '[package]\nname = "t"\nversion = "0.1.0"\nedition = "2021"\n',
             "src/lib.rs": "pub fn add(a: i32, b: i32) -> i32 { a + b }\n"
                           "#[cfg(test)]\nmod tests {\n    #[test]\n"
                           "    fn adds() { assert_eq!(super::add(2, 3), 5); }\n}\n"}
    result = run_files(files, ["cargo", "test", "--offline", "-q"], Limits(wall_seconds=120.0))
    assert result.returncode == 0, result.stderr
    assert "test result: ok. 1 passed" in result.stdout


def test_refuses_without_namespaces(tmp_path, monkeypatch):
    """An unshare that cannot make namespaces (e.g. root without CAP_SYS_ADMIN): refuse, say why, run nothing."""
    fake = tmp_path / "bin" / "unshare"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    marker = tmp_path / "ran"
    with monkeypatch.context() as patched:
        patched.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
        sandbox._plan.cache_clear()
        sandbox._probe.cache_clear()
        try:
            with pytest.raises(SandboxUnavailable, match="Operation not permitted.*refusing"):
                run_files({"main.py": f"open({str(marker)!r}, 'w')"}, ["python", "main.py"], FAST)
            report = isolation_report()
            assert report["available"] is False and "Operation not permitted" in report["reason"]
        finally:
            sandbox._plan.cache_clear()
            sandbox._probe.cache_clear()
    assert not marker.exists()
    assert run_files({"main.py": "print(1)"}, ["python", "main.py"], FAST).stdout == "1\n"  # real plan again


NORMAL_USER_PROBE = r"""
import json
from pipeline_lib.sandbox import Limits, isolation_report, run_files
code = ("import os\nprint(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "n = 0\ntry:\n    for _ in range(60):\n        if os.fork() == 0:\n"
        "            import time; time.sleep(1); os._exit(0)\n"
        "        n += 1\nexcept OSError:\n    pass\nprint(n)\n")
run = run_files({"main.py": code}, ["python", "main.py"], Limits(max_processes=20))
print(json.dumps({"report": isolation_report(), "stdout": run.stdout, "stderr": run.stderr}))
"""


def test_normal_user_gets_the_user_namespace_mode():
    """The workstation case, run here as uid 65534: user namespace, no capabilities, RLIMIT_NPROC still binds."""
    setpriv = shutil.which("setpriv")
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None)
    if os.geteuid() != 0 or not setpriv or not python:
        pytest.skip("needs root, setpriv and a system python3 to act as a normal user")
    cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin",
           "HOME=/nonexistent", f"PYTHONPATH={REPO}", python, "-c", NORMAL_USER_PROBE]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if out.returncode != 0 and ("Permission denied" in out.stderr or "No module named" in out.stderr):
        pytest.skip(f"the checkout is not readable by uid 65534: {out.stderr[-200:]}")
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    report = seen["report"]
    assert report["available"] and report["mode"] == "userns", report
    assert "blocked" in report["network"] and "world-writable dir blocked" in report["filesystem"]
    cap_eff, forks = seen["stdout"].split()
    assert int(cap_eff, 16) == 0  # no capability left inside
    assert int(forks) < 20  # RLIMIT_NPROC binds for a normal user (its count + 20)


def test_run_folder_size_bounds_total_writes():
    """RLIMIT_FSIZE is per file; the run folder is a tmpfs of disk_bytes, so many files cannot fill the disk."""
    code = ("import errno\nn = 0\ntry:\n    for i in range(8):\n        open(f'f{i}', 'wb').write(b'x' * (4 << 20))\n"
            "        n += 1\nexcept OSError as exc:\n    print(errno.errorcode[exc.errno])\nprint(n)\n")
    small = _python(code, Limits(disk_bytes=10 << 20, file_size_bytes=8 << 20))
    assert small.stdout.split() == ["ENOSPC", "2"], small
    assert _python(code, Limits(disk_bytes=64 << 20, file_size_bytes=8 << 20)).stdout.split() == ["8"]


def test_shared_scratch_and_sockets_are_hidden():
    code = ("import os\nrun = os.path.dirname(os.getcwd())\n"
            "print(sorted(os.path.join(d, n) for d in ('/tmp', '/run', '/var/tmp', '/dev/shm') for n in os.listdir(d)"
            " if os.path.join(d, n) != run))")
    inside = _python(code)
    assert inside.returncode == 0, inside.stderr
    assert eval(inside.stdout) == []  # noqa: S307 - our own repr of a list of names
    outside = _python(code, isolation=False)  # control: the machine's own /tmp and /run are not empty
    assert eval(outside.stdout)  # noqa: S307


@pytest.mark.slow
def test_run_ends_even_if_the_caller_dies(tmp_path):
    """PID 1 of the run has its own alarm (wall + 5 s): a killed scorer leaves nothing running for long."""
    marker = f"orphan-{os.getpid()}-{time.time_ns()}"
    script = tmp_path / "caller.py"
    script.write_text("from pipeline_lib.sandbox import Limits, run_files\n"
                      f"run_files({{'m.py': 'import time\\ntime.sleep(300)\\n'}}, ['python', 'm.py', {marker!r}], "
                      "Limits(wall_seconds=3.0))\n")
    log = tmp_path / "caller.log"
    caller = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=log.open("w"), stderr=subprocess.STDOUT)

    def running() -> bool:
        out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout  # -ww: no cut
        return any(marker in line and "m.py" in line and "unshare" not in line for line in out.splitlines())

    deadline = time.monotonic() + 30
    while not running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(), f"the sandboxed sleeper never started: {log.read_text()[-2000:]}"
    caller.kill()
    caller.wait()
    time.sleep(0.5)
    assert running()  # the caller is gone; the run is still there until its own alarm
    deadline = time.monotonic() + 20
    while running() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not running()


def test_toolchain_in_a_hidden_folder_is_bound_back_alone(tmp_path, monkeypatch):
    """A tool found on the caller's PATH inside a hidden folder runs; its neighbours (a token file) stay hidden."""
    hf_home = tmp_path / "hf"
    tool = hf_home / "toolchain" / "bin" / "mytool"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\necho \"tool ran\"\ncat \"$1\" 2>/dev/null || echo \"token hidden\"\n")
    tool.chmod(0o755)
    (hf_home / "token").write_text("hf_canary_token_file")
    (hf_home / "token").chmod(0o644)
    for folder in (tmp_path, hf_home, hf_home / "toolchain"):
        folder.chmod(0o755)  # so that only the sandbox's hiding, not permissions, keeps the token away
    with monkeypatch.context() as patched:
        patched.setenv("HF_HOME", str(hf_home))
        patched.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
        sandbox._plan.cache_clear()
        try:
            inside = run_files({}, ["mytool", str(hf_home / "token")], FAST)
        finally:
            sandbox._plan.cache_clear()
    assert inside.stdout.split("\n")[:2] == ["tool ran", "token hidden"], inside
    outside = run_files({}, [str(tool), str(hf_home / "token")], FAST, isolation=False)  # control
    assert "hf_canary_token_file" in outside.stdout
