"""Exceptions raised by the provider SDK.

They live in their own module so that :mod:`providers.schemas` and :mod:`providers.sdk`
can both raise them without importing each other.
"""

from __future__ import annotations

__all__ = ["ProviderError", "ProviderLoadError"]


class ProviderError(Exception):
    """A provider or one of its actions is declared incorrectly.

    Raised at registration time (import time of the provider module), so mistakes surface
    when the provider is loaded rather than when an action is first invoked in a worker.
    """


class ProviderLoadError(ProviderError):
    """A provider reference could not be turned into a :class:`~providers.sdk.Provider`.

    The message is a single line meant for operators (it names the reference and, when
    importing failed, the exception type and message). The full formatted traceback of the
    underlying failure is kept in :attr:`traceback_text` because the original exception
    object may not survive being sent from a worker to the host, while text always does.
    """

    def __init__(self, message: str, *, ref: str = "", traceback_text: str = "") -> None:
        super().__init__(message)
        self.ref = ref
        self.traceback_text = traceback_text
