//! What the tests that run the examples and the CLI as real processes share: where cargo
//! built them, a free port, and whether a missing service is a failure. Included with
//! `#[path = "support/processes.rs"] mod processes;` by each such test; a test uses only
//! part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `target/debug` (or the profile's directory), where this test and the examples are built.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The example `name`: `target/debug/examples/NAME`. `cargo test` builds the examples,
/// but `cargo test --test X` does not: `cargo build --examples --all-features` first.
pub fn example(name: &str) -> PathBuf {
    target_profile_dir().join("examples").join(name)
}

/// The binary `name` of the workspace (the `keygate` CLI): `target/debug/NAME`.
pub fn binary(name: &str) -> PathBuf {
    target_profile_dir().join(name)
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `KEYGATE_REQUIRE_SERVICES=1` (set by `.ci/run`): a missing service or binary fails
/// the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("KEYGATE_REQUIRE_SERVICES").as_deref() == Ok("1")
}
