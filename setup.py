"""The native line-protocol parser (engine/ingest/_lpnative.c).

Optional: where no C compiler or Python headers are found the build goes on without
it and the pure-Python parser is used (``tsadmin --version`` says which). Everything
else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "engine.ingest._lpnative",
            ["engine/ingest/_lpnative.c"],
            extra_compile_args=["-O2", "-std=c11", "-D_GNU_SOURCE"],
            optional=True,
        )
    ]
)
