"""What the pages share: the progress bars' counts and time left."""

from pages.common import ProgressBar, progress_text, time_left


def test_progress_text_counts_and_says_how_long_is_left():
    assert progress_text(12, 40, started=100.0, unit="questions", now=115.0) == (
        "12 of 40 questions · 0:35 left"
    )
    assert progress_text(1, 3, 0.0, "points", now=3_000.0) == "1 of 3 points · 1:40:00 left"
    assert progress_text(1_500, 20_000, 0.0, "tokens", now=3.0) == (
        "1,500 of 20,000 tokens · 0:37 left"
    )


def test_no_time_left_before_anything_is_done_nor_after_all_is():
    assert progress_text(0, 40, 0.0, "questions", now=10.0) == "0 of 40 questions"
    assert progress_text(40, 40, 0.0, "questions", now=10.0) == "40 of 40 questions"
    assert progress_text(0, 0, 0.0, "rows", now=10.0) == "0 of 0 rows"
    assert progress_text(5, 40, None, "questions") == "5 of 40 questions"
    assert time_left(0.5, 0.0, now=0.0) == "0:00 left"


class _Bar:
    """Stands in for the st.progress element: keeps what the bar was told to show."""

    def __init__(self) -> None:
        self.shown: list[tuple[float, str]] = []

    def progress(self, fraction: float, text: str) -> None:
        self.shown.append((fraction, text))


def test_the_bar_paces_each_stage_from_its_first_report(monkeypatch):
    import pages.common

    clock = iter([10.0, 20.0, 30.0, 35.0])
    monkeypatch.setattr(pages.common.time, "monotonic", lambda: next(clock))
    bar = ProgressBar("Loading the model…")
    bar._bar = _Bar()
    bar.count(1, 10, "rows")  # t = 10: the first row came after loading the model
    bar.count(2, 10, "rows")  # t = 20: 10 s a row since then, 8 rows to go
    bar.count(1, 5, "rows", "retain")  # t = 30: a new stage
    bar.count(3, 5, "rows", "retain")  # t = 35: 2.5 s a row, 2 to go
    assert [text for _, text in bar._bar.shown] == [
        "1 of 10 rows",
        "2 of 10 rows · 1:20 left",
        "retain: 1 of 5 rows",
        "retain: 3 of 5 rows · 0:05 left",
    ]
    assert [fraction for fraction, _ in bar._bar.shown] == [0.1, 0.2, 0.2, 0.6]
