"""A pod's process as a container runtime makes it (issue #23): its own mount, PID, UTS and IPC
namespaces, the host's filesystem read-only with the host's secrets hidden, no capabilities,
`no_new_privs`, a seccomp filter (below), and a non-root uid unless the pod asks for another (securityContext.runAsUser).
A pod that asks for root gets uid 0 in a user namespace of its own, mapped to NOBODY on the host
(as Kubernetes' user-namespaced pods, hostUsers: false): the host's root-owned files are not its.

Run by the pod's runner as `ip netns exec POD PYTHON -I -S sandbox.py CONFIG -- COMMAND...`
(ip-netns(8) has already entered the pod's network namespace and bound /etc/netns/POD/* over
/etc). This file imports only the standard library and is run by path, so it starts in tens
of milliseconds. Three processes: this one (outside the PID namespace, what the runner waits
for; it passes signals on), the namespace's init (PID 1: it reaps orphans, and its exit ends
every process of the pod, as a container's), and COMMAND. Linux interfaces: unshare(2),
mount(2), mount_setattr(2), capabilities(7), prctl(2), pid_namespaces(7), seccomp(2).

The seccomp filter refuses (EPERM) what container runtimes' default profiles refuse to a
container without capabilities: new namespaces (unshare, setns, clone with a CLONE_NEW* flag:
a user namespace would give the pod every capability over namespaces of its own, and the
kernel's whole surface behind them), mounting, the kernel keyring (not namespaced), bpf,
perf_event_open, userfaultfd, modules, kexec, reboot, swap, acct, syslog, open_by_handle_at.
clone3 answers ENOSYS (its flags are behind a pointer a filter cannot read), so libc falls back
to clone, whose flags it can. Another architecture's system calls (i386 on x86_64, x32) kill the
process: the numbers below are those of the filter's own architecture only.

CONFIG (JSON): hostname, uid, gid, home; `hide`: directories covered by empty tmpfs (the data
dir, /run, /root, ...); `keep`: directories of the host bound back read-only inside what is
hidden (the Python the pod's tools run with); `files`: files copied into the pod's view at the
same path (CA bundle, the pod's hosts and resolv.conf when they live in a hidden directory).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import struct
import sys
from typing import Any

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID = 0x00020000, 0x04000000, 0x08000000, 0x20000000
CLONE_NEWUSER = 0x10000000
NOBODY = 65534  # the host uid and gid of a pod's root
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (asm-generic)
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 24, 38, 47
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")  # what a container's /dev holds

# seccomp(2): the system calls refused to a pod, by number (<asm/unistd_64.h> for x86_64,
# <asm-generic/unistd.h> for aarch64), with the architecture's AUDIT_ARCH_* value and clone's number.
_REFUSED = ("unshare", "setns", "mount", "umount2", "pivot_root", "mount_setattr", "fsopen", "fsconfig", "fsmount",
            "move_mount", "open_tree", "fspick", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
            "userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
            "open_by_handle_at", "reboot", "swapon", "swapoff", "acct", "syslog")
SYSCALLS = {
    "x86_64": (0xC000003E, {"unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
                            "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
                            "userfaultfd": 323, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
                            "finit_module": 313, "delete_module": 176, "open_by_handle_at": 304, "reboot": 169,
                            "swapon": 167, "swapoff": 168, "acct": 163, "syslog": 103, "clone": 56}),
    "aarch64": (0xC00000B7, {"unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
                             "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241,
                             "userfaultfd": 282, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
                             "finit_module": 273, "delete_module": 106, "open_by_handle_at": 265, "reboot": 142,
                             "swapon": 224, "swapoff": 225, "acct": 89, "syslog": 116, "clone": 220}),
}
GENERIC = {"mount_setattr": 442, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "move_mount": 429,
           "open_tree": 428, "fspick": 433, "clone3": 435}  # the same on every architecture
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
X32_SYSCALL_BIT = 0x40000000
EPERM, ENOSYS = 1, 38

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                      flags, data.encode() if data else None), f"mount {target}")


def tmpfs(target: str, mode: int, uid: int = 0, gid: int = 0) -> None:
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode:o},uid={uid},gid={gid},size=64m")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def read_only_everywhere() -> None:
    """Every mount of this (new) namespace read-only and nosuid, in one call (Linux 5.12+)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)) == 0:
        return
    # Older kernels: remount each mount point (deepest last does not matter for flags).
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4].encode().decode("unicode_escape") for line in info]
    for point in points:
        with contextlib.suppress(OSError):
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def minimal_dev() -> None:
    """/dev as a container has it: the harmless character devices, its own ptys and /dev/shm;
    never the host's disks (a root-uid pod owns /dev/vda's inode even without capabilities)."""
    keep = {name: os.open(f"/dev/{name}", os.O_PATH) for name in DEVICES if os.path.exists(f"/dev/{name}")}
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755,size=64k")
    for name, fd in keep.items():
        open(f"/dev/{name}", "w").close()
        mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, MS_BIND)
        os.close(fd)
    for name in ("pts", "shm"):
        os.mkdir(f"/dev/{name}")
    with contextlib.suppress(OSError):  # a devpts of its own: the pod's ptys, not the host's
        mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
        os.symlink("pts/ptmx", "/dev/ptmx")
    tmpfs("/dev/shm", 0o1777)
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{link}")


def build_view(config: dict[str, Any], files: dict[str, bytes]) -> None:
    """The pod's filesystem: the host's read-only, its secrets hidden, scratch space its own."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    keep = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in config["keep"] if os.path.isdir(path)}
    read_only_everywhere()
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this PID namespace's processes only
    minimal_dev()
    for path in config["hide"]:
        if os.path.isdir(path) and not os.path.islink(path):
            tmpfs(path, 0o755)
    for path in ("/tmp", "/var/tmp"):
        if os.path.isdir(path) and not os.path.islink(path):
            tmpfs(path, 0o1777)
    home = config["home"]
    if os.path.isdir(home):
        tmpfs(home, 0o700, *host_ids(config))
    for path, fd in keep.items():
        if not os.path.isdir(path):  # hidden by a tmpfs above: bind the host's back, read-only
            os.makedirs(path, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    for path, content in files.items():
        if os.path.exists(path):
            continue  # still the host's (outside what is hidden)
        with contextlib.suppress(OSError):  # a parent outside every tmpfs: read-only, nothing to do
            _makedirs_as(os.path.dirname(path), *host_ids(config))
            with open(path, "wb") as out:
                out.write(content)
            os.chmod(path, 0o644)


def host_ids(config: dict[str, Any]) -> tuple[int, int]:
    """The uid and gid the pod's processes have on the host."""
    return (NOBODY, NOBODY) if config["uid"] == 0 else (config["uid"], config["gid"])


def map_ids(pid: int, config: dict[str, Any]) -> None:
    """From outside (the host's /proc): the user namespace of `pid` maps the pod's uid and gid to
    NOBODY's on the host, and nothing else."""
    for name, inside in (("uid_map", config["uid"]), ("gid_map", config["gid"])):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(f"{inside} {NOBODY} 1\n")


def _makedirs_as(path: str, uid: int, gid: int) -> None:
    """The missing directories of `path`, owned by the pod (a data dir under /tmp: the pod's /tmp
    then holds the bundle's directories, and the pod may still make its own beside them)."""
    if os.path.isdir(path):
        return
    _makedirs_as(os.path.dirname(path), uid, gid)
    os.mkdir(path, 0o755)
    os.chown(path, uid, gid)


def drop_privileges(uid: int, gid: int) -> None:
    """No capabilities at all (bounding, ambient, inheritable, permitted, effective), no way to
    regain any (no_new_privs: setuid binaries and file capabilities do nothing), then the uid."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    _check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2 words: all empty
    _check(libc.syscall(SYS_CAPSET[os.uname().machine], header, data), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def seccomp_program(machine: str) -> bytes:
    """The classic-BPF filter (struct sock_filter[]) for `machine`, as described in the module's
    docstring; it reads struct seccomp_data: nr at offset 0, arch at 4, args[0]'s low word at 16."""
    arch, numbers = SYSCALLS[machine]
    numbers = {**numbers, **GENERIC}
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, errno, kill = 0x7FFF0000, 0x00050000, 0x80000000
    checks = [numbers[name] for name in _REFUSED]
    head = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]
    # after head: [x32 check], refused..., clone3, clone, LD args[0], JSET, ALLOW, EPERM, ENOSYS
    body_start = len(head)
    tests = ([X32_SYSCALL_BIT] if machine == "x86_64" else []) + checks
    n = len(tests)
    clone3_at, clone_at = body_start + n, body_start + n + 1
    allow_at, eperm_at, enosys_at = clone_at + 3, clone_at + 4, clone_at + 5
    program = list(head)
    for i, nr in enumerate(tests):
        op = jge if machine == "x86_64" and i == 0 else jeq
        program.append((op, eperm_at - (body_start + i + 1), 0, nr))
    program.append((jeq, enosys_at - (clone3_at + 1), 0, numbers["clone3"]))
    program.append((jeq, 0, allow_at - (clone_at + 1), numbers["clone"]))
    program += [(ld, 0, 0, 16), (jset, eperm_at - (clone_at + 3), 0, CLONE_NAMESPACES),
                (ret, 0, 0, allow), (ret, 0, 0, errno | EPERM), (ret, 0, 0, errno | ENOSYS)]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install_seccomp() -> None:
    """Load the filter (after no_new_privs, which lets a process without CAP_SYS_ADMIN do so); it
    holds for this process and everything it starts. Refused on an architecture it has no numbers
    for: a pod never runs less confined than this file says."""
    machine = os.uname().machine
    if machine not in SYSCALLS:
        raise OSError(f"no seccomp filter for {machine}")
    program = seccomp_program(machine)
    prog = _SockFprog(len(program) // 8, program)
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def _exit_like(status: int) -> None:
    """End this process as the waited-for one ended: same code, or the same signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _forward_to(pid: int) -> None:
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))


def init(config: dict[str, Any], command: list[str], report: int, mapping: tuple[int, int]) -> None:
    """PID 1 of the pod: set up the view, drop everything, run COMMAND, reap, report its status."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the runner's side died: the pod dies
    if select.select([mapping[1]], [], [], 0)[0]:  # EOF already: the outer process died before prctl
        os._exit(137)
    # A mount namespace of init's own: the outer process keeps the host's /proc (it writes our maps).
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    files = {}
    # The pod's hosts and resolv.conf (ip netns exec bound them over /etc's) may live under /run.
    for path in [*config["files"], os.path.realpath("/etc/hosts"), os.path.realpath("/etc/resolv.conf")]:
        with contextlib.suppress(OSError), open(path, "rb") as f:
            files[path] = f.read()
    cwd = os.getcwd()
    build_view(config, files)
    _check(libc.sethostname(config["hostname"].encode(), len(config["hostname"].encode())), "sethostname")
    if config["uid"] == 0:  # root in a user namespace of its own; the outer process writes its maps
        _check(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
        os.write(mapping[0], b"m")
        if os.read(mapping[1], 1) != b"k":
            raise OSError("the user namespace was not mapped")
    drop_privileges(config["uid"], config["gid"])
    install_seccomp()
    try:
        os.chdir(cwd)  # by name, in the new view (the old cwd may be a hidden host directory)
    except OSError:
        os.chdir(config["home"])
    child = os.fork()
    if child == 0:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(command[0], command)
        except OSError as error:
            sys.stderr.write(f"exec {command[0]}: {error.strerror}\n")
            os._exit(127 if isinstance(error, FileNotFoundError) else 126)
    _forward_to(child)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
        if pid == child:
            os.write(report, str(status).encode())
            os._exit(0)  # PID 1 leaving ends every other process of the pod


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    command = argv[3:] if argv[2:3] == ["--"] else argv[2:]
    _check(libc.unshare(CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
    read_end, write_end = os.pipe()
    asks, asked = os.pipe()  # init: "map me"
    answered, answer = os.pipe()  # this process: "mapped"
    pid = os.fork()
    if pid == 0:
        for fd in (read_end, asks, answer):  # init keeps only its ends: EOF on `answered` = outer gone
            os.close(fd)
        try:
            init(config, command, write_end, (asked, answered))
        except BaseException as error:  # noqa: BLE001  nothing of the pod may run half-isolated
            sys.stderr.write(f"keyless pod sandbox: {error}\n")
            os._exit(125)
    os.close(write_end)
    os.close(asked)
    if config["uid"] == 0 and os.read(asks, 1) == b"m":  # nothing read: init failed before
        map_ids(pid, config)
        os.write(answer, b"k")
    _forward_to(pid)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    reported = os.read(read_end, 64)
    _exit_like(int(reported) if reported else status)


if __name__ == "__main__":
    main(sys.argv)
