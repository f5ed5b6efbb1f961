"""Shared test configuration of the core's tests."""

# The third-party plugin distributions are installed into a fresh venv and tested there
# (tests/plugins/test_third_party.py); their own tests must not run in the dev venv.
collect_ignore = ["thirdparty"]
