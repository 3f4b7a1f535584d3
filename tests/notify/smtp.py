"""A real SMTP server for the tests (aiosmtpd on a free loopback port), keeping what it received."""
import email
import email.policy
import threading

from aiosmtpd.controller import Controller

from tests.fixtures_common import unused_port


class Inbox:
    """aiosmtpd's handler: each accepted message parsed, with its envelope recipients."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 30.0) -> list:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"the SMTP server received {len(self.messages)} message(s), not {count}")
            return list(self.messages)

    @staticmethod
    def text(message) -> str:
        """Subject, headers and every text part, decoded: what a reader of the mail can see."""
        parts = [str(message["Subject"])] + [part.get_content() for part in message.walk()
                                             if part.get_content_maintype() == "text"]
        return "\n".join(parts).replace("\r\n", "\n")


class SMTPServer:
    def __init__(self):
        self.inbox = Inbox()
        self.port = unused_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> "SMTPServer":
        self.controller.start()  # returns once the server answers on its port
        return self

    def stop(self):
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
