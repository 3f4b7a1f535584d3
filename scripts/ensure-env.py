#!/usr/bin/env python3
"""Write a local .env on first `make run`: a random SECRET_KEY and settings for plain-HTTP use on this
machine. An existing .env is never touched. Behind a TLS proxy, set SECURE_SSL=1 (README)."""
import pathlib
import secrets

env = pathlib.Path(__file__).resolve().parent.parent / ".env"
if not env.exists():
    env.write_text(
        "# Written by `make run` on first start. Edit freely; see README.md, Configuration.\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        "# Served over plain HTTP on 127.0.0.1: cookies must not be Secure-only. Use 1 behind HTTPS.\n"
        "SECURE_SSL=0\n"
    )
    print(f"wrote {env}")
