"""The reference's checkpoints in and out: Magenta's TensorFlow checkpoints and magenta.js folders.

- :mod:`hvae.magenta.tfbundle` reads TensorFlow's checkpoint format without TensorFlow;
- :mod:`hvae.magenta.jsformat` reads and writes magenta.js checkpoint folders;
- :mod:`hvae.magenta.variables` maps hvae's parameters to the reference's variables and back;
- :mod:`hvae.magenta.importing` and :mod:`hvae.magenta.exporting` are ``hvae import`` / ``hvae export``.

See docs/magenta.md for the released checkpoints and the preset each needs.
"""
