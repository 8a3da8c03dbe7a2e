"""The commands of `custtool`, one module per group; :mod:`custtool.cli` registers them."""
