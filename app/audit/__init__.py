# Importing the package installs the hash-chain hook: no audit event is written unlinked.
from app.audit import append as _append  # noqa: F401
