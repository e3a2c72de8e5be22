"""The web review (`photocheck serve`): server-rendered pages over the same library as the CLI.

Views only read, render and call the library (review.sign, redact.redact, redact.preview,
audit.log, users.authenticate): every rule lives there, none is re-implemented here.
"""
from photocheck.web.app import create_app, load_secret_key

__all__ = ["create_app", "load_secret_key"]
