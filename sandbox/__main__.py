"""Entry point of a worker process: ``python -I -S`` running ``sandbox`` (the host starts it with
the command line of ``host.interpreter.launcher_command``)."""

from sandbox.supervisor import main

if __name__ == "__main__":
    main()
