//! The web entry point Trunk builds: mounts [`frontend::App`] on the page's body.

fn main() {
    yew::Renderer::<frontend::App>::new().render();
}
