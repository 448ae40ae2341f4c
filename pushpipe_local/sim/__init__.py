"""What the people and programs around pushpipe do, simulated against the local cloud:
browsers, audience files, the mailbox, approvers at the approval pages, the tenant's shop."""
