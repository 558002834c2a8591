"""No process outlives its driver (issue #22): the watchdog stops a killed driver's descendants (re-parented to init,
as vLLM's EngineCore was after a `kill -9`), the run directory's record lets a rerun stop what is left and say so, a
second driver on the same run directory is refused. Checked with `ps`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rest_em.processes import RECORD, SecondDriver, claim_run_dir

REPO = Path(__file__).resolve().parents[2]


def ps_matching(marker: str) -> list[str]:
    """Lines of `ps` whose command line holds ``marker`` (this test's unique temporary path)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,stat,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines()[1:] if marker in line and " Z" not in line and "ps -ww" not in line]


def start_driver(run_dir: Path, marker: str, watchdog: bool = True) -> subprocess.Popen:
    """A stand-in driver: claims the run directory, then starts a process tree like an engine's (a child that starts
    its own child, both holding ``marker`` in their command line), and waits."""
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        from rest_em.processes import claim_run_dir
        claim_run_dir({str(run_dir)!r}, watchdog={watchdog})
        inner = ("import subprocess, sys, time; "
                 "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', {marker!r}]); time.sleep(300)")
        subprocess.Popen([sys.executable, "-c", inner, {marker!r}])
        print("ready", flush=True)
        time.sleep(300)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, marker], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 30
    while len(ps_matching(marker)) < 3 and time.monotonic() < deadline:  # driver, engine, engine's child
        time.sleep(0.1)
    return proc


def wait_until(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def test_kill_9_of_the_driver_leaves_no_process(tmp_path):
    marker = str(tmp_path / "marker-kill9")
    driver = start_driver(tmp_path, marker)
    record = tmp_path / RECORD
    assert wait_until(lambda: len(json.loads(record.read_text())["children"]) >= 2, 10)  # the watchdog saw the tree
    assert len(ps_matching(marker)) == 3
    driver.kill()  # kill -9: no finally, no handler
    driver.wait()
    time.sleep(10)
    assert ps_matching(marker) == [], "processes outlived the driver by 10 s"
    data = json.loads(record.read_text())
    assert len(data["stopped_by_watchdog"]) == 2 and data["children"] == []


def test_a_rerun_stops_what_a_killed_run_left_and_says_so(tmp_path, caplog):
    marker = str(tmp_path / "marker-rerun")
    driver = start_driver(tmp_path, marker, watchdog=False)  # as if the watchdog had been killed too
    record = tmp_path / RECORD
    # without a watchdog nobody wrote the children: the record still names the driver, so the same host's rerun
    # refuses while it lives ...
    with pytest.raises(SecondDriver, match=f"another driver \\(pid {driver.pid}"):
        claim_run_dir(tmp_path, watchdog=False)
    # ... and once it is gone, stops its recorded leftovers. Record them as a watchdog would have.
    from rest_em.processes import descendants

    data = json.loads(record.read_text())
    data["children"] = descendants(driver.pid)
    record.write_text(json.dumps(data))
    driver.kill()
    driver.wait()
    assert len(ps_matching(marker)) == 2  # the engine and its child, re-parented
    with caplog.at_level("WARNING", logger="rest_em.processes"):
        claim_run_dir(tmp_path, watchdog=False)
    assert "stopped 2 process(es) left running by an earlier run" in caplog.text
    assert wait_until(lambda: ps_matching(marker) == [], 10)
    assert json.loads(record.read_text())["driver"]["pid"] == os.getpid()


def test_sigterm_unwinds_the_driver_through_finally(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from rest_em.processes import install_signal_handlers
        install_signal_handlers()
        try:
            print("ready", flush=True)
            time.sleep(60)
        finally:
            open({str(tmp_path / "closed")!r}, "w").write("engines closed")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert (tmp_path / "closed").read_text() == "engines closed"
