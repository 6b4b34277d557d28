"""Every program in docs/examples/ runs to completion against a real broker and prints what
its docstring promises, so the examples a newcomer copies cannot rot.

Each ``docs/examples/*.py`` (a glob: a new example is picked up by being there) runs as
``python EXAMPLE`` in a child process, against its own broker process on a free 127.0.0.1
port whose address is in the environment variable ``LOGSTREAM_BROKER`` (the one the CLI
reads; the examples default to ``127.0.0.1:7070``, where ``make run`` listens). It must
exit 0 within ``TIME_LIMIT_S`` seconds, and its stdout must match the block after
``Expected output::`` in its module docstring, line by line: equal after stripping trailing
spaces, except that ``...`` in an expected line stands for any text within that line (ids,
timings, process ids). The convention is written down for authors in docs/examples/README.md.

An example checks its own results (every job done exactly once, ...) and exits non-zero
when they are wrong; the comparison here then catches what it prints.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logstream.testing.broker import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "docs" / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
TIME_LIMIT_S = 60.0  # each example takes a few seconds alone; the slack is for a loaded CI box
EXPECTED_MARK = "Expected output::"

pytestmark = pytest.mark.slow


def expected_output(source: str) -> list[str]:
    """The lines of the indented block after ``Expected output::`` in the module docstring."""
    doc = ast.get_docstring(ast.parse(source), clean=True)
    if not doc or EXPECTED_MARK not in doc:
        raise ValueError(f"the module docstring has no {EXPECTED_MARK!r} block")
    after = doc.split(EXPECTED_MARK, 1)[1].splitlines()[1:]
    block: list[str] = []
    for line in after:
        if line.strip() and not line.startswith("    "):
            break  # the first unindented line ends the literal block
        block.append(line[4:].rstrip())
    while block and not block[0]:
        block.pop(0)
    while block and not block[-1]:
        block.pop()
    if not block:
        raise ValueError(f"the {EXPECTED_MARK!r} block is empty")
    return block


def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")) + r"\Z")


def output_mismatch(expected: list[str], actual: str) -> str | None:
    """None when ``actual`` matches ``expected`` (see the module docstring), else what
    differs first."""
    got = [line.rstrip() for line in actual.rstrip("\n").splitlines()]
    for i, (want, line) in enumerate(zip(expected, got, strict=False), start=1):
        if not _line_pattern(want).match(line):
            return f"line {i}: expected {want!r}, got {line!r}"
    if len(got) != len(expected):
        return f"expected {len(expected)} lines, got {len(got)}"
    return None


def run_example(path: Path, address: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``path`` in its own session; past the time limit the whole session (the example
    and its worker processes) is killed and AssertionError raised."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    env["LOGSTREAM_BROKER"] = address
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # the CLI a subprocess example calls must be this interpreter's
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    cmd = [sys.executable, str(path)]
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"{path.name} did not finish in {TIME_LIMIT_S:.0f} s\n"
            f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def check_run(path: Path, address: str, work: Path) -> None:
    """Run ``path`` against the broker at ``address``; AssertionError says what went wrong."""
    expected = expected_output(path.read_text(encoding="utf-8"))
    p = run_example(path, address, work)
    report = f"--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}"
    assert p.returncode == 0, f"{path.name} exited {p.returncode}\n{report}"
    mismatch = output_mismatch(expected, p.stdout)
    assert mismatch is None, f"{path.name}: output differs, {mismatch}\n{report}"


def check_example(path: Path, tmp_path: Path) -> None:
    """Run ``path`` against a fresh broker (see :func:`check_run`)."""
    work = tmp_path / "work"
    work.mkdir()
    broker = BrokerProcess(tmp_path / "broker-data", log_level="WARNING").start()
    try:
        check_run(path, broker.address, work)
    finally:
        broker.terminate()


def test_every_example_is_listed_in_the_examples_readme() -> None:
    readme = (EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    assert {
        "background_jobs.py",
        "welcome_email.py",
        "order_events.py",
        "idempotent_payments.py",
    } <= {p.name for p in EXAMPLES}
    missing = [p.name for p in EXAMPLES if p.name not in readme]
    assert not missing, f"add these to docs/examples/README.md: {missing}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_an_example_runs_and_prints_what_it_promises(example: Path, tmp_path: Path) -> None:
    check_example(example, tmp_path)


def test_the_examples_run_again_on_a_broker_that_ran_them(tmp_path: Path) -> None:
    """What a reader does after ``make run``: run the examples, then run them again."""
    work = tmp_path / "work"
    work.mkdir()
    broker = BrokerProcess(tmp_path / "broker-data", log_level="WARNING").start()
    try:
        for _ in range(2):
            for example in EXAMPLES:
                check_run(example, broker.address, work)
    finally:
        broker.terminate()


# ---- the checker itself can fail -------------------------------------------------------------


def _example(tmp_path: Path, body: str, expected: str) -> Path:
    path = tmp_path / "example.py"
    block = "".join(f"    {line}\n" for line in expected.splitlines())
    path.write_text(f'"""A test example.\n\nExpected output::\n\n{block}"""\n{body}\n')
    return path


def test_an_example_that_prints_something_else_fails(tmp_path: Path) -> None:
    path = _example(tmp_path, "print('job 1 done twice')", "job ... done once")
    with pytest.raises(AssertionError, match=r"output differs, line 1"):
        check_example(path, tmp_path)


def test_an_example_that_fails_its_own_check_fails(tmp_path: Path) -> None:
    body = "import sys\nprint('all done')\nsys.exit('job 3 was never done')"
    path = _example(tmp_path, body, "all done")
    with pytest.raises(AssertionError, match=r"exited 1"):
        check_example(path, tmp_path)


def test_an_example_past_its_time_limit_is_stopped_with_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "TIME_LIMIT_S", 3.0)
    pid_file = tmp_path / "worker.pid"
    body = (
        "import multiprocessing, os, time\n"
        "def work(): time.sleep(300)\n"
        "if __name__ == '__main__':\n"
        "    w = multiprocessing.Process(target=work); w.start()\n"
        f"    open({str(pid_file)!r}, 'w').write(str(w.pid))\n"
        "    w.join()\n"
    )
    with pytest.raises(AssertionError, match=r"did not finish in 3 s"):
        check_example(_example(tmp_path, body, "never"), tmp_path)
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the example's worker process outlived the time limit"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child of a killed parent is a zombie until init reaps it
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_example_reaches_the_broker_in_logstream_broker(tmp_path: Path) -> None:
    body = (
        "import os\nfrom logstream import Admin\n"
        "Admin(os.environ['LOGSTREAM_BROKER']).create_topic('t')\n"
        "print([t.name for t in Admin(os.environ['LOGSTREAM_BROKER']).list_topics()])"
    )
    check_example(_example(tmp_path, body, "['t']"), tmp_path)


def test_wildcards_match_within_one_line_only() -> None:
    expected = ["job video-... done by worker-...", "3 jobs, each done once"]
    good = "job video-7 done by worker-2\n3 jobs, each done once\n"
    assert output_mismatch(expected, good) is None
    assert output_mismatch(expected, "job video-7 done by worker-2\n") == "expected 2 lines, got 1"
    # a wildcard does not swallow the next line
    two_lines = "job video-7 done by worker-2\nand more\n3 jobs, each done once"
    assert output_mismatch(expected, two_lines) == (
        "line 2: expected '3 jobs, each done once', got 'and more'"
    )
    assert output_mismatch(["id=...;"], "id=;") is None  # ... may stand for nothing at all
    assert output_mismatch(["a"], "a b") is not None  # a prefix is not a match


def test_the_expected_block_ends_at_the_first_unindented_line() -> None:
    source = (
        '"""Title.\n\nExpected output::\n\n    one\n      two\n\n    three\n\nMore prose.\n"""\n'
    )
    assert expected_output(source) == ["one", "  two", "", "three"]
    with pytest.raises(ValueError, match="no 'Expected output::' block"):
        expected_output('"""No block."""\n')
