"""The slow group: tests that need thousands of sockets or kill child processes with SIGKILL.

They run in CI with the rest (the README's test command names both packages) but stay out of a
developer's quick loop, ``python -m twisted.trial -j2 tests``, which must finish within a minute.
"""
