//! The server's modules import one another in one direction only: session -> lobby -> room ->
//! room_state -> history, store and the other plain modules, and nothing points back. A cycle
//! would put rules back where they cannot be tested alone; this test reads the sources (every
//! `crate::module` a file names) and fails on any cycle, naming it.

use std::collections::{BTreeMap, BTreeSet};

/// Module name -> the modules its file names as `crate::name`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("server/src") {
        let path = entry.expect("entry").path();
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else { continue };
        // lib.rs and main.rs are the roots that tie the modules together.
        if path.extension().is_none_or(|ext| ext != "rs") || name == "lib" || name == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        let mut names = BTreeSet::new();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            // `crate::{a, b::c}` names several modules at once.
            let named: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
                None => vec![rest],
            };
            for path in named {
                let module: String = path
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                // `crate::ConnId` and other items of lib.rs are not modules.
                if !module.is_empty()
                    && src.join(format!("{module}.rs")).is_file()
                    && module != name
                {
                    names.insert(module);
                }
            }
        }
        graph.insert(name.to_owned(), names);
    }
    graph
}

/// A cycle through `node`, if any, as the path that closes it.
fn cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|seen| seen == node) {
        let mut found = path[start..].to_vec();
        found.push(node.to_owned());
        return Some(found);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(found) = cycle(graph, next, path, done) {
            return Some(found);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

/// No module imports, directly or through others, a module that imports it.
#[test]
fn modules_import_in_one_direction() {
    let graph = imports();
    assert!(graph.len() > 10, "read the modules: {graph:?}");
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(found) = cycle(&graph, node, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", found.join(" -> "));
        }
    }
}

/// The layers named in docs/ARCHITECTURE.md: the room's rules know no actor, the room actor
/// knows neither the lobby nor the sessions, the lobby does not know the sessions.
#[test]
fn lower_layers_do_not_know_higher_ones() {
    let graph = imports();
    for (module, above) in [
        ("room_state", ["room", "lobby", "session"].as_slice()),
        ("room", &["lobby", "session"]),
        ("lobby", &["session"]),
        ("store", &["room", "room_state", "lobby", "session"]),
    ] {
        let names = &graph[module];
        for higher in above {
            assert!(!names.contains(*higher), "{module} imports {higher}");
        }
    }
}

/// The patched copies under vendor/ are what the build uses: a `[patch]` that stops applying
/// (after an actix-web upgrade) only makes Cargo warn, and the closes, shutdown and idle memory
/// they fix would quietly come back. A patched crate is a path crate: its Cargo.lock entry has
/// no registry `source`.
#[test]
fn the_vendored_crates_are_in_use() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
    for (name, version) in [("actix-http", "3.20.0"), ("actix-server", "2.10.0")] {
        let entries: Vec<&str> = lock
            .split("[[package]]")
            .filter(|entry| entry.contains(&format!("name = \"{name}\"\n")))
            .collect();
        assert_eq!(entries.len(), 1, "{name}: one version in Cargo.lock");
        let entry = entries[0];
        assert!(entry.contains(&format!("version = \"{version}\"")), "{name} {version}: {entry}");
        assert!(!entry.contains("source ="), "{name} comes from a registry, not vendor/: {entry}");
        let vendored = root.join("vendor").join(name).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&vendored).expect("the vendored manifest");
        assert!(manifest.contains(&format!("version = \"{version}\"")), "{}", vendored.display());
    }
    assert!(!lock.contains("[[patch.unused]]"), "a [patch] no longer applies");
    // Each change carries its marker: a re-vendored copy without them has lost the changes.
    for file in [
        "actix-http/src/h1/dispatcher.rs",
        "actix-http/src/h1/timer.rs",
        "actix-server/src/service.rs",
        "actix-server/src/worker.rs",
    ] {
        let text = std::fs::read_to_string(root.join("vendor").join(file)).expect("vendored file");
        assert!(text.contains("Patched (see vendor/README.md)"), "vendor/{file} lost its change");
    }
}
