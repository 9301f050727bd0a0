"""The name of the project's logger: records go to ``actionsandbox`` and below it (the
distribution's name), so they cannot collide with another library's logger called ``host``."""

LOGGER = "actionsandbox"
