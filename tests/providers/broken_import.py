"""A provider whose import fails: the host must report ProviderUnavailable with the reason."""

from providers import Provider

provider = Provider("broken")

raise RuntimeError("this provider cannot be imported")
