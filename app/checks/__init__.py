"""Wave checks: signals outside the ledger that a wave must pass before the next is released."""
