"""A sandbox provider made of Mistral dynamic-action source (see providers.mistral_dynamic)."""

from providers.mistral_dynamic import dynamic_provider

provider = dynamic_provider("dyn", "hello_actions.py", ["Hello", "Refuse"])
