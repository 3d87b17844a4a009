"""Notifications: emails queued in the store's outbox and sent in the background.

``catalogue`` renders a message from the same JSON catalogue the family app uses;
``feeder`` turns booking events (whoever caused them) and due reminders into outbox rows;
``sender`` delivers them by SMTP (aiosmtplib) or, with no mail server configured, as .eml
files in a local folder. Requests only ever queue; nothing here runs inside one.
"""
