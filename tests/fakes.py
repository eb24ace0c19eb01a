"""Small fakes shared by unit tests."""

from __future__ import annotations


class FakePrompter:
    """Answers ssh prompts from a list, records what was asked and shown; an unexpected prompt fails."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, bool]] = []
        self.shown: list[str] = []

    def ask(self, prompt_text: str, secret: bool) -> str:
        self.asked.append((prompt_text, secret))
        if not self.answers:
            raise AssertionError(f"unexpected prompt {prompt_text!r}")
        return self.answers.pop(0)

    def info(self, text: str) -> None:
        self.shown.append(text)


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
