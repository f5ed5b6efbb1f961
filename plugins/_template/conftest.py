"""Keeps pytest from collecting the template's tests in this repository. DELETE IT in your copy."""

collect_ignore_glob = ["*"]
