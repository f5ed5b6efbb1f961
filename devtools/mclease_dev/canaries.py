"""The passwords tests use, and nothing else: the secret guard looks for them in all output."""

CANARY_PASSWORDS = (
    "mclease-canary-Qz7vX4",
    "mclease-canary-wrong-K9pL2",
    "mclease-canary-p@ss:w/rd?#%3",
)
"""The only passwords tests use (for servers, URLs, files, environment variables). The secret
guard (``tests/_secret_guard.py``, loaded for every test run) fails any test whose output or
failure text contains one, also percent-encoded. The first is the right password of the
password-protected test servers, the second a wrong one, the third needs percent-encoding in a
URL."""
