"""Example providers: ``text`` (well-behaved) and ``hostile`` (misbehaves on purpose).

Load them with ``load_provider("providers.examples.text")`` or
``load_provider("providers.examples.hostile")``.
"""
