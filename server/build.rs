//! Rebuilds the server when the built web UI changes: `ui.rs` embeds `dist/` at compile time.
//! (While `dist/` does not exist, cargo reruns this on every build, so the UI is picked up
//! as soon as it is built.)

fn main() {
    println!("cargo:rerun-if-changed=../dist");
    println!("cargo:rerun-if-changed=build.rs");
    let index = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/index.html");
    if !index.is_file() && std::env::var("PROFILE").as_deref() == Ok("release") {
        println!(
            "cargo:warning=no dist/index.html: this release binary carries no web UI \
             (run scripts/build-ui first)"
        );
    }
}
