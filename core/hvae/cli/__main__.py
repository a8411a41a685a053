"""``python -m hvae.cli``: the ``hvae`` command, as torchrun starts it in each process (``-m hvae.cli``)."""

from hvae.cli import main

main(prog_name="hvae")
