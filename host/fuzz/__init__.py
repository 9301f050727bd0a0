"""Property-based fuzzing of providers, confined: ``sandbox fuzz`` (:mod:`host.fuzz.cli`), the
pytest plugin (:mod:`host.fuzz.pytest_plugin`, ``fuzz_provider``) and the runner both use
(:mod:`host.fuzz.runner`). Strategies live in :mod:`providers.testing`. Nothing is imported
here, so the CLI's parser and pytest's plugin loading stay cheap."""
