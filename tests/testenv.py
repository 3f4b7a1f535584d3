"""Loaded with `-p tests.testenv` (pytest.ini) before pytest-django reads the settings: the test
environment is a development one, with its data in a throw-away folder."""
import os
import tempfile

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "test-only-secret")
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="pacsportal-test-"))
