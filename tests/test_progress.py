"""Progress that tells the truth: an ETA from work done, lines on any terminal (issue 21)."""

from __future__ import annotations

import fcntl
import io
import os
import select
import struct
import termios

from embedkit.progress import Progress


def test_eta_comes_from_work_done_not_items():
    # the first half of the items (short texts) is a tenth of the work
    bar = Progress("extract", 100, work_total=1000.0, file=io.StringIO(), every=1e9)
    bar.update(50, work=100.0)
    now = bar._start + 10.0  # 100 work units in 10 s: 900 left is 90 s (items would say 10 s)
    assert bar.eta_seconds(now) == 90.0
    assert "ETA 0:01:30" in bar.line(now) and "50/100 items (50.0%)" in bar.line(now)


def test_the_rate_counts_from_the_first_step_not_the_start_up():
    bar = Progress("extract", 100, work_total=100.0, file=io.StringIO(), every=1e9)
    bar._start -= 30.0  # 30 s of start-up (a session load) before the first batch
    bar.update(10, work=10.0)
    bar._first = (bar._first[0] - 10.0, bar._first[1])  # the first batch ended 10 s ago
    bar.update(10, work=10.0)
    assert abs(bar.eta_seconds(bar._first[0] + 10.0) - 80.0) < 1e-6  # 10 work in 10 s


def test_resumed_items_do_not_count_towards_the_rate():
    bar = Progress("extract", 100, initial=60, file=io.StringIO(), every=1e9)
    bar.update(10)
    assert bar.eta_seconds(bar._start + 10.0) == 30.0  # 10 items/s, 30 left


def _terminal(columns: int):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return master, os.fdopen(slave, "w")


def _read(master: int) -> str:
    chunks = []
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunks.append(os.read(master, 65536))
        except OSError:  # the other end closed
            break
    return b"".join(chunks).decode()


def test_a_terminal_of_0_columns_gets_log_lines():
    master, tty = _terminal(0)
    with tty, Progress("bench", 3, unit="runs", file=tty, every=0) as bar:
        assert tty.isatty() and not bar.bar
        bar.update(1)
        bar.update(2)
    text = _read(master)
    os.close(master)
    assert "\r" not in text.replace("\r\n", "\n")  # the pty turns \n into \r\n
    assert text.count("bench: ") == 3 and "bench: 3/3 runs (100.0%)" in text


def test_a_wide_terminal_gets_one_line_redrawn():
    master, tty = _terminal(60)
    with tty, Progress("bench", 3, unit="runs", file=tty, every=0) as bar:
        assert bar.bar
        bar._last -= 1  # drawn at most every 0.2 s: let the next update draw
        bar.update(1)
    text = _read(master)
    os.close(master)
    lines = [part for part in text.replace("\r\n", "\n").split("\r") if part]
    assert len(lines) == 2 and all(len(line.rstrip("\n")) <= 59 for line in lines)
    assert lines[0].startswith("bench: 1/3 runs") and lines[1].endswith("\n")  # ends the line
