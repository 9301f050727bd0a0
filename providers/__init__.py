"""SDK for writing sandboxed action providers, plus example providers.

Provider authors only need::

    from providers import Provider

    provider = Provider("text", version="1.0")

    @provider.action
    def word_count(text: str) -> int:
        return len(text.split())

This package is imported inside confined workers, so it must stay dependency-light and
cheap to import: ``jsonschema`` is imported lazily, only when a schema is checked.
"""

from providers.errors import ProviderError, ProviderLoadError
from providers.loader import load_provider
from providers.sdk import Action, Provider

__all__ = ["Action", "Provider", "ProviderError", "ProviderLoadError", "load_provider"]
