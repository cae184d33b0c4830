"""The engine in a process of its own, as vLLM's V1 engine core runs: the HTTP side never stalls a step.

With the engine on a thread of the server process, every token the HTTP side
streams takes the interpreter lock from the engine: on a small model on CPU
that made a step up to twice as long, and as variable as the HTTP load. Here
the server process sends commands down one pipe and a reader thread takes the
worker's EngineOutputs from another; the engine process loads the model itself
and runs the same EngineWorker as the threaded engine.
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from kairos.errors import KairosError
from kairos.serve.cpu_affinity import pin_to_cpus
from kairos.serve.engine_loop import EngineLoop, EngineObserver
from kairos.serve.engine_worker import Abort, Add, EngineOutput, EngineWorker, Stop
from kairos.serve.runner import RunnerConfig

# Seconds to wait for the engine process to load its model.
STARTUP_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class EngineSpec:
    """What the engine process builds: the model (preset or directory), its placement and the engine limits."""

    model: str
    device: str = "cpu"
    seed: int = 0
    runner: RunnerConfig = RunnerConfig()
    max_waiting: int = 1024
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    busy_poll_s: float = 0.0  # how long an idle engine polls for work before it sleeps
    reference_every_s: float = 0.0  # how often an idle engine times the reference step, a busy one 3x less (0: never)
    cpus: tuple[int, ...] | None = None  # the CPUs the engine process may run on (None: any)
    dtype: str | None = None  # weights and activations (None: the loader's default for the device)


@dataclass(frozen=True)
class EngineReady:
    """The engine process's first message: what it built."""

    num_blocks: int
    torch_threads: int
    attention: str  # "varlen" (native kernels) or "padded" (SDPA)


@dataclass(frozen=True)
class _StartupFailed:
    message: str


class _PipeCommands:
    """A CommandSource over the command pipe; a closed pipe (server gone) reads as Stop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self) -> object:
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            return Stop()

    def get_nowait(self) -> object | None:
        try:
            return self._conn.recv() if self._conn.poll() else None
        except (EOFError, OSError):
            return Stop()


def _engine_main(commands: Connection, outputs: Connection, spec: EngineSpec) -> None:
    """The engine process: build the runner, report, then serve until Stop or the server goes away."""
    # Ctrl-C reaches the whole process group: the server decides when the engine stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if spec.cpus is not None:  # before torch starts its threads, which inherit the mask
            pin_to_cpus(spec.cpus)
        import torch

        from kairos.serve.loader import load_model
        from kairos.serve.runner import EngineRunner

        if spec.threads is not None:
            torch.set_num_threads(spec.threads)
        runner = EngineRunner(load_model(spec.model, spec.device, dtype=spec.dtype, seed=spec.seed), spec.runner)
    except KairosError as exc:
        outputs.send(_StartupFailed(str(exc)))
        return
    except Exception as exc:  # reported to the server, which fails its startup with this line
        outputs.send(_StartupFailed(f"the engine process could not start: {type(exc).__name__}: {exc}"))
        return
    # Everything built so far lives as long as the process: keep it out of full collections.
    gc.collect()
    gc.freeze()
    try:
        outputs.send(EngineReady(runner.kv.num_blocks, torch.get_num_threads(), runner.attention_layout))
        worker = EngineWorker(runner, spec.max_waiting, spec.busy_poll_s, spec.reference_every_s)
        worker.serve(_PipeCommands(commands), outputs.send)
    except OSError:  # the server is gone: nobody to report to
        pass


class ProcessEngine(EngineLoop):
    """Runs an EngineWorker in a spawned engine process; constructing it waits until the model is loaded."""

    def __init__(self, spec: EngineSpec, observer: EngineObserver | None = None,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        super().__init__(observer)
        # spawn, not fork: the server process may already run threads (and torch's thread pools).
        context = multiprocessing.get_context("spawn")
        command_reader, self._commands = context.Pipe(duplex=False)
        self._outputs, output_writer = context.Pipe(duplex=False)
        self._process = context.Process(target=_engine_main, args=(command_reader, output_writer, spec),
                                        name="kairos-engine", daemon=True)
        self._process.start()
        command_reader.close()
        output_writer.close()
        self._reader: threading.Thread | None = None
        self._stopping = False
        self.ready = self._await_ready(startup_timeout_s)

    @property
    def pid(self) -> int | None:
        """The engine process's id."""
        return self._process.pid

    def _await_ready(self, timeout_s: float) -> EngineReady:
        deadline = time.monotonic() + timeout_s
        while not self._outputs.poll(0.1):
            if not self._process.is_alive():
                break
            if time.monotonic() > deadline:
                self.close()
                raise KairosError(f"the engine process did not load its model within {timeout_s:.0f} s")
        try:
            message = self._outputs.recv()
        except (EOFError, OSError):
            self.close()
            raise KairosError(f"the engine process exited while starting (exit code {self._process.exitcode})")
        if isinstance(message, _StartupFailed):
            self.close()
            raise KairosError(message.message)
        assert isinstance(message, EngineReady)
        return message

    def start(self) -> None:
        super().start()
        self._reader = threading.Thread(target=self._read, name="kairos-engine-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                output = self._outputs.recv()
            except (EOFError, OSError):
                error = None if self._stopping else (
                    f"the engine process exited unexpectedly (exit code {self._process.exitcode})")
                output = EngineOutput(closed=True, error=error)
            self.receive(output)
            if output.closed:
                return

    def _send(self, command: Add | Abort | Stop) -> None:
        try:
            self._commands.send(command)
        except OSError:  # the engine process is gone; the reader reports it
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        self._send(Stop())
        if self._reader is not None:
            self._reader.join(timeout_s)
            self._reader = None
        self.close(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """End the engine process (asked first, then terminated) and close the pipes."""
        self._commands.close()  # the engine reads a closed pipe as Stop
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout_s)
        self._outputs.close()
