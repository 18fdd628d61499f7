from tests.notify.support import outbox, slack_fake
from tests.slack.support import slack_client, slack_runtime

__all__ = ["outbox", "slack_client", "slack_fake", "slack_runtime"]
