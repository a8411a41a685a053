"""The decoders plugin's one compiled part: hvae's fused LSTM cell (hvae_decoders/_native.c).

Optional: where there is no C compiler the build skips it with a warning, the install succeeds and
hvae runs the same maths as PyTorch operations (hvae_decoders/native.py says so in one line).
Plain C, no PyTorch headers: its functions are called through ctypes; as a module it is empty.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "hvae_decoders._native", ["hvae_decoders/_native.c"], optional=True,
    # No -ffast-math: it would change the process's floating-point mode for every library.
    extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math"])])
