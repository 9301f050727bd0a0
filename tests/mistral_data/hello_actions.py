# Mistral dynamic-action source, as uploaded to Mistral's code_sources API.
from mistral_lib import actions


class Hello(actions.Action):
    """Greet someone."""

    def __init__(self, who, punct="!"):
        self.who = who
        self.punct = punct

    def run(self, context):
        return actions.Result(data=f"hello {self.who}{self.punct}")


class Refuse(actions.Action):
    def __init__(self):
        pass

    def run(self, context):
        return actions.Result(error="refused")
