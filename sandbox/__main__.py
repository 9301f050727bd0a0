"""Entry point: ``python -I -m sandbox`` is a launcher (the host starts it with the spawn spec on
stdin); ``python -I -m sandbox zygote <control fd> <host pid>`` is a zygote that forks launchers."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["zygote"]:
        from sandbox.zygote import main as zygote_main

        zygote_main(sys.argv[2:])
    else:
        from sandbox.supervisor import main

        main()
