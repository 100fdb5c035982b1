"""Kite order postbacks (kite/API.md §11): order flow, so the engine's, not accounts'.

- `services.kite_postback_receive`: check a postback's checksum against the account's api secret
  and apply it to the matching child order (forward only; polling stays the source of truth), or
  wake the engine for a master's order;
- `views.KitePostbackView`: `POST /accounts/kite/postback/` (the URL registered with Kite, under
  the `kite` URL namespace with the daily login: see pms/urls.py), authenticated by checksum only.
"""
