"""``python -m maskingnet`` and the ``maskingnet`` command. SIGINT and SIGTERM leave in one line from the
first moment: the handlers are in place before the command line's imports, which take a tenth of a second
(a signal then used to end the process silently, or with a traceback from inside an import)."""

from maskingnet.utils.interrupts import leave_on_signals


def run() -> None:
    with leave_on_signals("maskingnet"):
        from maskingnet.cli import main

        main()


if __name__ == "__main__":
    run()
