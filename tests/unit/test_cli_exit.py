"""How `execscope run` ends: without the interpreter's teardown in the console command only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from execscope import cli


def test_an_in_process_caller_gets_the_usual_system_exit(monkeypatch) -> None:
    monkeypatch.setattr(cli, "_CONSOLE", False)
    with pytest.raises(SystemExit) as exc:
        cli._exit_now(3)
    assert exc.value.code == 3


def test_the_console_command_flushes_its_output_and_skips_the_teardown() -> None:
    script = ("import atexit, sys\n"
              "from execscope import cli\n"
              "atexit.register(lambda: print('teardown ran'))\n"
              "cli._CONSOLE = True\n"
              "print('said', end='')\n"
              "sys.stderr.write('diagnostic')\n"
              "cli._exit_now(4)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe: block-buffered
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert (out.returncode, out.stdout, out.stderr) == (4, "said", "diagnostic")


def test_python_m_execscope_is_the_console_command() -> None:
    out = subprocess.run([sys.executable, "-c", "import runpy, sys\n"
                          "from execscope import cli\n"
                          "cli.main = lambda: print(cli._CONSOLE)\n"
                          "runpy.run_module('execscope', run_name='__main__')\n"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True"], out.stderr
