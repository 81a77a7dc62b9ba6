from .helpers import relay  # noqa: F401  (the fixture for every CLI test here)
