"""Entry point of a worker process: ``python -I -m sandbox`` (the host starts it)."""

from sandbox.supervisor import main

if __name__ == "__main__":
    main()
