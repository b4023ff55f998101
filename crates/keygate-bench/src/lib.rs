//! Support for keygate's load tests: see `scripts/load.sh` and the `load_server` binary.
#![forbid(unsafe_code)]
