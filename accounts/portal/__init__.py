"""The client portal (/my/): a client's own accounts, their copy trades, positions, P&L, limits,
pause and resume, consent and the broker's daily login. Views call the audited account services
and read through `accounts.portal.selectors`; see docs/portal.md."""
