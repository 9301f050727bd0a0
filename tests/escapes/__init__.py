"""The escape suite: real attacks run inside confined workers, asserted contained.

``attacks.py`` is the hostile provider (one action per attack), ``catalog.py`` describes every
attack as data (threat, layers expected to stop it, how to judge the outcome) and runs them,
``test_escapes.py`` runs the catalog under the strict default policy, ``test_degraded.py`` under
policies with layers switched off, and ``python -m tests.escapes.report`` prints the matrix.
"""
