"""Drive ``_broadcast_app.py`` processes: write commands, wait for the lines they report."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

TESTS = Path(__file__).resolve().parent


class AppProcess:
    """One ``_broadcast_app.py`` process and the lines it printed so far."""

    def __init__(self, url: str) -> None:
        env = dict(os.environ)
        inherited = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *inherited])
        self.process = subprocess.Popen(
            [sys.executable, str(TESTS / "_broadcast_app.py"), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 30) -> list[str]:
        with self._cond:
            if not self._cond.wait_for(lambda: condition(self.lines), timeout=timeout):
                pytest.fail(f"timed out; process {self.process.pid} printed {self.lines[-8:]}")
            return list(self.lines)

    def wait_line(self, line: str, count: int = 1, timeout: float = 30) -> None:
        self.wait_for(lambda lines: lines.count(line) >= count, timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.command("quit")
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
