"""The python grader's sandbox: bad graders score nothing with a reason; good ones still work.

Each bad grader gets a fresh worker for the next sample; a good grader keeps one worker."""

from __future__ import annotations

import os
import socket
import threading

import psutil
import pytest

from tunesmith.graders.sandbox import Limits, Sandbox

LIMITS = Limits(timeout_s=2.0, memory_bytes=512 * 1024 * 1024, start_s=20.0)
GOOD = "def grade(sample, item):\n    return 1.0 if sample['output_text'] == item['answer'] else 0.25\n"
SAMPLE, ITEM = {"output_text": "Paris"}, {"answer": "Paris"}


@pytest.fixture
def listener():
    """An open port on loopback that accepts connections (in this process's network)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()


def run_bad_then_good(source: str) -> tuple:
    """The bad source's outcome, and a good grader's right after, in the same process."""
    with Sandbox(source, LIMITS) as bad:
        outcome = bad.run(SAMPLE, ITEM)
        again = bad.run(SAMPLE, ITEM)  # a fresh worker, the same failure
    assert again.score is None and again.kind == outcome.kind
    with Sandbox(GOOD, LIMITS) as good:
        assert good.run(SAMPLE, ITEM).score == 1.0
    return outcome


def test_good_grader_keeps_one_worker(tmp_path):
    with Sandbox(GOOD, LIMITS) as sandbox:
        scores = [sandbox.run({"output_text": t}, ITEM).score for t in ("Paris", "Lyon") * 20]
        pid = sandbox._proc.pid
        assert sandbox.run(SAMPLE, ITEM).score == 1.0 and sandbox._proc.pid == pid
    assert scores == [1.0, 0.25] * 20
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_loop_forever_times_out():
    outcome = run_bad_then_good("def grade(sample, item):\n    while True:\n        pass\n")
    assert outcome.score is None and outcome.kind == "timeout" and "timed out" in outcome.error


def test_unbounded_allocation_hits_the_memory_limit():
    source = "def grade(sample, item):\n    x = []\n    while True:\n        x.append(bytearray(10**7))\n"
    outcome = run_bad_then_good(source)
    assert outcome.score is None and outcome.kind == "memory"


def test_network_is_refused(listener):
    port, accepted = listener
    source = (
        "import socket\n"
        "def grade(sample, item):\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        "    return 1.0\n"
    )
    outcome = run_bad_then_good(source)
    assert outcome.score is None and outcome.kind == "runtime" and "socket" in outcome.error
    assert accepted == []


def test_writing_a_file_in_its_cwd_is_refused():
    source = "def grade(sample, item):\n    open('out.txt', 'w').write('x')\n    return 1.0\n"
    outcome = run_bad_then_good(source)
    assert outcome.score is None and "may not write" in outcome.error


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("return 'abc'", "grade returned str, not a number"),
        ("return float('nan')", "not a finite number"),
        ("return True", "grade returned bool"),
        ("raise ValueError('no answer')", "ValueError: no answer"),
        ("import subprocess; subprocess.run(['true'])", "subprocess.Popen"),
        ("import os; os.system('true')", "os.system"),
        ("import ctypes; ctypes.CDLL(None)", "ctypes"),
        ("import os; os.remove('/etc/hostname')", "os.remove"),
    ],
)
def test_bad_answers_and_refused_calls(body, reason):
    outcome = run_bad_then_good(f"def grade(sample, item):\n    {body}\n")
    assert outcome.score is None and reason in outcome.error


def test_a_crash_and_a_failing_top_level_are_reasons_too():
    crash = run_bad_then_good("import os\ndef grade(sample, item):\n    os._exit(3)\n")
    assert crash.kind == "crash" and "status 3" in crash.error
    top = run_bad_then_good(
        "raise RuntimeError('at import')\ndef grade(sample, item):\n    return 1\n"
    )
    assert "at import" in top.error


def test_the_environment_is_stripped(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    source = (
        "import os\ndef grade(sample, item):\n    return float('OPENAI_API_KEY' in os.environ)\n"
    )
    with Sandbox(source, LIMITS) as sandbox:
        assert sandbox.run(SAMPLE, ITEM).score == 0.0


def test_close_leaves_no_process_and_no_folder():
    sandbox = Sandbox(GOOD, LIMITS)
    sandbox.run(SAMPLE, ITEM)
    pid, folder = sandbox._proc.pid, sandbox._folder
    sandbox.close()
    assert not os.path.exists(folder)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
