"""Progress off a terminal: plain lines, not a bar's carriage returns."""

import io

from maskingnet.utils.progress import LineProgress, progress_bar


def test_off_a_terminal_the_progress_is_one_line_per_tenth_and_one_at_the_end():
    log = io.StringIO()
    with progress_bar(25, desc="predict", file=log) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(25):
            bar.update()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 9  # every 3 photos, then the 25th
    assert lines[0].startswith("predict: 3/25 img (") and lines[-1].startswith("predict: 25/25 img (")


def test_a_resumed_run_counts_from_where_it_was():
    log = io.StringIO()
    bar = LineProgress(10, initial=8, every=1, file=log)
    bar.update(2)
    bar.close()
    assert len(log.getvalue().splitlines()) == 1 and log.getvalue().startswith("10/10 img")


def test_no_progress_writes_nothing():
    log = io.StringIO()
    with progress_bar(5, enabled=False, file=log) as bar:
        bar.update(5)
    assert log.getvalue() == ""


def test_lines_say_how_long_is_left_and_the_postfix():
    log = io.StringIO()
    bar = LineProgress(4, desc="epoch 1/2", unit="batch", every=2, file=log)
    bar.set_postfix(loss="0.0412")
    bar.update(2)
    line = log.getvalue().strip()
    assert line.startswith("epoch 1/2: 2/4 batch (") and " left)" in line and line.endswith(", loss 0.0412")
