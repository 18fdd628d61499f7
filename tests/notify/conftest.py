from tests.notify.support import outbox, slack_fake

__all__ = ["outbox", "slack_fake"]
