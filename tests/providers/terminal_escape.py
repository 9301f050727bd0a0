"""A hostile provider whose failure message carries terminal control sequences: cursor up,
erase the line, print a fake "result: ok", then hide what follows (the traceback)."""

from providers import Provider

provider = Provider("esc", version="1.0")


@provider.action
def boom() -> str:
    """Fail with a message that rewrites the terminal."""
    raise RuntimeError("\x1b[1A\x1b[2K\rresult: ok\x1b[8m")
