"""A provider for the Mistral fairness test: one worker, calls that take a while."""

import time

from providers import Provider

provider = Provider("nap", version="1.0")


@provider.action(
    input={
        "type": "object",
        "properties": {"seconds": {"type": "number"}},
        "required": ["seconds"],
    },
    output={"type": "number"},
)
def nap(seconds):
    time.sleep(seconds)
    return seconds
