//! The web UI: the files of the built UI (`dist/`, written by `trunk build --release`) are
//! embedded in the binary when it is compiled, so the binary alone serves everything; a folder
//! given with `--ui-dir` replaces them (for development, or a customised UI).

use std::path::PathBuf;

use actix_web::http::Method;
use actix_web::http::header::{self, EntityTag, IfNoneMatch};
use actix_web::{HttpRequest, HttpResponse};

/// `dist/` as it was when the binary was built (dotfiles such as trunk's lock left out). Empty if
/// it did not exist then.
#[derive(rust_embed::RustEmbed)]
#[folder = "../dist/"]
#[allow_missing = true]
#[exclude = ".*"]
struct Embedded;

/// Where the UI comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder on disk (`--ui-dir`).
    Folder(PathBuf),
    /// The files built into the binary.
    Embedded,
    /// Neither: a page that says how to build the UI.
    Missing,
}

impl Source {
    /// `--ui-dir` if given and it holds an `index.html`, else the embedded UI if the binary was
    /// built with one.
    pub fn choose(ui_dir: Option<&std::path::Path>) -> Source {
        match ui_dir {
            Some(dir) if dir.join("index.html").is_file() => Source::Folder(dir.to_owned()),
            Some(_) => Source::Missing,
            None if Embedded::get("index.html").is_some() => Source::Embedded,
            None => Source::Missing,
        }
    }
}

/// Serves a file of the embedded UI (`/` is `index.html`). Revalidation is cheap: every file has
/// an ETag (its SHA-256), and a matching `If-None-Match` gets `304 Not Modified`.
pub async fn embedded(request: HttpRequest) -> HttpResponse {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, HEAD"))
            .finish();
    }
    let path = match request.path().trim_start_matches('/') {
        "" => "index.html",
        path => path,
    };
    let Some(file) = Embedded::get(path) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found\n");
    };
    let hash = file.metadata.sha256_hash();
    let tag = EntityTag::new_strong(hash[..16].iter().map(|byte| format!("{byte:02x}")).collect());
    let fresh = match request
        .headers()
        .get(header::IF_NONE_MATCH)
        .map(|_| actix_web::http::header::Header::parse(&request))
    {
        Some(Ok(IfNoneMatch::Any)) => true,
        Some(Ok(IfNoneMatch::Items(tags))) => tags.iter().any(|known| known.weak_eq(&tag)),
        _ => false,
    };
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header(header::ETag(tag))
        // Names of scripts and styles change with their content, but index.html's does not:
        // always ask, and let the ETag make asking cheap.
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        return response.finish();
    }
    response.content_type(file.metadata.mimetype()).body(file.data)
}
