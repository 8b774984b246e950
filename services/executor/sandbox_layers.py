"""The kernel-facing isolation layers, each with a probe so that a missing one is reported, not
silently skipped: network, IPC and PID namespaces, rlimits, privilege drop (a distinct uid per
child slot), seccomp, Landlock.

Everything expensive (building the seccomp BPF programs, creating the Landlock ruleset, loading
the fork-server's own filter) happens once in the fork-server; a child inherits the filter and
applies the prepared pieces with a few syscalls."""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
from dataclasses import dataclass, field

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
syscall = _libc.syscall  # bound once: a child calls it without a lookup of its own

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# x86_64 / aarch64 share these numbers (generic table since 5.13).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1

# Syscalls a puzzle program never needs; any of them kills the child (SIGSYS -> "forbidden").
# The fork-server's own filter has all but `SERVER_NEEDS` (see `build_seccomp_bpf`).
# Threads are refused too (clone/clone3): programs must be deterministic and single-threaded.
KILLED_SYSCALLS: tuple[str, ...] = (
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "execve",
    "execveat",
    "fork",
    "vfork",
    "clone",
    "clone3",
    "kill",
    "tkill",  # with a burst's children alive, no child may signal a sibling
    "tgkill",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "memfd_create",
    "personality",
    "mknod",
    "mknodat",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "reboot",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    # sabotage of other processes (siblings, the fork-server): priorities, scheduling, I/O
    # priority, memory placement; prlimit64 is handled apart (see `build_seccomp_bpf`)
    "setrlimit",
    "setpriority",
    "sched_setscheduler",
    "sched_setparam",
    "sched_setattr",
    "sched_setaffinity",
    "ioprio_set",
    "migrate_pages",
    "move_pages",
    "process_madvise",
    "process_mrelease",
    "kcmp",
    # SysV IPC and POSIX message queues: state that would outlive the child (and the request)
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
)


# What a child adds to the filter it inherits from the fork-server, from cheapest to dearest
# (`plan_child_step`): nothing, a Landlock domain of its own that scopes its signals, or the
# child filter (a seccomp load per child: ~80 µs of kernel work, about 7% of a validation).
CHILD_STEP_NONE = "none"
CHILD_STEP_SCOPE = "landlock_scope"
CHILD_STEP_SECCOMP = "seccomp"
CHILD_STEPS = (CHILD_STEP_NONE, CHILD_STEP_SCOPE, CHILD_STEP_SECCOMP)


class LayerUnavailable(Exception):
    """A kernel feature is missing or not permitted here."""


@dataclass
class LayerStatus:
    active: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"active": self.active, "detail": self.detail}


@dataclass
class Limits:
    cpu_s: int = 10
    memory_mb: int = 512
    open_files: int = 16
    stack_mb: int = 64


@dataclass
class PreparedLayers:
    """What the fork-server prepared once; applied by every child."""

    status: dict[str, LayerStatus] = field(default_factory=dict)
    seccomp_bpf: bytes | None = None
    seccomp_prog: SeccompProgram | None = None  # the child filter
    server_seccomp_prog: SeccompProgram | None = None  # loaded by `lock_server`, inherited
    # what each child adds to the inherited filter (see `plan_child_step`)
    child_step: str = CHILD_STEP_SECCOMP
    scope_fd: int | None = None  # a Landlock ruleset that only scopes signals (ABI >= 6)
    landlock_fd: int | None = None
    drop_to: tuple[int, int] | None = None  # (uid, gid) of slot 0
    uid_slots: int = 1  # child k takes uid/gid drop_to + k % uid_slots
    child_rlimits: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    # hard RLIMIT_CPU of every child; each lowers its soft limit to its job's timeout + 1 s
    # before its job (a hard limit can't be raised again; the child filter, where loaded,
    # forbids touching any limit at all)
    cpu_hard: int = 11
    workdir: str = "/"  # where the (already removed) working directory was


def _errno_text() -> str:
    err = ctypes.get_errno()
    return f"{os.strerror(err)} (errno {err})"


# --- network namespace (fork-server, once) -------------------------------------------------


def enter_empty_netns() -> LayerStatus:
    """unshare(CLONE_NEWNET): the fork-server and all its children see only a down loopback."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        return LayerStatus(False, f"unshare(CLONE_NEWNET) refused: {_errno_text()}")
    return LayerStatus(True, "empty network namespace entered once by the fork-server")


def enter_empty_ipcns() -> LayerStatus:
    """unshare(CLONE_NEWIPC): SysV objects and POSIX queues of this fork-server's children are
    private to it and vanish with it (the seccomp filter refuses creating them anyway)."""
    if _libc.unshare(CLONE_NEWIPC) != 0:
        return LayerStatus(False, f"unshare(CLONE_NEWIPC) refused: {_errno_text()}")
    return LayerStatus(True, "own IPC namespace, entered once by the fork-server")


def enter_userns() -> LayerStatus:
    """Without root: unshare(CLONE_NEWUSER) with our own uid/gid mapped to themselves. The
    fork-server then holds capabilities over namespaces it owns, which lets it create the
    network, IPC and PID namespaces a root fork-server creates directly; it drops every
    capability before forking any child (`drop_capabilities`)."""
    uid, gid = os.geteuid(), os.getegid()
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # /proc/self/*_map must be ours to write
    if _libc.unshare(CLONE_NEWUSER) != 0:
        return LayerStatus(False, f"unshare(CLONE_NEWUSER) refused: {_errno_text()}")
    try:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            try:
                fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
            except FileNotFoundError:
                if name == "setgroups":  # kernels before 3.19 and gVisor have none
                    continue
                raise
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
    except OSError as exc:
        return LayerStatus(False, f"user namespace mapping failed: {exc}")
    finally:
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no same-uid process may ptrace or read us
    return LayerStatus(True, f"own user namespace (uid {uid} mapped to itself only)")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> bool:
    """Empty effective, permitted and inheritable sets (children inherit none)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    return int(_libc.capset(ctypes.byref(header), data)) == 0


def enter_pidns() -> tuple[LayerStatus, int]:
    """unshare(CLONE_NEWPID), then fork once: the forked process is pid 1 of a namespace that
    holds only the fork-server and its children (they cannot see or address any other process,
    and all of them die with it). Returns (status, the inner pid in the process that must only
    wait for it, else 0)."""
    if _libc.unshare(CLONE_NEWPID) != 0:
        return LayerStatus(False, f"unshare(CLONE_NEWPID) refused: {_errno_text()}"), 0
    pid = os.fork()
    if pid != 0:
        return LayerStatus(True, "outer"), pid
    # die with the outer process, which the worker holds as the fork-server's pid
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    return LayerStatus(True, "the fork-server is pid 1 of its own PID namespace"), 0


# --- privileges -----------------------------------------------------------------------------


UID_SLOTS = 64  # distinct uids per fork-server: neighbouring children never share one


def plan_privilege_drop(uid_base: int | None) -> tuple[LayerStatus, tuple[int, int] | None]:
    """As root: children take uids `uid_base`..`uid_base + UID_SLOTS - 1` in turn (no passwd
    entry is needed; they own nothing), so no child shares a uid with the one before it, its
    siblings or the fork-server. Without root the children keep the server's uid."""
    if os.geteuid() != 0:
        return LayerStatus(
            True, f"already unprivileged (uid {os.geteuid()}; children share it)"
        ), None
    if uid_base is None:
        entry = pwd.getpwnam("nobody")
        return LayerStatus(True, f"children drop to uid {entry.pw_uid} (nobody)"), (
            entry.pw_uid,
            entry.pw_gid,
        )
    return (
        LayerStatus(
            True, f"children drop to uids {uid_base}..{uid_base + UID_SLOTS - 1}, one per slot"
        ),
        (uid_base, uid_base),
    )


# --- rlimits --------------------------------------------------------------------------------


def apply_server_rlimits(limits: Limits) -> None:
    """Once in the fork-server, inherited by every child: no core dumps, the stack size.
    (File size 0 would also stop the server's own stderr when that is a log file.)"""
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_STACK, (limits.stack_mb * mb, limits.stack_mb * mb))


def child_rlimits(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    """What every child sets before its job (what the server itself can't live with); built
    once in the server, applied by each child with one setrlimit per entry."""
    memory = limits.memory_mb * 1024 * 1024
    return [
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_FSIZE, (0, 0)),
        (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),
        # Only enforced for an unprivileged uid, hence the drop right after.
        (resource.RLIMIT_NPROC, (0, 0)),
    ]


# --- seccomp ------------------------------------------------------------------------------


# What the fork-server still calls once its own filter is loaded; every child is born under
# that filter and needs the same until its lock-down is done: fork (clone with exactly glibc's
# fork flags: a thread's flags differ, and clone3 stays refused), killing a timed-out child's
# group, its pidfd, a child's own limits and its drop to its slot's uid.
FORK_CLONE_FLAGS = 0x01200011  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
SERVER_NEEDS = frozenset({"clone", "kill", "pidfd_open", "setresuid", "setresgid", "setrlimit"})


def build_seccomp_bpf(*, server: bool = False) -> tuple[LayerStatus, bytes | None]:
    """Compile a filter with libseccomp and export the raw BPF program: the child filter (every
    syscall in `KILLED_SYSCALLS`, prlimit64 beyond reading one's own limits), or with `server`
    the fork-server's own, which its children inherit for free (the same, less `SERVER_NEEDS`;
    clone only as fork(); prlimit64 on another pid).

    The worker calls this (not the fork-server), so libseccomp never gets mapped into the
    fork-server: every shared library there adds mappings that each fork copies."""
    try:
        import pyseccomp as seccomp  # ctypes binding of libseccomp.so.2
    except Exception as exc:  # the library or the .so is missing
        return LayerStatus(False, f"pyseccomp/libseccomp unavailable: {exc}"), None
    killed = [n for n in KILLED_SYSCALLS if not (server and n in SERVER_NEEDS)]
    try:
        filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        # a binary tree of syscall numbers instead of a linear chain: loading a filter makes
        # the kernel emulate it for every syscall number (its action cache)
        try:
            filt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
        except Exception:  # libseccomp < 2.5: the linear chain, same rules
            pass
        # KILL_PROCESS where the kernel offers it; gVisor (the chart's executor runtime) does
        # not, and libseccomp then refuses every such rule. Killing the thread instead kills
        # the child too (it is single-threaded: threads are among the killed syscalls).
        action, added = seccomp.KILL_PROCESS, 0
        for name in killed:
            for candidate in (action,) if added else (action, seccomp.KILL):
                try:
                    filt.add_rule(candidate, name)
                except Exception:
                    continue  # a syscall this architecture lacks, or the action is refused
                action, added = candidate, added + 1
                break
        if added == 0:
            return LayerStatus(False, "libseccomp accepted no rule"), None
        # prlimit64 on any other pid (a sibling, the fork-server) kills; glibc's setrlimit is
        # prlimit64 on pid 0. A child may not even set its own limits under the child filter.
        filt.add_rule(action, "prlimit64", seccomp.Arg(0, seccomp.NE, 0))
        if server:
            filt.add_rule(action, "clone", seccomp.Arg(0, seccomp.NE, FORK_CLONE_FLAGS))
        else:
            filt.add_rule(action, "prlimit64", seccomp.Arg(2, seccomp.NE, 0))
        read_fd, write_fd = os.pipe()
        try:
            with os.fdopen(write_fd, "wb") as sink:
                filt.export_bpf(sink)
            chunks = []
            while chunk := os.read(read_fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(read_fd)
        bpf = b"".join(chunks)
    except Exception as exc:
        return LayerStatus(False, f"building the seccomp filter failed: {exc}"), None
    if not bpf or len(bpf) % 8:
        return LayerStatus(False, f"libseccomp exported {len(bpf)} bytes, not a BPF program"), None
    how = "" if action == seccomp.KILL_PROCESS else " (thread kill: no KILL_PROCESS here)"
    if server:
        return LayerStatus(
            True,
            f"{added} syscalls, clone beyond fork(), prlimit64 on another pid kill{how}",
        ), bpf
    return LayerStatus(
        True, f"{added} syscalls and prlimit64 beyond reading its own limits kill the child{how}"
    ), bpf


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompProgram:
    """The `struct sock_fprog` for a BPF program, built once in the fork-server so that a child
    installs the filter with one prctl and no allocation."""

    def __init__(self, bpf: bytes) -> None:
        self._buf = ctypes.create_string_buffer(bpf, len(bpf))  # kept alive with the struct
        self._prog = _SockFprog(len(bpf) // 8, ctypes.cast(self._buf, ctypes.c_void_p))
        # the call bound here: a child makes it (`prctl(*args)`, 0 on success) with no global
        # or attribute lookup of its own
        self.call = (
            _libc.prctl,
            (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0),
        )

    def load(self) -> None:
        prctl, args = self.call
        if prctl(*args) != 0:
            raise self.failed()

    @staticmethod
    def failed() -> LayerUnavailable:
        return LayerUnavailable(f"seccomp load failed: {_errno_text()}")


def load_seccomp(bpf: bytes) -> None:
    SeccompProgram(bpf).load()


def set_no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise LayerUnavailable(f"PR_SET_NO_NEW_PRIVS failed: {_errno_text()}")


# --- Landlock -----------------------------------------------------------------------------

_FS_BITS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_NET_BIND_TCP = 1 << 0
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX = 1 << 0
_SCOPE_SIGNAL = 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return int(abi) if abi > 0 else 0


def build_landlock_ruleset(read_trees: list[str]) -> tuple[LayerStatus, int | None]:
    """A ruleset that handles every filesystem right the kernel knows (so all writes are denied),
    allows reads only under `read_trees`, denies TCP bind/connect (ABI >= 4) and scopes signals
    and abstract unix sockets to the child itself (ABI >= 6)."""
    abi = landlock_abi()
    if abi < 1:
        return LayerStatus(False, f"Landlock not available: {_errno_text()}"), None
    fs = _FS_BITS_BY_ABI[max(k for k in _FS_BITS_BY_ABI if k <= abi)]
    attr = _RulesetAttr(fs, 0, 0)
    size = 8
    parts = ["no writes", f"reads only under {len(read_trees)} tree(s)"]
    if abi >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 16
        parts.append("no TCP bind/connect")
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
        size = 24
        parts.append("signals and abstract sockets scoped")
    fd = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if fd < 0:
        return LayerStatus(False, f"landlock_create_ruleset failed: {_errno_text()}"), None
    for tree in read_trees:
        try:
            tfd = os.open(tree, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        rule = _PathBeneath(_READ_FILE | _READ_DIR, tfd)
        _libc.syscall(SYS_LANDLOCK_ADD_RULE, int(fd), 1, ctypes.byref(rule), 0)
        os.close(tfd)
    return LayerStatus(True, f"ABI {abi}: " + ", ".join(parts)), int(fd)


def restrict_landlock(ruleset_fd: int) -> None:
    if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, 0) != 0:
        raise LayerUnavailable(f"landlock_restrict_self failed: {_errno_text()}")


def build_signal_scope() -> int | None:
    """A ruleset that handles no access right and only scopes signals and abstract unix sockets
    (Landlock ABI >= 6): a child that restricts itself with it gets a domain of its own, and
    can signal no process outside it (its siblings, the fork-server). None where unsupported."""
    if landlock_abi() < 6:
        return None
    attr = _RulesetAttr(0, 0, _SCOPE_SIGNAL | _SCOPE_ABSTRACT_UNIX)
    fd = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), 24, 0)
    return int(fd) if fd >= 0 else None


def plan_child_step(prepared: PreparedLayers, burst: int, requested: str = "auto") -> str:
    """What each child must add to the fork-server's filter, which it inherits for free. That
    filter stops what no child may ever do; two things remain that the server itself needs:
    forking (a child's RLIMIT_NPROC of 0 refuses it, as the child is no longer root and has no
    capability) and signalling (a child might kill a sibling waiting for its turn). Signals
    need nothing more where every live child and the server have distinct uids (root with one
    uid per slot, and no more children alive than slots); else a Landlock domain per child that
    scopes its signals; else, or when asked, the whole child filter. The fork-server checks the
    plan with two probe children (`ForkServer.probe_containment`) before it trusts it."""
    if requested == CHILD_STEP_SECCOMP or prepared.server_seccomp_prog is None:
        return CHILD_STEP_SECCOMP
    distinct = prepared.drop_to is not None and burst < prepared.uid_slots
    if distinct or requested == CHILD_STEP_NONE:
        return CHILD_STEP_NONE
    return CHILD_STEP_SCOPE if prepared.scope_fd is not None else CHILD_STEP_SECCOMP


def lock_server(prepared: PreparedLayers, limits: Limits) -> None:
    """The lock-down steps the fork-server can take for itself once, right before it forks any
    child, instead of every child taking them: no_new_privs, the core and stack limits, no
    supplementary groups (as root), and the Landlock domain (the server needs no file after start-up: it only forks, reaps and
    talks over pipes it already has). A child is then born inside the domain, with no ctypes
    call of its own; signal scoping still lets the server signal its children, which share
    the domain, and the seccomp filter stops the children from signalling anyone."""
    apply_server_rlimits(limits)
    set_no_new_privs()
    if prepared.drop_to is not None:
        # no supplementary groups: children inherit the empty list, which their own
        # setresgid/setresuid keep, so they need no setgroups of their own
        os.setgroups([])
    if prepared.landlock_fd is not None:
        try:
            restrict_landlock(prepared.landlock_fd)
        except LayerUnavailable as exc:
            prepared.status["landlock"] = LayerStatus(False, str(exc))
        os.close(prepared.landlock_fd)
        prepared.landlock_fd = None
    if prepared.server_seccomp_prog is not None:  # last: it refuses what the steps above use
        try:
            prepared.server_seccomp_prog.load()
        except LayerUnavailable:
            prepared.server_seccomp_prog = None  # every child loads the child filter instead


# --- the working directory ----------------------------------------------------------------


def enter_empty_workdir(base: str = "/tmp") -> str:
    """Make a fresh directory, make it the fork-server's cwd (which every child inherits), then
    remove it: the cwd is an empty directory in which nothing can be created, and nothing is left
    in `base` however the fork-server ends (SIGKILL included). (`tempfile` is avoided on purpose:
    it drags shutil, bz2, lzma and random into the fork-server.)"""
    for _ in range(100):
        path = os.path.join(base, "azr-sandbox-" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o555)  # children (another uid) may look things up in it, not write
        os.chdir(path)
        os.rmdir(path)
        return path
    raise FileExistsError(f"could not create a fresh directory under {base}")


# gVisor's Sentry answers uname(2) with this build string of Linux 4.4 (the release is 4.4.0, or
# 4.19.0-gvisor on newer builds); no host kernel carries it.
GVISOR_UNAME_VERSION = "#1 SMP Sun Jan 10 15:06:54 PST 2016"


def gvisor_kernel(uname_version: str | None = None) -> LayerStatus:
    """Whether this process runs on gVisor (the chart's RuntimeClass, or `runsc do`): then its
    syscalls reach the Sentry, not the host kernel, and Landlock does not exist."""
    version = os.uname().version if uname_version is None else uname_version
    if version == GVISOR_UNAME_VERSION:
        return LayerStatus(True, "gVisor's user-space kernel (the Sentry) serves every syscall")
    return LayerStatus(False, f"the host kernel ({version})")


def prepare_layers(
    *,
    read_trees: list[str] | None = None,
    netns: bool = True,
    seccomp: tuple[LayerStatus, bytes | None] | None = None,
    server_seccomp: bytes | None = None,
    uid_base: int | None = None,
    pidns: LayerStatus | None = None,
) -> PreparedLayers:
    """`seccomp`: the child filter the caller already built (see `build_seccomp_bpf`); built here
    when not given; `server_seccomp`: the fork-server's own (without it every child loads the
    child filter). `pidns`: how entering the PID namespace went (it has to happen first, in
    `forkserver.main`)."""
    prepared = PreparedLayers()
    status = prepared.status
    status["fork_server"] = LayerStatus(
        True, f"pid {os.getpid()}, one fresh child per (program, input) evaluation"
    )
    status["netns"] = (
        enter_empty_netns() if netns else LayerStatus(False, "disabled by configuration")
    )
    status["ipcns"] = enter_empty_ipcns()
    status["pidns"] = pidns or LayerStatus(False, "not requested")
    status["rlimits"] = LayerStatus(
        True,
        "CPU (lowered per job), address space, file size 0, open files, NPROC 0",
    )
    status["drop_privileges"], prepared.drop_to = plan_privilege_drop(uid_base)
    prepared.uid_slots = UID_SLOTS if uid_base is not None else 1
    status["seccomp"], prepared.seccomp_bpf = seccomp or build_seccomp_bpf()
    if prepared.seccomp_bpf is not None:
        prepared.seccomp_prog = SeccompProgram(prepared.seccomp_bpf)
        if server_seccomp:
            prepared.server_seccomp_prog = SeccompProgram(server_seccomp)
    prepared.scope_fd = build_signal_scope()
    status["landlock"], prepared.landlock_fd = build_landlock_ruleset(read_trees or [])
    if status["landlock"].active:
        status["landlock"] = LayerStatus(
            True, status["landlock"].detail + "; the fork-server's own domain, children born in it"
        )
    prepared.workdir = enter_empty_workdir()
    status["workdir"] = LayerStatus(True, "an empty, already deleted working directory")
    status["close_fds"] = LayerStatus(True, "every inherited fd closed except the job/result pipes")
    status["clean_env"] = LayerStatus(True, "empty environment")
    status["audit_hook"] = LayerStatus(
        True, "installed unconditionally in every child: file/network/process/ctypes events refused"
    )
    status["gvisor"] = gvisor_kernel()
    return prepared
