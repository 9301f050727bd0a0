"""What runs inside a worker: the supervisor, the confinement layers and the worker loop.

``python -I -S`` running ``sandbox`` (see ``host.interpreter``) is the worker entry point;
``sandbox.protocol`` is the wire format shared with the host. Importing this package must stay
cheap: it imports nothing on its own.
"""
