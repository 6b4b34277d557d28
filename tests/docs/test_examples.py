"""Every shell and Python example in README.md and docs/*.md runs against a real broker, so
the docs cannot drift from what the code does.

A fenced block tagged ``sh``, ``bash``, ``console`` (its ``$ `` lines) or ``python`` is an
example; untagged blocks (output, layouts) are not run. A block that cannot run says why,
in the document, on the line before its fence::

    <!-- no-run: starts a broker on the fixed port 7070 -->

Each document gets a fresh broker (a process on 127.0.0.1, a free port) and a fresh working
directory, and its examples run in document order as a reader would type them: first the
shell blocks (each a ``bash -e -o pipefail`` script, with ``LOGSTREAM_BROKER`` set and
``logstream`` calling this interpreter's CLI), then the Python blocks in one interpreter
(one namespace, ``127.0.0.1:7070`` replaced by the broker's address).

Commands that run until Ctrl-C (``tail -f``, ``consume`` without a bound, ``serve``) get a
Ctrl-C after ``FOLLOW_S`` seconds, which they must answer with exit 0, as the CLI documents;
any other command must finish by itself. The files the examples read as stand-ins for yours
(``events.txt``, ``lines.txt``, ``process.sh``) are made by :func:`_workdir`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from logstream.testing.broker import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOC_ADDRESS = "127.0.0.1:7070"
DOC_HTTP_ADDRESS = "127.0.0.1:7071"  # `make run` serves the console and /metrics here
HTTP_LINE = re.compile(r"logstream http listening on (\S+:\d+)")
FOLLOW_S = 2
SHELL_LANGS = {"sh", "bash", "console", "shell"}

pytestmark = pytest.mark.slow

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
NO_RUN = re.compile(r"^<!--\s*no-run:\s*(.*?)\s*-->\s*$")


@dataclass
class Example:
    document: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    no_run: str | None  # the reason, when marked

    @property
    def where(self) -> str:
        doc = self.document
        return f"{doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc.name}:{self.line}"


def examples(document: Path) -> list[Example]:
    """The shell and Python blocks of ``document``, in order."""
    text = document.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        lang = m.group(1).lower()
        if lang not in SHELL_LANGS and lang != "python":
            continue
        before = [ln for ln in text[: m.start()].splitlines() if ln.strip()]
        marker = NO_RUN.match(before[-1].strip()) if before else None
        code = m.group(2)
        if lang == "console":
            code = "".join(ln[2:] + "\n" for ln in code.splitlines() if ln.startswith("$ "))
        found.append(
            Example(
                document=document,
                line=text.count("\n", 0, m.start()) + 1,
                lang="python" if lang == "python" else "sh",
                code=code,
                no_run=marker.group(1) if marker else None,
            )
        )
    return found


SHELL_PRELUDE = r"""
set -e -o pipefail
# Does this command run until Ctrl-C? (tail -f, serve, consume without a bound)
_follows() {
  local a cmd=""
  for a in "$@"; do case "$a" in -f|--follow) return 0;; esac; done
  for a in "$@"; do case "$a" in tail|consume|serve) cmd=$a; break;; esac; done
  case "$cmd" in
    serve) return 0;;
    consume)
      for a in "$@"; do
        case "$a" in -e|--exit-at-end|-c|--count|--until) return 1;; esac
      done
      return 0;;
  esac
  return 1
}
logstream() {
  local limit=120
  if _follows "$@"; then limit=$FOLLOW_S; fi
  # --preserve-status: a follower stopped by Ctrl-C must exit 0; anything else that had to
  # be stopped fails with 130
  timeout --preserve-status -s INT -k 10 "$limit" "$LOGSTREAM_PYTHON" -m logstream "$@"
}
"""

PYTHON_RUNNER = r"""
import json, sys
blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for where, code in blocks:
    exec(compile(code, where, "exec"), namespace)
"""


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "events.txt").write_text('user-1:{"clicked": true}\nuser-2:{"clicked": false}\n')
    (work / "lines.txt").write_text("first line\nsecond line\n")
    script = work / "process.sh"
    script.write_text("#!/bin/sh\nwc -l >/dev/null\n")
    script.chmod(0o755)
    return work


def _env(address: str, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTREAM_")}
    env.update(
        LOGSTREAM_BROKER=address,
        LOGSTREAM_LISTEN="127.0.0.1:0",  # a `serve` in an example must not take port 7070
        LOGSTREAM_PYTHON=sys.executable,
        FOLLOW_S=str(FOLLOW_S),
        HOME=str(work),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    return env


def _run_shell(example: Example, env: dict[str, str], work: Path, http: str) -> None:
    p = subprocess.run(
        ["bash", "-c", SHELL_PRELUDE + example.code.replace(DOC_HTTP_ADDRESS, http)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, (
        f"{example.where} failed (exit {p.returncode}):\n{example.code}\n"
        f"--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"
    )


def _run_python(
    blocks: list[Example], address: str, env: dict[str, str], work: Path, http: str
) -> None:
    payload = [
        (e.where, e.code.replace(DOC_ADDRESS, address).replace(DOC_HTTP_ADDRESS, http))
        for e in blocks
    ]
    p = subprocess.run(
        [sys.executable, "-c", PYTHON_RUNNER],
        input=json.dumps(payload),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, (
        f"a Python example failed:\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"
    )


def run_document(document: Path, tmp_path: Path) -> None:
    """Run the runnable examples of ``document`` against a fresh broker; AssertionError names
    the first one that fails."""
    runnable = [e for e in examples(document) if e.no_run is None]
    assert runnable, f"{document.name} has no runnable examples"
    work = _workdir(tmp_path)
    broker = BrokerProcess(
        tmp_path / "broker-data", log_level="INFO", http_listen="127.0.0.1:0"
    ).start()
    try:
        found = HTTP_LINE.search(broker.output())
        assert found, f"the broker printed no http address:\n{broker.output()}"
        http = found.group(1)
        env = _env(broker.address, work)
        for example in runnable:
            if example.lang == "sh":
                _run_shell(example, env, work, http)
        python = [e for e in runnable if e.lang == "python"]
        if python:
            _run_python(python, broker.address, env, work, http)
    finally:
        broker.terminate()


# Pages with no runnable example (only no-run blocks, or none) are not collected, so a full
# run has nothing to skip.
RUNNABLE_DOCUMENTS = [d for d in DOCUMENTS if any(e.no_run is None for e in examples(d))]


@pytest.mark.parametrize("document", RUNNABLE_DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_the_examples_of_a_document_run(document: Path, tmp_path: Path) -> None:
    run_document(document, tmp_path)


DRIFTED = """# A drifted tour

```sh
logstream topic create orders --partitions 3
logstream tail orders -p 0,3-5 --from -100
```
"""


def test_a_drifted_example_fails(tmp_path: Path) -> None:
    """The example the README tour once had: partitions 3-5 of a 3-partition topic."""
    doc = tmp_path / "drifted.md"
    doc.write_text(DRIFTED)
    with pytest.raises(AssertionError, match=r"drifted\.md:3 failed"):
        run_document(doc, tmp_path)


def test_every_skipped_example_says_why() -> None:
    every = [e for d in DOCUMENTS for e in examples(d)]
    assert len(every) >= 20, "the extractor found too few examples: is the fence pattern right?"
    unexplained = [e.where for e in every if e.no_run is not None and len(e.no_run) < 10]
    assert not unexplained, f"no-run markers need a reason: {unexplained}"
    skipped = [e for e in every if e.no_run is not None]
    assert len(skipped) <= len(every) // 3, "most examples must run: " + ", ".join(
        e.where for e in skipped
    )


def test_the_extractor_reads_markers_and_console_prompts(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "# t\n\n<!-- no-run: starts a broker on port 7070 -->\n```sh\nmake run\n```\n\n"
        "```console\n$ logstream topic list\norders  3\n```\n\n```\nnot an example\n```\n\n"
        "```python\nprint(1)\n```\n"
    )
    got = examples(doc)
    assert [(e.lang, e.code, e.no_run) for e in got] == [
        ("sh", "make run\n", "starts a broker on port 7070"),
        ("sh", "logstream topic list\n", None),
        ("python", "print(1)\n", None),
    ]
