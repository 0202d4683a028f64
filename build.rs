//! Build script: the commit the binary is built from, for `wsrelay --version`,
//! `/application/info` and `wsrelay_build_info` (env `WSRELAY_COMMIT`, 12 hex digits, or
//! `unknown` outside a git checkout, e.g. a container build without `.git`; set
//! `WSRELAY_COMMIT` in the environment to give it there).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WSRELAY_COMMIT");
    // A new commit moves HEAD's branch ref; a checkout moves HEAD itself.
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=.git/{r}");
        }
    }
    println!("cargo:rerun-if-changed=.git/packed-refs");
    let commit = std::env::var("WSRELAY_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=WSRELAY_COMMIT={commit}");
}
