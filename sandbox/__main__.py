"""Entry point: ``python -I -S`` running ``sandbox`` (the host starts it with the command line of
``host.interpreter.launcher_command``) is a launcher, which reads the spawn spec on stdin; with
the arguments ``zygote <control fd> <host pid>`` it is a zygote that forks launchers."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["zygote"]:
        from sandbox.zygote import main as zygote_main

        zygote_main(sys.argv[2:])
    else:
        from sandbox.supervisor import main

        main()
