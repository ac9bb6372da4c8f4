"""The sandbox run by an unprivileged user, who has user namespaces instead of root.

Every other test runs the sandbox as root. Here a driver script runs as uid/gid 65534 (nobody),
from a virtualenv any user can read, built once from the system interpreter (the project's own
interpreter may live where nobody cannot read it). The driver creates a ``Sandbox``, runs
programs in it and prints what it saw as JSON; this test checks that the sandbox works, that
it names exactly the layers an unprivileged user cannot have, and that the layers it claims
really confine the sessions. Each host-side fact a check relies on (nobody can read the secret
file, connect to the listener, ...) is verified too, so no check passes for the wrong reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, where pytest depends on tomli
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
CACHE_PREFIX = "/tmp/codevision-test-unprivileged-"
BUILD_TIMEOUT = 900

MEMORY_MB = 256
MAX_PROCESSES = 16
TIMEOUT = 1.0
KILL_GRACE = 0.5

# What an unprivileged user gets from user namespaces on a kernel that allows them.
EXPECTED_AVAILABLE = {
    "user_namespace", "mount_namespace", "network_namespace", "pid_namespace", "ipc_namespace",
    "uts_namespace", "seccomp", "capabilities", "no_new_privs", "rlimits", "scrubbed_environment",
}  # fmt: skip

# unshare(CLONE_NEWUSER), map the caller to root, then unshare(CLONE_NEWNS): what the sandbox needs
# first. Some hosts (sysctls, AppArmor, container seccomp profiles) refuse one of these steps.
USERNS_PROBE = textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(0x10000000) != 0:
        raise SystemExit('unshare(CLONE_NEWUSER): ' + os.strerror(ctypes.get_errno()))
    for name, text in (('setgroups', 'deny'), ('uid_map', f'0 {uid} 1'), ('gid_map', f'0 {gid} 1')):
        with open('/proc/self/' + name, 'w') as fh:
            fh.write(text)
    if libc.unshare(0x00020000) != 0:
        raise SystemExit('unshare(CLONE_NEWNS) in a user namespace: ' + os.strerror(ctypes.get_errno()))
""")

READ_ALL = "import os, sys\nfor d, _, fs in os.walk(sys.argv[1], onerror=lambda e: sys.exit(1)):\n" + (
    "    for f in fs:\n        open(os.path.join(d, f), 'rb').close()\n"
)

DRIVER = textwrap.dedent('''
    """Runs as nobody: start a sandbox, run programs in it, print one JSON report."""
    import errno, json, os, socket, sys, warnings

    import numpy as np
    from PIL import Image

    from codevision.sandbox import Sandbox

    cfg = json.loads(sys.argv[1])


    def attempt(action):
        try:
            action()
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))
        return "ok"


    def cgroups_delegated():
        """Whether this user may create the memory and pids cgroups the sandbox would use."""
        own = {}
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\\n").split(":", 2)
                for controller in controllers.split(","):
                    own[controller] = path
        v1 = [f"/sys/fs/cgroup/{c}{own.get(c, '/')}" for c in ("memory", "pids")]
        if all(os.path.isfile(os.path.join(p, "cgroup.procs")) for p in v1):
            return all(os.access(p, os.W_OK) for p in v1)
        v2 = "/sys/fs/cgroup" + own.get("", "/")
        try:
            with open(os.path.join(v2, "cgroup.subtree_control")) as fh:
                delegated = set(fh.read().split())
        except OSError:
            return False
        return {"memory", "pids"} <= delegated and os.access(v2, os.W_OK)


    def summary(result):
        return {"status": result.status, "stdout": result.stdout, "error": result.error or "",
                "alive": result.session_alive}


    PROBE_FILES = [cfg["secret"], "/etc/passwd", "/etc/shadow", "/root"]
    SELF = """
    import json, os, socket
    fields = dict(l.split(':\\\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\\\t' in l)
    print(json.dumps({'uid': os.getuid(), 'pid': os.getpid(), 'hostname': socket.gethostname(),
                      'procs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
                      'cap_eff': fields['CapEff'].strip(), 'seccomp': fields['Seccomp'].strip(),
                      'no_new_privs': fields['NoNewPrivs'].strip()}))
    """
    FILES = """
    import errno, json, os
    def attempt(action):
        try:
            action()
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))
        return 'ok'
    def write(path):
        with open(path, 'w') as fh:
            fh.write('x')
    out = {'read ' + p: attempt(lambda p=p: os.listdir(p) if os.path.isdir(p) else open(p, 'rb').close())
           for p in PROBE_FILES}
    out['write /usr'] = attempt(lambda: write('/usr/codevision-probe'))
    out['write /'] = attempt(lambda: write('/codevision-probe'))
    out['write /tmp'] = attempt(lambda: write('/tmp/mark'))
    out['host dir'] = attempt(lambda: os.listdir(os.path.dirname(PROBE_FILES[0])))
    print(json.dumps(out))
    """.replace("PROBE_FILES", repr(PROBE_FILES))
    SECOND_TMP = "import os\\nprint(sorted(os.listdir('/tmp')), os.path.exists('/tmp/mark'))"
    CONNECT = """
    import errno, socket
    try:
        s = socket.socket()
        s.settimeout(2)
        s.connect(('127.0.0.1', PORT))
        print('connected')
    except OSError as exc:
        print(errno.errorcode.get(exc.errno, exc))
    """
    FORK_BOMB = """
    import os, time
    children = 0
    try:
        while children < 1000:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
    except OSError as exc:
        print(children, exc.errno)
    """
    BLOCK_ALARM = "import signal\\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\\nwhile True:\\n    pass"

    report = {"ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]}
    report["host_reads"] = {p: attempt(lambda p=p: open(p, "rb").close()) for p in PROBE_FILES[:2]}
    report["cgroups_delegated"] = cgroups_delegated()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    report["host_connects"] = attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sandbox = Sandbox(workers=2, timeout=5.0, kill_grace=cfg["kill_grace"], memory_mb=cfg["memory_mb"],
                          max_processes=cfg["max_processes"]).start()
    report["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
    with sandbox:
        status = sandbox.status()
        report["status"] = {k: status[k] for k in ("isolation", "missing_layers", "fork_server_pid")}
        with open(f"/proc/{status['fork_server_pid']}/status") as fh:
            uid_line = next(line for line in fh if line.startswith("Uid:"))
        report["fork_server_uids"] = [int(v) for v in uid_line.split()[1:]]
        runs = report["runs"] = {}

        with sandbox.session() as s:
            runs["self"] = summary(s.run(SELF))
            runs["define"] = summary(s.run("counter = 41"))
            runs["use"] = summary(s.run("counter += 1\\nprint(counter)"))
            runs["files"] = summary(s.run(FILES))
            runs["connect"] = summary(s.run(CONNECT.replace("PORT", str(port))))
        with sandbox.session() as s:
            runs["second tmp"] = summary(s.run(SECOND_TMP))

        pixels = np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3) % 251
        photo = Image.fromarray(pixels.astype(np.uint8), "RGB")
        with sandbox.session(images=[photo]) as s:
            result = s.run("out = image.rotate(90, expand=True)\\ndisplay(out)\\nprint(out.size)")
            runs["rotate"] = summary(result)
            expected = np.asarray(photo.rotate(90, expand=True))
            report["rotate"] = {
                "images_match": [bool(np.array_equal(np.asarray(img), expected)) for img in result.images],
                "ops": [[op.name, op.args] for op in result.ops],
            }

        with sandbox.session() as s:
            runs["allocate small"] = summary(s.run("small = bytearray(64 * 1024 * 1024)\\nprint(len(small))"))
            runs["allocate huge"] = summary(s.run(f"huge = bytearray({4 * cfg['memory_mb']} * 1024 * 1024)"))
            runs["after huge"] = summary(s.run("print(len(small))"))
            runs["loop"] = summary(s.run("while True:\\n    pass", timeout=cfg["timeout"]))
            runs["after loop"] = summary(s.run("print('still here')"))
            runs["blocked alarm"] = summary(s.run(BLOCK_ALARM, timeout=cfg["timeout"]))
        with sandbox.session() as s:
            runs["fork bomb"] = summary(s.run(FORK_BOMB))
        with sandbox.session() as s:
            runs["segfault"] = summary(s.run("import ctypes\\nctypes.string_at(0)"))
        with sandbox.session() as s:
            runs["after segfault"] = summary(s.run("print(6 * 7)"))
    listener.close()
    print(json.dumps(report))
''')


# ---------------------------------------------------------------------- host side
def as_nobody(
    argv: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as uid/gid 65534 with no supplementary groups and a fresh environment."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    command = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--reset-env"]
    command += ["/usr/bin/env", *(f"{key}={value}" for key, value in (env or {}).items()), *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, cwd="/")


def make_world_readable(top: Path) -> None:
    """Give everyone read access (and search/execute where the owner has it) below ``top``."""
    for directory, _, files in os.walk(top):
        os.chmod(directory, os.stat(directory).st_mode | 0o555)
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue  # chmod would change the target (the venv's python is a link to the system one)
            mode = os.stat(path).st_mode
            os.chmod(path, mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0))


def dependency_key(dependencies: list[str]) -> str:
    """Names the cached virtualenv: it is rebuilt when the dependencies or the system Python change."""
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    payload = json.dumps({"dependencies": sorted(dependencies), "python": version})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def shared_virtualenv() -> Path:
    """The python of a virtualenv with the project's dependencies that every user can run.

    Built once per dependency set and kept in /tmp, so that only the first run pays for it;
    a lock makes parallel test processes wait for one build instead of racing.
    """
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    cache = Path(CACHE_PREFIX + dependency_key(dependencies))
    cache.mkdir(mode=0o755, exist_ok=True)
    info = os.lstat(cache)
    # /tmp is shared: never trust a directory another user could have planted or can write to.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        pytest.fail(f"{cache} is not a directory owned and writable only by uid {os.geteuid()}; remove it")
    venv = cache / "venv"
    python = venv / "bin" / "python"
    complete = cache / "complete"
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        steps = (
            [SYSTEM_PYTHON, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", *dependencies],
        )
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
            if done.returncode != 0:
                pytest.fail(f"building the shared virtualenv failed: {' '.join(step)}\n{done.stdout}\n{done.stderr}")
        make_world_readable(venv)
        complete.touch()
    return python


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A scratch directory every user can enter (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="codevision-unprivileged-run-", dir="/tmp"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def source_for_nobody(run_dir: Path) -> Path:
    """A directory holding the ``codevision`` package that uid 65534 can read: the checkout's own
    ``src`` when every file and parent directory allows it, otherwise a world-readable copy made
    for this run (the package is not installed into the shared virtualenv, which serves checkouts
    at different versions)."""
    src = REPO_ROOT / "src"
    if as_nobody([SYSTEM_PYTHON, "-c", READ_ALL, str(src / "codevision")]).returncode == 0:
        return src
    copy = run_dir / "src"
    shutil.copytree(src / "codevision", copy / "codevision", ignore=shutil.ignore_patterns("__pycache__"))
    make_world_readable(copy)
    return copy


def require_unprivileged_user_namespaces() -> None:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("switching to uid 65534 needs root on Linux")
    if shutil.which("setpriv") is None or not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"needs setpriv (util-linux) and {SYSTEM_PYTHON}")
    probe = as_nobody([SYSTEM_PYTHON, "-c", USERNS_PROBE])
    if probe.returncode != 0:
        pytest.skip(f"this host does not let uid 65534 use user namespaces: {probe.stderr.strip()}")


def kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


# ---------------------------------------------------------------------- the test
@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT + 300)
def test_sandbox_confines_sessions_without_root(run_dir: Path) -> None:
    require_unprivileged_user_namespaces()
    python = shared_virtualenv()
    home = run_dir / "home"
    home.mkdir(mode=0o700)
    os.chown(home, NOBODY, NOBODY)
    host_files = run_dir / "host-files"
    host_files.mkdir(mode=0o755)
    secret = host_files / "secret.txt"
    secret.write_text("label-xyz")
    secret.chmod(0o644)
    driver = run_dir / "driver.py"
    driver.write_text(DRIVER)
    driver.chmod(0o644)
    cfg = {
        "secret": str(secret), "memory_mb": MEMORY_MB, "max_processes": MAX_PROCESSES,
        "timeout": TIMEOUT, "kill_grace": KILL_GRACE,
    }  # fmt: skip
    env = {"HOME": str(home), "PYTHONPATH": str(source_for_nobody(run_dir)), "PYTHONDONTWRITEBYTECODE": "1"}
    done = as_nobody([str(python), str(driver), json.dumps(cfg)], env=env, timeout=240)
    assert done.returncode == 0, f"the driver failed:\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    runs = report["runs"]

    # Really unprivileged: the driver and the fork server run as nobody on the host.
    assert report["ids"] == [NOBODY] * 4
    assert report["fork_server_uids"] == [NOBODY] * 4
    isolation = report["status"]["isolation"]
    assert isolation["running_as_root"] is False

    # Exactly the layers that need root (or a delegated cgroup) are missing, and they were announced.
    expected_missing = {"dedicated_uid"} | (set() if report["cgroups_delegated"] else {"cgroups"})
    assert set(report["status"]["missing_layers"]) == expected_missing, isolation["reasons"]
    assert {name for name, ok in isolation["available"].items() if ok} >= EXPECTED_AVAILABLE
    announced = [message for category, message in report["warnings"] if category == "SandboxIsolationWarning"]
    assert len(announced) == 1, report["warnings"]
    assert all(f"{layer}:" in announced[0] for layer in expected_missing), announced[0]

    # The session: PID 1 of its own namespace, no capabilities, seccomp on, the host uid inside.
    me = json.loads(runs["self"]["stdout"])
    assert me["pid"] == 1
    assert me["procs"] == [1]
    assert me["uid"] == NOBODY
    assert int(me["cap_eff"], 16) == 0
    assert me["seccomp"] == "2"
    assert me["no_new_privs"] == "1"
    assert me["hostname"] == "sandbox"

    # Code runs correctly and state persists across runs.
    assert runs["define"]["status"] == "ok", runs["define"]
    assert runs["use"]["stdout"] == "42\n", runs["use"]
    assert runs["rotate"]["status"] == "ok", runs["rotate"]
    assert runs["rotate"]["stdout"] == "(48, 64)\n"
    assert report["rotate"]["images_match"] == [True]
    assert ["rotate", 90.0] in [[name, args.get("angle")] for name, args in report["rotate"]["ops"]]

    # Host files nobody can read on the host are absent in the session; the root is read-only and
    # /tmp private to the session.
    assert report["host_reads"] == {str(secret): "ok", "/etc/passwd": "ok"}
    files = json.loads(runs["files"]["stdout"])
    for path in (str(secret), "/etc/passwd", "/etc/shadow", "/root"):
        assert files[f"read {path}"] == "ENOENT", files
    assert files["host dir"] == "ENOENT"
    assert files["write /usr"] == files["write /"] == "EROFS"
    assert files["write /tmp"] == "ok"
    assert runs["second tmp"]["stdout"].endswith(" False\n"), runs["second tmp"]
    assert host_files.name not in runs["second tmp"]["stdout"]

    # No network, although the host listener accepts nobody's connections: seccomp refuses the socket.
    assert report["host_connects"] == "ok"
    assert runs["connect"]["stdout"] == "EAFNOSUPPORT\n", runs["connect"]

    # Memory limit: a modest allocation works, a huge one fails inside the session, which lives on.
    assert runs["allocate small"]["stdout"] == f"{64 * 1024 * 1024}\n", runs["allocate small"]
    assert runs["allocate huge"]["status"] == "error"
    assert "MemoryError" in runs["allocate huge"]["error"]
    assert runs["after huge"]["stdout"] == f"{64 * 1024 * 1024}\n"

    # Time limit: interrupted and kept; code that blocks the interrupt is killed with its session.
    assert runs["loop"]["status"] == "timeout" and runs["loop"]["alive"], runs["loop"]
    assert runs["after loop"]["stdout"] == "still here\n"
    assert runs["blocked alarm"]["status"] == "killed", runs["blocked alarm"]
    assert not runs["blocked alarm"]["alive"]

    # Process limit: since Linux 5.14 each session's own user namespace gives it a budget of its own.
    if kernel_at_least(5, 14):
        assert "still bounds its processes" in isolation["reasons"]["dedicated_uid"]
        children, err = (int(v) for v in runs["fork bomb"]["stdout"].split())
        assert 0 < children < MAX_PROCESSES
        assert err == 11  # EAGAIN
    else:
        assert "no per-session process limit" in isolation["reasons"]["dedicated_uid"]

    # A crash is reported as such, and the sandbox keeps serving.
    assert runs["segfault"]["status"] == "crashed"
    assert "SIGSEGV" in runs["segfault"]["error"]
    assert not runs["segfault"]["alive"]
    assert runs["after segfault"]["stdout"] == "42\n"
