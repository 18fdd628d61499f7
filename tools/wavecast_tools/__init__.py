"""Wavecast's development tools: local servers that speak the FCM and APNs protocols
(`fakes`) and the benchmarks (`bench`). Installed beside the product for development and CI
(`make install`), never in the product's image; `wavecast fake` and `wavecast bench` run
them."""
