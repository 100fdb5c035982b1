"""Alice Blue on its current SDK, Ant-A3 TradeHub (`ant-a3-tradehub-sdk-production`): docs/alice.md.

`client.AliceBroker` is the adapter; `sdk` is the only module that imports the SDK's packages
(`TradeMaster`, and the top-level `config` and `utility` it installs).
"""
