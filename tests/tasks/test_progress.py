"""Progress off a terminal (issue 21): one line per loop, not a bar redrawn 2-3 times into a log."""

from __future__ import annotations

from tasks.progress import progress


def test_progress_writes_one_line_when_stderr_is_not_a_terminal(capsys) -> None:
    assert list(progress(range(5), "stylize", unit="content")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stylize: 5 content in ") and "content/s" in err
    items = progress(iter(range(9)), "transfer", total=10, unit="frame")
    next(items)
    items.close()  # a loop left early (an error) still says how far it got
    assert capsys.readouterr().err.startswith("transfer: 1/10 frame in ")
