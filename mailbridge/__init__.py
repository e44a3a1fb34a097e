"""mailbridge: thank-you and follow-up drafts for job interviews, in your own mailbox."""

__version__ = "0.1.0"
