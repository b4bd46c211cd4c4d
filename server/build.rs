//! Rebuilds the server when the built web UI changes: `ui.rs` embeds `dist/` at compile time.
//! (While `dist/` does not exist, cargo reruns this on every build, so the UI is picked up
//! as soon as it is built.)

fn main() {
    println!("cargo:rerun-if-changed=../dist");
    println!("cargo:rerun-if-changed=build.rs");
}
