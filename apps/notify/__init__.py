"""E-mail: job-end messages to the users who asked (`mail.py`, `MailPreference`) and alerts to the
operators group when something needs a person, one message per cause per OPERATOR_ALERT_SECONDS however
many processes report it (`operators.alert_operators`, throttled through `AlertThrottle` rows).

Subjects and bodies carry counts, names of servers, inboxes and targets, and links; never a patient's
name, ID, accession number or a path made of them: callers pass only such words."""
