"""Database plumbing. Importing the package installs the constraint naming convention first."""

from app.db import base as base
