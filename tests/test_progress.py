"""The progress bar draws only on a terminal and reaches 100%."""

import io

from hwprune.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only():
    tty = Tty()
    with Progress(4, "epoch 1/1", stream=tty) as bar:
        for _ in range(4):
            bar.update()
    text = tty.getvalue()
    assert "4/4" in text and "#" * 28 in text
    pipe = io.StringIO()
    with Progress(4, "x", stream=pipe) as bar:
        bar.update(4)
    assert pipe.getvalue() == ""
