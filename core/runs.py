"""Background jobs of the dashboard: training runs (``python -m core.train``) and dataset
preparations (``python -m core.data prepare --input``), started, watched and stopped.

A run named NAME trains into ``<checkpoints>/NAME`` and keeps its files in ``<runs>/NAME/``:
``train.log`` (stdout and stderr of the trainer, appended on every start) and ``pid``. All
state is on disk, so a page reload or a restarted server still sees a run that is going on.
The trainer is a detached process (its own session, ``nice``), stopped with SIGINT, on which
it writes a checkpoint and exits 0.

A preparation named NAME writes ``<data>/NAME.parquet`` from an uploaded file kept with its
log and pid in ``<runs>/_prepare/NAME/`` (a folder name no run can have).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.checkpoint import METRICS, STATE, read_metrics
from core.errors import UserError
from core.procstat import stat_fields

ROOT = Path(__file__).resolve().parent.parent
LOG = "train.log"
PID = "pid"
START_MARK = "=== molscope run"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

# core.train flags a caller may set (as keyword names: max_steps -> --max-steps)
TRAIN_FLAGS = frozenset(
    "data max_steps total_steps max_minutes limit val_size batch_size lr warmup beta kl_anneal "
    "free_bits cond_drop uncond_drop target_noise seed max_len d_model n_heads n_layers d_ff "
    "enc_d_model enc_heads enc_layers enc_d_ff latent_dim activation log_every eval_every "
    "save_every properties init_from n_fourier".split()
)
SWITCHES = frozenset({"feedback"})  # core.train flags without a value: True adds the flag
PREPARE_DIR = "_prepare"  # under the runs root: preparation jobs (never a run's name)
PREPARE_LOG = "prepare.log"
_PROGRESS = re.compile(r"(\d+)/(\d+) \[")


class RunError(UserError, ValueError):
    """A run cannot be started or stopped (bad name, already running, ...); one plain line."""


def default_runs_root() -> Path:
    """Where run folders live: ``MOLSCOPE_RUNS`` if set, else ``runs/`` in the repository."""
    return Path(os.environ.get("MOLSCOPE_RUNS", ROOT / "runs"))


def default_checkpoints_root() -> Path:
    """Where runs write checkpoints: ``MOLSCOPE_CHECKPOINTS`` if set, else ``checkpoints/``."""
    return Path(os.environ.get("MOLSCOPE_CHECKPOINTS", ROOT / "checkpoints"))


def validate_name(name: str) -> str:
    """``name`` if it is a safe folder name (letters, digits, ``_``, ``-``), else RunError.

    >>> validate_name("small-1")
    'small-1'
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise RunError(
            f"run name {str(name)[:40]!r} is not allowed: use 1-64 letters, digits, '_' or '-'"
        )
    return name


def configured_hostfile() -> Path | None:
    """The hostfile for distributed runs: ``$MOLSCOPE_HOSTFILE`` or ``hostfile.json`` at the
    repository root, when it exists (see docs/distributed.md)."""
    path = Path(os.environ.get("MOLSCOPE_HOSTFILE", ROOT / "hostfile.json"))
    return path if path.is_file() else None


def read_hostfile(path: Path) -> list[dict]:
    """The hosts of an ``mlx.launch`` hostfile; RunError when it is not a list of >= 2 hosts."""
    try:
        hosts = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"hostfile {path} cannot be read: {exc}") from exc
    if not isinstance(hosts, list) or len(hosts) < 2:
        raise RunError(f"hostfile {path} must be a JSON list of at least 2 hosts")
    if not all(isinstance(h, dict) and "ssh" in h for h in hosts):
        raise RunError(f'hostfile {path}: every host needs "ssh" (and "ips")')
    return hosts


def train_command(
    name: str,
    options: Mapping[str, object],
    *,
    resume: bool = False,
    overwrite: bool = False,
    checkpoints_root: Path | None = None,
    hostfile: Path | None = None,
) -> list[str]:
    """The argv that trains run ``name`` (``nice`` + ``python -m core.train`` + flags); with a
    ``hostfile``, data-parallel under ``mlx.launch --backend ring`` on its hosts.

    >>> train_command("a", {"max_steps": 5}, checkpoints_root=Path("ck"))[-4:]
    ['--out', 'ck/a', '--max-steps', '5']
    """
    validate_name(name)
    root = Path(checkpoints_root or default_checkpoints_root())
    argv = ["nice", "-n", "10", sys.executable, "-m", "core.train", "--out", str(root / name)]
    argv += _flags(options, TRAIN_FLAGS, SWITCHES, "training")
    if resume and overwrite:
        raise RunError("choose resume or overwrite, not both")
    if resume:
        argv.append("--resume")
    if overwrite:
        argv.append("--overwrite")
    if hostfile is not None:
        read_hostfile(hostfile)
        launcher = str(Path(sys.executable).parent / "mlx.launch")
        # the launcher ignores SIGINT; each rank handles it and rank 0 checkpoints
        argv = [
            "sh", "-c", 'trap "" INT; exec "$@"', "sh", launcher, "--backend", "ring",
            "--hostfile", str(hostfile), "--cwd", str(ROOT), "--", *argv, "--distributed",
        ]  # fmt: skip
    return argv


def _flags(
    options: Mapping[str, object], allowed: frozenset, switches: frozenset, what: str
) -> list[str]:
    """Command-line flags for ``options`` (keyword names: max_steps -> --max-steps); a switch
    is added when True. RunError for an unknown option or an unusable value."""
    argv = []
    for key, value in options.items():
        if key in switches:
            if not isinstance(value, bool):
                raise RunError(f"option {key} is on or off, got {value!r}")
            argv += ["--" + key.replace("_", "-")] if value else []
            continue
        if key not in allowed:
            raise RunError(f"unknown {what} option {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise RunError(f"option {key} needs a number or a word, got {value!r}")
        text = str(value)
        if not text or (text.startswith("-") and not _is_number(text)) or "\n" in text:
            raise RunError(f"option {key} has an unusable value {text[:40]!r}")
        argv += ["--" + key.replace("_", "-"), text]
    return argv


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pid_alive(pid: int, module: bytes = b"core.train") -> bool:
    """Whether ``pid`` is a live (not zombie) process of ``module`` (default the trainer);
    reaps it if it is our child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: someone else reaps it
    except OSError:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.parent.is_dir():  # Linux: check it is not a zombie and is still core.train
        try:
            state = stat_fields(pid)[0]
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
        # an empty cmdline is a process in the middle of exec (nice -> python); a cmdline
        # without the module means the pid was reused by something else
        return state not in ("Z", "X") and (not cmdline or module in cmdline)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunStatus:
    """What is known about one run, read from its folder and its checkpoint."""

    name: str
    state: str  # "none", "running", "finished", "stopped", "failed", "ended"
    pid: int | None = None
    step: int | None = None  # last step the trainer reported
    total: int | None = None  # steps it is going for
    message: str = ""  # the trainer's last word (error line or checkpoint note)
    log_tail: list[str] = field(default_factory=list)
    last_metrics: dict = field(default_factory=dict)  # latest train row of metrics.jsonl
    checkpoint_step: int | None = None  # step of the checkpoint on disk (for resuming)

    @property
    def running(self) -> bool:
        return self.state == "running"


def _read_pid(folder: Path) -> int | None:
    try:
        return int((folder / PID).read_text().strip())
    except (OSError, ValueError):
        return None


def _newest_line(lines: list[str], wanted: Callable[[str], bool]) -> str:
    """The last of a log's lines that is ``wanted``; "" when none is.

    >>> _newest_line(["error: a", "ok", "error: b"], lambda ln: ln.startswith("error:"))
    'error: b'
    """
    return next((ln for ln in reversed(lines) if wanted(ln)), "")


def _state(
    alive: bool, lines: list[str], who: str, endings: list[tuple[str, Callable[[str], bool]]]
) -> tuple[str, str]:
    """(state, message) of a run from its process and log: "running", "none" (no log yet),
    "failed" with its newest ``error:`` line, the first of ``endings`` whose line the log
    holds (with the newest such line), else "ended".

    >>> _state(False, ["wrote x"], "it", [("finished", lambda ln: ln.startswith("wrote"))])
    ('finished', 'wrote x')
    >>> _state(False, ["..."], "it", [])
    ('ended', 'it ended without a final message')
    """
    if alive:
        return "running", ""
    if not lines:
        return "none", ""
    for state, wanted in [("failed", lambda ln: ln.startswith("error:")), *endings]:
        line = _newest_line(lines, wanted)
        if line:
            return state, line
    return "ended", f"{who} ended without a final message"


def _last_progress(lines: list[str]) -> tuple[int | None, int | None]:
    """(done, total) of the newest progress bar in a log's lines; (None, None) before any.

    >>> _last_progress(["x", "training:  10%| | 5/50 [00:01<00:09]", "y"])
    (5, 50)
    """
    for line in reversed(lines):
        found = _PROGRESS.findall(line)
        if found:
            done, total = found[-1]
            return int(done), int(total)
    return None, None


def _log_lines(file: Path, max_bytes: int = 32_768) -> list[str]:
    """Lines of the last run in the log as a terminal shows them (``\\r`` rewrites a line)."""
    try:
        with open(file, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - max_bytes, 0))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [_last_frame(line) for line in text.split("\n")]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(START_MARK):
            lines = lines[i:]
            break
    return [line for line in lines if line.strip()]


def _last_frame(line: str) -> str:
    """What is visible of a line that a progress bar rewrote with ``\\r``."""
    frames = [frame for frame in line.split("\r") if frame.strip()]
    return frames[-1] if frames else ""


def checkpoint_step(folder: Path) -> int | None:
    """The training step stored in a checkpoint's ``state.json`` (None without one)."""
    try:
        return int(json.loads((Path(folder) / STATE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def status(
    name: str,
    *,
    runs_root: Path | None = None,
    checkpoints_root: Path | None = None,
    tail: int = 12,
) -> RunStatus:
    """The state of run ``name``: running or how it ended, progress, log tail, last metrics."""
    validate_name(name)
    folder = Path(runs_root or default_runs_root()) / name
    out = Path(checkpoints_root or default_checkpoints_root()) / name
    lines = _log_lines(folder / LOG)
    pid = _read_pid(folder)
    alive = pid is not None and _pid_alive(pid)
    step, total = _last_progress(lines)
    state, message = _state(alive, lines, "the trainer", [
        ("stopped", lambda ln: "checkpoint saved at step" in ln),
        ("finished", lambda ln: ln.startswith("checkpoint: ")),
    ])  # fmt: skip
    rows = [r for r in read_metrics(out) if r.get("split") == "train"] if out.is_dir() else []
    return RunStatus(
        name=name,
        state=state,
        pid=pid if alive else None,
        step=step,
        total=total,
        message=message,
        log_tail=lines[-tail:],
        last_metrics=rows[-1] if rows else {},
        checkpoint_step=checkpoint_step(out),
    )


def start(
    name: str,
    options: Mapping[str, object] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    runs_root: Path | None = None,
    checkpoints_root: Path | None = None,
    hostfile: Path | None = None,
) -> RunStatus:
    """Start training run ``name`` in the background and return its status (distributed over
    the hosts of ``hostfile`` when given).

    Refuses (RunError) when it is already running, when a checkpoint exists and neither
    ``resume`` nor ``overwrite`` is given, or when ``resume`` has nothing to resume.
    """
    runs_root = Path(runs_root or default_runs_root())
    checkpoints_root = Path(checkpoints_root or default_checkpoints_root())
    argv = train_command(
        name,
        options or {},
        resume=resume,
        overwrite=overwrite,
        checkpoints_root=checkpoints_root,
        hostfile=hostfile,
    )
    current = status(name, runs_root=runs_root, checkpoints_root=checkpoints_root)
    if current.running:
        raise RunError(f"run {name} is already running (pid {current.pid})")
    out = checkpoints_root / name
    has_checkpoint = (out / "config.json").exists()
    if resume and not has_checkpoint:
        raise RunError(f"nothing to resume: {out} holds no checkpoint")
    if has_checkpoint and not (resume or overwrite):
        raise RunError(f"{out} already holds a checkpoint: resume it or overwrite it")
    _launch(argv, runs_root / name, LOG)
    return status(name, runs_root=runs_root, checkpoints_root=checkpoints_root)


def _launch(argv: list[str], folder: Path, log_name: str) -> None:
    """Start ``argv`` detached, its output appended to ``folder/log_name``, its pid saved."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(folder / log_name, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"{START_MARK} {stamp}: {shlex.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl+C on the dashboard does not reach the job
        )
    tmp = folder / f"{PID}.tmp"
    tmp.write_text(str(process.pid))
    os.replace(tmp, folder / PID)


def stop(name: str, *, runs_root: Path | None = None) -> bool:
    """Ask run ``name`` to stop (SIGINT: it checkpoints and exits). False if it was not running."""
    validate_name(name)
    folder = Path(runs_root or default_runs_root()) / name
    pid = _read_pid(folder)
    if pid is None or not _pid_alive(pid):
        return False
    try:
        # the whole process group: with mlx.launch, every rank gets the signal
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return False
    return True


def list_runs(runs_root: Path | None = None) -> list[str]:
    """Names of the runs started here (a folder under ``runs_root`` with a log or pid), sorted."""
    root = Path(runs_root or default_runs_root())
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and NAME_PATTERN.fullmatch(p.name)
        and ((p / LOG).is_file() or (p / PID).is_file())
    )


def has_metrics(folder: Path) -> bool:
    """Whether a checkpoint folder has a non-empty ``metrics.jsonl``."""
    file = Path(folder) / METRICS
    return file.is_file() and file.stat().st_size > 0


# ---------------------------------------------------------------- dataset preparation

PREPARE_FLAGS = frozenset({"smiles_column", "test_fraction", "seed", "prefix_features", "workers"})
PREPARE_SWITCHES = frozenset({"keep_fragments", "keep_charges", "overwrite"})


def default_data_root() -> Path:
    """Where prepared datasets are written: ``MOLSCOPE_DATA`` if set, else ``data/``."""
    return Path(os.environ.get("MOLSCOPE_DATA", ROOT / "data"))


def _prepare_folder(name: str, runs_root: Path | None) -> Path:
    return Path(runs_root or default_runs_root()) / PREPARE_DIR / validate_name(name)


def prepare_command(
    name: str,
    input_file: Path,
    options: Mapping[str, object] | None = None,
    *,
    data_root: Path | None = None,
) -> list[str]:
    """The argv that prepares ``input_file`` into ``<data_root>/NAME.parquet``.

    >>> prepare_command("mine", Path("in.csv"), {"test_fraction": 0.2}, data_root=Path("d"))[-6:]
    ['--input', 'in.csv', '--out', 'd/mine.parquet', '--test-fraction', '0.2']
    """
    validate_name(name)
    out = Path(data_root or default_data_root()) / f"{name}.parquet"
    argv = ["nice", "-n", "10", sys.executable, "-m", "core.data", "prepare"]
    argv += ["--input", str(input_file), "--out", str(out)]
    return argv + _flags(options or {}, PREPARE_FLAGS, PREPARE_SWITCHES, "preparation")


@dataclass
class PrepareStatus:
    """What is known about one dataset preparation, read from its folder."""

    name: str
    state: str  # "none", "running", "finished", "failed", "ended"
    pid: int | None = None
    done: int | None = None  # molecules described so far
    total: int | None = None  # molecules to describe
    message: str = ""  # the last word: "wrote ..." or "error: ..."
    log_tail: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state == "running"


def prepare_status(name: str, *, runs_root: Path | None = None, tail: int = 8) -> PrepareStatus:
    """The state of preparation ``name``: running or how it ended, progress, log tail."""
    folder = _prepare_folder(name, runs_root)
    lines = _log_lines(folder / PREPARE_LOG)
    pid = _read_pid(folder)
    alive = pid is not None and _pid_alive(pid, b"core.data")
    done, total = _last_progress(lines)
    state, message = _state(alive, lines, "the preparation", [
        ("finished", lambda ln: ln.startswith("wrote ")),
    ])  # fmt: skip
    return PrepareStatus(name, state, pid if alive else None, done, total, message, lines[-tail:])


def start_prepare(
    name: str,
    filename: str,
    content: bytes,
    options: Mapping[str, object] | None = None,
    *,
    runs_root: Path | None = None,
    data_root: Path | None = None,
) -> PrepareStatus:
    """Keep an uploaded file (``filename``: its name, which says its format) and prepare it in
    the background into ``<data_root>/NAME.parquet``; returns the status.

    Refuses (RunError) a file of an unknown type or over ``core.molfile.MAX_INPUT_BYTES``, a
    name whose dataset exists (unless ``options`` has ``overwrite``), and a preparation of
    that name that is still running. Everything else about the file is checked by
    ``core.data`` in the background and ends there as a one-line ``error:``.
    """
    from core.molfile import MAX_INPUT_BYTES, MolFileError, file_format

    folder = _prepare_folder(name, runs_root)
    data_root = Path(data_root or default_data_root())
    options = dict(options or {})
    try:
        file_format(filename)
    except MolFileError as exc:
        raise RunError(str(exc)) from exc
    if len(content) > MAX_INPUT_BYTES:
        raise RunError(f"{filename} is over the {MAX_INPUT_BYTES >> 20} MB limit")
    current = prepare_status(name, runs_root=runs_root)
    if current.running:
        raise RunError(f"dataset {name} is being prepared (pid {current.pid})")
    out = data_root / f"{name}.parquet"
    if out.exists() and not options.get("overwrite"):
        raise RunError(f"a dataset named {name} exists: choose another name or replace it")
    inbox = folder / "input"  # the upload keeps its name: the dataset records it
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(filename).name)
    input_file = inbox / safe.lstrip(".")
    input_file.write_bytes(content)
    _launch(prepare_command(name, input_file, options, data_root=data_root), folder, PREPARE_LOG)
    return prepare_status(name, runs_root=runs_root)
