"""Ad-hoc campaigns with e-mail approval: requests, signed single-use links,
N-of-M approvals, SES e-mails and the exactly-once release of an approved audience."""
