"""API tokens (issue 12 item 2): django-rest-knox tokens that end.

- Only a SHA-512 digest of each token is stored (knox); the secret is shown once, by the token
  endpoint that creates it, and never again (not in the admin, not in the token list).
- Every token expires `API_TOKEN_TTL_HOURS` after it was issued; each login issues a new one.
- A password change ends every token of that user, whatever changed it (admin, `changepassword`,
  a password reset or change form, `set_password()` + `save()`): `receivers` deletes them when a
  user row is saved with a different password hash.
- Owners list (`GET /api/v1/auth/tokens`) and revoke (`DELETE /api/v1/auth/tokens/<id>`) their own
  tokens only; staff too see and revoke only their own through the API. The admin lists tokens
  (owner, prefix, dates) and may delete one, but never shows or creates a secret.
"""
